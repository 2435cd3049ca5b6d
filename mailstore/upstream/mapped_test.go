package upstream_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
	"github.com/rs/zerolog"

	"popgate/mailstore"
	"popgate/mailstore/storetest"
	"popgate/mailstore/upstream"
	"popgate/mailstore/users"
	"popgate/pop3/wire/wiretest"
)

// Secrets the tests look for in logs and errors.
const (
	appPass  = "APP-PASSWORD-s3cr3t"
	theToken = "ya29.TOKEN-s3cr3t-0123456789"
	localPW  = "local-pw"
)

// logBuf is a zerolog logger at debug level writing to a buffer.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuf) logger() zerolog.Logger { return zerolog.New(l).Level(zerolog.DebugLevel) }

// noSecrets fails if s shows any of the test secrets.
func noSecrets(t *testing.T, what, s string) {
	t.Helper()
	for _, sec := range []string{appPass, theToken, localPW, "s3cr3t"} {
		if strings.Contains(s, sec) {
			t.Errorf("%s shows a secret (%q): %s", what, sec, s)
		}
	}
}

// localUsers is a users database with one local user mapped by extra.
func localUsers(t testing.TB, local string, extra map[string]string) *users.DB {
	t.Helper()
	db := users.NewMemory()
	if err := db.Add(users.User{Name: local, Scheme: users.Plain, Secret: localPW, Extra: extra}); err != nil {
		t.Fatal(err)
	}
	return db
}

// tokenScript writes a token command that prints body's output, after
// checking its argument and environment.
func tokenScript(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "get-token")
	script := "#!/bin/sh\n" +
		`[ "$1" = alice@example.com ] || { echo "bad arg $1" >&2; exit 3; }` + "\n" +
		`[ "$POPGATE_USER" = oldmac ] || exit 4` + "\n" +
		`[ "$POPGATE_UPSTREAM_USER" = alice@example.com ] || exit 5` + "\n" +
		body + "\n"
	if err := os.WriteFile(p, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

func inboxCount(t *testing.T, acct mailstore.Account) int {
	t.Helper()
	md, err := acct.Open(testCtx(t), mailstore.Inbox)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer md.Close()
	list, err := md.Messages(testCtx(t))
	if err != nil {
		t.Fatalf("Messages: %v", err)
	}
	return len(list)
}

// TestMappedAppPassword logs in a local user whose entry maps to an
// upstream account with an app password, over IMAP and POP3.
func TestMappedAppPassword(t *testing.T) {
	for _, proto := range []string{"imaps", "pop3s"} {
		t.Run(proto, func(t *testing.T) {
			var url, ca string
			var prov provisioner
			if proto == "imaps" {
				up := startIMAP(t, nil, false)
				url, ca, prov = up.url(), up.caFile, up
			} else {
				up := startPOP3(t, false)
				url, ca, prov = up.url(), up.caFile, up
			}
			ctx := testCtx(t)
			if err := prov.AddUser(ctx, "alice@example.com", appPass); err != nil {
				t.Fatal(err)
			}
			if err := prov.Deliver(ctx, "alice@example.com", "", []byte("Subject: hi\r\n\r\nhello\r\n")); err != nil {
				t.Fatal(err)
			}
			var logs logBuf
			db := localUsers(t, "oldmac", map[string]string{"upstream_user": "alice@example.com", "upstream_pass": appPass})
			s := newStore(t, upstream.Options{URL: url, CAFile: ca, Users: db, Logger: logs.logger()})

			acct, err := s.Login(ctx, "oldmac", localPW)
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			if acct.User() != "oldmac" {
				t.Errorf("User() = %q, want the local name", acct.User())
			}
			if n := inboxCount(t, acct); n != 1 {
				t.Errorf("INBOX has %d messages, want 1", n)
			}
			_ = acct.Close()

			// The upstream credentials are not a local password.
			_, err = s.Login(ctx, "alice@example.com", appPass)
			if !errors.Is(err, mailstore.ErrAuthFailed) {
				t.Errorf("login with the upstream credentials = %v, want ErrAuthFailed", err)
			} else {
				noSecrets(t, "error", err.Error())
			}

			// A wrong upstream password is the administrator's problem.
			if err := db.Add(users.User{Name: "oldmac", Scheme: users.Plain, Secret: localPW,
				Extra: map[string]string{"upstream_user": "alice@example.com", "upstream_pass": "wrong-s3cr3t"}}); err != nil {
				t.Fatal(err)
			}
			_, err = s.Login(ctx, "oldmac", localPW)
			if !errors.Is(err, mailstore.ErrPermanent) || errors.Is(err, mailstore.ErrAuthFailed) {
				t.Errorf("login with a wrong upstream_pass = %v, want ErrPermanent only", err)
			} else {
				noSecrets(t, "error", err.Error())
			}
			noSecrets(t, "log", logs.String())
			if !strings.Contains(logs.String(), "rejected the mapped credentials") {
				t.Errorf("no warning about the rejected mapping in the log:\n%s", logs.String())
			}
		})
	}
}

// countingListener is an upstream that counts connections and answers
// nothing.
func countingListener(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			_ = c.Close()
		}
	}()
	return ln.Addr().String(), &n
}

