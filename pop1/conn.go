package pop1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"popgate/mailstore"
	"popgate/pop3/wire"
)

// conn is one POP1 session. It is used by one goroutine.
type conn struct {
	s    *Server
	ctx  context.Context
	end  func() // releases ctx and its shutdown hook
	wc   *wire.Conn
	log  zerolog.Logger
	st   state
	errs int

	user string            // USER's name, until PASS
	acct mailstore.Account // after PASS
	tx   *transaction      // the open mail reading transaction, if any
}

func (s *Server) newConn(ctx context.Context, nc net.Conn, r *bufio.Reader) *conn {
	// A shutdown (ctx done) closes the connection, which ends any read or
	// write in progress; the loop then ends the session without deleting.
	ctx, end := wire.CloseOnDone(ctx, nc)
	return &conn{
		s:   s,
		ctx: ctx,
		end: end,
		wc:  wire.NewWithReader(nc, r, s.wireOptions()),
		log: wire.ConnLogger(s.opts.Logger, "pop1", s.ids.Next(), nc),
		st:  stUser,
	}
}

// loop reads and answers commands until the session ends. first, if not
// nil, is a command line a dispatcher already read.
func (c *conn) loop(first *string) {
	c.wc.Run(first, wire.Loop{
		Idle:       c.idleTimeout,
		Handle:     func(line []byte) wire.Ending { return c.dispatch(parseCommand(line)) },
		ReadFailed: c.readFailed,
		TooLong:    func() { c.closing(&protoError{"Command line too long"}, wire.ErrLineTooLong) },
		Closing:    c.linger,
		Log:        &c.log,
	})
}

func (c *conn) idleTimeout() time.Duration {
	if c.acct == nil {
		return c.s.opts.AuthTimeout
	}
	return c.s.opts.IdleTimeout
}

// dispatch looks cmd up in the table and runs the action.
func (c *conn) dispatch(cmd command) wire.Ending {
	r := lookup(cmd.in, c.st)
	c.log.Debug().Stringer("state", c.st).Stringer("cmd", cmd.in).Stringer("action", r.act).Msg("command")
	var err error
	end := wire.KeepOpen
	switch r.act {
	case actUser:
		err = c.userCmd(cmd)
	case actPass:
		err = c.pass(cmd)
	case actOpen:
		err = c.open(cmd)
	case actRcev:
		end = c.rcev()
	case actRcvd:
		err = c.rcvd()
	case actQuit:
		c.abort("QUIT")
		c.ok("bye")
		end = wire.CloseAfterReply
	case actNoop:
		c.ok("")
	case actRset:
		if c.tx == nil {
			c.ok("no transaction to abort")
			break
		}
		c.abort("RSET")
		c.ok("transaction aborted, nothing deleted, mailbox unlocked")
	default:
		err = c.refusal(cmd)
	}
	if err != nil {
		c.reply(err)
		c.st = r.fail
		if c.countsAsError(err) {
			c.errs++
			if c.errs >= c.s.opts.MaxErrors {
				c.log.Info().Int("errors", c.errs).Msg("too many errors: closing")
				c.abort("too many errors")
				return wire.CloseAfterReply
			}
		}
		return end
	}
	if end != wire.CloseAtOnce {
		c.st = r.ok
	}
	return end
}

// refusal explains why cmd is not valid now.
func (c *conn) refusal(cmd command) error {
	switch {
	case cmd.in == inOther:
		return &protoError{"Unknown command (this server speaks POP1, RFC 918)"}
	case c.st == stUser && cmd.in == inPASS:
		return &protoError{"Send USER first"}
	case c.st == stUser || c.st == stPass:
		return &protoError{"Log in first with USER and PASS"}
	case c.st == stRcev:
		return &protoError{cmd.verb + " not valid now: send RCEV or RSET"}
	case c.st == stRcvd:
		return &protoError{cmd.verb + " not valid now: send RCVD or RSET"}
	}
	return &protoError{cmd.verb + " not valid now: start a transaction with RETR or RDEL"}
}

