// Package wire is the line-oriented connection code shared by popgate's
// three front ends (POP1, POP2 and POP3): bounded command lines, the
// two-phase read deadline, buffered replies flushed once, and write
// deadlines. It lives under pop3 only because the top level of the
// repository is fixed; pop1 and pop2 import it too.
//
// The read deadline has two phases, as RFC 1939 §3 autologout needs: a
// long idle wait for the first byte of the next command, then a short one to
// finish the line, so that idle clients are left alone and slow-drip
// clients are cut off.
package wire

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// ErrLineTooLong is returned by ReadLine when a line exceeds the limit.
var ErrLineTooLong = errors.New("wire: command line too long")

// Options bounds a connection. Zero fields take the documented defaults.
type Options struct {
	// MaxLine is the longest accepted command line in octets, CRLF
	// included. Default 512.
	MaxLine int
	// LineTimeout bounds the time to finish a line once its first octet
	// arrived. Default 30 s.
	LineTimeout time.Duration
	// WriteTimeout bounds each flush of replies. Default 60 s.
	WriteTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.MaxLine <= 0 {
		o.MaxLine = 512
	}
	if o.LineTimeout <= 0 {
		o.LineTimeout = 30 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 60 * time.Second
	}
	return o
}

// Conn is a command connection: it reads bounded lines and buffers
// replies. It is used by one goroutine.
type Conn struct {
	nc   net.Conn
	opts Options
	r    *bufio.Reader
	w    *bufio.Writer
}

// New wraps nc.
func New(nc net.Conn, opts Options) *Conn {
	opts = opts.withDefaults()
	// The reader's buffer must hold a whole line for ReadSlice.
	size := 4096
	if opts.MaxLine+2 > size {
		size = opts.MaxLine + 2
	}
	return &Conn{
		nc:   nc,
		opts: opts,
		r:    bufio.NewReaderSize(nc, size),
		w:    bufio.NewWriterSize(nc, 32*1024),
	}
}

// NewWithReader wraps nc whose first octets were already read into r (the
// port 109 dispatcher hands a connection over this way).
func NewWithReader(nc net.Conn, r *bufio.Reader, opts Options) *Conn {
	c := New(nc, opts)
	if r != nil {
		c.r = r
	}
	return c
}

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Reader returns the buffered reader (for a hand-off to another protocol).
func (c *Conn) Reader() *bufio.Reader { return c.r }

// ReadLine waits up to idle for the first octet of the next line, then up
// to the line timeout for the rest, and returns the line without its CRLF
// (a bare LF also ends a line). A line longer than MaxLine gives
// ErrLineTooLong. The returned slice is valid until the next read.
func (c *Conn) ReadLine(idle time.Duration) ([]byte, error) {
	return c.ReadLineLimit(idle, c.opts.MaxLine)
}

// ReadLineLimit is ReadLine with its own limit, max octets CRLF included,
// for lines that a protocol exempts from the command limit (RFC 5034 §4:
// SASL responses). max is capped at the reader's buffer size, at least
// 4096 octets.
func (c *Conn) ReadLineLimit(idle time.Duration, max int) ([]byte, error) {
	if max <= 0 || max > c.r.Size()-2 {
		max = c.r.Size() - 2
	}
	if c.r.Buffered() == 0 {
		if err := c.nc.SetReadDeadline(time.Now().Add(idle)); err != nil {
			return nil, fmt.Errorf("wire: setting idle deadline: %w", err)
		}
		if _, err := c.r.Peek(1); err != nil {
			return nil, err
		}
	}
	if err := c.nc.SetReadDeadline(time.Now().Add(c.opts.LineTimeout)); err != nil {
		return nil, fmt.Errorf("wire: setting line deadline: %w", err)
	}
	line, err := c.readSlice(max)
	if err != nil {
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte{'\n'})
	line = bytes.TrimSuffix(line, []byte{'\r'})
	return line, nil
}

func (c *Conn) readSlice(max int) ([]byte, error) {
	// Look only at what may legally be a line, so that a flood without a
	// line end never grows a buffer.
	for {
		buf, err := c.r.Peek(c.r.Buffered())
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			if i+1 > max {
				return nil, ErrLineTooLong
			}
			line, _ := c.r.ReadSlice('\n')
			return line, nil
		}
		if len(buf) >= max {
			return nil, ErrLineTooLong
		}
		if err != nil {
			return nil, err
		}
		// Wait for more octets.
		if _, err := c.r.Peek(len(buf) + 1); err != nil {
			if len(buf) > 0 && errors.Is(err, io.EOF) {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// Pending reports whether more client input is already buffered:
// pipelined commands whose replies may share one flush.
func (c *Conn) Pending() bool { return c.r.Buffered() > 0 }

// Writer returns the reply buffer. Nothing reaches the client before Flush.
func (c *Conn) Writer() *bufio.Writer { return c.w }

// Line buffers one reply line: text and CRLF.
func (c *Conn) Line(text string) {
	_, _ = c.w.WriteString(text)
	_, _ = c.w.WriteString("\r\n")
}

// LineBytes is Line for text in a byte slice, which the caller may reuse
// at once.
func (c *Conn) LineBytes(text []byte) {
	_, _ = c.w.Write(text)
	_, _ = c.w.WriteString("\r\n")
}

// Linef buffers one formatted reply line.
func (c *Conn) Linef(format string, args ...any) {
	_, _ = fmt.Fprintf(c.w, format, args...)
	_, _ = c.w.WriteString("\r\n")
}

// Flush sends the buffered replies under the write deadline.
func (c *Conn) Flush() error {
	if c.w.Buffered() == 0 {
		return nil
	}
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout)); err != nil {
		return fmt.Errorf("wire: setting write deadline: %w", err)
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("wire: writing reply: %w", err)
	}
	return nil
}

// ExtendWrite re-arms the write deadline; long transfers call it between
// chunks so that a large message is bounded per chunk, not as a whole.
func (c *Conn) ExtendWrite() error {
	return c.nc.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
}

// StartTLS discards any buffered plaintext input (RFC 2595 §4: a client
// must not pipeline past STLS), runs the server side of a TLS handshake
// under the line timeout, and continues over TLS.
func (c *Conn) StartTLS(cfg *tls.Config) error {
	if err := c.Flush(); err != nil {
		return err
	}
	tc := tls.Server(c.nc, cfg)
	if err := tc.SetDeadline(time.Now().Add(c.opts.LineTimeout)); err != nil {
		return fmt.Errorf("wire: setting handshake deadline: %w", err)
	}
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("wire: TLS handshake: %w", err)
	}
	_ = tc.SetDeadline(time.Time{})
	c.nc = tc
	c.r = bufio.NewReaderSize(tc, c.r.Size())
	c.w = bufio.NewWriterSize(tc, 32*1024)
	return nil
}

// Close closes the connection (buffered replies not flushed are dropped).
func (c *Conn) Close() error { return c.nc.Close() }

// IsTimeout reports whether err is a network timeout (an expired
// deadline).
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
