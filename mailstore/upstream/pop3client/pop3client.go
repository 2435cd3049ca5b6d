// Package pop3client is a small RFC 1939 POP3 client: what the upstream
// gateway store needs to fetch mail from a modern POP3 server, and what
// popgate's tests use to drive a POP3 server as a mail client would.
//
// It speaks USER/PASS, AUTH (RFC 5034, with a go-sasl client), CAPA (RFC 2449), STLS (RFC 2595), STAT, LIST, UIDL,
// RETR, TOP, DELE, RSET, NOOP and QUIT. Multi-line bodies (RETR, TOP) are
// streamed: the reader removes the byte-stuffing dots and the terminating
// line and returns every other octet exactly as the server sent it, CRLF
// line ends included. Nothing is buffered beyond one bufio buffer.
//
// A Client is not safe for concurrent use, and a body reader must be read
// to its end before the next command is sent.
package pop3client

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
)

// maxLine bounds one reply line (RFC 1939 says 512 octets; servers that
// send longer status lines exist, so the limit is generous).
const maxLine = 8192

// Error is a "-ERR" reply.
type Error struct {
	// Command is the verb that failed ("PASS", "RETR", ...).
	Command string
	// Code is the RFC 2449 response code without brackets ("IN-USE",
	// "AUTH", "SYS/TEMP"), or "" if the reply had none.
	Code string
	// Text is the rest of the reply line. It may quote the server; it never
	// contains what the client sent.
	Text string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("pop3client: %s: -ERR [%s] %s", e.Command, e.Code, e.Text)
	}
	return fmt.Sprintf("pop3client: %s: -ERR %s", e.Command, e.Text)
}

// ErrBusy means a command was sent while a multi-line body was still
// being read.
var ErrBusy = errors.New("pop3client: previous body not read to its end")

// Client is one POP3 connection.
type Client struct {
	conn     net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	timeout  time.Duration
	greeting string
	busy     bool
}

// MessageSize is one line of a LIST reply.
type MessageSize struct {
	N    int
	Size int64
}

// MessageUID is one line of a UIDL reply.
type MessageUID struct {
	N   int
	UID string
}

// New reads the server greeting from conn and returns a client. timeout,
// if positive, bounds every command and every read of a body (it is
// re-armed as data arrives). On error conn is closed.
func New(conn net.Conn, timeout time.Duration) (*Client, error) {
	c := &Client{
		conn:    conn,
		br:      bufio.NewReaderSize(conn, maxLine),
		bw:      bufio.NewWriter(conn),
		timeout: timeout,
	}
	c.arm()
	line, err := c.readStatus("greeting")
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	c.greeting = line
	return c, nil
}

// Greeting is the text of the server's "+OK" greeting.
func (c *Client) Greeting() string { return c.greeting }

// Conn is the current connection (the TLS one after StartTLS).
func (c *Client) Conn() net.Conn { return c.conn }

// Close drops the connection without QUIT: by RFC 1939 §6 the server then
// does not enter UPDATE, so nothing is removed.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) arm() {
	if c.timeout > 0 {
		_ = c.conn.SetDeadline(time.Now().Add(c.timeout))
	}
}