// readFailed ends the session after a failed read: a hang-up, a timeout
// or an over-long line.
func (c *conn) readFailed(err error) {
	switch {
	case c.ctx.Err() != nil:
		c.log.Info().Msg("connection closed by shutdown")
	case errors.Is(err, wire.ErrLineTooLong):
		c.closing(&protoError{"Command line too long"}, err)
	case wire.IsTimeout(err):
		c.closing(&protoError{"Autologout; idle for too long"}, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		c.log.Info().Stringer("state", c.st).Msg("client hung up")
	default:
		c.log.Info().Err(err).Stringer("state", c.st).Msg("read failed")
	}
}

// closing sends a last negative reply; finish then closes without
// deleting anything.
func (c *conn) closing(reply error, cause error) {
	c.log.Info().Err(cause).Stringer("state", c.st).Msg("closing")
	c.reply(reply)
	if c.wc.Flush() == nil {
		c.linger()
	}
}

// linger half-closes the connection and drains what the client still
// sends for a short while, so that the last reply is not destroyed by a
// reset caused by unread input.
func (c *conn) linger() { c.wc.Linger(wire.DefaultLinger) }

// finish ends any transaction without deleting, releases the account and
// closes the connection.
func (c *conn) finish() {
	c.abort("session ended")
	if c.acct != nil {
		_ = c.acct.Close()
	}
	c.end()
	_ = c.wc.Close()
	c.st = stDone
}

// ok buffers a positive reply.
func (c *conn) ok(text string) {
	if c.s.opts.BareReplies || text == "" {
		c.wc.Line("+OK")
		return
	}
	c.wc.Line("+OK " + text)
}

// count buffers the "#xxx" reply to RETR and RDEL.
func (c *conn) count(total int64, messages int, folder string) {
	line := "#" + strconv.FormatInt(total, 10)
	if !c.s.opts.BareReplies {
		line += " characters in " + folder + " (" + strconv.Itoa(messages) + " messages)"
	}
	c.wc.Line(line)
}

// protoError is a command the server refuses; its text is the reply.
type protoError struct{ text string }

func (e *protoError) Error() string { return "pop1: " + e.text }

// replyText is the one place where an error becomes reply text. Store
// errors become fixed texts by sentinel; the detail goes to the log,
// never onto the wire.
func replyText(err error) string {
	var pe *protoError
	switch {
	case errors.As(err, &pe):
		return pe.text
	case errors.Is(err, errNotAllDeleted):
		return "[SYS/TEMP] Mail was received but not all of it could be deleted"
	case errors.Is(err, mailstore.ErrAuthFailed):
		return "Invalid user name or password"
	case errors.Is(err, mailstore.ErrLocked):
		return "[IN-USE] Mailbox is in use by another session"
	case errors.Is(err, mailstore.ErrNoSuchFolder):
		return "No such mailbox"
	case errors.Is(err, mailstore.ErrPermanent):
		return "[SYS/PERM] Mailbox is unavailable"
	}
	return "[SYS/TEMP] Temporary server failure, try again later"
}

// reply buffers the negative reply for err and logs err.
func (c *conn) reply(err error) {
	text := replyText(err)
	var pe *protoError
	if errors.As(err, &pe) {
		c.log.Info().Stringer("state", c.st).Str("reply", text).Msg("command refused")
	} else {
		c.log.Warn().Err(err).Stringer("state", c.st).Str("reply", text).Msg("command failed")
	}
	if c.s.opts.BareReplies {
		c.wc.Line(c.s.opts.ErrorWord)
		return
	}
	c.wc.Line(c.s.opts.ErrorWord + " " + text)
}

// countsAsError reports whether a negative reply counts toward MaxErrors:
// refused commands and failed logins do, server trouble does not.
func (c *conn) countsAsError(err error) bool {
	var pe *protoError
	return errors.As(err, &pe) || errors.Is(err, mailstore.ErrAuthFailed)
}
