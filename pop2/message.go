package pop2

import (
	"errors"
	"fmt"
	"io"

	"popgate/mailstore"
	"popgate/pop3/wire"
)

// read is action 6: READ [n]. With n it sets the current message
// indicator; without, it announces the current message (RFC 937 p.7).
// A message that does not exist or is marked deleted is "=0", and the
// state is ITEM either way, as the decision table says; a RETR then
// closes the connection.
func (c *conn) read(cmd command) wire.Ending {
	if cmd.hasN {
		c.cur = int(cmd.n)
	}
	c.announce()
	c.st = stITEM
	return wire.KeepOpen
}

// announce answers "=ccc" for the current message.
func (c *conn) announce() {
	c.curSize = 0
	if c.sess != nil {
		if m, err := c.sess.Message(c.cur); err == nil {
			c.curSize = m.Size
		}
	}
	c.wc.Line(lengthReply(c.curSize, c.cur))
}

// retr is action 7: send exactly the announced octets, no terminator and
// no dot-stuffing, and go to NEXT. With nothing to send, close without a
// reply (RFC 937 p.8: the server "will close the connection").
func (c *conn) retr() wire.Ending {
	if c.curSize == 0 || c.sess == nil {
		c.log.Info().Int("msg", c.cur).Msg("RETR of a zero-length message: closing")
		return wire.CloseAfterReply
	}
	rc, err := c.sess.Open(c.ctx, c.cur)
	if err != nil {
		c.log.Warn().Err(err).Int("msg", c.cur).Msg("RETR: opening message failed: closing")
		return wire.CloseAfterReply
	}
	defer rc.Close()
	// Replies to earlier pipelined commands go out first, so that a
	// broken message below loses only its own data.
	if err := c.wc.Flush(); err != nil {
		c.log.Info().Err(err).Msg("client gone while writing")
		return wire.CloseAtOnce
	}
	if err := c.sendData(rc); err != nil {
		ev := c.log.Info()
		if errors.Is(err, mailstore.ErrSizeMismatch) {
			ev = c.log.Error()
		}
		ev.Err(err).Int("msg", c.cur).Int64("size", c.curSize).Msg("RETR failed mid-message: closing")
		return wire.CloseAtOnce
	}
	c.st = stNEXT
	return wire.KeepOpen
}

// sendData copies the message into the reply buffer chunk by chunk,
// re-arming the write deadline for each chunk. The reader is a
// Session.Open reader: it fails with ErrSizeMismatch rather than yield
// more or fewer octets than announced. Each chunk is held back until the
// next read succeeded, so the last octets leave only once the reader has
// confirmed the size: a client never receives a complete-looking message
// whose source was longer than announced.
func (c *conn) sendData(r io.Reader) error {
	buf, held := make([]byte, 32*1024), make([]byte, 0, 32*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 || errors.Is(err, io.EOF) {
			if werr := c.writeChunk(held); werr != nil {
				return werr
			}
			held = append(held[:0], buf[:n]...)
		}
		if errors.Is(err, io.EOF) {
			return c.writeChunk(held)
		}
		if err != nil {
			return fmt.Errorf("pop2: reading message: %w", err)
		}
	}
}

func (c *conn) writeChunk(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if err := c.wc.ExtendWrite(); err != nil {
		return fmt.Errorf("pop2: write deadline: %w", err)
	}
	if _, err := c.wc.Writer().Write(b); err != nil {
		return fmt.Errorf("pop2: sending message: %w", err)
	}
	return nil
}

// ack is action 8: ACKS keeps the message and marks it seen, ACKD marks
// it deleted (removed when the mailbox is released), both advance the
// current message indicator; NACK leaves it. The reply announces the
// (now) current message.
func (c *conn) ack(in input) wire.Ending {
	switch in {
	case inACKS:
		c.sess.MarkRetrieved(c.cur)
		c.cur++
	case inACKD:
		if err := c.sess.Delete(c.cur); err != nil {
			c.log.Warn().Err(err).Int("msg", c.cur).Msg("ACKD: marking failed")
		}
		c.cur++
	}
	c.announce()
	c.st = stITEM
	return wire.KeepOpen
}
