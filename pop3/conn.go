package pop3

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"

	"github.com/rs/zerolog"

	"popgate/mailstore"
	"popgate/pop3/wire"
)

// conn is one POP3 session. One goroutine owns it.
type conn struct {
	srv *Server
	ctx context.Context
	nc  *cancelConn
	wc  *wire.Conn
	log zerolog.Logger

	state     State
	timestamp string // APOP timestamp with brackets; "" if APOP is off

	// user is the name of the USER command just before this one, "" if the
	// previous command was anything else (RFC 1939 §7: PASS only
	// immediately after a successful USER).
	user      string
	userNext  string // set by USER for the next command
	account   mailstore.Account
	sess      *mailstore.Session
	lines     int // command lines read
	errors    int // protocol errors so far
	closing   bool
	abort     bool // close without flushing (framing broken, panic)
	readBuf   []byte
	lineBuf   []byte // one UIDL or LIST line, reused
	closeNote string // why the session ended, for the log

	ip      netip.Addr // the peer's address, if hasIP
	hasIP   bool
	plainOK bool // password logins allowed without TLS (Options.Plaintext)
	tls     bool // the session runs over TLS (STLS or implicit)
	utf8    bool // the UTF8 command was accepted (RFC 6856 §2)
	// refusalLogged is set once a cleartext refusal has been logged.
	refusalLogged bool
	// sizes caches wire sizes that quirks made the server count.
	sizes map[int]int64
}

// serve greets the client and runs commands until the session ends.
func (c *conn) serve() {
	greeting := "+OK " + c.srv.greetName + " POP3 server ready"
	if c.srv.opts.Quirks.ShortGreeting {
		greeting = "+OK POP3 server ready"
	}
	if c.timestamp != "" {
		greeting += " " + c.timestamp
	}
	c.reply(greeting)
	if !c.flush() {
		return
	}
	for !c.closing {
		idle := c.srv.opts.AuthTimeout
		if c.state == Transaction {
			idle = c.srv.opts.IdleTimeout
		}
		line, err := c.wc.ReadLine(idle)
		if err != nil {
			c.readFailed(err)
			return
		}
		c.handleLine(line)
		if c.abort {
			return
		}
		// Pipelined commands share one flush (RFC 2449 §6.6).
		if c.closing || !c.wc.Pending() {
			if !c.flush() {
				return
			}
		}
	}
}

// readFailed ends the session after a failed read. Only an over-long line
// gets a reply; timeouts close silently (RFC 1939 §3 autologout).
func (c *conn) readFailed(err error) {
	switch {
	case errors.Is(err, wire.ErrLineTooLong):
		c.closeNote = "line too long"
		c.reply("-ERR " + errLineTooLong.text)
		c.closing = true
		c.flush()
	case c.ctx.Err() != nil:
		c.closeNote = "server shutdown"
	case wire.IsTimeout(err):
		c.closeNote = "autologout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		c.closeNote = "client hung up"
	default:
		c.closeNote = "read error"
		c.log.Debug().Err(err).Msg("read failed")
	}
}

// handleLine parses and runs one command line.
func (c *conn) handleLine(line []byte) {
	c.lines++
	first := c.lines == 1
	c.user, c.userNext = c.userNext, ""
	req, err := parseCommand(line)
	if err != nil {
		c.fail(err)
		if first {
			c.notPOP3()
		}
		return
	}
	cmd := c.srv.commands[req.verb]
	if cmd == nil {
		c.log.Debug().Str("verb", logVerb(req.verb)).Msg("unknown command")
		if first && !looksLikePOP3(req) {
			c.fail(errNotPOP3)
			c.notPOP3()
			return
		}
		c.fail(errUnknownCommand)
		return
	}
	ev := c.log.Debug().Str("cmd", req.verb)
	if !cmd.secret {
		ev = ev.Strs("args", req.args)
	}
	ev.Msg("command")
	if !cmd.allowed(c.state) {
		c.fail(errWrongState)
		return
	}
	if len(req.args) < cmd.minArgs || (cmd.maxArgs >= 0 && len(req.args) > cmd.maxArgs) {
		c.fail(errArgCount)
		return
	}
	next, err := cmd.handle(c, req)
	c.state = next
	if err != nil {
		c.fail(err)
	}
}

// notPOP3 closes a connection whose first line is another protocol.
func (c *conn) notPOP3() {
	c.closing = true
	c.closeNote = "first line is not POP3"
}

// fail turns err into its reply (see [replyFor]) and applies the error
// limit.
func (c *conn) fail(err error) {
	out := replyFor(err)
	if out.logDetail {
		c.log.Error().Err(err).Stringer("state", c.state).Msg("command failed")
	}
	if out.fatal {
		c.abort = true
		c.closing = true
		c.closeNote = "framing broken"
		return
	}
	if !c.srv.opts.Profile.extensions() {
		// Response codes are RFC 2449's; earlier clients never saw them.
		out.reply = stripResponseCode(out.reply)
	}
	c.reply(out.reply)
	if out.counts {
		c.errors++
		if c.errors >= c.srv.opts.MaxErrors && !c.closing {
			c.log.Warn().Int("errors", c.errors).Msg("too many errors; closing")
			c.reply("-ERR " + errTooManyErrors.text + ", closing connection")
			c.closing = true
			c.closeNote = "too many errors"
		}
	}
}

// reply buffers one status line. Every reply starts with "+OK " or "-ERR "
// followed by text (RFC 1957: some clients need the space).
func (c *conn) reply(line string) { c.wc.Line(line) }

// flush sends buffered replies; false means the connection is broken.
func (c *conn) flush() bool {
	if err := c.wc.Flush(); err != nil {
		c.log.Debug().Err(err).Msg("write failed")
		c.closeNote = "write failed"
		c.abort = true
		return false
	}
	return true
}

// finish ends the session without UPDATE unless QUIT already committed,
// releases the account and closes the connection.
func (c *conn) finish() {
	if c.sess != nil && !c.sess.Ended() {
		if err := c.sess.Close(); err != nil {
			c.log.Error().Err(err).Msg("closing maildrop")
		}
	}
	if c.account != nil {
		if err := c.account.Close(); err != nil {
			c.log.Error().Err(err).Msg("closing account")
		}
	}
	if c.closeNote == "" {
		c.closeNote = "quit"
	}
	c.log.Debug().Str("reason", c.closeNote).Stringer("state", c.state).Msg("disconnected")
	if c.abort {
		_ = c.nc.Close()
		return
	}
	c.closeNotify()
	lingerClose(c.nc)
}

// logVerb bounds what an unknown keyword puts into the log.
func logVerb(v string) string {
	if len(v) > 16 {
		return v[:16]
	}
	return v
}
