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
	"sync"
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
	pooled  bool // r came from bigReaders

	// rearm is when the read deadline is next moved forward; see armRead.
	rearm time.Time
	scan  bodyScanner
	num   [20]byte // scratch for message numbers
}

// bigReadSize is the read buffer of the sessions that retrieve messages:
// bodyScanner verifies whatever one read returns, so a large buffer means
// few reads and few calls per octet.
const bigReadSize = 512 * 1024

// bigReaders recycles the read buffers of message-retrieving sessions, so
// that a worker running session after session allocates none.
var bigReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bigReadSize) }}

// dial connects to addr and reads the greeting. big selects the large
// read buffer for sessions that retrieve messages; other sessions (idle
// holds thousands) get a small one.
func dial(ctx context.Context, addr string, timeout time.Duration, big bool) (*client, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &client{nc: nc, w: bufio.NewWriterSize(nc, 4096), timeout: timeout}
	if big {
		c.r, c.pooled = bigReaders.Get().(*bufio.Reader), true
		c.r.Reset(nc)
	} else {
		c.r = bufio.NewReaderSize(nc, 16*1024)
	}
	if _, err := c.status(); err != nil {
		c.close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	return c, nil
}

// close drops the connection without QUIT. The client is unusable
// afterwards.
func (c *client) close() {
	_ = c.nc.Close()
	if c.pooled {
		c.r.Reset(nil)
		bigReaders.Put(c.r)
		c.r, c.pooled = nil, false
	}
}

// armRead makes sure the read deadline is at least timeout minus a slack
// away. Moving a deadline costs more than reading a small reply, so it is
// moved only when the slack (a quarter of the timeout, at most a second)
// has passed since it was last moved.
func (c *client) armRead() error {
	now := time.Now()
	if now.Before(c.rearm) {
		return nil
	}
	if err := c.nc.SetReadDeadline(now.Add(c.timeout)); err != nil {
		return fmt.Errorf("setting read deadline: %w", err)
	}
	c.rearm = now.Add(min(c.timeout/4, time.Second))
	return nil
}

// send writes one command line and flushes it.
func (c *client) send(line string) error {
	_, _ = c.w.WriteString(line)
	_, _ = c.w.WriteString("\r\n")
	if err := c.flush(); err != nil {
		return fmt.Errorf("sending %s: %w", verbOf(line), err)
	}
	return nil
}

// queueRETR buffers "RETR n" without sending it; flush sends it.
func (c *client) queueRETR(n int) {
	_, _ = c.w.WriteString("RETR ")
	_, _ = c.w.Write(strconv.AppendInt(c.num[:0], int64(n), 10))
	_, _ = c.w.WriteString("\r\n")
}

// flush sends the buffered commands under the write deadline.
func (c *client) flush() error {
	if c.w.Buffered() == 0 {
		return nil
	}
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return fmt.Errorf("setting write deadline: %w", err)
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("sending commands: %w", err)
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
	if err := c.armRead(); err != nil {
		return nil, err
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

// lines reads the rest of a multi-line reply after its status line, up
// to and including the terminating ".CRLF", removes the dot-stuffing and
// gives each line without its CRLF to each (the slice is valid only
// during the call). It serves the replies that are read line by line
// (UIDL, LIST, CAPA); retrBody verifies message bodies.
func (c *client) lines(each func([]byte) error) error {
	for {
		if err := c.armRead(); err != nil {
			return err
		}
		l, err := c.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return fmt.Errorf("multi-line reply line longer than %d octets: %w", c.r.Size(), errProtocol)
		}
		if err != nil {
			return fmt.Errorf("reading multi-line reply: %w", err)
		}
		if len(l) < 2 || l[len(l)-2] != '\r' {
			return fmt.Errorf("multi-line reply line without CRLF: %w", errProtocol)
		}
		if l[0] == '.' {
			if len(l) == 3 {
				return nil // ".CRLF": the end
			}
			l = l[1:]
		}
		if err := each(l[:len(l)-2]); err != nil {
			return err
		}
	}
}

// retrBody reads and verifies the body of a RETR reply after its status
// line, block by block with c.scan, and returns its content octets after
// dot-unstuffing, every line end counted as CRLF: the size LIST
// announced. Octets after the terminator stay buffered for the next
// reply.
func (c *client) retrBody() (int64, error) {
	c.scan.reset()
	for {
		if err := c.armRead(); err != nil {
			return c.scan.octets(), err
		}
		if c.r.Buffered() == 0 {
			if _, err := c.r.Peek(1); err != nil {
				return c.scan.octets(), fmt.Errorf("reading multi-line reply: %w", err)
			}
		}
		block, _ := c.r.Peek(c.r.Buffered())
		used, done, err := c.scan.scan(block)
		_, _ = c.r.Discard(used)
		if err != nil || done {
			return c.scan.octets(), err
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
	err := c.lines(func(l []byte) error {
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

// capaPipelining sends CAPA and reports whether the reply lists
// PIPELINING (RFC 2449). A server that answers -ERR has no capabilities
// to offer, which is not an error.
func (c *client) capaPipelining() (bool, error) {
	if _, err := c.cmd("CAPA"); err != nil {
		if errors.Is(err, errServer) {
			return false, nil
		}
		return false, err
	}
	found := false
	err := c.lines(func(l []byte) error {
		tag, _, _ := bytes.Cut(l, []byte{' '})
		if bytes.EqualFold(tag, []byte("PIPELINING")) {
			found = true
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("CAPA: %w", err)
	}
	return found, nil
}

// retrReply reads the reply to "RETR n", which the caller has sent, and
// checks that its content has size octets. It allocates nothing unless
// the reply is wrong.
func (c *client) retrReply(n int, size int64) error {
	l, err := c.line()
	if err != nil {
		return fmt.Errorf("RETR %d: %w", n, err)
	}
	switch {
	case bytes.HasPrefix(l, []byte("-ERR")):
		return fmt.Errorf("RETR %d: %q: %w", n, clip(l), errServer)
	case !bytes.HasPrefix(l, []byte("+OK")):
		return fmt.Errorf("RETR %d: status line %q: %w", n, clip(l), errProtocol)
	}
	got, err := c.retrBody()
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