// TestMappedWrongLocalPassword checks that local failures never reach the
// upstream, and that a user without a usable mapping is refused.
func TestMappedWrongLocalPassword(t *testing.T) {
	addr, conns := countingListener(t)
	var logs logBuf
	db := localUsers(t, "oldmac", map[string]string{"upstream_user": "alice@example.com", "upstream_pass": appPass})
	if err := db.Add(users.User{Name: "nomap", Scheme: users.Plain, Secret: localPW}); err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{"imaps://" + addr, "pop3s://" + addr} {
		s := newStore(t, upstream.Options{URL: url, Users: db, Logger: logs.logger()})
		for _, c := range []struct{ user, pass string }{
			{"oldmac", "wrong"}, {"oldmac", appPass}, {"nobody", localPW}, {"alice@example.com", appPass},
		} {
			_, err := s.Login(testCtx(t), c.user, c.pass)
			if !errors.Is(err, mailstore.ErrAuthFailed) {
				t.Errorf("%s: Login(%q, %q) = %v, want ErrAuthFailed", url, c.user, c.pass, err)
			}
		}
		_, err := s.Login(testCtx(t), "nomap", localPW)
		if !errors.Is(err, mailstore.ErrPermanent) {
			t.Errorf("%s: Login of a user without upstream_user = %v, want ErrPermanent", url, err)
		}
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("the upstream was contacted %d times", n)
	}
	noSecrets(t, "log", logs.String())
}

// TestMappedStoretest runs the backend suite through mapped credentials:
// each user's local password differs from its upstream one.
func TestMappedStoretest(t *testing.T) {
	for _, c := range []struct {
		name  string
		start func(t *testing.T) (string, string, provisioner)
		one   bool
	}{{"IMAPS", imapStart(nil, false), false}, {"POP3S", pop3Start(false), true}} {
		t.Run(c.name, func(t *testing.T) {
			h := storetest.Harness{
				New: func(t *testing.T) storetest.Backend {
					url, ca, prov := c.start(t)
					o := upstream.Options{URL: url, CAFile: ca, Users: users.NewMemory()}
					return &mappedBackend{Store: newStore(t, o), opts: o, prov: prov}
				},
				Reopen: func(t *testing.T, b storetest.Backend) storetest.Backend {
					old := b.(*mappedBackend)
					return &mappedBackend{Store: newStore(t, old.opts), opts: old.opts, prov: old.prov}
				},
				SingleFolder: c.one,
			}
			storetest.Run(t, h)
		})
	}
}

type mappedBackend struct {
	*upstream.Store
	opts upstream.Options
	prov provisioner
}

func (b *mappedBackend) AddUser(ctx context.Context, user, password string) error {
	if err := b.prov.AddUser(ctx, "up-"+user, "up-"+password); err != nil {
		return err
	}
	return b.opts.Users.(*users.DB).Add(users.User{Name: user, Scheme: users.Plain, Secret: password,
		Extra: map[string]string{"upstream_user": "up-" + user, "upstream_pass": "up-" + password}})
}

func (b *mappedBackend) Deliver(ctx context.Context, user, folder string, msg []byte) error {
	return b.prov.Deliver(ctx, "up-"+user, folder, msg)
}

// oauthSession is an imapmemserver session that also accepts a fixed
// OAuth2 token with XOAUTH2 and OAUTHBEARER.
type oauthSession struct {
	imapserver.Session
	mechs []string
	token string
	pass  string // the upstream user's password in the memserver
	used  *sync.Map
}

func (s *oauthSession) AuthenticateMechanisms() []string { return s.mechs }

func (s *oauthSession) Authenticate(mech string) (sasl.Server, error) {
	s.used.Store(mech, true)
	switch mech {
	case "OAUTHBEARER":
		return noErr{sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			if o.Token != s.token || o.Username != "alice@example.com" || s.Session.Login(o.Username, s.pass) != nil {
				return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
			}
			return nil
		})}, nil
	case "XOAUTH2":
		return &xoauth2Server{check: func(user, token string) bool {
			return token == s.token && user == "alice@example.com" && s.Session.Login(user, s.pass) == nil
		}}, nil
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "unsupported mechanism"}
}

