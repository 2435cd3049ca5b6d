package pop3

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

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
	if !c.passwordsAllowed() {
		return c.state, c.refuseCleartext("USER")
	}
	name := req.args[0]
	if c.utf8 && !utf8.ValidString(name) {
		return c.state, errBadUTF8
	}
	if c.srv.opts.Quirks.StripUserDomain {
		// Netscape 3 sends the whole address; the store knows the name.
		if local, _, ok := strings.Cut(name, "@"); ok && local != "" {
			name = local
		}
	}
	c.userNext = name
	c.reply("+OK send PASS")
	return c.state, nil
}

// cmdPass logs in with the name from the USER command just before. The
// password is the rest of the line, spaces included (RFC 1939 §7).
func (c *conn) cmdPass(req request) (State, error) {
	if c.user == "" {
		return c.state, errPassNoUser
	}
	if !c.passwordsAllowed() {
		return c.state, c.refuseCleartext("USER")
	}
	if err := c.checkCredentials(c.user, req.rest); err != nil {
		return c.state, c.loginRefused("USER", c.user, err)
	}
	acct, err := c.srv.opts.Store.Login(c.ctx, c.user, req.rest)
	return c.login("USER", c.user, acct, err)
}

// cmdAPOP logs in with an RFC 1939 §7 digest of the greeting's timestamp.
func (c *conn) cmdAPOP(req request) (State, error) {
	if c.srv.apop == nil || c.timestamp == "" {
		return c.state, errNoAPOP
	}
	if !c.passwordsAllowed() {
		return c.state, c.refuseCleartext("APOP")
	}
	name, digest := req.args[0], strings.ToLower(req.args[1])
	if err := c.checkCredentials(name, ""); err != nil {
		return c.state, c.loginRefused("APOP", name, err)
	}
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
		if errors.Is(err, mailstore.ErrAuthFailed) {
			c.srv.limiter.Failure(c.ip, c.hasIP, name)
		}
		return c.state, fmt.Errorf("login %q: %w", name, err)
	}
	if d := c.srv.opts.LoginDelay; d > 0 {
		if since, ok := c.srv.limiter.SinceLogin(acct.User()); ok && since < d {
			_ = acct.Close()
			c.log.Info().Str("user", acct.User()).Str("method", method).Dur("since", since).Msg("login refused: LOGIN-DELAY")
			return c.state, &loginDelayError{wait: d - since}
		}
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
	c.srv.limiter.Success(acct.User())
	c.log = c.log.With().Str("user", acct.User()).Logger()
	n, size, err := c.stat()
	if err != nil {
		// The maildrop is open but cannot be sized: give it back.
		_ = sess.Close()
		_ = acct.Close()
		c.account, c.sess = nil, nil
		return c.state, fmt.Errorf("sizing maildrop of %q: %w", acct.User(), err)
	}
	ev := c.log.Info()
	if !c.tls {
		// Logged once per session: a session logs in at most once.
		ev = c.log.Warn().Bool("cleartext", true)
	}
	ev.Str("method", method).Int("messages", n).Int64("octets", size).Msg("login")
	c.reply(fmt.Sprintf("+OK maildrop has %d %s (%d octets)", n, plural(n, "message"), size))
	return Transaction, nil
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// passwordsAllowed reports whether password logins are allowed on c now:
// over TLS always, without it as Options.Plaintext says.
func (c *conn) passwordsAllowed() bool { return c.tls || c.plainOK }

// refuseCleartext returns the refusal of a password login without TLS,
// logging the first one of the session.
func (c *conn) refuseCleartext(method string) error {
	if !c.refusalLogged {
		c.refusalLogged = true
		c.log.Warn().Str("method", method).Stringer("policy", c.srv.opts.Plaintext).
			Msg("cleartext login refused: TLS needed")
	}
	return &cleartextError{stls: c.srv.tlsConfig != nil && !c.tls}
}

// checkCredentials runs the checks that come before the store sees a
// login: valid UTF-8 once UTF8 is on (RFC 6856 §2), and the throttle.
func (c *conn) checkCredentials(user, password string) error {
	if c.utf8 && (!utf8.ValidString(user) || !utf8.ValidString(password)) {
		return errBadUTF8
	}
	if w := c.srv.limiter.Check(c.ip, c.hasIP, user); w > 0 {
		return &throttleError{wait: w}
	}
	return nil
}

// loginRefused logs a login that the checks stopped before the store.
func (c *conn) loginRefused(method, name string, err error) error {
	c.log.Info().Str("user", name).Str("method", method).Err(err).Msg("login refused")
	return err
}