// readLine reads one CRLF- (or LF-) terminated line without its ending.
func (c *Client) readLine() (string, error) {
	line, err := c.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", fmt.Errorf("pop3client: reply line longer than %d octets", maxLine)
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return "", fmt.Errorf("pop3client: reading reply: %w", err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r")
	return s, nil
}

// readStatus reads a status line: the text after "+OK", or an *Error.
func (c *Client) readStatus(cmd string) (string, error) {
	line, err := c.readLine()
	if err != nil {
		return "", fmt.Errorf("%s: %w", cmd, err)
	}
	return parseStatus(cmd, line)
}

// parseStatus parses a status line.
func parseStatus(cmd, line string) (string, error) {
	switch {
	case line == "+OK" || strings.HasPrefix(line, "+OK "):
		return strings.TrimPrefix(strings.TrimPrefix(line, "+OK"), " "), nil
	case line == "-ERR" || strings.HasPrefix(line, "-ERR "):
		text := strings.TrimPrefix(strings.TrimPrefix(line, "-ERR"), " ")
		e := &Error{Command: cmd, Text: text}
		if strings.HasPrefix(text, "[") {
			if end := strings.IndexByte(text, ']'); end > 0 {
				e.Code = strings.ToUpper(text[1:end])
				e.Text = strings.TrimSpace(text[end+1:])
			}
		}
		return "", e
	default:
		return "", fmt.Errorf("pop3client: %s: malformed reply %q", cmd, truncate(line))
	}
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// cmd sends one command line and reads its status line. verb names the
// command in errors.
func (c *Client) cmd(verb string, args ...string) (string, error) {
	line := verb
	for _, a := range args {
		if strings.ContainsAny(a, "\r\n\x00") {
			return "", fmt.Errorf("pop3client: %s: argument contains CR, LF or NUL", verb)
		}
		line += " " + a
	}
	return c.exchange(verb, line)
}

// exchange sends line and reads the status line; only name (never line,
// which may hold a password) appears in errors.
func (c *Client) exchange(name, line string) (string, error) {
	if c.busy {
		return "", fmt.Errorf("pop3client: %s: %w", name, ErrBusy)
	}
	if err := c.send(name, line); err != nil {
		return "", err
	}
	return c.readStatus(name)
}

// multi sends a command whose "+OK" is followed by a dot-terminated body
// and returns a reader over the body.
func (c *Client) multi(verb string, args ...string) (io.Reader, error) {
	if _, err := c.cmd(verb, args...); err != nil {
		return nil, err
	}
	c.busy = true
	return &dotReader{c: c, lineStart: true}, nil
}

// lines reads a whole (small) multi-line reply into lines.
func (c *Client) lines(verb string, args ...string) ([]string, error) {
	r, err := c.multi(verb, args...)
	if err != nil {
		return nil, err
	}
	var out []string
	br := bufio.NewReader(r)
	for {
		l, err := br.ReadString('\n')
		if l != "" {
			out = append(out, strings.TrimRight(l, "\r\n"))
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("pop3client: %s listing: %w", verb, err)
		}
	}
}

// Capa returns the RFC 2449 capability lines ("TOP", "SASL PLAIN", ...).
// A server without CAPA gives an *Error.
func (c *Client) Capa() ([]string, error) { return c.lines("CAPA") }

// StartTLS sends STLS (RFC 2595 §4) and runs the TLS handshake under ctx.
// Data the server sent before the handshake is a protocol violation (a
// command-injection attempt) and fails the upgrade.
func (c *Client) StartTLS(ctx context.Context, cfg *tls.Config) error {
	if _, err := c.cmd("STLS"); err != nil {
		return err
	}
	if c.br.Buffered() > 0 {
		return errors.New("pop3client: STLS: server sent data before the TLS handshake")
	}
	_ = c.conn.SetDeadline(time.Time{})
	tc := tls.Client(c.conn, cfg)
	hctx := ctx
	if c.timeout > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	if err := tc.HandshakeContext(hctx); err != nil {
		return fmt.Errorf("pop3client: STLS handshake: %w", err)
	}
	c.conn = tc
	c.br = bufio.NewReaderSize(tc, maxLine)
	c.bw = bufio.NewWriter(tc)
	return nil
}

// User sends USER.
func (c *Client) User(name string) error {
	_, err := c.cmd("USER", name)
	return err
}

// Pass sends PASS. The password never appears in an error.
func (c *Client) Pass(password string) error {
	if strings.ContainsAny(password, "\r\n\x00") {
		return errors.New("pop3client: PASS: password contains CR, LF or NUL")
	}
	_, err := c.exchange("PASS", "PASS "+password)
	return err
}

// Auth runs an RFC 5034 AUTH exchange with mech: the initial response, if
// any, goes on the AUTH line, and each "+ " challenge is answered with
// mech.Next. A mechanism error cancels the exchange with "*". Nothing the
// client sends (a token, a password) appears in errors.
func (c *Client) Auth(mech sasl.Client) error {
	name, ir, err := mech.Start()
	if err != nil {
		return fmt.Errorf("pop3client: AUTH: %w", err)
	}
	if name == "" || strings.ContainsAny(name, " \r\n\x00") {
		return fmt.Errorf("pop3client: AUTH: bad mechanism name %q", name)
	}
	line := "AUTH " + name
	if ir != nil {
		if len(ir) == 0 {
			line += " ="
		} else {
			line += " " + base64.StdEncoding.EncodeToString(ir)
		}
	}
	if c.busy {
		return fmt.Errorf("pop3client: AUTH: %w", ErrBusy)
	}
	for {
		if err := c.send("AUTH", line); err != nil {
			return err
		}
		reply, err := c.readLine()
		if err != nil {
			return fmt.Errorf("AUTH: %w", err)
		}
		if reply != "+" && !strings.HasPrefix(reply, "+ ") {
			_, err := parseStatus("AUTH", reply)
			return err
		}
		challenge, err := base64.StdEncoding.DecodeString(strings.TrimSpace(reply[1:]))
		if err == nil {
			var resp []byte
			if resp, err = mech.Next(challenge); err == nil {
				line = base64.StdEncoding.EncodeToString(resp)
				continue
			}
		}
		// Cancel; the server answers -ERR.
		if serr := c.send("AUTH", "*"); serr == nil {
			_, _ = c.readStatus("AUTH")
		}
		return fmt.Errorf("pop3client: AUTH %s: %w", name, err)
	}
}

// send writes one line; only name appears in errors.
func (c *Client) send(name, line string) error {
	c.arm()
	if _, err := c.bw.WriteString(line + "\r\n"); err != nil {
		return fmt.Errorf("pop3client: sending %s: %w", name, err)
	}
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("pop3client: sending %s: %w", name, err)
	}
	return nil
}

// Stat returns the message count and total size.
func (c *Client) Stat() (int, int64, error) {
	text, err := c.cmd("STAT")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(text)
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("pop3client: STAT: malformed reply %q", truncate(text))
	}
	n, err1 := strconv.Atoi(f[0])
	size, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("pop3client: STAT: malformed reply %q", truncate(text))
	}
	return n, size, nil
}

