package wire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// DefaultClientTimeout is the per-read and per-write bound of a
// [ClientConn] whose timeout function returns zero or less.
const DefaultClientTimeout = 30 * time.Second

// ClientConn is the client side of a line protocol, shared by the small
// POP1 and POP2 clients that drive popgate in tests: bounded reply lines
// and exact runs of data, each read under its own deadline, and commands
// buffered until a flush. Its errors start with the client's name. It is
// used by one goroutine.
type ClientConn struct {
	nc      net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	name    string
	maxLine int
	timeout func() time.Duration
}

// NewClientConn wraps nc for the client called name (the prefix of its
// errors). maxLine bounds a reply line, its line end excluded; timeout is
// asked for the bound of each read and flush (zero or less means
// [DefaultClientTimeout]); nil means the default always.
func NewClientConn(nc net.Conn, name string, maxLine int, timeout func() time.Duration) *ClientConn {
	if timeout == nil {
		timeout = func() time.Duration { return 0 }
	}
	return &ClientConn{nc: nc, r: bufio.NewReader(nc), w: bufio.NewWriter(nc), name: name, maxLine: maxLine, timeout: timeout}
}

// DialClient connects to addr over TCP and starts a client on the
// connection with newClient, closing the connection if that fails. name
// prefixes a dial error.
func DialClient[C any](ctx context.Context, addr, name string, newClient func(net.Conn) (C, error)) (C, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		var zero C
		return zero, fmt.Errorf("%s: dial: %w", name, err)
	}
	c, err := newClient(conn)
	if err != nil {
		_ = conn.Close()
		return c, err
	}
	return c, nil
}

func (c *ClientConn) deadline() time.Time {
	return time.Now().Add(OrDefault(c.timeout(), DefaultClientTimeout))
}

// Greeting reads the server's first line and checks that it starts with
// "+"; if not, the error wraps errBad.
func (c *ClientConn) Greeting(errBad error) (string, error) {
	line, err := c.ReadLine()
	if err != nil {
		return "", fmt.Errorf("%s: reading greeting: %w", c.name, err)
	}
	if !strings.HasPrefix(line, "+") {
		return "", fmt.Errorf("%w: %q", errBad, line)
	}
	return line, nil
}

// ReadLine reads one reply line, without its line end.
func (c *ClientConn) ReadLine() (string, error) {
	_ = c.nc.SetReadDeadline(c.deadline())
	var b []byte
	for {
		chunk, isPrefix, err := c.r.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, chunk...)
		if len(b) > c.maxLine {
			return "", errors.New(c.name + ": reply line too long")
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

// ReadData reads exactly size octets, re-arming the read deadline for
// each 32 KiB. verb names the command in an error.
func (c *ClientConn) ReadData(verb string, size int64) ([]byte, error) {
	buf := make([]byte, 0, min(size, 1<<20))
	chunk := make([]byte, 32*1024)
	for left := size; left > 0; {
		_ = c.nc.SetReadDeadline(c.deadline())
		n, err := c.r.Read(chunk[:min(left, int64(len(chunk)))])
		buf = append(buf, chunk[:n]...)
		left -= int64(n)
		if err != nil && left > 0 {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return buf, fmt.Errorf("%s: %s: %d of %d octets: %w", c.name, verb, size-left, size, err)
		}
	}
	return buf, nil
}

// Write buffers one command line and its CRLF.
func (c *ClientConn) Write(line string) error {
	if _, err := c.w.WriteString(line + "\r\n"); err != nil {
		return fmt.Errorf("%s: sending %s: %w", c.name, strings.Fields(line + " ")[0], err)
	}
	return nil
}

// Flush sends the buffered commands under the write deadline.
func (c *ClientConn) Flush() error {
	_ = c.nc.SetWriteDeadline(c.deadline())
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("%s: sending: %w", c.name, err)
	}
	return nil
}

// Send writes one command line and flushes it.
func (c *ClientConn) Send(line string) error {
	if err := c.Write(line); err != nil {
		return err
	}
	return c.Flush()
}

// Close closes the connection.
func (c *ClientConn) Close() error { return c.nc.Close() }

// ParseNumber reads a reply that is kind ('#', '=') followed by a decimal
// number and optionally a space and text. ok is false for any other
// line.
func ParseNumber(line string, kind byte) (n int64, ok bool) {
	if len(line) < 2 || line[0] != kind {
		return 0, false
	}
	digits, _, _ := strings.Cut(line[1:], " ")
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
