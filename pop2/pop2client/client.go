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
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"popgate/pop3/wire"
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
	lc *wire.ClientConn
	// Greeting is the server's greeting line, without its CRLF.
	Greeting string
	// Timeout bounds each reply (and each 32 KiB of message data); zero
	// means 30 seconds.
	Timeout time.Duration
}

// Dial connects to addr and reads the greeting.
func Dial(ctx context.Context, addr string) (*Client, error) {
	return wire.DialClient(ctx, addr, "pop2client", NewClient)
}

// NewClient starts a session on conn: it reads the greeting and checks
// that it starts with "+". On error the caller still owns conn.
func NewClient(conn net.Conn) (*Client, error) {
	c := &Client{}
	// A reply line is at most 512 octets (RFC 937 p.12).
	c.lc = wire.NewClientConn(conn, "pop2client", 512, c.timeout)
	line, err := c.lc.Greeting(ErrBadGreeting)
	if err != nil {
		return nil, err
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
	if err := c.lc.Send("RETR"); err != nil {
		return nil, err
	}
	return c.lc.ReadData("RETR", size)
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
	defer c.lc.Close()
	if err := c.lc.Send("QUIT"); err != nil {
		return err
	}
	line, err := c.lc.ReadLine()
	if err != nil {
		return fmt.Errorf("pop2client: QUIT: %w", err)
	}
	if !strings.HasPrefix(line, "+") {
		return &ReplyError{Command: "QUIT", Line: line}
	}
	return nil
}

// Close closes the connection without QUIT: a hang-up.
func (c *Client) Close() error { return c.lc.Close() }

func (c *Client) count(verb, line string) (int, error) {
	if err := c.lc.Send(line); err != nil {
		return 0, err
	}
	n, err := c.number(verb, '#')
	return int(n), err
}

func (c *Client) length(verb, line string) (int64, error) {
	if err := c.lc.Send(line); err != nil {
		return 0, err
	}
	return c.number(verb, '=')
}

// number reads a reply that must start with kind ('#' or '=') followed by
// a decimal number.
func (c *Client) number(verb string, kind byte) (int64, error) {
	line, err := c.lc.ReadLine()
	if err != nil {
		return 0, fmt.Errorf("pop2client: %s: %w", verb, err)
	}
	n, ok := wire.ParseNumber(line, kind)
	if !ok {
		return 0, &ReplyError{Command: verb, Line: line}
	}
	return n, nil
}

func (c *Client) timeout() time.Duration { return c.Timeout }
