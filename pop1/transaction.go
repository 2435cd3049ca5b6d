package pop1

import (
	"errors"
	"fmt"
	"strings"

	"popgate/mailstore"
	"popgate/pop3/wire"
)

// errNotAllDeleted means RCVD of an RDEL transaction could not delete
// every message sent.
var errNotAllDeleted = errors.New("pop1: not all mail sent could be deleted")

// transaction is an open mail reading transaction: the locked mailbox and
// the plan of the mail data, made when "#xxx" was announced.
type transaction struct {
	sess   *mailstore.Session
	folder string
	del    bool      // RDEL: delete at RCVD
	msgs   []planned // what RCEV sends, in order
	total  int64     // the announced "#xxx"
}

// planned is one message of the mail data.
type planned struct {
	n      int    // session message number
	sep    string // its "From " line, without CRLF
	quoted int64  // octets of its quoted form
}

// userCmd is USER name: remember the name. The store checks nothing until
// PASS, so USER never tells whether a user exists.
func (c *conn) userCmd(cmd command) error {
	if cmd.arg == "" {
		return &protoError{"USER needs a name"}
	}
	c.user = cmd.arg
	c.ok("send PASS")
	return nil
}

// pass is PASS password: log in. The password is neither logged nor
// echoed; a failure sends the client back to USER (Diagram, p.5).
func (c *conn) pass(cmd command) error {
	user := c.user
	c.user = ""
	acct, err := c.s.opts.Store.Login(c.ctx, user, cmd.arg)
	if err != nil {
		return fmt.Errorf("PASS for %q: %w", user, err)
	}
	c.acct = acct
	c.log = c.log.With().Str("user", acct.User()).Logger()
	c.log.Info().Msg("logged in")
	c.ok("logged in")
	return nil
}

// resolve maps a RETR or RDEL argument to a folder of the account
// (FLAG-918-MAILBOX): empty, INBOX in any case, or the user's own name
// (the 1984 mailbox was named after its owner) mean the default folder;
// any other name must be one of Account.Folders, exactly.
func (c *conn) resolve(name string) (string, error) {
	if name == "" || strings.EqualFold(name, mailstore.Inbox) || strings.EqualFold(name, c.acct.User()) {
		return mailstore.Inbox, nil
	}
	folders, err := c.acct.Folders(c.ctx)
	if err != nil {
		return "", fmt.Errorf("listing folders: %w", err)
	}
	for _, f := range folders {
		if f == name {
			return f, nil
		}
	}
	return "", fmt.Errorf("folder %q: %w", name, mailstore.ErrNoSuchFolder)
}

// open is RETR or RDEL mailbox: open and lock the folder, size the mail
// data by reading every message once, and announce "#xxx".
func (c *conn) open(cmd command) error {
	folder, err := c.resolve(cmd.arg)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd.verb, err)
	}
	md, err := c.acct.Open(c.ctx, folder)
	if err != nil {
		return fmt.Errorf("%s %s: %w", cmd.verb, folder, err)
	}
	sess, err := mailstore.NewSession(c.ctx, md)
	if err != nil {
		return fmt.Errorf("%s %s: %w", cmd.verb, folder, err)
	}
	tx := &transaction{sess: sess, folder: folder, del: cmd.in == inRDEL}
	if err := c.plan(tx); err != nil {
		_ = sess.Close()
		return fmt.Errorf("%s %s: %w", cmd.verb, folder, err)
	}
	c.tx = tx
	c.log.Info().Str("folder", folder).Bool("delete", tx.del).Int("messages", len(tx.msgs)).
		Int64("octets", tx.total).Msg("transaction started")
	c.count(tx.total, len(tx.msgs), folder)
	return nil
}

