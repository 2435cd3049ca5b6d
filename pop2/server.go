package pop2

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"popgate/mailstore"
	"popgate/pop3/wire"
)

// Default timeouts. AuthTimeout and IdleTimeout are UW ipop2d's (3 and 30
// minutes); RFC 937 gives no values (p.11, FLAG-937-NOTIMEOUTS).
const (
	DefaultAuthTimeout = 3 * time.Minute
	DefaultIdleTimeout = 30 * time.Minute
	// MaxLine is RFC 937's command line limit (Sizes, p.12), CRLF included.
	MaxLine = 512
)

// Options configures a [Server]. Zero fields take the documented defaults.
type Options struct {
	// Store authenticates HELO and holds the mailboxes. Required.
	Store mailstore.Store
	// Hostname is the <host> of the greeting. Default: os.Hostname(), or
	// "localhost" if that fails.
	Hostname string
	// Logger receives one sub-logger per connection. The zero value logs
	// nothing.
	Logger zerolog.Logger
	// AuthTimeout bounds the wait for HELO after the greeting. Default
	// [DefaultAuthTimeout].
	AuthTimeout time.Duration
	// IdleTimeout bounds the wait for the next command after HELO. Default
	// [DefaultIdleTimeout].
	IdleTimeout time.Duration
	// LineTimeout bounds the time to finish a command line once its first
	// octet arrived. Default: the wire package's (30 s).
	LineTimeout time.Duration
	// WriteTimeout bounds each write of replies or message data. Default:
	// the wire package's (60 s).
	WriteTimeout time.Duration
	// MaxErrors is how many garbage commands (decision-table action 1)
	// close the connection. Default 1: RFC 937 closes on the first one.
	// A larger value answers "- error" and keeps the session and its
	// state, a leniency for hand-typed sessions.
	MaxErrors int
}

// Server serves POP2 (RFC 937) connections. It is safe for concurrent use;
// each connection is served by the goroutine that calls ServeConn.
type Server struct {
	opts Options
	ids  wire.ConnIDs
}

// New checks opts, fills in defaults and returns a server.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("pop2: Options.Store is required")
	}
	var err error
	if opts.Hostname, err = wire.Hostname(opts.Hostname); err != nil {
		return nil, fmt.Errorf("pop2: %w", err)
	}
	opts.AuthTimeout = wire.OrDefault(opts.AuthTimeout, DefaultAuthTimeout)
	opts.IdleTimeout = wire.OrDefault(opts.IdleTimeout, DefaultIdleTimeout)
	opts.MaxErrors = wire.OrDefault(opts.MaxErrors, 1)
	return &Server{opts: opts}, nil
}

// Greeting returns the greeting line, without its CRLF: "+ POP2 host
// text", with nothing between "+" and "POP2" (RFC 937 Formal Syntax,
// p.16; UW ipop2d notes that some clients insist on it). A port 109
// dispatcher sends this line itself before it knows the dialect.
func (s *Server) Greeting() string {
	return "+ POP2 " + s.opts.Hostname + " popgate POP2 server ready"
}

// ServeConn sends the greeting and serves conn until QUIT, an error, a
// timeout or ctx's end. It closes conn before returning.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) {
	c := s.newConn(ctx, conn, nil)
	defer c.finish()
	c.wc.Line(s.Greeting())
	if err := c.wc.Flush(); err != nil {
		c.log.Debug().Err(err).Msg("greeting not sent")
		return
	}
	c.st = stAUTH
	c.loop(nil)
}

// ServeGreeted serves a connection taken over from a port 109 dispatcher
// that already sent a greeting and read the client's first command line.
// r is the dispatcher's buffered reader over conn (it may hold pipelined
// input; nil means none; its buffer must hold a whole 512-octet line, as
// bufio's default size does) and firstLine that first line, without its
// line end. The session starts in AUTH, so firstLine is normally HELO or QUIT.
// ServeGreeted closes conn before returning.
//
// A dispatcher in another package needs only a function value of this
// method's type; it does not import pop2's internals.
func (s *Server) ServeGreeted(ctx context.Context, conn net.Conn, r *bufio.Reader, firstLine string) {
	c := s.newConn(ctx, conn, r)
	defer c.finish()
	c.st = stAUTH
	first := strings.TrimRight(firstLine, "\r\n")
	c.loop(&first)
}

func (s *Server) wireOptions() wire.Options {
	return wire.Options{MaxLine: MaxLine, LineTimeout: s.opts.LineTimeout, WriteTimeout: s.opts.WriteTimeout}
}
