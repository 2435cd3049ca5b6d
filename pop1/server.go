package pop1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"popgate/mailstore"
	"popgate/pop3/wire"
)

// Defaults. RFC 918 names no timeouts and no line limit (FLAG-918-SILENT);
// these are the POP2 front end's, so that both protocols of port 109
// behave alike.
const (
	// DefaultAuthTimeout bounds the wait for USER and PASS.
	DefaultAuthTimeout = 3 * time.Minute
	// DefaultIdleTimeout bounds the wait for a command after login.
	DefaultIdleTimeout = 30 * time.Minute
	// DefaultMaxErrors is how many refused commands close the connection.
	DefaultMaxErrors = 10
	// DefaultErrorWord is the first word of a negative reply: RFC 918
	// prints "-ERR" under every command (pp.3-4), "-Error" only in the
	// summary table (p.2).
	DefaultErrorWord = "-ERR"
	// MaxLine is the longest accepted command line, CRLF included: RFC
	// 937's limit, since RFC 918 gives none.
	MaxLine = 512
)

// Options configures a [Server]. Zero fields take the documented defaults.
type Options struct {
	// Store authenticates USER and PASS and holds the mailboxes. Required.
	Store mailstore.Store
	// Hostname is named in the default greeting. Default: os.Hostname(),
	// or "localhost" if that fails.
	Hostname string
	// Logger receives one sub-logger per connection. The zero value logs
	// nothing.
	Logger zerolog.Logger
	// AuthTimeout bounds the wait for each command before login. Default
	// [DefaultAuthTimeout].
	AuthTimeout time.Duration
	// IdleTimeout bounds the wait for each command after login. Default
	// [DefaultIdleTimeout].
	IdleTimeout time.Duration
	// LineTimeout bounds the time to finish a command line once its first
	// octet arrived. Default: the wire package's (30 s).
	LineTimeout time.Duration
	// WriteTimeout bounds each write of replies and of each chunk of mail
	// data. Default: the wire package's (60 s).
	WriteTimeout time.Duration
	// MaxErrors is how many refused commands (unknown, out of sequence,
	// malformed) and failed logins close the connection. Default
	// [DefaultMaxErrors].
	MaxErrors int

	// Greeting is the whole greeting line, without CRLF; it must start
	// with "+" (FLAG-918-GREETING). Default "+OK <hostname> popgate POP1
	// server ready"; "+OK" alone is the RFC's Normal Scenario (p.2) to
	// the letter.
	Greeting string
	// ErrorWord is the first word of every negative reply. Default
	// [DefaultErrorWord]; "-Error" is the spelling of the RFC's summary
	// table (FLAG-918-ERR). It must start with "-" and hold no space.
	ErrorWord string
	// BareReplies sends the reply tokens alone: "+OK", "-ERR" (or
	// ErrorWord) and "#xxx", exactly as RFC 918 prints them, for a client
	// that compares whole lines. By default a short text follows the
	// token, after one space.
	BareReplies bool
	// OKBeforeData answers RCEV with a "+OK" line before the mail data.
	// RFC 918 lists "+OK" as RCEV's reply (p.3) but its Normal Scenario
	// (p.2) and Diagram (p.5) show only the data (FLAG-918-RCEV); by
	// default the data come alone.
	OKBeforeData bool
}

// Server serves POP1 (RFC 918) connections. It is safe for concurrent use;
// each connection is served by the goroutine that calls ServeConn or
// ServeGreeted.
type Server struct {
	opts Options
	ids  wire.ConnIDs
}

// New checks opts, fills in defaults and returns a server.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("pop1: Options.Store is required")
	}
	var err error
	if opts.Hostname, err = wire.Hostname(opts.Hostname); err != nil {
		return nil, fmt.Errorf("pop1: %w", err)
	}
	opts.AuthTimeout = wire.OrDefault(opts.AuthTimeout, DefaultAuthTimeout)
	opts.IdleTimeout = wire.OrDefault(opts.IdleTimeout, DefaultIdleTimeout)
	opts.MaxErrors = wire.OrDefault(opts.MaxErrors, DefaultMaxErrors)
	if opts.Greeting == "" {
		opts.Greeting = "+OK " + opts.Hostname + " popgate POP1 server ready"
	}
	if !strings.HasPrefix(opts.Greeting, "+") || strings.ContainsAny(opts.Greeting, "\r\n") || len(opts.Greeting)+2 > MaxLine {
		return nil, fmt.Errorf("pop1: Options.Greeting %q must start with '+' and be one line of at most %d octets", opts.Greeting, MaxLine-2)
	}
	if opts.ErrorWord == "" {
		opts.ErrorWord = DefaultErrorWord
	}
	if !strings.HasPrefix(opts.ErrorWord, "-") || strings.ContainsAny(opts.ErrorWord, " \t\r\n") || len(opts.ErrorWord) > 32 {
		return nil, fmt.Errorf("pop1: Options.ErrorWord %q must be one word starting with '-'", opts.ErrorWord)
	}
	// A zero zerolog.Logger is not a documented no-op; make it one.
	if reflect.ValueOf(opts.Logger).IsZero() {
		opts.Logger = zerolog.Nop()
	}
	return &Server{opts: opts}, nil
}

// Greeting returns the greeting line, without its CRLF.
func (s *Server) Greeting() string { return s.opts.Greeting }

// ServeConn sends the greeting and serves conn until QUIT, a hang-up, a
// timeout, too many errors or ctx's end. It closes conn before returning.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) {
	c := s.newConn(ctx, conn, nil)
	defer c.finish()
	defer c.recoverPanic()
	c.wc.Line(s.opts.Greeting)
	if err := c.wc.Flush(); err != nil {
		c.log.Debug().Err(err).Msg("greeting not sent")
		return
	}
	c.loop(nil)
}

// ServeGreeted serves a connection taken over from a port 109 dispatcher
// that already sent a greeting and read the client's first command line.
// r is the dispatcher's buffered reader over conn (it may hold pipelined
// input; nil means none) and firstLine that first line, without its line
// end. The session starts where a greeted one does, waiting for USER, so
// firstLine is normally USER. ServeGreeted closes conn before returning.
func (s *Server) ServeGreeted(ctx context.Context, conn net.Conn, r *bufio.Reader, firstLine string) {
	c := s.newConn(ctx, conn, r)
	defer c.finish()
	defer c.recoverPanic()
	first := strings.TrimRight(firstLine, "\r\n")
	c.loop(&first)
}

func (s *Server) wireOptions() wire.Options {
	return wire.Options{MaxLine: MaxLine, LineTimeout: s.opts.LineTimeout, WriteTimeout: s.opts.WriteTimeout}
}

// recoverPanic turns a panic in a session into a logged error and a
// close; finish (deferred before it) then releases the mailbox without
// deleting anything.
func (c *conn) recoverPanic() {
	if r := recover(); r != nil {
		c.log.Error().Str("panic", fmt.Sprint(r)).Bytes("stack", debug.Stack()).Msg("panic in session: closing")
	}
}
