package pop2

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func fredStore(t *testing.T) (Options, func() []int64) {
	st := newStore(t, "fred", "secret", map[string][]string{
		"INBOX": {"Subject: 1\n\none\n", "Subject: 2\n\ntwo\n", "Subject: 3\n\nthree\n"},
		"old":   {"Subject: old\n\nold\n"},
	})
	return Options{Store: st}, func() []int64 { return folderSizes(t, st, "fred", "secret", "INBOX") }
}

func TestGreetingAndQuitInAuth(t *testing.T) {
	opts, _ := fredStore(t)
	r := dialRaw(t, serve(t, opts))
	r.Send("QUIT")
	r.Expect("+ ")
	r.ExpectClose()
}

func TestLowerCaseAndQuoting(t *testing.T) {
	st := newStore(t, `j smith`, `pa\ss word`, map[string][]string{"INBOX": {"x\n"}, "my box": {"y\n", "z\n"}})
	r := dialRaw(t, serve(t, Options{Store: st}))
	r.Send(`helo j\ smith pa\\ss\ word`)
	r.Expect("#1 ")
	r.Send(`fold my\ box`)
	r.Expect("#2 ")
	r.Send("read  2", "retr")
	r.Expect("=3 ")
	if got := r.Data(3); string(got) != "z\r\n" {
		t.Errorf("data %q", got)
	}
	r.Send("acks", "quit")
	r.Expect("=0 ")
	r.Expect("+ ")
}

func TestUnquotedSpaceInPassword(t *testing.T) {
	st := newStore(t, "fred", "two words", nil)
	r := dialRaw(t, serve(t, Options{Store: st}))
	r.Send("HELO fred two words")
	r.Expect("#0 ")
}

func TestBadLoginCloses(t *testing.T) {
	var logbuf bytes.Buffer
	opts, _ := fredStore(t)
	opts.Logger = zerolog.New(&logbuf)
	r := dialRaw(t, serve(t, opts))
	r.Send("HELO fred hunter2-wrong")
	r.Expect("- ")
	r.ExpectClose()
	if strings.Contains(logbuf.String(), "hunter2") {
		t.Errorf("the log holds the HELO password: %s", logbuf.String())
	}
}

func TestProtocolErrorsClose(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  []string // reply prefixes before the close; "" means data
	}{
		{"RETR before READ", []string{"HELO fred secret", "RETR"}, []string{"#3", "- "}},
		{"READ before HELO", []string{"READ 1"}, []string{"- "}},
		{"unknown command", []string{"HELO fred secret", "STAT"}, []string{"#3", "- "}},
		{"ACKS in ITEM", []string{"HELO fred secret", "READ 1", "ACKS"}, []string{"#3", "=", "- "}},
		{"QUIT in NEXT", []string{"HELO fred secret", "READ 3", "RETR", "QUIT"}, []string{"#3", "=21 ", "", "- "}},
		{"argument to RETR", []string{"HELO fred secret", "READ 1", "RETR 1"}, []string{"#3", "=", "- "}},
		{"bad READ number", []string{"HELO fred secret", "READ x"}, []string{"#3", "- "}},
		{"RETR of =0", []string{"HELO fred secret", "READ 9", "RETR"}, []string{"#3", "=0 "}},
		{"empty line", []string{""}, []string{"- "}},
		{"HELO twice", []string{"HELO fred secret", "HELO fred secret"}, []string{"#3", "- "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, sizes := fredStore(t)
			r := dialRaw(t, serve(t, opts))
			r.Send(tc.lines...)
			for _, w := range tc.want {
				if w == "" {
					r.Data(21)
					continue
				}
				r.Expect(w)
			}
			r.ExpectClose()
			if got := sizes(); len(got) != 3 {
				t.Errorf("after a protocol error %d messages left, want 3", len(got))
			}
		})
	}
}

func TestReadOutOfRangeAndDeleted(t *testing.T) {
	opts, _ := fredStore(t)
	r := dialRaw(t, serve(t, opts))
	r.Send("HELO fred secret", "READ 0", "READ 4", "READ 99999999999999999999999", "READ 1", "RETR", "ACKD", "READ 1", "READ 2", "QUIT")
	r.Expect("#3 ")
	r.Expect("=0 ")
	r.Expect("=0 ")
	r.Expect("=0 ")
	r.Expect("=19 ")
	r.Data(19)
	r.Expect("=19 ") // ACKD announces message 2
	r.Expect("=0 ")  // message 1 is marked deleted
	r.Expect("=19 ")
	r.Expect("+ ")
}

func TestAckdThenQuitRemoves(t *testing.T) {
	opts, sizes := fredStore(t)
	r := dialRaw(t, serve(t, opts))
	r.Send("HELO fred secret", "READ 2", "RETR", "ACKD", "QUIT")
	r.Expect("#3 ")
	r.Expect("=19 ")
	r.Data(19)
	r.Expect("=21 ")
	r.Expect("+ ")
	r.ExpectClose()
	if got := sizes(); len(got) != 2 || got[1] != 21 {
		t.Errorf("left %v, want messages 1 and 3", got)
	}
}