// noErr turns go-sasl's plain errors into the NO [AUTHENTICATIONFAILED]
// a real server sends (imapserver would say SERVERBUG).
type noErr struct{ sasl.Server }

func (n noErr) Next(resp []byte) ([]byte, bool, error) {
	c, done, err := n.Server.Next(resp)
	if err != nil {
		err = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "invalid token"}
	}
	return c, done, err
}

// xoauth2Server is the server side of XOAUTH2, as Gmail plays it: a bad
// token gets a JSON challenge, and the client's empty answer a failure.
type xoauth2Server struct {
	check  func(user, token string) bool
	failed bool
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.failed {
		return nil, true, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "invalid credentials"}
	}
	if resp == nil {
		return []byte{}, false, nil
	}
	if user, token, ok := parseXOAuth2(resp); ok && x.check(user, token) {
		return nil, true, nil
	}
	x.failed = true
	return []byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`), false, nil
}

func parseXOAuth2(resp []byte) (user, token string, ok bool) {
	s, found := strings.CutSuffix(string(resp), "\x01\x01")
	if !found {
		return "", "", false
	}
	u, a, found := strings.Cut(s, "\x01")
	if !found || !strings.HasPrefix(u, "user=") || !strings.HasPrefix(a, "auth=Bearer ") {
		return "", "", false
	}
	return strings.TrimPrefix(u, "user="), strings.TrimPrefix(a, "auth=Bearer "), true
}

// startOAuthIMAP serves an imapmemserver over TLS whose sessions accept
// token through mechs (and LOGIN with the password, which the gateway
// must not need).
func startOAuthIMAP(t *testing.T, mechs []string, token string) (*imapUpstream, *sync.Map) {
	t.Helper()
	srvTLS, caFile := testCert(t)
	up := &imapUpstream{mem: imapmemserver.New(), caFile: caFile, scheme: "imaps", users: map[string]*imapmemserver.User{}}
	used := &sync.Map{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &oauthSession{Session: up.mem.NewSession(), mechs: mechs, token: token, pass: "never-used-pw", used: used}, nil, nil
		},
		// IMAP4rev1 only: the wrapper hides the memserver session's
		// IMAP4rev2 methods.
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		Logger:       log.New(io.Discard, "", 0),
		InsecureAuth: true,
	})
	ln = tls.NewListener(ln, srvTLS)
	up.addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	if err := up.AddUser(testCtx(t), "alice@example.com", "never-used-pw"); err != nil {
		t.Fatal(err)
	}
	if err := up.Deliver(testCtx(t), "alice@example.com", "", []byte("Subject: oauth\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	return up, used
}

// fakePOP3 is a POP3-over-TLS upstream with one message that accepts
// only AUTH with token.
func fakePOP3(t *testing.T, mechs, token string) (url, caFile string, used *sync.Map) {
	t.Helper()
	srvTLS, caFile := testCert(t)
	used = &sync.Map{}
	addr := wiretest.Serve(t, func(ctx context.Context, raw net.Conn) {
		conn := tls.Server(raw, srvTLS)
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(conn)
		say := func(s string) { _, _ = io.WriteString(conn, s+"\r\n") }
		say("+OK fake upstream")
		authed := false
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			f := strings.Fields(strings.TrimSpace(line))
			if len(f) == 0 {
				say("-ERR empty")
				continue
			}
			switch verb := strings.ToUpper(f[0]); {
			case verb == "CAPA":
				say("+OK\r\nSASL " + mechs + "\r\nUIDL\r\n.")
			case verb == "AUTH" && len(f) == 3:
				used.Store(strings.ToUpper(f[1]), true)
				ir, _ := base64.StdEncoding.DecodeString(f[2])
				var ok bool
				switch strings.ToUpper(f[1]) {
				case "XOAUTH2":
					user, tok, good := parseXOAuth2(ir)
					ok = good && user == "alice@example.com" && tok == token
				case "OAUTHBEARER":
					s := string(ir)
					ok = strings.HasPrefix(s, "n,a=alice@example.com,") && strings.Contains(s, "\x01auth=Bearer "+token+"\x01\x01")
				}
				if ok {
					authed = true
					say("+OK welcome")
					continue
				}
				say("+ " + base64.StdEncoding.EncodeToString([]byte(`{"status":"invalid_token"}`)))
				if _, err := br.ReadString('\n'); err != nil {
					return
				}
				say("-ERR [AUTH] invalid token")
			case !authed:
				say("-ERR [AUTH] authenticate first")
			case verb == "NOOP":
				say("+OK")
			case verb == "STAT":
				say("+OK 1 18")
			case verb == "LIST":
				say("+OK\r\n1 18\r\n.")
			case verb == "UIDL":
				say("+OK\r\n1 uid-one\r\n.")
			case verb == "QUIT":
				say("+OK bye")
				return
			default:
				say("-ERR unknown")
			}
		}
	})
	return "pop3s://" + addr, caFile, used
}

// TestOAuth logs in with a token from a token command, through each
// mechanism and protocol, and checks failures and that the token appears
// in no log (at debug level) and no error.
func TestOAuth(t *testing.T) {
	type upstreamCase struct {
		name  string
		start func(t *testing.T, token string) (url, ca string, used *sync.Map)
		auth  string // upstream_auth; "" lets the gateway choose
		want  string // mechanism expected upstream
	}
	imapWith := func(mechs ...string) func(t *testing.T, token string) (string, string, *sync.Map) {
		return func(t *testing.T, token string) (string, string, *sync.Map) {
			up, used := startOAuthIMAP(t, mechs, token)
			return up.url(), up.caFile, used
		}
	}
	popWith := func(mechs string) func(t *testing.T, token string) (string, string, *sync.Map) {
		return func(t *testing.T, token string) (string, string, *sync.Map) {
			return fakePOP3(t, mechs, token)
		}
	}
	cases := []upstreamCase{
		{"IMAP/choose-oauthbearer", imapWith("XOAUTH2", "OAUTHBEARER"), "", "OAUTHBEARER"},
		{"IMAP/choose-xoauth2", imapWith("XOAUTH2"), "", "XOAUTH2"},
		{"IMAP/forced-xoauth2", imapWith("XOAUTH2", "OAUTHBEARER"), "xoauth2", "XOAUTH2"},
		{"POP3/choose-oauthbearer", popWith("PLAIN XOAUTH2 OAUTHBEARER"), "", "OAUTHBEARER"},
		{"POP3/choose-xoauth2", popWith("XOAUTH2"), "", "XOAUTH2"},
		{"POP3/forced-oauthbearer", popWith("XOAUTH2"), "oauthbearer", "OAUTHBEARER"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url, ca, used := c.start(t, theToken)
			var logs logBuf
			extra := map[string]string{
				"upstream_user":          "alice@example.com",
				"upstream_token_command": tokenScript(t, "echo "+theToken),
			}
			if c.auth != "" {
				extra["upstream_auth"] = c.auth
			}
			db := localUsers(t, "oldmac", extra)
			s := newStore(t, upstream.Options{URL: url, CAFile: ca, Users: db, Logger: logs.logger(), TokenTimeout: 300 * time.Millisecond})
			ctx := testCtx(t)

			acct, err := s.Login(ctx, "oldmac", localPW)
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			if n := inboxCount(t, acct); n != 1 {
				t.Errorf("INBOX has %d messages, want 1", n)
			}
			_ = acct.Close()
			if _, ok := used.Load(c.want); !ok {
				t.Errorf("upstream did not see %s", c.want)
			}

			check := func(what, script string, want error) {
				t.Helper()
				extra["upstream_token_command"] = tokenScript(t, script)
				if err := db.Add(users.User{Name: "oldmac", Scheme: users.Plain, Secret: localPW, Extra: extra}); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				_, err := s.Login(ctx, "oldmac", localPW)
				switch {
				case err == nil:
					t.Errorf("%s: Login succeeded", what)
				case want != nil && !errors.Is(err, want):
					t.Errorf("%s: Login = %v, want %v", what, err, want)
				case want == nil && (errors.Is(err, mailstore.ErrAuthFailed) || errors.Is(err, mailstore.ErrPermanent)):
					t.Errorf("%s: Login = %v, want a temporary error", what, err)
				}
				if err != nil {
					noSecrets(t, what+" error", err.Error())
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("%s: took %v", what, d)
				}
			}
			// The upstream refuses the token: not the POP client's fault.
			check("rejected token", "echo ya29.other-s3cr3t", mailstore.ErrPermanent)
			// The command fails, talks on stderr, hangs, floods or prints junk.
			check("failing command", "echo "+theToken+" >&2; echo "+theToken+"; exit 1", nil)
			check("hanging command", "echo "+theToken+"; sleep 10", nil)
			check("flooding command", "yes "+theToken+" | head -c 100000", nil)
			check("two words", "echo "+theToken+" "+theToken, nil)
			check("empty output", "true", nil)

			noSecrets(t, "log", logs.String())
			if !strings.Contains(logs.String(), `"level":"warn"`) {
				t.Errorf("no warning logged for the rejected token:\n%s", logs.String())
			}
		})
	}
}
