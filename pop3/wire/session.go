package wire

import (
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// DefaultLinger bounds how long a closing connection drains unread client
// input after its last reply (see [Linger]).
const DefaultLinger = 2 * time.Second

// ConnIDs numbers the connections of one server for its logs, from 1. The
// zero value is ready to use; it is safe for concurrent use.
type ConnIDs struct{ n atomic.Uint64 }

// Next returns the next connection number.
func (ids *ConnIDs) Next() uint64 { return ids.n.Add(1) }

// RemoteAddr returns nc's remote address as text, or "" if it has none.
func RemoteAddr(nc net.Conn) string {
	if a := nc.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// ConnLogger returns the sub-logger of one connection: base with the
// fields proto, conn (the connection number id) and remote.
func ConnLogger(base zerolog.Logger, proto string, id uint64, nc net.Conn) zerolog.Logger {
	return base.With().Str("proto", proto).Uint64("conn", id).Str("remote", RemoteAddr(nc)).Logger()
}

// CloseOnDone returns a context for one session on nc, derived from ctx,
// and end, which releases it. When the context is done before end is
// called (a shutdown), nc is closed, which ends any read or write in
// progress. end unregisters that hook first, then cancels the context;
// it does not close nc.
func CloseOnDone(ctx context.Context, nc net.Conn) (sctx context.Context, end func()) {
	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(sctx, func() { _ = nc.Close() })
	return sctx, func() {
		stop()
		cancel()
	}
}

// Hostname returns h, or if h is empty the host's name (os.Hostname, or
// "localhost" if that fails). It fails if the name is not one word.
func Hostname(h string) (string, error) {
	if h == "" {
		name, err := os.Hostname()
		if err != nil || name == "" {
			name = "localhost"
		}
		h = name
	}
	if strings.ContainsAny(h, " \r\n") {
		return "", errors.New("Options.Hostname must be one word")
	}
	return h, nil
}

// OrDefault returns v if it is positive and def otherwise: the rule of
// the front ends' Options for timeouts and limits.
func OrDefault[T cmp.Ordered](v, def T) T {
	var zero T
	if v <= zero {
		return def
	}
	return v
}

// Linger half-closes nc and then drains, from r, what the client still
// sends, for at most timeout and 64 KiB, so that the last reply is not
// destroyed by a reset caused by unread input. r is nc's reader (a
// buffered one may hold input already); nil means nc itself. If nc cannot
// half-close, Linger does nothing and reports false. It does not close nc.
func Linger(nc net.Conn, r io.Reader, timeout time.Duration) bool {
	type closeWriter interface{ CloseWrite() error }
	cw, ok := nc.(closeWriter)
	if !ok || cw.CloseWrite() != nil {
		return false
	}
	if r == nil {
		r = nc
	}
	_ = nc.SetReadDeadline(time.Now().Add(timeout))
	_, _ = io.CopyN(io.Discard, r, 64*1024)
	return true
}

// Linger is [Linger] on c's connection and buffered reader.
func (c *Conn) Linger(timeout time.Duration) bool { return Linger(c.nc, c.r, timeout) }

// Ending tells a command loop what to do after a command was handled.
type Ending int

const (
	// KeepOpen reads the next command.
	KeepOpen Ending = iota
	// CloseAfterReply flushes the replies, then ends the loop.
	CloseAfterReply
	// CloseAtOnce ends the loop without flushing (broken framing).
	CloseAtOnce
)

// Loop is the protocol side of a command loop run by [Conn.Run].
type Loop struct {
	// Idle returns how long to wait for the first octet of the next
	// command line.
	Idle func() time.Duration
	// Handle answers one command line, given without its line end and
	// valid only until Handle returns, and says what happens next.
	Handle func(line []byte) Ending
	// ReadFailed is told why reading a command line failed (a hang-up, a
	// timeout, [ErrLineTooLong]); the loop then ends.
	ReadFailed func(err error)
	// TooLong answers a first line, handed to Run by a dispatcher, that
	// exceeds MaxLine; the loop then ends. Nil means ReadFailed with
	// [ErrLineTooLong].
	TooLong func()
	// Closing, if not nil, runs after the replies of a command that
	// ended with CloseAfterReply went out.
	Closing func()
	// Log records a failed flush of replies (the client is gone). It is
	// read when used, so a session may add fields to its logger on the
	// way; nil logs nothing.
	Log *zerolog.Logger
}

// Run reads command lines and answers them until a handler ends the
// session, a read fails or the replies cannot be sent. first, if not nil,
// is a command line a dispatcher already read, without its line end; it
// is answered before anything is read. Replies are flushed once no
// pipelined input is pending, so that pipelined commands share a write.
func (c *Conn) Run(first *string, l Loop) {
	for {
		var line []byte
		if first != nil {
			line, first = []byte(*first), nil
			if len(line)+2 > c.opts.MaxLine {
				if l.TooLong != nil {
					l.TooLong()
				} else {
					l.ReadFailed(ErrLineTooLong)
				}
				return
			}
		} else {
			var err error
			if line, err = c.ReadLine(l.Idle()); err != nil {
				l.ReadFailed(err)
				return
			}
		}
		end := l.Handle(line)
		if end == CloseAtOnce {
			return
		}
		if end == CloseAfterReply || !c.Pending() {
			if err := c.Flush(); err != nil {
				if l.Log != nil {
					l.Log.Info().Err(err).Msg("client gone while writing")
				}
				return
			}
		}
		if end == CloseAfterReply {
			if l.Closing != nil {
				l.Closing()
			}
			return
		}
	}
}
