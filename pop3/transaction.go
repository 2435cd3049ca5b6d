package pop3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
)

// copyBufferSize is the read size for message transfers; the write
// deadline is re-armed once per chunk.
const copyBufferSize = 32 * 1024

// registerTransaction adds the RFC 1939 §5 and §7 TRANSACTION commands.
func registerTransaction(t commandTable) {
	tr := []State{Transaction}
	t.add(&command{verb: "STAT", states: tr, handle: (*conn).cmdStat})
	t.add(&command{verb: "LIST", states: tr, maxArgs: 1, handle: (*conn).cmdList})
	t.add(&command{verb: "RETR", states: tr, minArgs: 1, maxArgs: 1, handle: (*conn).cmdRetr})
	t.add(&command{verb: "DELE", states: tr, minArgs: 1, maxArgs: 1, handle: (*conn).cmdDele})
	t.add(&command{verb: "NOOP", states: tr, handle: (*conn).cmdNoop})
	t.add(&command{verb: "RSET", states: tr, handle: (*conn).cmdRset})
	t.add(&command{verb: "TOP", states: tr, minArgs: 2, maxArgs: 2, handle: (*conn).cmdTop})
	t.add(&command{verb: "UIDL", states: tr, maxArgs: 1, handle: (*conn).cmdUidl})
}

// message parses a message-number argument and checks that the message
// exists and is not marked deleted.
func (c *conn) message(arg string) (int, error) {
	n, err := parseMsgNumber(arg)
	if err != nil {
		return 0, err
	}
	if _, err := c.sess.Message(n); err != nil {
		return 0, &msgError{n: n, err: err}
	}
	return n, nil
}

// cmdStat answers the drop listing (RFC 1939 §5): count and octets of
// the messages not marked deleted, nothing else on the line.
func (c *conn) cmdStat(request) (State, error) {
	n, size, err := c.stat()
	if err != nil {
		return c.state, err
	}
	c.reply("+OK " + strconv.Itoa(n) + " " + strconv.FormatInt(size, 10))
	return c.state, nil
}

// cmdList answers scan listings (RFC 1939 §5).
func (c *conn) cmdList(req request) (State, error) {
	if len(req.args) == 1 {
		n, err := c.message(req.args[0])
		if err != nil {
			return c.state, err
		}
		m, _ := c.sess.Message(n)
		size, err := c.wireSize(n, m)
		if err != nil {
			return c.state, err
		}
		c.reply("+OK " + strconv.Itoa(n) + " " + strconv.FormatInt(size, 10))
		return c.state, nil
	}
	n, size, err := c.stat()
	if err != nil {
		return c.state, err
	}
	c.reply(fmt.Sprintf("+OK %d %s (%d octets)", n, plural(n, "message"), size))
	for m := range c.sess.All() {
		s, _ := c.wireSize(m.N, m.MessageInfo) // cached by stat
		line := strconv.AppendInt(c.lineBuf[:0], int64(m.N), 10)
		line = append(line, ' ')
		c.lineBuf = strconv.AppendInt(line, s, 10)
		c.wc.LineBytes(c.lineBuf)
	}
	c.wc.Line(".")
	return c.state, nil
}

// cmdUidl answers unique-id listings (RFC 1939 §7): number, space, UID
// and nothing after it.
func (c *conn) cmdUidl(req request) (State, error) {
	if len(req.args) == 1 {
		n, err := c.message(req.args[0])
		if err != nil {
			return c.state, err
		}
		m, _ := c.sess.Message(n)
		c.reply("+OK " + strconv.Itoa(n) + " " + m.UID)
		return c.state, nil
	}
	c.reply("+OK unique-id listing follows")
	for m := range c.sess.All() {
		line := strconv.AppendInt(c.lineBuf[:0], int64(m.N), 10)
		line = append(line, ' ')
		c.lineBuf = append(line, m.UID...)
		c.wc.LineBytes(c.lineBuf)
	}
	c.wc.Line(".")
	return c.state, nil
}

// cmdRetr sends a whole message (RFC 1939 §5) and marks it retrieved.
func (c *conn) cmdRetr(req request) (State, error) {
	n, err := c.message(req.args[0])
	if err != nil {
		return c.state, err
	}
	m, _ := c.sess.Message(n)
	size, err := c.wireSize(n, m)
	if err != nil {
		return c.state, err
	}
	if err := c.sendMessage(n, "+OK "+strconv.FormatInt(size, 10)+" octets", -1); err != nil {
		return c.state, err
	}
	c.sess.MarkRetrieved(n)
	return c.state, nil
}

// cmdTop sends the headers, the blank line and the first k body lines of
// a message (RFC 1939 §7); the whole message if k exceeds the body.
func (c *conn) cmdTop(req request) (State, error) {
	n, err := c.message(req.args[0])
	if err != nil {
		return c.state, err
	}
	k, err := parseLineCount(req.args[1])
	if err != nil {
		return c.state, err
	}
	if k == math.MaxInt64 {
		k = -1 // unlimited
	}
	return c.state, c.sendMessage(n, "+OK top of message follows", k)
}

