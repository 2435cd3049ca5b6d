package upstream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/emersion/go-sasl"

	"popgate/mailstore"
	"popgate/mailstore/users"
)

// Users is the local users database of mapped mode ([users.DB] is one):
// it checks the local password, and its entries' extra fields name the
// upstream account.
type Users interface {
	users.Authenticator
	Lookup(user string) (users.User, bool)
}

// Extra-field keys of a users-file entry in mapped mode.
const (
	// KeyUser is the upstream login name. Required.
	KeyUser = "upstream_user"
	// KeyPass is the upstream (app) password, sent with LOGIN, AUTH=PLAIN
	// or USER/PASS.
	KeyPass = "upstream_pass"
	// KeyTokenCommand is a program whose standard output is an OAuth2
	// access token for the upstream account. It is run, without a shell,
	// with the upstream login as its only argument.
	KeyTokenCommand = "upstream_token_command"
	// KeyAuth chooses the upstream mechanism: "login" (the default with
	// upstream_pass), "xoauth2" or "oauthbearer" (with a token command; by
	// default the one the upstream offers, OAUTHBEARER first).
	KeyAuth = "upstream_auth"
)

// Upstream mechanisms (values of KeyAuth).
const (
	authLogin       = "login"
	authXOAuth2     = "xoauth2"
	authOAuthBearer = "oauthbearer"
)

// DefaultTokenTimeout bounds a token command when Options.TokenTimeout is
// zero.
const DefaultTokenTimeout = 20 * time.Second

// maxToken bounds a token command's output.
const maxToken = 16 << 10

// credential is what a session logs in upstream with. Its String never
// shows the secret, so a stray %v cannot leak it.
type credential struct {
	// login is the upstream login name; it also keys the maildrop locks.
	login string
	// password is the upstream password (pass-through or upstream_pass).
	password string
	// mapped is set in mapped mode; local is then the local user.
	mapped bool
	local  string
	// tokenCmd runs to get an OAuth2 access token; auth is the mechanism
	// (authLogin, authXOAuth2, authOAuthBearer or "" to choose).
	tokenCmd string
	auth     string
}

func (c *credential) String() string   { return "credential for " + sanitize(c.login) }
func (c *credential) GoString() string { return c.String() }

// oauth reports whether c authenticates with an OAuth2 token.
func (c *credential) oauth() bool { return c.tokenCmd != "" }

// mapping reads the upstream account from a users-file entry.
func mapping(u users.User) (*credential, error) {
	c := &credential{mapped: true, local: u.Name}
	for k, v := range u.Extra {
		switch k {
		case KeyUser:
			c.login = v
		case KeyPass:
			c.password = v
		case KeyTokenCommand:
			c.tokenCmd = v
		case KeyAuth:
			c.auth = strings.ToLower(v)
		}
	}
	switch {
	case c.login == "":
		return nil, fmt.Errorf("no %s= extra field", KeyUser)
	case strings.ContainsAny(c.login, "\r\n\x00"):
		return nil, fmt.Errorf("%s= holds a control character", KeyUser)
	case c.password != "" && c.tokenCmd != "":
		return nil, fmt.Errorf("both %s= and %s= given: choose one", KeyPass, KeyTokenCommand)
	case c.password == "" && c.tokenCmd == "":
		return nil, fmt.Errorf("neither %s= nor %s= given", KeyPass, KeyTokenCommand)
	}
	switch c.auth {
	case "":
	case authLogin:
		if c.password == "" {
			return nil, fmt.Errorf("%s=login needs %s=", KeyAuth, KeyPass)
		}
	case authXOAuth2, authOAuthBearer:
		if c.tokenCmd == "" {
			return nil, fmt.Errorf("%s=%s needs %s=", KeyAuth, c.auth, KeyTokenCommand)
		}
	default:
		return nil, fmt.Errorf("%s=%q: want login, xoauth2 or oauthbearer", KeyAuth, c.auth)
	}
	return c, nil
}

// mappedLogin checks the local password and returns the upstream
// credential of the local user. The upstream is not contacted.
func (s *Store) mappedLogin(ctx context.Context, user, password string) (*credential, error) {
	id, err := s.opts.Users.Authenticate(ctx, user, password)
	if err != nil {
		return nil, fmt.Errorf("upstream: local login: %w", err)
	}
	u, ok := s.opts.Users.Lookup(id.User)
	if !ok {
		// Removed between the two calls (a reload).
		return nil, fmt.Errorf("upstream: local login %q: %w", sanitize(user), mailstore.ErrAuthFailed)
	}
	c, err := mapping(u)
	if err != nil {
		s.log.Warn().Str("user", sanitize(id.User)).Str("problem", err.Error()).Msg("users file: no usable upstream account for this user")
		return nil, fmt.Errorf("upstream: local user %q: no usable upstream account: %w", sanitize(id.User), mailstore.ErrPermanent)
	}
	return c, nil
}

