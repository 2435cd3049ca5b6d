// Package pop2client is a small POP2 (RFC 937) client, written from the RFC
// and shaped like the historical clients that used it: popclient and
// fetchmail 6.3 built with POP2. Tests of popgate's POP2 server, its port
// 109 dispatcher and the interoperability suite use it.
//
// A session is [Dial] or [NewClient] (which checks that the greeting
// starts with "+"), [Client.Helo], optionally [Client.Fold], then per
// message [Client.Read] (always with an explicit number, as fetchmail
// does), [Client.Retr] (exactly the announced octets) and [Client.Acks],
// [Client.Ackd] or [Client.Nack], and finally [Client.Quit].
// [Client.FetchAll] does all of that for a whole mailbox, optionally with
// many commands in flight.
//
// A Client is not safe for concurrent use.
package pop2client

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

// ReplyError is a reply the client did not expect: a "-" reply, or a
// reply whose first character is not the kind the command needs.
type ReplyError struct {
	// Command is the command sent, without arguments.
	Command string
	// Line is the reply line received, without its CRLF.
	Line string
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("pop2client: %s: unexpected reply %q", e.Command, e.Line)
}

// ErrBadGreeting means the server's first line did not start with "+".
var ErrBadGreeting = errors.New("pop2client: greeting does not start with '+'")

// Client is one POP2 session.
type Client struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	// Greeting is the server's greeting line, without its CRLF.
	Greeting string
	// Timeout bounds each reply (and each 32 KiB of message data); zero
	// means 30 seconds.
	Timeout time.Duration
}

// Dial connects to addr and reads the greeting.
func Dial(ctx context.Context, addr string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pop2client: dial: %w", err)
	}
	c, err := NewClient(conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}

// NewClient starts a session on conn: it reads the greeting and checks
// that it starts with "+". On error the caller still owns conn.
func NewClient(conn net.Conn) (*Client, error) {
	c := &Client{conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn)}
	line, err := c.readLine()
	if err != nil {
		return nil, fmt.Errorf("pop2client: reading greeting: %w", err)
	}
	if !strings.HasPrefix(line, "+") {
		return nil, fmt.Errorf("%w: %q", ErrBadGreeting, line)
	}
	c.Greeting = line
	return c, nil
}

// Quote applies RFC 937 argument quoting: a backslash before every space
// and every backslash.
func Quote(arg string) string {
	r := strings.NewReplacer(`\`, `\\`, " ", `\ `)
	return r.Replace(arg)
}

// Helo logs in and returns the number of messages in the default mailbox.
// user and password are quoted as RFC 937 requires.
func (c *Client) Helo(user, password string) (int, error) {
	return c.count("HELO", "HELO "+Quote(user)+" "+Quote(password))
}

// Fold selects mailbox and returns its number of messages.
func (c *Client) Fold(mailbox string) (int, error) {
	return c.count("FOLD", "FOLD "+Quote(mailbox))
}

// Read sends "READ n" and returns the announced size (0: nothing to
// retrieve; do not call Retr then).
func (c *Client) Read(n int) (int64, error) {
	return c.length("READ", "READ "+strconv.Itoa(n))
}

// ReadCurrent sends READ without an argument: the current message.
func (c *Client) ReadCurrent() (int64, error) { return c.length("READ", "READ") }

// Retr asks for the data and reads exactly size octets, the size the
// last READ or acknowledgment announced.
func (c *Client) Retr(size int64) ([]byte, error) {
	if size <= 0 {
		return nil, errors.New("pop2client: RETR of a zero-length message closes the connection")
	}
	if err := c.send("RETR"); err != nil {
		return nil, err
	}
	return c.readData(size)
}

// Acks acknowledges and keeps the message; it returns the size of the
// next one.
func (c *Client) Acks() (int64, error) { return c.length("ACKS", "ACKS") }

// Ackd acknowledges and deletes the message; it returns the size of the
// next one.
func (c *Client) Ackd() (int64, error) { return c.length("ACKD", "ACKD") }

// Nack reports the message not received; it returns its size again.
func (c *Client) Nack() (int64, error) { return c.length("NACK", "NACK") }

// Quit ends the session and closes the connection.
func (c *Client) Quit() error {
	defer c.conn.Close()
	if err := c.send("QUIT"); err != nil {
		return err
	}
	line, err := c.readLine()
	if err != nil {
		return fmt.Errorf("pop2client: QUIT: %w", err)
	}
	if !strings.HasPrefix(line, "+") {
		return &ReplyError{Command: "QUIT", Line: line}
	}
	return nil
}

// Close closes the connection without QUIT: a hang-up.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) count(verb, line string) (int, error) {
	if err := c.send(line); err != nil {
		return 0, err
	}
	n, err := c.number(verb, '#')
	return int(n), err
}

func (c *Client) length(verb, line string) (int64, error) {
	if err := c.send(line); err != nil {
		return 0, err
	}
	return c.number(verb, '=')
}

func (c *Client) send(line string) error {
	if err := c.write(line); err != nil {
		return err
	}
	return c.flush()
}

func (c *Client) write(line string) error {
	if _, err := c.w.WriteString(line + "\r\n"); err != nil {
		return fmt.Errorf("pop2client: sending %s: %w", strings.Fields(line + " ")[0], err)
	}
	return nil
}

func (c *Client) flush() error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.timeout()))
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("pop2client: sending: %w", err)
	}
	return nil
}

// number reads a reply that must start with kind ('#' or '=') followed by
// a decimal number.
func (c *Client) number(verb string, kind byte) (int64, error) {
	line, err := c.readLine()
	if err != nil {
		return 0, fmt.Errorf("pop2client: %s: %w", verb, err)
	}
	if len(line) < 2 || line[0] != kind {
		return 0, &ReplyError{Command: verb, Line: line}
	}
	digits, _, _ := strings.Cut(line[1:], " ")
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 0 {
		return 0, &ReplyError{Command: verb, Line: line}
	}
	return n, nil
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 30 * time.Second
}

// readLine reads one reply line (at most 512 octets, RFC 937 p.12).
func (c *Client) readLine() (string, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(c.timeout()))
	var b []byte
	for {
		chunk, isPrefix, err := c.r.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, chunk...)
		if len(b) > 512 {
			return "", errors.New("pop2client: reply line too long")
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

// readData reads exactly size octets of message data.
func (c *Client) readData(size int64) ([]byte, error) {
	buf := make([]byte, 0, min(size, 1<<20))
	chunk := make([]byte, 32*1024)
	for left := size; left > 0; {
		_ = c.conn.SetReadDeadline(time.Now().Add(c.timeout()))
		n, err := c.r.Read(chunk[:min(left, int64(len(chunk)))])
		buf = append(buf, chunk[:n]...)
		left -= int64(n)
		if err != nil && left > 0 {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return buf, fmt.Errorf("pop2client: RETR: %d of %d octets: %w", size-left, size, err)
		}
	}
	return buf, nil
}
