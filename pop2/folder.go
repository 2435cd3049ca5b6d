package pop2

import (
	"errors"
	"strings"

	"popgate/mailstore"
	"popgate/pop3/wire"
)

// helo is action 3: authorize, then select the default mailbox. A failed
// login is "- error" and close (RFC 937 p.7).
func (c *conn) helo(cmd command) wire.Ending {
	acct, err := c.s.opts.Store.Login(c.ctx, cmd.user, cmd.password)
	if err != nil {
		// The password is neither logged nor echoed; the store's error
		// names the user at most.
		c.wc.Line(c.errReply("HELO", err))
		return wire.CloseAfterReply
	}
	c.acct = acct
	c.log = c.log.With().Str("user", acct.User()).Logger()
	c.log.Info().Msg("logged in")
	return c.open(mailstore.Inbox, "HELO")
}

// fold is action 5: release the selected mailbox, committing its ACKD
// marks (RFC 937 p.9), then select the named one. The reply is "#nnn",
// not the "+NNN" of the decision table's action 5 (FLAG-937-FOLDREPLY).
func (c *conn) fold(cmd command) wire.Ending {
	if end, ok := c.release("FOLD"); !ok {
		return end
	}
	name, err := c.resolve(cmd.mailbox)
	switch {
	case unreadable(err):
		c.log.Info().Err(err).Msg("FOLD: no readable mailbox of that name")
		return c.empty()
	case err != nil:
		c.wc.Line(c.errReply("FOLD", err))
		return wire.CloseAfterReply
	}
	return c.open(name, "FOLD")
}

// release commits the selected mailbox, if any. ok is false when the
// commit failed; end is then the ending to return.
func (c *conn) release(verb string) (end wire.Ending, ok bool) {
	if c.sess == nil {
		return wire.KeepOpen, true
	}
	sess := c.sess
	c.sess = nil
	n, err := sess.Commit(c.ctx)
	if err != nil {
		c.wc.Line(c.errReply(verb+": committing "+c.folder, err))
		return wire.CloseAfterReply, false
	}
	c.log.Info().Str("folder", c.folder).Int("deleted", n).Msg("folder released")
	return wire.KeepOpen, true
}

// resolve maps a FOLD argument to one of the account's folders: INBOX in
// any case, other names exactly as Account.Folders lists them.
func (c *conn) resolve(name string) (string, error) {
	if strings.EqualFold(name, mailstore.Inbox) {
		return mailstore.Inbox, nil
	}
	folders, err := c.acct.Folders(c.ctx)
	if err != nil {
		return "", err
	}
	for _, f := range folders {
		if f == name {
			return f, nil
		}
	}
	return "", mailstore.ErrNoSuchFolder
}

// unreadable reports a folder that does not exist or cannot be read: RFC
// 937 (p.7) counts it as zero messages (FLAG-937-FOLDACCESS).
func unreadable(err error) bool {
	return errors.Is(err, mailstore.ErrNoSuchFolder) || errors.Is(err, mailstore.ErrPermanent)
}

// open selects folder and answers "#nnn". A locked folder is "- [IN-USE]"
// and close, at HELO and FOLD alike: "#0" would tell the client that the
// mailbox is empty, and RFC 937's rule is to close when anything goes
// wrong (p.2).
func (c *conn) open(folder, verb string) wire.Ending {
	c.cur, c.curSize, c.folder = 1, 0, folder
	md, err := c.acct.Open(c.ctx, folder)
	var sess *mailstore.Session
	if err == nil {
		sess, err = mailstore.NewSession(c.ctx, md)
	}
	switch {
	case unreadable(err):
		c.log.Info().Err(err).Str("folder", folder).Msg(verb + ": folder unreadable, reporting #0")
		return c.empty()
	case err != nil:
		c.wc.Line(c.errReply(verb+" "+folder, err))
		return wire.CloseAfterReply
	}
	c.sess = sess
	c.st = stMBOX
	c.log.Debug().Str("folder", folder).Int("messages", sess.Count()).Msg("folder selected")
	c.wc.Line(countReply(sess.Count(), folder))
	return wire.KeepOpen
}

// empty selects nothing and answers "#0".
func (c *conn) empty() wire.Ending {
	c.sess, c.cur, c.curSize, c.folder = nil, 1, 0, ""
	c.st = stMBOX
	c.wc.Line("#0 messages")
	return wire.KeepOpen
}

// quit is action 4: commit the ACKD marks of the selected mailbox, answer
// "+", and close. If the commit fails the reply is "-" instead.
func (c *conn) quit() wire.Ending {
	if end, ok := c.release("QUIT"); !ok {
		return end
	}
	c.st = stDONE
	c.wc.Line("+ OK bye, call again sometime")
	return wire.CloseAfterReply
}
