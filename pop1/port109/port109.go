// Package port109 serves POP1 (RFC 918) and POP2 (RFC 937) on one
// listener, as TCP port 109 carried first one and then the other.
//
// Neither RFC says how two versions could share the port, and the server
// speaks first, so it must greet before it knows the client's version
// (FLAG-109-GREETING in the project's protocol notes). A [Dispatcher]
// sends one greeting, reads the first command line, and hands the
// connection over: HELO goes to the POP2 server, USER to the POP1 server,
// both through their ServeGreeted methods, with the buffered reader (so
// pipelined input is kept) and the line already read. QUIT is answered
// "+" and the connection closed; anything else gets a "-" line and a
// close.
//
// The default greeting is the POP2 server's ("+ POP2 host ..."): it is the
// only greeting with a normative syntax (RFC 937, p.16), and RFC 918 gives
// none (its example is a bare "+OK", p.2). A POP1 client that looks only
// at the leading "+" accepts it; for one that insists on "+OK", set
// [Options.Greeting].
package port109

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"popgate/pop1"
	"popgate/pop2"
	"popgate/pop3/wire"
)

// DefaultFirstLineTimeout bounds the wait for the first command: the
// POP1 and POP2 servers' authentication timeout.
const DefaultFirstLineTimeout = 3 * time.Minute

// MaxLine is the longest first line accepted, CRLF included (RFC 937's
// limit, which both front ends apply).
const MaxLine = 512

// Options configures a [Dispatcher].
type Options struct {
	// POP1 serves connections whose first command is USER. Nil refuses
	// them.
	POP1 *pop1.Server
	// POP2 serves connections whose first command is HELO. Nil refuses
	// them. At least one of POP1 and POP2 is required.
	POP2 *pop2.Server
	// Greeting is the greeting line, without CRLF; it must start with "+".
	// Default: POP2's Greeting(), or POP1's if POP2 is nil.
	Greeting string
	// Logger receives one sub-logger per connection. The zero value logs
	// nothing.
	Logger zerolog.Logger
	// FirstLineTimeout bounds the wait for the first command. Default
	// [DefaultFirstLineTimeout].
	FirstLineTimeout time.Duration
	// LineTimeout bounds the time to finish the first line once it began;
	// WriteTimeout bounds each write. Zero means the wire package's
	// defaults.
	LineTimeout, WriteTimeout time.Duration
}

// Dispatcher greets port 109 connections and hands each to POP1 or POP2.
// It is safe for concurrent use.
type Dispatcher struct {
	opts Options
	ids  wire.ConnIDs
}

// New checks opts and returns a dispatcher.
func New(opts Options) (*Dispatcher, error) {
	if opts.POP1 == nil && opts.POP2 == nil {
		return nil, errors.New("port109: at least one of Options.POP1 and Options.POP2 is required")
	}
	if opts.Greeting == "" {
		if opts.POP2 != nil {
			opts.Greeting = opts.POP2.Greeting()
		} else {
			opts.Greeting = opts.POP1.Greeting()
		}
	}
	if !strings.HasPrefix(opts.Greeting, "+") || strings.ContainsAny(opts.Greeting, "\r\n") || len(opts.Greeting)+2 > MaxLine {
		return nil, fmt.Errorf("port109: Options.Greeting %q must start with '+' and be one line of at most %d octets", opts.Greeting, MaxLine-2)
	}
	if opts.FirstLineTimeout <= 0 {
		opts.FirstLineTimeout = DefaultFirstLineTimeout
	}
	if reflect.ValueOf(opts.Logger).IsZero() {
		opts.Logger = zerolog.Nop()
	}
	return &Dispatcher{opts: opts}, nil
}

// Greeting returns the greeting line, without its CRLF.
func (d *Dispatcher) Greeting() string { return d.opts.Greeting }

// route is where a first line sends the connection.
type route int

const (
	routeReject route = iota // "- " and close
	routePOP1                // USER
	routePOP2                // HELO
	routeQuit                // "+ " and close
)

func (r route) String() string {
	switch r {
	case routePOP1:
		return "pop1"
	case routePOP2:
		return "pop2"
	case routeQuit:
		return "quit"
	}
	return "reject"
}

// classify picks the route for a first command line (without its line
// end) by its keyword, in any case: the text up to the first space.
func classify(line []byte) route {
	word, _, _ := bytes.Cut(line, []byte{' '})
	switch {
	case bytes.EqualFold(word, []byte("HELO")):
		return routePOP2
	case bytes.EqualFold(word, []byte("USER")):
		return routePOP1
	case bytes.EqualFold(word, []byte("QUIT")):
		return routeQuit
	}
	return routeReject
}

// ServeConn greets conn, reads its first command and hands it over, or
// answers and closes it. It blocks until the session ends and closes
// conn before returning.
func (d *Dispatcher) ServeConn(ctx context.Context, conn net.Conn) {
	log := wire.ConnLogger(d.opts.Logger, "pop109", d.ids.Next(), conn)
	handedOver := false
	defer func() {
		if r := recover(); r != nil {
			log.Error().Str("panic", fmt.Sprint(r)).Bytes("stack", debug.Stack()).Msg("panic in dispatcher: closing")
		}
		if !handedOver {
			_ = conn.Close()
		}
	}()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	wc := wire.New(conn, wire.Options{MaxLine: MaxLine, LineTimeout: d.opts.LineTimeout, WriteTimeout: d.opts.WriteTimeout})
	wc.Line(d.opts.Greeting)
	if err := wc.Flush(); err != nil {
		stop()
		log.Debug().Err(err).Msg("greeting not sent")
		return
	}
	line, err := wc.ReadLine(d.opts.FirstLineTimeout)
	if err != nil {
		stop()
		d.readFailed(ctx, log, wc, err)
		return
	}
	rt := classify(line)
	if (rt == routePOP1 && d.opts.POP1 == nil) || (rt == routePOP2 && d.opts.POP2 == nil) {
		log.Info().Stringer("route", rt).Msg("protocol not served here")
		stop()
		d.last(wc, "- "+strings.ToUpper(rt.String())+" is not served on this port")
		return
	}
	// The servers install their own shutdown hooks.
	stop()
	log.Debug().Stringer("route", rt).Msg("first command")
	switch rt {
	case routePOP1:
		handedOver = true
		d.opts.POP1.ServeGreeted(ctx, conn, wc.Reader(), string(line))
	case routePOP2:
		handedOver = true
		d.opts.POP2.ServeGreeted(ctx, conn, wc.Reader(), string(line))
	case routeQuit:
		d.last(wc, "+ OK bye")
	default:
		log.Info().Msg("first command is neither HELO nor USER: closing")
		d.last(wc, "- Unknown command: send HELO (POP2) or USER (POP1)")
	}
}

func (d *Dispatcher) readFailed(ctx context.Context, log zerolog.Logger, wc *wire.Conn, err error) {
	switch {
	case ctx.Err() != nil:
		log.Info().Msg("connection closed by shutdown")
	case errors.Is(err, wire.ErrLineTooLong):
		log.Info().Msg("first line too long: closing")
		d.last(wc, "- Command line too long")
	case wire.IsTimeout(err):
		log.Info().Msg("no first command: closing")
		d.last(wc, "- Autologout; idle for too long")
	default:
		log.Debug().Err(err).Msg("client gone before its first command")
	}
}

// last sends a final line, drains unread input for a moment (so that a
// reset does not destroy the line) and lets ServeConn close.
func (d *Dispatcher) last(wc *wire.Conn, line string) {
	wc.Line(line)
	if wc.Flush() != nil {
		return
	}
	wc.Linger(wire.DefaultLinger)
}
