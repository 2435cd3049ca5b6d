package pop3

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/smtp"
	"strconv"
	"strings"
	"time"
)

// XTNDOptions enables subcommands of XTND, the command RFC 1082 added to
// RFC 1081 POP3. popgate implements none of RFC 1082's bulletin-board
// subcommands (BBOARDS, ARCHIVE, X-BBOARDS); it implements the two that
// qpopper added and that clients use. Both are off by default.
type XTNDOptions struct {
	// XLST enables "XTND XLST header [msg]": one line "n Header: value"
	// per message that has the header. Netscape and Mozilla send
	// "XTND XLST Message-Id" when UIDL is missing, to tell messages apart
	// across sessions.
	XLST bool
	// XMIT enables "XTND XMIT": the client sends a message, which popgate
	// hands to an SMTP relay. Nil: off.
	XMIT *XMITOptions
}

// XMITOptions configures XTND XMIT.
type XMITOptions struct {
	// Relay is the SMTP server's host:port. Required. popgate does not
	// authenticate to it or use TLS: it should be a local relay that
	// accepts mail from popgate's address and applies the site's policy.
	Relay string
	// Domain completes a user name without "@" into the envelope sender
	// (name@Domain). Default: Options.Hostname.
	Domain string
	// MaxSize bounds the message, in octets with CRLF line ends. Default
	// [DefaultXMITMaxSize].
	MaxSize int64
	// Timeout bounds the whole exchange with the relay. Default
	// [DefaultXMITTimeout].
	Timeout time.Duration
}

// Defaults and limits of XTND.
const (
	// DefaultXMITMaxSize is XMITOptions.MaxSize when zero.
	DefaultXMITMaxSize = 10 << 20
	// DefaultXMITTimeout is XMITOptions.Timeout when zero.
	DefaultXMITTimeout = time.Minute
	// xmitMaxLine bounds one line of an XMIT message, CRLF included.
	xmitMaxLine = 4096
	// xlstHeaderLimit bounds how much of each message XLST reads looking
	// for the header.
	xlstHeaderLimit = 64 * 1024
	// xlstMaxValue bounds an XLST line's header text (RFC 5322 §2.1.1's
	// line limit).
	xlstMaxValue = 998
)

var (
	errUnknownXTND  = &protocolError{"unknown XTND subcommand"}
	errBadHeader    = &protocolError{"invalid header name"}
	errXmitTooLarge = &protocolError{"message too large, not sent"}
	errXmitNoRcpt   = &protocolError{"message has no To, Cc or Bcc recipient, not sent"}
	errXmitFailed   = &protocolError{"message not sent: the mail relay refused it or is unreachable"}
)

// checkXTND validates and completes o.XTND in New.
func checkXTND(o *Options) error {
	x := o.XTND.XMIT
	if x == nil {
		return nil
	}
	cp := *x
	if _, _, err := net.SplitHostPort(cp.Relay); err != nil {
		return fmt.Errorf("pop3: XMITOptions.Relay %q: %w", cp.Relay, err)
	}
	if cp.Domain == "" {
		cp.Domain = o.Hostname
	}
	if cp.MaxSize <= 0 {
		cp.MaxSize = DefaultXMITMaxSize
	}
	if cp.Timeout <= 0 {
		cp.Timeout = DefaultXMITTimeout
	}
	o.XTND.XMIT = &cp
	return nil
}

// cmdXtnd dispatches XTND subcommands (RFC 1082; case-insensitive, as
// qpopper treats them).
func (c *conn) cmdXtnd(req request) (State, error) {
	x := c.srv.opts.XTND
	switch sub := strings.ToUpper(req.args[0]); {
	case sub == "XLST" && x.XLST:
		return c.xtndXlst(req.args[1:])
	case sub == "XMIT" && x.XMIT != nil:
		if len(req.args) != 1 {
			return c.state, errArgCount
		}
		return c.xtndXmit()
	}
	return c.state, errUnknownXTND
}

// xtndXlst answers "XTND XLST header [msg]": "+OK", then "n Header: value"
// for each message not marked deleted that has the header (its first
// occurrence, unfolded), then ".". A message without the header has no
// line. Only the first 64 KiB of each message is read.
func (c *conn) xtndXlst(args []string) (State, error) {
	if len(args) < 1 || len(args) > 2 {
		return c.state, errArgCount
	}
	name := args[0]
	if strings.ContainsRune(name, ':') || !isHeaderField([]byte(name+":")) {
		return c.state, errBadHeader
	}
	nums := make([]int, 0, c.sess.Count())
	if len(args) == 2 {
		n, err := c.message(args[1])
		if err != nil {
			return c.state, err
		}
		nums = append(nums, n)
	} else {
		for _, m := range c.sess.List() {
			nums = append(nums, m.N)
		}
	}
	// Collect first, so that a store failure is a clean -ERR.
	var lines []string
	for _, n := range nums {
		field, ok, err := c.headerField(n, name)
		if err != nil {
			return c.state, err
		}
		if ok {
			lines = append(lines, strconv.Itoa(n)+" "+field)
		}
	}
	c.reply("+OK header list follows")
	for _, l := range lines {
		c.wc.Line(l)
	}
	c.wc.Line(".")
	return c.state, nil
}

