package pop3

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"popgate/mailstore"
)

// rfc1939Summary is the command summary of RFC 1939 §9 reduced to verb
// and state: the minimal commands, then the optional ones.
var rfc1939Summary = map[string][]State{
	"USER": {Authorization},
	"PASS": {Authorization},
	"QUIT": {Authorization, Transaction},
	"STAT": {Transaction},
	"LIST": {Transaction},
	"RETR": {Transaction},
	"DELE": {Transaction},
	"NOOP": {Transaction},
	"RSET": {Transaction},
	"APOP": {Authorization},
	"TOP":  {Transaction},
	"UIDL": {Transaction},
}

// extensions are the table's rows that are not in RFC 1939 §9.
var extensions = map[string][]State{
	"CAPA": {Authorization, Transaction}, // RFC 2449 §5: no restriction
	"AUTH": {Authorization},              // RFC 5034 §4
	"STLS": {Authorization},              // RFC 2595 §4
	"UTF8": {Authorization},              // RFC 6856 §2
	"LANG": {Authorization, Transaction}, // RFC 6856 §3
}

func TestCommandTableMatchesRFC1939(t *testing.T) {
	want := map[string][]State{}
	for k, v := range rfc1939Summary {
		want[k] = v
	}
	for k, v := range extensions {
		want[k] = v
	}
	got := map[string][]State{}
	for verb, cmd := range newCommandTable(true) {
		if verb != strings.ToUpper(cmd.verb) {
			t.Errorf("row %q holds verb %q", verb, cmd.verb)
		}
		states := slices.Clone(cmd.states)
		slices.Sort(states)
		got[verb] = states
		if slices.Contains(states, Update) {
			t.Errorf("%s is legal in UPDATE, which takes no commands", verb)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("command table vs RFC 1939 §9 (-want +got):\n%s", diff)
	}
	for _, secret := range []string{"PASS", "APOP", "AUTH"} {
		if !newCommandTable(false)[secret].secret {
			t.Errorf("%s arguments are not marked secret", secret)
		}
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Authorization: "AUTHORIZATION", Transaction: "TRANSACTION", Update: "UPDATE", 9: "State(9)"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", s, got, want)
		}
	}
}

// TestTransactionErrors checks -ERR for bad arguments, numbers and states.
func TestTransactionErrors(t *testing.T) {
	e := startServer(t, newMemStore(t, msg1, msg2), func(o *Options) { o.MaxErrors = 1000 })
	c := e.login()
	tests := []struct{ cmd, want string }{
		{"STAT", "+OK 2 100"},
		{"stat", "+OK 2 100"},
		{"StAt", "+OK 2 100"},
		{"STAT ", "+OK 2 100"},
		{"LIST  2", "+OK 2 54"},
		{"LIST 02", "+OK 2 54"},
		{"STAT 1", "-ERR wrong number of arguments"},
		{"NOOP x", "-ERR wrong number of arguments"},
		{"RETR", "-ERR wrong number of arguments"},
		{"RETR 1 2", "-ERR wrong number of arguments"},
		{"TOP 1", "-ERR wrong number of arguments"},
		{"LIST 1 2", "-ERR wrong number of arguments"},
		{"DELE", "-ERR wrong number of arguments"},
		{"RETR 0", "-ERR no such message"},
		{"RETR 3", "-ERR no such message"},
		{"LIST 4294967296", "-ERR no such message"},
		{"LIST 4294967297", "-ERR no such message"},
		{"LIST 2147483648", "-ERR no such message"},
		{"RETR 99999999999999999999999999999999", "-ERR no such message"},
		{"DELE 18446744073709551617", "-ERR no such message"},
		{"UIDL 0", "-ERR no such message"},
		{"TOP 3 1", "-ERR no such message"},
		{"RETR -1", "-ERR invalid number"},
		{"RETR +1", "-ERR invalid number"},
		{"RETR 1a", "-ERR invalid number"},
		{"RETR abc", "-ERR invalid number"},
		{"RETR 0x1", "-ERR invalid number"},
		{"DELE 1.0", "-ERR invalid number"},
		{"TOP 1 -1", "-ERR invalid number"},
		{"TOP 1 x", "-ERR invalid number"},
		{"XYZZY", "-ERR unknown command"},
		{"LAST", "-ERR unknown command"},
		{"RPOP alice", "-ERR unknown command"},
		{"USER alice", "-ERR command not valid in this state"},
		{"APOP alice 0123456789abcdef0123456789abcdef", "-ERR command not valid in this state"},
		{" STAT", "-ERR syntax error"},
		{"STAT\tx", "-ERR invalid characters in command"},
		{"ST\x00AT", "-ERR invalid characters in command"},
		{"\xff\xfe", "-ERR unknown command"},
		{"", "-ERR empty command"},
		{"NOOP", "+OK"},
	}
	for _, tt := range tests {
		if got := c.cmd(tt.cmd); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.cmd, got, tt.want)
		}
	}
}