// List returns the scan listing of every undeleted message.
func (c *Client) List() ([]MessageSize, error) {
	ls, err := c.lines("LIST")
	if err != nil {
		return nil, err
	}
	out := make([]MessageSize, 0, len(ls))
	for _, l := range ls {
		f := strings.Fields(l)
		if len(f) < 2 {
			return nil, fmt.Errorf("pop3client: LIST: malformed line %q", truncate(l))
		}
		n, err1 := strconv.Atoi(f[0])
		size, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || n < 1 || size < 0 {
			return nil, fmt.Errorf("pop3client: LIST: malformed line %q", truncate(l))
		}
		out = append(out, MessageSize{N: n, Size: size})
	}
	return out, nil
}

// UIDL returns the unique-id listing of every undeleted message.
func (c *Client) UIDL() ([]MessageUID, error) {
	ls, err := c.lines("UIDL")
	if err != nil {
		return nil, err
	}
	out := make([]MessageUID, 0, len(ls))
	for _, l := range ls {
		f := strings.Fields(l)
		if len(f) != 2 {
			return nil, fmt.Errorf("pop3client: UIDL: malformed line %q", truncate(l))
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n < 1 {
			return nil, fmt.Errorf("pop3client: UIDL: malformed line %q", truncate(l))
		}
		out = append(out, MessageUID{N: n, UID: f[1]})
	}
	return out, nil
}

// Retr starts RETR n. The reader yields the message as sent, without the
// stuffing dots and the terminating line; read it to io.EOF before the
// next command.
func (c *Client) Retr(n int) (io.Reader, error) { return c.multi("RETR", strconv.Itoa(n)) }

// Top starts TOP n lines (RFC 1939 §7): the header, the blank line and
// the first lines of the body. Read it to io.EOF before the next command.
func (c *Client) Top(n, lines int) (io.Reader, error) {
	return c.multi("TOP", strconv.Itoa(n), strconv.Itoa(lines))
}

// Dele marks message n deleted.
func (c *Client) Dele(n int) error {
	_, err := c.cmd("DELE", strconv.Itoa(n))
	return err
}

// Rset unmarks every message marked deleted.
func (c *Client) Rset() error {
	_, err := c.cmd("RSET")
	return err
}

// Noop does nothing but keeps the session alive.
func (c *Client) Noop() error {
	_, err := c.cmd("NOOP")
	return err
}

// Quit sends QUIT, which in the TRANSACTION state makes the server enter
// UPDATE and remove the messages marked deleted, and closes the
// connection. A "-ERR" reply (the update failed) is returned as an *Error.
func (c *Client) Quit() error {
	_, err := c.cmd("QUIT")
	cerr := c.conn.Close()
	if err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("pop3client: closing after QUIT: %w", cerr)
	}
	return nil
}

// dotReader streams a multi-line body, removing byte-stuffing.
type dotReader struct {
	c         *Client
	pending   []byte // the rest of the current line; aliases c.br's buffer
	lineStart bool   // the next octet starts a line
	done      bool
	err       error
}

func (d *dotReader) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	for len(d.pending) == 0 {
		if d.done {
			return 0, io.EOF
		}
		if err := d.fill(); err != nil {
			d.err = err
			d.c.busy = false
			return 0, err
		}
	}
	n := copy(p, d.pending)
	d.pending = d.pending[n:]
	return n, nil
}

// fill reads the next piece of a line into pending, or notices the
// terminating line.
func (d *dotReader) fill() error {
	d.c.arm()
	br := d.c.br
	if d.lineStart {
		b, err := br.Peek(1)
		if err != nil {
			return bodyErr(err)
		}
		if b[0] == '.' {
			b, err = br.Peek(2)
			if err != nil {
				return bodyErr(err)
			}
			if b[1] == '\n' {
				_, _ = br.Discard(2)
				d.finish()
				return nil
			}
			if b[1] == '\r' {
				if b3, err := br.Peek(3); err == nil && b3[2] == '\n' {
					_, _ = br.Discard(3)
					d.finish()
					return nil
				}
			}
			// A stuffed line: drop the first dot.
			_, _ = br.Discard(1)
		}
	}
	line, err := br.ReadSlice('\n')
	switch {
	case err == nil:
		d.lineStart = true
	case errors.Is(err, bufio.ErrBufferFull):
		d.lineStart = false
	default:
		return bodyErr(err)
	}
	d.pending = line
	return nil
}

func (d *dotReader) finish() {
	d.done = true
	d.c.busy = false
}

func bodyErr(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("pop3client: reading body: %w", err)
}
