package pop3

import (
	"crypto/md5"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	msg1 = "From: a@example.test\r\nSubject: one\r\n\r\nHello.\r\n"
	msg2 = "From: b@example.test\r\nSubject: two\r\n\r\nline 1\r\nline 2\r\n"
)

var greetingRE = regexp.MustCompile(`^\+OK pop\.example\.test POP3 server ready (<[0-9]+\.[0-9]+\.[0-9]+@[A-Za-z0-9.@_+/-]+>)$`)

func TestNewRequiresStore(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New(Options{}) succeeded without a store")
	}
	s, err := New(Options{Store: &fakeStore{}})
	if err != nil {
		t.Fatal(err)
	}
	if s.opts.IdleTimeout != DefaultIdleTimeout || s.opts.AuthTimeout != DefaultAuthTimeout || s.opts.MaxErrors != DefaultMaxErrors {
		t.Errorf("defaults not applied: %+v", s.opts)
	}
}

func TestGreetingTimestamp(t *testing.T) {
	e := startServer(t, newMemStore(t), func(o *Options) { o.Hostname = "pop.example.test" })
	seen := map[string]bool{}
	for i := 0; i < 5; i++ {
		c := e.dial()
		m := greetingRE.FindStringSubmatch(c.greeting)
		if m == nil {
			t.Fatalf("greeting %q does not match %v", c.greeting, greetingRE)
		}
		if seen[m[1]] {
			t.Fatalf("timestamp %s repeated", m[1])
		}
		seen[m[1]] = true
	}
}

func TestGreetingWithoutAPOP(t *testing.T) {
	for name, e := range map[string]*env{
		"store without APOP": startServer(t, &fakeStore{}, nil),
		"DisableAPOP":        startServer(t, newMemStore(t), func(o *Options) { o.DisableAPOP = true }),
	} {
		c := e.dial()
		if c.greeting != "+OK pop.example.test POP3 server ready" {
			t.Errorf("%s: greeting %q", name, c.greeting)
		}
		c.want("APOP alice 0123456789abcdef0123456789abcdef", "-ERR APOP not available")
	}
}