func TestAckdThenHangupKeeps(t *testing.T) {
	opts, sizes := fredStore(t)
	r := dialRaw(t, serve(t, opts))
	r.Send("HELO fred secret", "READ 1", "RETR", "ACKD")
	r.Expect("#3 ")
	r.Expect("=19 ")
	r.Data(19)
	r.Expect("=19 ")
	_ = r.Conn.Close()
	if got := sizes(); len(got) != 3 {
		t.Errorf("after a hang-up %d messages left, want 3", len(got))
	}
}

func TestFoldCommitsPreviousFolder(t *testing.T) {
	opts, sizes := fredStore(t)
	r := dialRaw(t, serve(t, opts))
	r.Send("HELO fred secret", "READ 1", "RETR", "ACKD", "FOLD old")
	r.Expect("#3 ")
	r.Expect("=19 ")
	r.Data(19)
	r.Expect("=19 ")
	r.Expect("#1 ")
	// INBOX was released at FOLD: its deletion is already done, and the
	// folder is free while the session goes on in "old".
	if got := sizes(); len(got) != 2 {
		t.Errorf("after FOLD %d messages left in INBOX, want 2", len(got))
	}
	r.Send("READ 1", "RETR", "ACKD", "FOLD inbox")
	r.Expect("=21 ")
	r.Data(21)
	r.Expect("=0 ")
	r.Expect("#2 ")
	r.Send("FOLD nonesuch", "READ", "QUIT")
	r.Expect("#0 ")
	r.Expect("=0 ")
	r.Expect("+ ")
	r.ExpectClose()
	if got := folderSizes(t, opts.Store, "fred", "secret", "old"); len(got) != 0 {
		t.Errorf("old holds %v, want nothing", got)
	}
}

func TestLockedFolder(t *testing.T) {
	opts, _ := fredStore(t)
	addr := serve(t, opts)
	first := dialRaw(t, addr)
	first.Send("HELO fred secret")
	first.Expect("#3 ")
	second := dialRaw(t, addr)
	second.Send("HELO fred secret")
	second.Expect("- [IN-USE]")
	second.ExpectClose()
	third := dialRaw(t, addr)
	first.Send("FOLD old")
	first.Expect("#1 ")
	third.Send("HELO fred secret", "FOLD old")
	third.Expect("#3 ")
	third.Expect("- [IN-USE]")
	third.ExpectClose()
}

func TestOverlongLine(t *testing.T) {
	opts, _ := fredStore(t)
	r := dialRaw(t, serve(t, opts))
	r.Send("HELO fred secret")
	r.Expect("#3 ")
	r.Send("FOLD " + strings.Repeat("a", 506)) // 511 + CRLF = 513 octets
	r.Expect("- ")
	r.ExpectClose()
	r2 := dialRaw(t, serve(t, opts))
	r2.Send("HELO fred secret", "FOLD "+strings.Repeat("a", 505)) // exactly 512
	r2.Expect("#3 ")
	r2.Expect("#0 ")
}

func TestTimeouts(t *testing.T) {
	opts, sizes := fredStore(t)
	opts.AuthTimeout = 100 * time.Millisecond
	opts.IdleTimeout = 300 * time.Millisecond
	addr := serve(t, opts)
	r := dialRaw(t, addr)
	r.Expect("- Autologout")
	r.ExpectClose()

	r = dialRaw(t, addr)
	r.Send("HELO fred secret", "READ 1", "RETR", "ACKD")
	r.Expect("#3 ")
	r.Expect("=")
	r.Data(19)
	r.Expect("=")
	r.Expect("- Autologout")
	r.ExpectClose()
	if got := sizes(); len(got) != 3 {
		t.Errorf("after a timeout %d messages left, want 3", len(got))
	}
}

func TestMaxErrorsLenient(t *testing.T) {
	opts, _ := fredStore(t)
	opts.MaxErrors = 3
	r := dialRaw(t, serve(t, opts))
	r.Send("NOOP", "HELO fred secret", "STAT", "RSET")
	r.Expect("- ")
	r.Expect("#3 ")
	r.Expect("- ")
	r.Expect("- ")
	r.ExpectClose()
}

func TestShutdownDoesNotCommit(t *testing.T) {
	opts, _ := fredStore(t)
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr, accepted := listenOnce(t, srv, ctx)
	r := dialRaw(t, addr)
	r.Send("HELO fred secret", "READ 1", "RETR", "ACKD")
	r.Expect("#3 ")
	r.Expect("=")
	r.Data(19)
	r.Expect("=")
	cancel()
	<-accepted
	r.ExpectClose()
	if got := folderSizes(t, opts.Store, "fred", "secret", "INBOX"); len(got) != 3 {
		t.Errorf("after shutdown %d messages left, want 3", len(got))
	}
}