func TestAuthorizationErrors(t *testing.T) {
	e := startServer(t, newMemStore(t, msg1), func(o *Options) { o.MaxErrors = 1000 })
	c := e.dial()
	for _, tt := range []struct{ cmd, want string }{
		{"STAT", "-ERR command not valid in this state"},
		{"LIST", "-ERR command not valid in this state"},
		{"RETR 1", "-ERR command not valid in this state"},
		{"DELE 1", "-ERR command not valid in this state"},
		{"NOOP", "-ERR command not valid in this state"},
		{"RSET", "-ERR command not valid in this state"},
		{"TOP 1 1", "-ERR command not valid in this state"},
		{"UIDL", "-ERR command not valid in this state"},
		{"USER", "-ERR wrong number of arguments"},
		{"USER a b", "-ERR wrong number of arguments"},
		{"PASS", "-ERR wrong number of arguments"},
		{"APOP alice", "-ERR wrong number of arguments"},
	} {
		if got := c.cmd(tt.cmd); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.cmd, got, tt.want)
		}
	}
}

// TestReplyFor checks the one error-to-reply function, including that no
// error text ever reaches the reply.
func TestReplyFor(t *testing.T) {
	secret := errors.New("secret detail /var/mail/alice")
	tests := []struct {
		err    error
		reply  string
		counts bool
		fatal  bool
	}{
		{fmt.Errorf("x: %w: %w", mailstore.ErrAuthFailed, secret), "-ERR [AUTH] invalid user name or password", true, false},
		{fmt.Errorf("x: %w: %w", mailstore.ErrLocked, secret), "-ERR [IN-USE] maildrop already locked", false, false},
		{fmt.Errorf("x: %w: %w", mailstore.ErrPermanent, secret), "-ERR [SYS/PERM] maildrop unavailable, contact your administrator", false, false},
		{&msgError{3, fmt.Errorf("x: %w", mailstore.ErrMessageDeleted)}, "-ERR message 3 already deleted", false, false},
		{&msgError{9, mailstore.ErrNoSuchMessage}, "-ERR no such message", false, false},
		{fmt.Errorf("x: %w", mailstore.ErrSizeMismatch), "", false, true},
		{&fatalError{secret}, "", false, true},
		{&commitError{secret}, "-ERR [SYS/TEMP] some deleted messages not removed", false, false},
		{fmt.Errorf("wrapped: %w", errWrongState), "-ERR command not valid in this state", true, false},
		{secret, "-ERR [SYS/TEMP] temporary failure, try again later", false, false},
	}
	for _, tt := range tests {
		got := replyFor(tt.err)
		if got.reply != tt.reply || got.counts != tt.counts || got.fatal != tt.fatal {
			t.Errorf("replyFor(%v) = %+v, want reply %q counts %v fatal %v", tt.err, got, tt.reply, tt.counts, tt.fatal)
		}
		if strings.Contains(got.reply, "secret") {
			t.Errorf("replyFor(%v) leaks error text: %q", tt.err, got.reply)
		}
	}
}

func TestStoreErrorsOnTheWire(t *testing.T) {
	tests := []struct {
		name  string
		store *fakeStore
		cmd   string
		want  string
	}{
		{"permanent open", &fakeStore{openErr: mailstore.ErrPermanent}, "PASS " + testPass, "-ERR [SYS/PERM] "},
		{"unknown open", &fakeStore{openErr: errors.New("disk on fire")}, "PASS " + testPass, "-ERR [SYS/TEMP] "},
		{"locked", &fakeStore{openErr: mailstore.ErrLocked}, "PASS " + testPass, "-ERR [IN-USE] maildrop already locked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startServer(t, tt.store, nil)
			c := e.dial()
			c.want("USER "+testUser, "+OK")
			got := c.want(tt.cmd, tt.want)
			if strings.Contains(got, "fire") || strings.Contains(got, "fake") {
				t.Errorf("error detail on the wire: %q", got)
			}
			c.want("NOOP", "-ERR command not valid in this state")
		})
	}
}

func TestReadErrorBeforeReply(t *testing.T) {
	store := &fakeStore{msgs: []fakeMsg{{"u1", "a\r\n", -1}}, readErr: errors.New("io error at sector 7")}
	e := startServer(t, store, nil)
	c := e.login()
	got := c.want("RETR 1", "-ERR [SYS/TEMP] ")
	if strings.Contains(got, "sector") {
		t.Errorf("detail on the wire: %q", got)
	}
	c.want("NOOP", "+OK")
	if !strings.Contains(e.logs.String(), "sector 7") {
		t.Errorf("detail not logged")
	}
}

func TestCommitFailure(t *testing.T) {
	store := &fakeStore{msgs: []fakeMsg{{"u1", "a\r\n", -1}, {"u2", "b\r\n", -1}}, commitErr: errors.New("unlink: permission denied")}
	e := startServer(t, store, nil)
	c := e.login()
	c.want("RETR 2", "+OK")
	c.body()
	c.want("DELE 1", "+OK")
	if got := c.cmd("QUIT"); got != "-ERR [SYS/TEMP] some deleted messages not removed" {
		t.Errorf("QUIT: %q", got)
	}
	c.closed()
	changes, _ := store.result()
	want := &mailstore.Changes{Deleted: []string{"u1"}, Seen: []string{"u2"}}
	if diff := cmp.Diff(want, changes); diff != "" {
		t.Errorf("commit (-want +got):\n%s", diff)
	}
	if !strings.Contains(e.logs.String(), "permission denied") {
		t.Errorf("commit failure not logged:\n%s", e.logs.String())
	}
}
