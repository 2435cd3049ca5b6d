package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// errServer is wrapped by every -ERR reply, so that results can tell a
// refusal from a broken connection.
var errServer = errors.New("server said -ERR")

// errProtocol is wrapped by every violation of the POP3 framing the client
// notices: a status line that is neither +OK nor -ERR, a bare LF, a
// message whose octet count differs from its LIST size.
var errProtocol = errors.New("protocol violation")

// client is a minimal POP3 client that checks what it receives. One
// goroutine uses it.
type client struct {
	nc      net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration
}

// dial connects to addr and reads the greeting.
func dial(ctx context.Context, addr string, timeout time.Duration) (*client, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &client{
		nc:      nc,
		r:       bufio.NewReaderSize(nc, 64*1024),
		w:       bufio.NewWriterSize(nc, 4096),
		timeout: timeout,
	}
	if _, err := c.status(); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	return c, nil
}

// close drops the connection without QUIT.
func (c *client) close() { _ = c.nc.Close() }

// send writes one command line and flushes it.
func (c *client) send(line string) error {
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return fmt.Errorf("setting write deadline: %w", err)
	}
	_, _ = c.w.WriteString(line)
	_, _ = c.w.WriteString("\r\n")
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("sending %s: %w", verbOf(line), err)
	}
	return nil
}

// verbOf keeps the command word of line, so that a password never reaches
// an error message.
func verbOf(line string) string {
	v, _, _ := strings.Cut(line, " ")
	return v
}

// line reads one CRLF-terminated line, without the CRLF.
func (c *client) line() ([]byte, error) {
	if err := c.nc.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return nil, fmt.Errorf("setting read deadline: %w", err)
	}
	l, err := c.r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("status line longer than %d octets: %w", c.r.Size(), errProtocol)
		}
		return nil, fmt.Errorf("reading reply: %w", err)
	}
	if len(l) < 2 || l[len(l)-2] != '\r' {
		return nil, fmt.Errorf("line %q without CRLF: %w", clip(l), errProtocol)
	}
	return l[:len(l)-2], nil
}

// status reads a status line; -ERR becomes an error wrapping errServer.
func (c *client) status() (string, error) {
	l, err := c.line()
	if err != nil {
		return "", err
	}
	switch {
	case bytes.HasPrefix(l, []byte("+OK")):
		return string(l), nil
	case bytes.HasPrefix(l, []byte("-ERR")):
		return "", fmt.Errorf("%q: %w", clip(l), errServer)
	}
	return "", fmt.Errorf("status line %q: %w", clip(l), errProtocol)
}

// cmd sends line and reads its status reply.
func (c *client) cmd(line string) (string, error) {
	if err := c.send(line); err != nil {
		return "", err
	}
	st, err := c.status()
	if err != nil {
		return "", fmt.Errorf("%s: %w", verbOf(line), err)
	}
	return st, nil
}

// login runs USER and PASS.
func (c *client) login(user, password string) error {
	if _, err := c.cmd("USER " + user); err != nil {
		return err
	}
	if _, err := c.cmd("PASS " + password); err != nil {
		return err
	}
	return nil
}

// quit sends QUIT, reads the reply and closes the connection.
func (c *client) quit() error {
	defer c.close()
	_, err := c.cmd("QUIT")
	return err
}

// body reads the rest of a multi-line reply after its status line, up to
// and including the terminating ".CRLF", and removes the dot-stuffing. If
// each is not nil it gets every line without its CRLF (the slice is valid
// only during the call). body returns the octets of the content with
// every line end counted as CRLF: for RETR, the size LIST announced.
func (c *client) body(each func([]byte) error) (int64, error) {
	var n int64
	if err := c.nc.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, fmt.Errorf("setting read deadline: %w", err)
	}
	bol := true
	for {
		l, err := c.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: count it in pieces.
			if bol && len(l) > 0 && l[0] == '.' {
				l = l[1:]
			}
			n += int64(len(l))
			bol = false
			continue
		}
		if err != nil {
			return n, fmt.Errorf("reading multi-line reply: %w", err)
		}
		if len(l) < 2 || l[len(l)-2] != '\r' {
			return n, fmt.Errorf("multi-line reply line without CRLF: %w", errProtocol)
		}
		if bol && l[0] == '.' {
			if len(l) == 3 {
				return n, nil // ".CRLF": the end
			}
			l = l[1:]
		}
		n += int64(len(l))
		bol = true
		if each != nil {
			if err := each(l[:len(l)-2]); err != nil {
				return n, err
			}
		}
		// Re-arm the deadline now and then, not on every line.
		if n&^0xfffff != (n-int64(len(l)))&^0xfffff {
			if err := c.nc.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
				return n, fmt.Errorf("setting read deadline: %w", err)
			}
		}
	}
}

// listing is one line of a LIST or UIDL reply.
type listing struct {
	n   int
	arg string
}

// multi sends a command with a multi-line reply and returns its parsed
// "number argument" lines.
func (c *client) multi(line string) ([]listing, error) {
	if _, err := c.cmd(line); err != nil {
		return nil, err
	}
	var out []listing
	_, err := c.body(func(l []byte) error {
		num, arg, ok := bytes.Cut(l, []byte{' '})
		n, err := strconv.Atoi(string(num))
		if !ok || err != nil || n < 1 || len(arg) == 0 {
			return fmt.Errorf("%s line %q: %w", verbOf(line), clip(l), errProtocol)
		}
		out = append(out, listing{n: n, arg: string(arg)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", verbOf(line), err)
	}
	return out, nil
}

// retr fetches message n and checks that its content has size octets.
func (c *client) retr(n int, size int64) error {
	if _, err := c.cmd("RETR " + strconv.Itoa(n)); err != nil {
		return err
	}
	got, err := c.body(nil)
	if err != nil {
		return fmt.Errorf("RETR %d: %w", n, err)
	}
	if got != size {
		return fmt.Errorf("RETR %d: %d octets, LIST said %d: %w", n, got, size, errProtocol)
	}
	return nil
}

// clip bounds what a reply puts into an error message.
func clip(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}
