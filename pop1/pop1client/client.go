// Package pop1client is a small POP1 (RFC 918) client, written from the
// RFC, for tests of popgate's POP1 server, its port 109 dispatcher and the
// interoperability suite.
//
// A session is [Dial] or [NewClient] (which checks that the greeting
// starts with "+", so that the POP2-style greeting of a shared port 109
// is accepted too), [Client.Login] (USER and PASS), then any number of
// transactions: [Client.Retr] or [Client.Rdel] (which return the
// announced "#xxx"), [Client.Rcev] (which reads exactly that many
// octets), and [Client.Rcvd], or [Client.Rset] to abort; and finally
// [Client.Quit]. [Client.Fetch] runs a whole transaction, and [Split]
// turns the mail data back into messages.
//
// A Client is not safe for concurrent use.
package pop1client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"popgate/pop3/wire"
)

// ReplyError is a reply the client did not expect: a "-" reply, or a
// reply of the wrong kind.
type ReplyError struct {
	// Command is the command sent, without arguments.
	Command string
	// Line is the reply line received, without its CRLF.
	Line string
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("pop1client: %s: unexpected reply %q", e.Command, e.Line)
}

// ErrBadGreeting means the server's first line did not start with "+".
var ErrBadGreeting = errors.New("pop1client: greeting does not start with '+'")

// maxReply bounds a reply line.
const maxReply = 512

// Client is one POP1 session.
type Client struct {
	lc *wire.ClientConn
	// Greeting is the server's greeting line, without its CRLF.
	Greeting string
	// Timeout bounds each reply (and each 32 KiB of mail data); zero means
	// 30 seconds.
	Timeout time.Duration
	// OKBeforeData expects a "+OK" line between RCEV and the mail data
	// (a server configured with pop1.Options.OKBeforeData).
	OKBeforeData bool
}

// Dial connects to addr and reads the greeting.
func Dial(ctx context.Context, addr string) (*Client, error) {
	return wire.DialClient(ctx, addr, "pop1client", NewClient)
}

// NewClient starts a session on conn: it reads the greeting and checks
// that it starts with "+". On error the caller still owns conn.
func NewClient(conn net.Conn) (*Client, error) {
	c := &Client{}
	c.lc = wire.NewClientConn(conn, "pop1client", maxReply, c.timeout)
	line, err := c.lc.Greeting(ErrBadGreeting)
	if err != nil {
		return nil, err
	}
	c.Greeting = line
	return c, nil
}

// User sends "USER name".
func (c *Client) User(name string) error { return c.okCmd("USER", "USER "+name) }

// Pass sends "PASS password".
func (c *Client) Pass(password string) error { return c.okCmd("PASS", "PASS "+password) }

// Login sends USER and then PASS.
func (c *Client) Login(user, password string) error {
	if err := c.User(user); err != nil {
		return err
	}
	return c.Pass(password)
}

// Retr starts a transaction that keeps the mail: "RETR mailbox". It
// returns the announced size of the mail data.
func (c *Client) Retr(mailbox string) (int64, error) { return c.size("RETR", mailbox) }

// Rdel starts a transaction that deletes the mail at RCVD: "RDEL
// mailbox". It returns the announced size of the mail data.
func (c *Client) Rdel(mailbox string) (int64, error) { return c.size("RDEL", mailbox) }

// Rcev asks for the mail data and reads exactly size octets, the size
// Retr or Rdel returned.
func (c *Client) Rcev(size int64) ([]byte, error) {
	if err := c.lc.Send("RCEV"); err != nil {
		return nil, err
	}
	if c.OKBeforeData {
		if err := c.expectOK("RCEV"); err != nil {
			return nil, err
		}
	}
	return c.lc.ReadData("RCEV", size)
}

// Rcvd confirms receipt: it ends the transaction (and, after Rdel,
// deletes the mail).
func (c *Client) Rcvd() error { return c.okCmd("RCVD", "RCVD") }

// Rset aborts the transaction; nothing is deleted.
func (c *Client) Rset() error { return c.okCmd("RSET", "RSET") }

// Noop sends NOOP.
func (c *Client) Noop() error { return c.okCmd("NOOP", "NOOP") }

// Quit ends the session and closes the connection.
func (c *Client) Quit() error {
	defer c.lc.Close()
	return c.okCmd("QUIT", "QUIT")
}

// Close closes the connection without QUIT: a hang-up.
func (c *Client) Close() error { return c.lc.Close() }

// Fetch runs one whole transaction on mailbox: RETR (or RDEL if del),
// RCEV, RCVD. It returns the mail data split into messages.
func (c *Client) Fetch(mailbox string, del bool) ([]Message, error) {
	var size int64
	var err error
	if del {
		size, err = c.Rdel(mailbox)
	} else {
		size, err = c.Retr(mailbox)
	}
	if err != nil {
		return nil, err
	}
	data, err := c.Rcev(size)
	if err != nil {
		return nil, err
	}
	msgs, err := Split(data)
	if err != nil {
		return nil, err
	}
	if err := c.Rcvd(); err != nil {
		return msgs, err
	}
	return msgs, nil
}

func (c *Client) okCmd(verb, line string) error {
	if err := c.lc.Send(line); err != nil {
		return err
	}
	return c.expectOK(verb)
}

func (c *Client) expectOK(verb string) error {
	line, err := c.lc.ReadLine()
	if err != nil {
		return fmt.Errorf("pop1client: %s: %w", verb, err)
	}
	if line != "+OK" && !strings.HasPrefix(line, "+OK ") {
		return &ReplyError{Command: verb, Line: line}
	}
	return nil
}

// size sends "VERB mailbox" and reads a "#xxx" reply.
func (c *Client) size(verb, mailbox string) (int64, error) {
	line := verb
	if mailbox != "" {
		line += " " + mailbox
	}
	if err := c.lc.Send(line); err != nil {
		return 0, err
	}
	reply, err := c.lc.ReadLine()
	if err != nil {
		return 0, fmt.Errorf("pop1client: %s: %w", verb, err)
	}
	n, ok := wire.ParseNumber(reply, '#')
	if !ok {
		return 0, &ReplyError{Command: verb, Line: reply}
	}
	return n, nil
}

func (c *Client) timeout() time.Duration { return c.Timeout }