// plan reads every message of the snapshot once to compute its separator
// and quoted size, so that "#xxx" is exact before anything is sent.
func (c *conn) plan(tx *transaction) error {
	for _, m := range tx.sess.List() {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		rc, err := tx.sess.Open(c.ctx, m.N)
		if err != nil {
			return err
		}
		sep, quoted, err := planMessage(rc)
		_ = rc.Close()
		if err != nil {
			return fmt.Errorf("message %d: %w", m.N, err)
		}
		tx.msgs = append(tx.msgs, planned{n: m.N, sep: sep, quoted: quoted})
		tx.total += entrySize(sep, quoted)
	}
	return nil
}

// rcev sends exactly the announced octets. Anything else (a store that
// changed a message, a write error) closes the connection at once: RFC
// 918's "(connection aborted)" (p.3). Nothing has been deleted then.
func (c *conn) rcev() wire.Ending {
	tx := c.tx
	if c.s.opts.OKBeforeData {
		c.ok("mail data follow")
	}
	fw := &framedWriter{w: c.wc.Writer(), left: tx.total}
	for _, m := range tx.msgs {
		if err := c.sendEntry(fw, m); err != nil {
			ev := c.log.Info()
			if errors.Is(err, mailstore.ErrSizeMismatch) || errors.Is(err, errOverrun) {
				ev = c.log.Error()
			}
			ev.Err(err).Int("msg", m.n).Int64("announced", tx.total).Msg("RCEV failed mid-transfer: closing, nothing deleted")
			return wire.CloseAtOnce
		}
	}
	if fw.left != 0 {
		c.log.Error().Int64("announced", tx.total).Int64("missing", fw.left).
			Msg("RCEV: mail data shorter than announced: closing, nothing deleted")
		return wire.CloseAtOnce
	}
	c.log.Debug().Int64("octets", tx.total).Msg("mail data sent")
	return wire.KeepOpen
}

func (c *conn) sendEntry(fw *framedWriter, m planned) error {
	rc, err := c.tx.sess.Open(c.ctx, m.n)
	if err != nil {
		return err
	}
	defer rc.Close()
	return writeEntry(fw, m.sep, rc, c.wc.ExtendWrite)
}

// rcvd ends the transaction. For RDEL it deletes exactly the messages
// sent, and answers negatively if not all of them could be deleted; for
// RETR it marks them seen. Either way the mailbox is unlocked.
func (c *conn) rcvd() error {
	tx := c.tx
	c.tx = nil
	marked := 0
	for _, m := range tx.msgs {
		if !tx.del {
			tx.sess.MarkRetrieved(m.n)
			continue
		}
		if err := tx.sess.Delete(m.n); err != nil {
			c.log.Warn().Err(err).Int("msg", m.n).Msg("RCVD: marking for deletion failed")
			continue
		}
		marked++
	}
	n, err := tx.sess.Commit(c.ctx)
	switch {
	case err != nil && tx.del:
		return fmt.Errorf("RCVD %s: %w: %w", tx.folder, errNotAllDeleted, err)
	case err != nil:
		return fmt.Errorf("RCVD %s: %w", tx.folder, err)
	case tx.del && marked != len(tx.msgs):
		return fmt.Errorf("RCVD %s: %d of %d marked: %w", tx.folder, marked, len(tx.msgs), errNotAllDeleted)
	}
	c.log.Info().Str("folder", tx.folder).Int("deleted", n).Msg("transaction ended")
	if tx.del {
		c.ok(fmt.Sprintf("%d messages deleted, mailbox unlocked", n))
	} else {
		c.ok("mail kept, mailbox unlocked")
	}
	return nil
}

// abort ends an open transaction without deleting anything and unlocks
// the mailbox: RSET, QUIT, a hang-up, a timeout, a shutdown.
func (c *conn) abort(why string) {
	if c.tx == nil {
		return
	}
	tx := c.tx
	c.tx = nil
	if err := tx.sess.Close(); err != nil {
		c.log.Warn().Err(err).Msg("releasing mailbox")
	}
	c.log.Info().Str("folder", tx.folder).Str("why", why).Msg("transaction aborted: nothing deleted")
}
