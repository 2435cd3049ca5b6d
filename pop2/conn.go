package pop2

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"popgate/mailstore"
	"popgate/pop3/wire"
)

// conn is one POP2 session. It is used by one goroutine.
type conn struct {
	s    *Server
	ctx  context.Context
	end  func() // releases ctx and its shutdown hook
	wc   *wire.Conn
	log  zerolog.Logger
	st   state
	errs int

	acct    mailstore.Account
	sess    *mailstore.Session // nil before HELO and for a FOLD that found nothing
	folder  string             // the selected mailbox's name, for replies and logs
	cur     int                // RFC 937's current message indicator
	curSize int64              // the size READ or an ack last announced
}

func (s *Server) newConn(ctx context.Context, nc net.Conn, r *bufio.Reader) *conn {
	// A shutdown (ctx done) closes the connection, which ends any read or
	// write in progress; the loop then ends the session without a commit.
	ctx, end := wire.CloseOnDone(ctx, nc)
	return &conn{
		s:   s,
		ctx: ctx,
		end: end,
		wc:  wire.NewWithReader(nc, r, s.wireOptions()),
		log: wire.ConnLogger(s.opts.Logger, "pop2", s.ids.Next(), nc),
		st:  stLSTN,
		cur: 1,
	}
}

// loop reads and answers commands until the session ends. first, if not
// nil, is a command line a dispatcher already read.
func (c *conn) loop(first *string) {
	c.wc.Run(first, wire.Loop{
		Idle:       c.idleTimeout,
		Handle:     func(line []byte) wire.Ending { return c.dispatch(parseCommand(line)) },
		ReadFailed: c.readFailed,
		TooLong:    func() { c.fail("- Command line too long", wire.ErrLineTooLong) },
		Log:        &c.log,
	})
}

func (c *conn) idleTimeout() time.Duration {
	if c.st == stAUTH {
		return c.s.opts.AuthTimeout
	}
	return c.s.opts.IdleTimeout
}

// dispatch runs the decision-table action for cmd in the current state.
func (c *conn) dispatch(cmd command) wire.Ending {
	act := decide(cmd.in, c.st)
	c.log.Debug().Stringer("state", c.st).Stringer("cmd", cmd.in).Int("action", int(act)).Msg("command")
	switch act {
	case actHelo:
		return c.helo(cmd)
	case actQuit:
		return c.quit()
	case actFold:
		return c.fold(cmd)
	case actRead:
		return c.read(cmd)
	case actRetr:
		return c.retr()
	case actAck:
		return c.ack(cmd.in)
	default:
		return c.garbage(cmd)
	}
}

// garbage is action 1: "- error", then close (or, with MaxErrors > 1,
// stay in the same state until the limit).
func (c *conn) garbage(cmd command) wire.Ending {
	text := cmd.bad
	if text == "" {
		text = "Bogus or out of sequence command"
	}
	c.errs++
	c.log.Info().Stringer("state", c.st).Stringer("cmd", cmd.in).Str("error", text).Msg("protocol error")
	c.wc.Line("- " + text)
	if c.errs >= c.s.opts.MaxErrors {
		return wire.CloseAfterReply
	}
	return wire.KeepOpen
}

// readFailed ends the session after a failed read: a hang-up, a timeout
// (the table's Timeout row: "- error" and close) or an over-long line.
func (c *conn) readFailed(err error) {
	switch {
	case c.ctx.Err() != nil:
		c.log.Info().Msg("connection closed by shutdown")
	case errors.Is(err, wire.ErrLineTooLong):
		c.fail("- Command line too long", err)
	case wire.IsTimeout(err):
		c.fail("- Autologout; idle for too long", err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		c.log.Info().Stringer("state", c.st).Msg("client hung up")
	default:
		c.log.Info().Err(err).Stringer("state", c.st).Msg("read failed")
	}
}

// fail sends a last "-" line and lets finish close without a commit.
func (c *conn) fail(reply string, err error) {
	c.log.Info().Err(err).Stringer("state", c.st).Msg("closing: " + reply[2:])
	c.wc.Line(reply)
	_ = c.wc.Flush()
}

// finish releases the folder without committing (unless QUIT or FOLD
// already committed), the account, and the connection.
func (c *conn) finish() {
	if c.sess != nil && !c.sess.Ended() {
		if marks := c.sess.DeletedCount(); marks > 0 {
			c.log.Info().Int("kept", marks).Msg("session ended without QUIT: ACKD marks dropped")
		}
		if err := c.sess.Close(); err != nil {
			c.log.Warn().Err(err).Msg("releasing folder")
		}
	}
	if c.acct != nil {
		_ = c.acct.Close()
	}
	c.end()
	_ = c.wc.Close()
	c.st = stDONE
}

// errReply turns a store error into a "-" reply. The detail goes to the
// log, never onto the wire.
func (c *conn) errReply(what string, err error) string {
	var text string
	switch {
	case errors.Is(err, mailstore.ErrAuthFailed):
		text = "- Bad login"
	case errors.Is(err, mailstore.ErrLocked):
		text = "- [IN-USE] Mailbox is in use by another session"
	case errors.Is(err, mailstore.ErrPermanent):
		text = "- [SYS/PERM] Mailbox is unavailable"
	default:
		text = "- [SYS/TEMP] Temporary server failure, try again later"
	}
	c.log.Warn().Err(err).Str("during", what).Msg(text[2:])
	return text
}

// countReply is the "#nnn" reply to HELO and FOLD.
func countReply(n int, folder string) string {
	return "#" + strconv.Itoa(n) + " messages in " + folder
}

// lengthReply is the "=ccc" reply to READ and the acknowledgments.
func lengthReply(size int64, n int) string {
	if size == 0 {
		return "=0 No message to read"
	}
	return fmt.Sprintf("=%d characters in message %d", size, n)
}
