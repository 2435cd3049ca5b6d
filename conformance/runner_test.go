package conformance

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"popgate/mailstore"
	"popgate/mailstore/memstore"
)

// runFake parses src and runs it against the fake server over a fresh
// memstore.
func runFake(t *testing.T, r Runner, src string) (*Result, error) {
	t.Helper()
	s, err := Parse("test.txtar", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	st := memstore.New()
	tgt, err := NewStoreTarget(context.Background(), st, fakeServer(st))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := tgt.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	if r.Timeout == 0 {
		r.Timeout = 2 * time.Second
	}
	return r.Run(context.Background(), s, tgt)
}

const fixtures = `
-- hello.eml --
Subject: hello

Hi.
.
.dot
-- bare.bytes --
"Subject: bare\n"
"\nno final newline"
`

func TestRunPasses(t *testing.T) {
	src := `# Everything the runner offers, against the fake server.
proto: pop3
user: mrose password=tanstaaf
mailbox: mrose INBOX = hello bare
banner: +OK ${...} ${ts~<[^>]+>}

# Placeholders: free text, binding, a bound repeat, sizes.
C: ECHO alpha beta
S: +OK ${first} ${...}
C: ECHO ${first} again
S: +OK ${first} ${word~[a-z]{5}}
C: ECHO ${size hello} ${size bare} ${ts}
S: +OK ${size hello} 35 ${ts}
C: ECHO 77
S~ \+OK (?P<num>[0-9]+)
C: ECHO ${num}
S: +OK 77
C: APOP mrose ${apop mrose ts}
S: +OK ${...}

# Bytes, pipelined: two commands in one write.
C= "ECHO one\r\n" "ECHO two\r\n"
S: +OK one
S: +OK two

C: RETR 1
S: +OK ${...}
S< hello dot
C: RETR 2
S~ \+OK .*
S< bare dot
C: TOP 1 0
S: +OK ${...}
S< hello top 0
C: TOP 1 99
S: +OK ${...}
S< hello top 99

# A second connection finds the folder locked.
! conn 2
C: USER mrose
S: +OK
C: PASS tanstaaf
S: -ERR [IN-USE] ${...}
! hangup
! conn 1
C: DELE 1
S: +OK deleted
C: QUIT
S: +OK bye
! expect-close
! expect-mailbox mrose INBOX = bare
! sleep 1ms
` + fixtures
	if _, err := runFake(t, Runner{}, src); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestRunHangupRemovesNothing(t *testing.T) {
	src := `proto: pop3
user: u password=p
mailbox: u INBOX = hello bare
S: +OK ${...}
C: USER u
S: +OK
C: PASS p
S: +OK ${...}
C: DELE 1
S: +OK ${...}
! hangup
! expect-mailbox u INBOX = hello bare
` + fixtures
	if _, err := runFake(t, Runner{}, src); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestRunFailures(t *testing.T) {
	head := "proto: pop3\nuser: u password=p\nmailbox: u INBOX = hello bare\nS: +OK ${...}\n"
	tests := []struct {
		name  string
		body  string
		line  int
		wants []string // substrings of the error
	}{
		{"literal", "# The echo must come back.\nC: ECHO x\nS: +OK y\n", 7,
			[]string{"test.txtar:7: S: +OK y", "narration: The echo must come back.", `want: "+OK y\r\n"`, `got:  "+OK x\r\n"`}},
		{"bound repeat", "C: ECHO a\nS: +OK ${v}\nC: ECHO b\nS: +OK ${v}\n", 8,
			[]string{"test.txtar:8:", `got:  "+OK b\r\n"`, "patterns"}},
		{"regexp", "C: ECHO 12\nS~ \\+OK [a-z]+\n", 6, []string{`matching "\\+OK [a-z]+"`, `"+OK 12\r\n"`}},
		{"timeout", "C: SILENT\nS: +OK\n", 6, []string{"deadline", "got:  (nothing)"}},
		{"closed", "C: QUIT\nS: +OK bye\nS: +OK more\n", 7, []string{"closed the connection"}},
		{"fixture", "C: USER u\nS: +OK\nC: PASS p\nS: +OK ${...}\nC: RETR 2\nS: +OK ${...}\nS< hello dot\n", 11,
			[]string{"S< hello dot", "octet 9 of", `got:  "Subject: bare`}},
		{"mailbox", "C: QUIT\nS: +OK ${...}\n! expect-mailbox u INBOX = bare\n", 7,
			[]string{"holds 2 messages [hello bare], want 1 [bare]"}},
		{"not closed", "C: ECHO x\n! expect-close\n", 6, []string{"more octets arrived", `"+OK x\r\n"`}},
		{"hung up", "! hangup\nC: ECHO x\n", 6, []string{"connection 1 was hung up"}},
		{"unbound", "C: ECHO ${nope}\n", 5, []string{"${nope} is not bound yet"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runFake(t, Runner{Timeout: 300 * time.Millisecond}, head+tt.body+fixtures)
			var f *Failure
			if !errors.As(err, &f) {
				t.Fatalf("Run = %v, want a *Failure", err)
			}
			if f.Line != tt.line {
				t.Errorf("Failure.Line = %d, want %d", f.Line, tt.line)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestRunUpdate(t *testing.T) {
	src := "proto: pop3\nS: +OK ${...}\nC: ECHO x\nS: +OK y\nC: ECHO \x01\nS~ nothing\nC: ECHO z\nS: +OK z\n"
	res, err := runFake(t, Runner{Update: true}, src)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := string(Rewrite([]byte(src), res.Fixes))
	want := "proto: pop3\nS: +OK ${...}\nC: ECHO x\nS: +OK x\nC: ECHO \x01\nS~ \\+OK \\x01\nC: ECHO z\nS: +OK z\n"
	if got != want {
		t.Errorf("Rewrite =\n%q\nwant\n%q", got, want)
	}
}

func TestRequiresSkips(t *testing.T) {
	_, err := runFake(t, Runner{}, "proto: pop3\nrequires: teleport\nC: ECHO x\n")
	if !errors.Is(err, ErrSkip) || !strings.Contains(err.Error(), "teleport") {
		t.Fatalf("Run = %v, want a skip naming the feature", err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"C: X\n", "no proto: header"},
		{"proto: pop3\nfrobnicate: 1\n", `:2: unknown header "frobnicate"`},
		{"proto: pop3\nS: ${size}\n", ":2: bad placeholder ${size}"},
		{"proto: pop3\nS: +OK ${x\n", "unclosed placeholder"},
		{"proto: pop3\nS: ${x~(}\n", "missing closing )"},
		{"proto: pop3\nS~ (\n", "S~:"},
		{"proto: pop3\nC= STAT\n", "want a Go-quoted string"},
		{"proto: pop3\nS< m bogus\n", "want NAME raw"},
		{"proto: pop3\nS< m dot\n", `:2: S< names fixture "m"`},
		{"proto: pop3\nmailbox: u INBOX = m\n", `names user "u"`},
		{"proto: pop3\nuser: u password=p\nmailbox: u INBOX = m\n", `names fixture "m"`},
		{"proto: pop3\nuser: u pass=p\n", "unknown attribute"},
		{"proto: pop3\nC: ${size m}\n", "${size m}: no such fixture"},
		{"proto: pop3\nC: ${apop u ts}\n", `user "u" has no user: header`},
		{"proto: pop3\n! conn 0\n", "bad number"},
		{"proto: pop3\n! sleep soon\n", "bad duration"},
		{"proto: pop3\n! dance\n", "unknown directive"},
		{"proto: pop3\nSTAT\n", "unrecognised line"},
		{"proto: pop3\n-- m.txt --\nx\n", "must end in .eml or .bytes"},
		{"proto: pop3\n-- m.bytes --\n\"a\" b\n", "want a Go-quoted string"},
	}
	for _, tt := range tests {
		_, err := Parse("f.txtar", []byte(tt.src))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tt.src, err, tt.want)
		}
	}
}

func TestParseScript(t *testing.T) {
	src := "# intro\nproto: pop3\nuser: a password=p apop=s\nmailbox: a inbox = m n\nrequires: apop popgate\n\n" +
		"# one\n# two\nC= \"A\\x00\" \"B\"\nS:\n" +
		"-- m.eml --\nx\n-- n.bytes --\n\"y\\n\"\n# comment\n\"z\"\n"
	s, err := Parse("f", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if s.Proto != "pop3" || len(s.Users) != 1 || s.Users[0] != (User{Name: "a", Password: "p", APOP: "s"}) {
		t.Errorf("headers: %+v", s)
	}
	if s.Users[0].Secret() != "s" {
		t.Errorf("Secret = %q", s.Users[0].Secret())
	}
	if len(s.Mailboxes) != 1 || s.Mailboxes[0].Folder != mailstore.Inbox || strings.Join(s.Mailboxes[0].Fixtures, ",") != "m,n" {
		t.Errorf("mailbox: %+v", s.Mailboxes)
	}
	if strings.Join(s.Requires, ",") != "apop,popgate" {
		t.Errorf("requires: %q", s.Requires)
	}
	if len(s.Steps) != 2 || s.Steps[0].Arg != "A\x00B" || s.Steps[0].Narration != "one two" || s.Steps[0].Line != 9 {
		t.Errorf("C= step: %+v", s.Steps)
	}
	if s.Steps[1].Kind != StepLine || s.Steps[1].Arg != "" {
		t.Errorf("S: step: %+v", s.Steps[1])
	}
	if got := string(s.Fixtures["m"].CRLF); got != "x\r\n" {
		t.Errorf("m.eml CRLF = %q", got)
	}
	if got := string(s.Fixtures["n"].Raw); got != "y\nz" {
		t.Errorf("n.bytes Raw = %q", got)
	}
	if got := string(s.Fixtures["n"].CRLF); got != "y\r\nz\r\n" {
		t.Errorf("n.bytes CRLF = %q", got)
	}
	if !s.NeedsStore() {
		t.Error("NeedsStore = false")
	}
}

func TestLineMatcher(t *testing.T) {
	e := &env{vars: map[string]string{"ts": "<1.2@x>"}, script: &Script{Fixtures: map[string]*Fixture{"m": {CRLF: []byte("abc\r\n")}}}}
	tests := []struct {
		pat, line string
		ok        bool
		binds     map[string]string
	}{
		{"+OK", "+OK", true, nil},
		{"+OK", "+OK ", false, nil},
		{"+OK${...}", "+OK", true, nil},
		{"+OK ${...}", "+OK hello there", true, nil},
		{"1 ${uid}", "1 abc", true, map[string]string{"uid": "abc"}},
		{"1 ${uid}", "1 a c", false, nil},
		{"${a} ${a}", "x x", true, map[string]string{"a": "x"}},
		{"${a} ${a}", "x y", false, nil},
		{"${n~[0-9]{2}}(", "42(", true, map[string]string{"n": "42"}},
		{"${n~(a|b)+} ${m}", "abba c", true, map[string]string{"n": "abba", "m": "c"}},
		{"+OK ${size m} ${ts}", "+OK 5 <1.2@x>", true, nil},
		{"+OK ${size m}", "+OK 6", false, nil},
		{"a.b*", "a.b*", true, nil},
		{"a.b*", "axbb", false, nil},
	}
	for _, tt := range tests {
		m, err := compileLine(tt.pat, e)
		if err != nil {
			t.Errorf("compileLine(%q): %v", tt.pat, err)
			continue
		}
		binds, ok := m.match([]byte(tt.line))
		if ok != tt.ok {
			t.Errorf("compileLine(%q).match(%q) = %v, want %v", tt.pat, tt.line, ok, tt.ok)
			continue
		}
		for k, v := range tt.binds {
			if binds[k] != v {
				t.Errorf("compileLine(%q).match(%q) binds %s=%q, want %q", tt.pat, tt.line, k, binds[k], v)
			}
		}
	}
}

func TestAPOPDigest(t *testing.T) {
	// RFC 1939 §7's example.
	if got := APOPDigest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf"); got != "c4c9334bac560ecc979e58001b3e22fb" {
		t.Errorf("APOPDigest = %s", got)
	}
}

func TestFixtureBytes(t *testing.T) {
	fx := &Fixture{CRLF: []byte("A: 1\r\n.B: 2\r\n\r\nx\r\n.\r\n..y\r\n")}
	tests := []struct {
		mode string
		n    int
		want string
	}{
		{"raw", 0, "A: 1\r\n.B: 2\r\n\r\nx\r\n.\r\n..y\r\n"},
		{"dot", 0, "A: 1\r\n..B: 2\r\n\r\nx\r\n..\r\n...y\r\n.\r\n"},
		{"top", 0, "A: 1\r\n..B: 2\r\n\r\n.\r\n"},
		{"top", 2, "A: 1\r\n..B: 2\r\n\r\nx\r\n..\r\n.\r\n"},
		{"top", 9, "A: 1\r\n..B: 2\r\n\r\nx\r\n..\r\n...y\r\n.\r\n"},
	}
	for _, tt := range tests {
		if got := fixtureBytes(fx, tt.mode, tt.n); !bytes.Equal(got, []byte(tt.want)) {
			t.Errorf("fixtureBytes(%s %d) = %q, want %q", tt.mode, tt.n, got, tt.want)
		}
	}
}

type mappedTarget struct {
	*StoreTarget
}

func (mappedTarget) MapUser(u User) User { return User{Name: "real", Password: "realpw"} }

func TestCredentialMapping(t *testing.T) {
	src := "proto: pop3\nuser: mrose password=tanstaaf\nS: +OK ${...} ${ts~<.*>}\n" +
		"C: ECHO mrose tanstaaf mrose2 ${apop mrose ts}\n" +
		"S: +OK real realpw mrose2 " + APOPDigest(fakeTimestamp, "realpw") + "\n"
	s, err := Parse("m", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	st := memstore.New()
	tgt, err := NewStoreTarget(context.Background(), st, fakeServer(st))
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	if err := Run(context.Background(), s, mappedTarget{tgt}); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
