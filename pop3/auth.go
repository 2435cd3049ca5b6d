package pop3

import (
	"fmt"
	"strings"

	"popgate/mailstore"
)

// registerAuthorization adds the RFC 1939 §7 authentication commands.
func registerAuthorization(t commandTable) {
	auth := []State{Authorization}
	t.add(&command{verb: "USER", states: auth, minArgs: 1, maxArgs: 1, handle: (*conn).cmdUser})
	t.add(&command{verb: "PASS", states: auth, minArgs: 1, maxArgs: -1, secret: true, handle: (*conn).cmdPass})
	t.add(&command{verb: "APOP", states: auth, minArgs: 2, maxArgs: 2, secret: true, handle: (*conn).cmdAPOP})
}

// cmdUser records the name for the next PASS. It answers +OK whether or
// not the user exists (RFC 1939 §7 allows it; RFC 3206 §5 advises against
// revealing users), so that the failure comes at PASS.
func (c *conn) cmdUser(req request) (State, error) {
	c.userNext = req.args[0]
	c.reply("+OK send PASS")
	return c.state, nil
}

// cmdPass logs in with the name from the USER command just before. The
// password is the rest of the line, spaces included (RFC 1939 §7).
func (c *conn) cmdPass(req request) (State, error) {
	if c.user == "" {
		return c.state, errPassNoUser
	}
	acct, err := c.srv.opts.Store.Login(c.ctx, c.user, req.rest)
	return c.login("USER", c.user, acct, err)
}

// cmdAPOP logs in with an RFC 1939 §7 digest of the greeting's timestamp.
func (c *conn) cmdAPOP(req request) (State, error) {
	if c.srv.apop == nil {
		return c.state, errNoAPOP
	}
	name, digest := req.args[0], strings.ToLower(req.args[1])
	if len(digest) != 32 || strings.Trim(digest, "0123456789abcdef") != "" {
		c.log.Info().Str("user", name).Str("method", "APOP").Msg("login failed: malformed digest")
		return c.state, errBadDigest
	}
	acct, err := c.srv.apop.LoginAPOP(c.ctx, name, c.timestamp, digest)
	return c.login("APOP", name, acct, err)
}

// login finishes a USER/PASS or APOP attempt: on success it locks the
// Inbox and enters TRANSACTION; on any failure the session stays in
// AUTHORIZATION.
func (c *conn) login(method, name string, acct mailstore.Account, err error) (State, error) {
	if err != nil {
		c.log.Info().Str("user", name).Str("method", method).Err(err).Msg("login failed")
		return c.state, fmt.Errorf("login %q: %w", name, err)
	}
	md, err := acct.Open(c.ctx, mailstore.Inbox)
	if err != nil {
		_ = acct.Close()
		c.log.Info().Str("user", acct.User()).Str("method", method).Err(err).Msg("login refused: cannot open maildrop")
		return c.state, fmt.Errorf("opening maildrop of %q: %w", acct.User(), err)
	}
	sess, err := mailstore.NewSession(c.ctx, md)
	if err != nil {
		_ = acct.Close()
		return c.state, fmt.Errorf("opening session of %q: %w", acct.User(), err)
	}
	c.account, c.sess = acct, sess
	c.log = c.log.With().Str("user", acct.User()).Logger()
	n, size := sess.Stat()
	c.log.Info().Str("method", method).Int("messages", n).Int64("octets", size).Msg("login")
	c.reply(fmt.Sprintf("+OK maildrop has %d %s (%d octets)", n, plural(n, "message"), size))
	return Transaction, nil
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