func TestStampHost(t *testing.T) {
	for in, want := range map[string]string{
		"mail.example.com":    "mail.example.com",
		"weird host!.x..y.":   "weirdhost.x.y",
		"<evil>[x]":           "evilx",
		"":                    "localhost",
		"...":                 "localhost",
		"a_b-c.d":             "a_b-c.d",
		"\x00\xff.example.ok": "example.ok",
	} {
		if got := stampHost(in); got != want {
			t.Errorf("stampHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHostnameSanitized(t *testing.T) {
	e := startServer(t, &fakeStore{}, func(o *Options) { o.Hostname = "[evil] <host>\r\n" })
	c := e.dial()
	if c.greeting != "+OK evil host POP3 server ready" {
		t.Errorf("greeting %q", c.greeting)
	}
}

// TestRFC1939Session follows the example session of RFC 1939 §10 with
// USER/PASS, plus the per-command examples of §5 and §7.
func TestRFC1939Session(t *testing.T) {
	store := newMemStore(t, msg1, msg2)
	e := startServer(t, store, nil)
	c := e.dial()
	c.want("user "+testUser, "+OK ")
	if got := c.cmd("PASS " + testPass); got != "+OK maildrop has 2 messages (100 octets)" {
		t.Errorf("PASS: %q", got)
	}
	if got := c.cmd("STAT"); got != "+OK 2 100" {
		t.Errorf("STAT: %q", got)
	}
	c.want("LIST", "+OK 2 messages (100 octets)")
	if diff := cmp.Diff([]string{"1 46", "2 54"}, c.lines()); diff != "" {
		t.Errorf("LIST (-want +got):\n%s", diff)
	}
	if got := c.cmd("LIST 2"); got != "+OK 2 54" {
		t.Errorf("LIST 2: %q", got)
	}
	c.want("LIST 3", "-ERR no such message")
	c.want("UIDL", "+OK")
	uids := c.lines()
	if len(uids) != 2 || !strings.HasPrefix(uids[0], "1 ") || !strings.HasPrefix(uids[1], "2 ") {
		t.Fatalf("UIDL: %q", uids)
	}
	if got := c.cmd("UIDL 2"); got != "+OK "+uids[1] {
		t.Errorf("UIDL 2: %q, want %q", got, "+OK "+uids[1])
	}
	c.want("UIDL 3", "-ERR no such message")
	c.want("RETR 1", "+OK 46 octets")
	if got := c.body(); got != msg1 {
		t.Errorf("RETR 1 body %q", got)
	}
	c.want("DELE 1", "+OK message 1 deleted")
	if got := c.cmd("DELE 1"); got != "-ERR message 1 already deleted" {
		t.Errorf("DELE 1 again: %q", got)
	}
	c.want("RETR 1", "-ERR message 1 already deleted")
	c.want("LIST 1", "-ERR ")
	c.want("TOP 1 0", "-ERR ")
	c.want("UIDL 1", "-ERR ")
	c.want("STAT", "+OK 1 54")
	c.want("LIST", "+OK 1 message (54 octets)")
	if diff := cmp.Diff([]string{"2 54"}, c.lines()); diff != "" {
		t.Errorf("LIST after DELE (-want +got):\n%s", diff)
	}
	c.want("RSET", "+OK maildrop has 2 messages (100 octets)")
	c.want("NOOP", "+OK")
	c.want("DELE 2", "+OK message 2 deleted")
	c.want("QUIT", "+OK pop.example.test POP3 server signing off (1 message left)")
	c.closed()

	left := inbox(t, store, testUser, testPass)
	if len(left) != 1 || left[0].Size != 46 || !left[0].Seen {
		t.Errorf("after QUIT: %+v, want message 1 kept and seen", left)
	}
}

func TestQuitEmptyMaildrop(t *testing.T) {
	store := newMemStore(t, msg1)
	e := startServer(t, store, nil)
	c := e.login()
	c.want("DELE 1", "+OK")
	c.want("QUIT", "+OK pop.example.test POP3 server signing off (maildrop empty)")
	c.closed()
	if left := inbox(t, store, testUser, testPass); len(left) != 0 {
		t.Errorf("after QUIT: %d messages left", len(left))
	}
}

func TestQuitInAuthorization(t *testing.T) {
	e := startServer(t, newMemStore(t), nil)
	c := e.dial()
	c.want("QUIT", "+OK pop.example.test POP3 server signing off")
	c.closed()
}

func TestAPOP(t *testing.T) {
	store := newMemStore(t, msg1)
	e := startServer(t, store, nil)
	c := e.dial()
	ts := greetingRE.FindStringSubmatch(c.greeting)[1]
	sum := md5.Sum([]byte(ts + testPass))
	digest := hex.EncodeToString(sum[:])
	c.want("APOP "+testUser+" "+strings.Repeat("0", 32), "-ERR [AUTH] invalid user name or password")
	c.want("APOP "+testUser+" xyz", "-ERR ")
	c.want("APOP "+testUser, "-ERR ")
	// Upper-case hex is accepted too.
	c.want("APOP "+testUser+" "+strings.ToUpper(digest), "+OK maildrop has 1 message (46 octets)")
	c.want("APOP "+testUser+" "+digest, "-ERR command not valid in this state")
	c.want("STAT", "+OK 1 46")
	if !strings.Contains(e.logs.String(), `"method":"APOP"`) {
		t.Errorf("APOP login not logged")
	}
	if strings.Contains(strings.ToLower(e.logs.String()), digest) {
		t.Errorf("APOP digest reached the log")
	}
}

func TestUserPass(t *testing.T) {
	e := startServer(t, newMemStore(t, msg1), nil)
	c := e.dial()
	// Unknown users are not revealed at USER.
	c.want("USER nobody", "+OK ")
	c.want("PASS whatever", "-ERR [AUTH] invalid user name or password")
	// PASS must follow USER immediately.
	c.want("PASS "+testPass, "-ERR PASS must immediately follow a successful USER")
	c.want("USER "+testUser, "+OK ")
	c.want("NOOP", "-ERR command not valid in this state")
	c.want("PASS "+testPass, "-ERR PASS must immediately follow")
	c.want("USER "+testUser, "+OK ")
	c.want("PASS "+strings.TrimSpace(testPass), "-ERR [AUTH]")
	c.want("STAT", "-ERR command not valid in this state")
	c.want("USER "+testUser, "+OK ")
	c.want("PASS "+testPass, "+OK ")
	c.want("USER "+testUser, "-ERR command not valid in this state")
	c.want("PASS "+testPass, "-ERR command not valid in this state")
	logs := e.logs.String()
	for _, want := range []string{`"message":"login failed"`, `"user":"alice"`, `"message":"login"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

func TestCapa(t *testing.T) {
	e := startServer(t, newMemStore(t), func(o *Options) { o.Implementation = "popgate test" })
	want := []string{"TOP", "USER", "SASL PLAIN LOGIN CRAM-MD5", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "UIDL", "UTF8 USER", "LANG", "IMPLEMENTATION popgate-test"}
	c := e.dial()
	c.want("CAPA", "+OK ")
	if diff := cmp.Diff(want, c.lines()); diff != "" {
		t.Errorf("CAPA in AUTHORIZATION (-want +got):\n%s", diff)
	}
	c.want("USER "+testUser, "+OK ")
	c.want("PASS "+testPass, "+OK ")
	c.want("capa", "+OK ")
	if diff := cmp.Diff(want, c.lines()); diff != "" {
		t.Errorf("CAPA in TRANSACTION (-want +got):\n%s", diff)
	}
}