// mappedErr turns an upstream's refusal of a mapped credential into
// ErrPermanent, with a warning: the local password was right, so the
// users file (or the token command) needs the administrator, and the POP
// client should not be told to retype its password.
func (s *Store) mappedErr(c *credential, err error) error {
	if !c.mapped || !errors.Is(err, mailstore.ErrAuthFailed) {
		return err
	}
	s.log.Warn().Str("user", sanitize(c.local)).Str("upstream_user", sanitize(c.login)).Str("upstream", s.addr).
		Msg("the upstream rejected the mapped credentials: check the users file's upstream_pass or token command")
	return fmt.Errorf("upstream: %s rejected the credentials of local user %q (%v): %w", s.addr, sanitize(c.local), err, mailstore.ErrPermanent)
}

// token runs c's token command and returns its output, an OAuth2 access
// token. The output is bounded and never logged or put in an error; the
// command's standard error is discarded.
func (s *Store) token(ctx context.Context, c *credential) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.TokenTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.tokenCmd, c.login)
	cmd.Env = append(os.Environ(), "POPGATE_USER="+c.local, "POPGATE_UPSTREAM_USER="+c.login)
	out := &boundedBuffer{max: maxToken}
	cmd.Stdout = out
	// A grandchild holding stdout open must not hang the login.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	tok := strings.TrimSpace(string(out.buf))
	out.wipe()
	fail := func(why string) (string, error) {
		return "", fmt.Errorf("upstream: token command for %q: %s", sanitize(c.login), why)
	}
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fail(fmt.Sprintf("timed out after %s", s.opts.TokenTimeout))
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fail(ee.ProcessState.String()) // "exit status 1", never output
		}
		return fail(err.Error())
	case out.over:
		return fail(fmt.Sprintf("output longer than %d bytes", maxToken))
	case tok == "":
		return fail("empty output")
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] <= 0x20 || tok[i] >= 0x7f {
			return fail("output is not one token (blank or control character inside)")
		}
	}
	return tok, nil
}

// boundedBuffer keeps at most max bytes and swallows the rest, so that a
// chatty command is not blocked on a full pipe.
type boundedBuffer struct {
	buf  []byte
	max  int
	over bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if room := b.max - len(b.buf); len(p) > room {
		b.over = true
		b.buf = append(b.buf, p[:max(room, 0)]...)
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *boundedBuffer) wipe() { clear(b.buf) }

// saslFor returns the SASL client for an OAuth2 credential: mech is
// authXOAuth2 or authOAuthBearer.
func saslFor(mech, login, token, host string) sasl.Client {
	if mech == authOAuthBearer {
		return &oauthBearer{Client: sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: login, Token: token, Host: host})}
	}
	return &xoauth2{user: login, token: token}
}

// chooseOAuth picks the mechanism for c among those the upstream offers
// (has reports an AUTH=/SASL mechanism). An explicit upstream_auth is used
// as it is.
func chooseOAuth(c *credential, has func(mech string) bool) (string, error) {
	if c.auth == authXOAuth2 || c.auth == authOAuthBearer {
		return c.auth, nil
	}
	switch {
	case has(sasl.OAuthBearer):
		return authOAuthBearer, nil
	case has("XOAUTH2"):
		return authXOAuth2, nil
	}
	return "", fmt.Errorf("upstream offers neither OAUTHBEARER nor XOAUTH2 (set %s= to try one anyway): %w", KeyAuth, mailstore.ErrPermanent)
}

// xoauth2 is the client side of Google's and Microsoft's XOAUTH2 SASL
// mechanism. go-sasl dropped its XOAUTH2 client (the mechanism is not an
// IETF standard; RFC 7628 OAUTHBEARER replaced it), but Microsoft's IMAP
// and POP3 servers accept only XOAUTH2, so popgate carries this one.
//
// The initial response is "user=" login ^A "auth=Bearer " token ^A ^A. A
// rejected token gets a challenge holding a JSON error; the client must
// answer it with an empty response, after which the server fails the
// command (NO / -ERR).
type xoauth2 struct {
	user, token string
}

func (x *xoauth2) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

func (x *xoauth2) Next([]byte) ([]byte, error) { return []byte{}, nil }

// oauthBearer wraps go-sasl's OAUTHBEARER client: on the error challenge
// that client returns an error, which would leave the IMAP AUTHENTICATE
// command unfinished; RFC 7628 §3.2.3 wants the dummy response ^A, after
// which the server fails the command and the failure is a plain rejected
// login.
type oauthBearer struct{ sasl.Client }

func (o *oauthBearer) Next(challenge []byte) ([]byte, error) {
	if _, err := o.Client.Next(challenge); err != nil {
		return []byte{0x01}, nil
	}
	return []byte{}, nil
}