// headerField returns the first header field called name in message n,
// unfolded and with control characters made spaces, as "Name: value".
func (c *conn) headerField(n int, name string) (string, bool, error) {
	rc, err := c.sess.Open(c.ctx, n)
	if err != nil {
		return "", false, &msgError{n: n, err: err}
	}
	defer func() { _ = rc.Close() }()
	br := bufio.NewReader(io.LimitReader(rc, xlstHeaderLimit))
	var field []byte
	found := false
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A header line longer than the reader's buffer: skip it.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if found {
				break
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return "", false, fmt.Errorf("reading message %d: %w", n, err)
		}
		text := bytes.TrimRight(line, "\r\n")
		switch {
		case len(text) == 0:
			err = io.EOF // the end of the header
		case found && (text[0] == ' ' || text[0] == '\t'):
			field = append(field, text...)
		case found:
			err = io.EOF
		case hasPrefixFold(text, name+":"):
			found = true
			field = append(field, text...)
		}
		if err != nil || len(field) > xlstMaxValue {
			break
		}
	}
	if !found {
		return "", false, nil
	}
	for i, b := range field {
		if b < 0x20 || b == 0x7f {
			field[i] = ' '
		}
	}
	if len(field) > xlstMaxValue {
		field = field[:xlstMaxValue]
	}
	return string(field), true, nil
}

// xtndXmit reads a message from the client, dot-stuffed and ended by
// ".", and hands it to the relay with the logged-in user as the envelope
// sender; the recipients are those of its To, Cc and Bcc fields, and the
// Bcc field is removed.
func (c *conn) xtndXmit() (State, error) {
	x := c.srv.opts.XTND.XMIT
	c.reply("+OK send the message, end it with a line holding only .")
	if !c.flush() {
		return c.state, nil
	}
	var buf bytes.Buffer
	over := false
	for {
		line, err := c.wc.ReadLineLimit(c.srv.opts.IdleTimeout, xmitMaxLine)
		if err != nil {
			c.readFailed(err)
			c.closing = true
			return c.state, nil
		}
		if len(line) == 1 && line[0] == '.' {
			break
		}
		line = bytes.TrimPrefix(line, []byte{'.'})
		if over || int64(buf.Len()+len(line)+2) > x.MaxSize {
			over = true
			continue
		}
		buf.Write(line)
		buf.WriteString("\r\n")
	}
	if over {
		return c.state, errXmitTooLarge
	}
	from := c.account.User()
	if !strings.Contains(from, "@") {
		from += "@" + x.Domain
	}
	rcpts, body, err := envelope(buf.Bytes())
	if err != nil {
		c.log.Info().Err(err).Msg("XTND XMIT: no recipients")
		return c.state, errXmitNoRcpt
	}
	if err := relay(c.ctx, x, c.srv.stampHost, from, rcpts, body); err != nil {
		c.log.Warn().Err(err).Str("relay", x.Relay).Msg("XTND XMIT: not sent")
		return c.state, errXmitFailed
	}
	c.log.Info().Str("from", from).Int("recipients", len(rcpts)).Int("octets", len(body)).Msg("XTND XMIT: sent")
	c.reply("+OK message sent")
	return c.state, nil
}

// envelope returns the recipients of msg's To, Cc and Bcc fields and msg
// without its Bcc fields.
func envelope(msg []byte) ([]string, []byte, error) {
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return nil, nil, fmt.Errorf("parsing message: %w", err)
	}
	var rcpts []string
	for _, h := range []string{"To", "Cc", "Bcc"} {
		list, err := m.Header.AddressList(h)
		if errors.Is(err, mail.ErrHeaderNotPresent) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("parsing %s: %w", h, err)
		}
		for _, a := range list {
			rcpts = append(rcpts, a.Address)
		}
	}
	if len(rcpts) == 0 {
		return nil, nil, errors.New("no recipients")
	}
	return rcpts, dropField(msg, "bcc"), nil
}

// dropField removes every header field called name (and its continuation
// lines) from msg.
func dropField(msg []byte, name string) []byte {
	out := make([]byte, 0, len(msg))
	dropping := false
	rest := msg
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		rest = rest[len(line):]
		text := bytes.TrimRight(line, "\r\n")
		if len(text) == 0 {
			out = append(out, line...)
			return append(out, rest...)
		}
		if text[0] != ' ' && text[0] != '\t' {
			dropping = hasPrefixFold(text, name+":")
		}
		if !dropping {
			out = append(out, line...)
		}
	}
	return out
}

// relay sends one message through the SMTP relay x.Relay.
func relay(ctx context.Context, x *XMITOptions, helo, from string, rcpts []string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, x.Timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", x.Relay)
	if err != nil {
		return fmt.Errorf("connecting to the relay: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	host, _, _ := net.SplitHostPort(x.Relay)
	cl, err := smtp.NewClient(nc, host)
	if err != nil {
		_ = nc.Close()
		return fmt.Errorf("relay greeting: %w", err)
	}
	defer func() { _ = cl.Close() }()
	if err := cl.Hello(helo); err != nil {
		return fmt.Errorf("relay HELO: %w", err)
	}
	if err := cl.Mail(from); err != nil {
		return fmt.Errorf("relay MAIL FROM: %w", err)
	}
	for _, r := range rcpts {
		if err := cl.Rcpt(r); err != nil {
			return fmt.Errorf("relay RCPT TO %s: %w", r, err)
		}
	}
	w, err := cl.Data()
	if err != nil {
		return fmt.Errorf("relay DATA: %w", err)
	}
	if _, err := w.Write(body); err != nil {
		return fmt.Errorf("relay data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("relay end of data: %w", err)
	}
	if err := cl.Quit(); err != nil {
		return fmt.Errorf("relay QUIT: %w", err)
	}
	return nil
}