// sendMessage streams message n as a multi-line reply, dot-stuffed
// (RFC 1939 §3). bodyLines < 0 sends the whole message. Failures before
// the first line is buffered get an ordinary -ERR; later ones are fatal,
// since a multi-line reply cannot be taken back.
func (c *conn) sendMessage(n int, status string, bodyLines int64) error {
	rc, err := c.openMessage(n, false)
	if err != nil {
		return &msgError{n: n, err: err}
	}
	defer func() { _ = rc.Close() }()
	if cap(c.readBuf) < copyBufferSize {
		c.readBuf = make([]byte, copyBufferSize)
	}
	buf := c.readBuf[:copyBufferSize]
	// Read the first chunk before committing to +OK, so that a store that
	// fails at once still gets a clean -ERR.
	nr, rerr := io.ReadFull(rc, buf)
	if rerr != nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, io.ErrUnexpectedEOF) {
		return fmt.Errorf("reading message %d: %w", n, rerr)
	}
	c.reply(status)
	var w io.Writer = c.wc.Writer()
	next := buf // the buffer for the reads after the first
	var mb *msgBuffers
	if rerr == nil && bodyLines < 0 {
		// The first chunk filled the buffer: a large message. Send it
		// through larger buffers borrowed from the server.
		mb = c.srv.msgBufs.get()
		defer c.srv.msgBufs.put(mb)
		mb.w.Reset(c.wc.Writer())
		w, next = mb.w, mb.read
	}
	dw := newDotWriter(w, bodyLines)
	for {
		if nr > 0 {
			if err := c.wc.ExtendWrite(); err != nil {
				return &fatalError{fmt.Errorf("sending message %d: %w", n, err)}
			}
			if _, err := dw.Write(buf[:nr]); err != nil {
				return &fatalError{fmt.Errorf("sending message %d: %w", n, err)}
			}
		}
		if rerr != nil || dw.Done() {
			break
		}
		buf = next
		nr, rerr = readChunk(rc, buf)
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return &fatalError{fmt.Errorf("reading message %d: %w", n, rerr)}
		}
	}
	if c.srv.opts.Quirks.BlankBeforeDot {
		// The empty line before the dot, after TOP's line limit too. RETR
		// sizes count it (wireSize).
		if _, err := io.WriteString(w, crlf); err != nil {
			return &fatalError{fmt.Errorf("sending message %d: %w", n, err)}
		}
	}
	if err := dw.Close(); err != nil {
		return &fatalError{fmt.Errorf("sending message %d: %w", n, err)}
	}
	if mb != nil {
		// What is left goes to the connection's reply buffer, flushed
		// with the replies that follow.
		if err := c.wc.ExtendWrite(); err != nil {
			return &fatalError{fmt.Errorf("sending message %d: %w", n, err)}
		}
		if err := mb.w.Flush(); err != nil {
			return &fatalError{fmt.Errorf("sending message %d: %w", n, err)}
		}
	}
	return nil
}

// readChunk reads from r into buf until it holds at least half of buf,
// r ends or fails. Fuller chunks mean fewer, larger writes; stopping at
// half lets a reader that converts in the caller's buffer (the store's
// CRLF reader) fill a chunk with one large read.
func readChunk(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf)/2 || n == 0 {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// cmdDele marks a message deleted (RFC 1939 §5).
func (c *conn) cmdDele(req request) (State, error) {
	n, err := c.message(req.args[0])
	if err != nil {
		return c.state, err
	}
	if err := c.sess.Delete(n); err != nil {
		return c.state, &msgError{n: n, err: err}
	}
	c.reply("+OK message " + strconv.Itoa(n) + " deleted")
	return c.state, nil
}

// cmdNoop does nothing (RFC 1939 §5).
func (c *conn) cmdNoop(request) (State, error) {
	c.reply("+OK")
	return c.state, nil
}

// cmdRset unmarks every deleted message (RFC 1939 §5).
func (c *conn) cmdRset(request) (State, error) {
	c.sess.Reset()
	if p := c.srv.opts.Profile; p.hasLast() {
		// RFC 1081/1225: back to the session-start value; RFC 1460: 0.
		c.sess.ResetLast(p.lastResetsToZero())
	}
	n, size, err := c.stat()
	if err != nil {
		return c.state, err
	}
	c.reply(fmt.Sprintf("+OK maildrop has %d %s (%d octets)", n, plural(n, "message"), size))
	return c.state, nil
}

// update is QUIT in TRANSACTION (RFC 1939 §6): commit the deletions and
// the retrieved marks, then sign off. The commit runs even if the server
// is shutting down meanwhile: the client asked for it and is waiting.
func (c *conn) update() (State, error) {
	left := c.sess.Count() - c.sess.DeletedCount()
	deleted, err := c.sess.Commit(context.WithoutCancel(c.ctx))
	if err != nil {
		c.log.Error().Err(err).Int("deleted", deleted).Msg("update failed")
		return Update, &commitError{err}
	}
	c.log.Info().Int("deleted", deleted).Int("left", left).Msg("update committed")
	if left == 0 {
		c.reply("+OK " + c.srv.greetName + " POP3 server signing off (maildrop empty)")
	} else {
		c.reply(fmt.Sprintf("+OK %s POP3 server signing off (%d %s left)", c.srv.greetName, left, plural(left, "message")))
	}
	return Update, nil
}
