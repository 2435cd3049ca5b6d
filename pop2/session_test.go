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
	r.send("QUIT")
	r.expect("+ ")
	r.expectClose()
}

func TestLowerCaseAndQuoting(t *testing.T) {
	st := newStore(t, `j smith`, `pa\ss word`, map[string][]string{"INBOX": {"x\n"}, "my box": {"y\n", "z\n"}})
	r := dialRaw(t, serve(t, Options{Store: st}))
	r.send(`helo j\ smith pa\\ss\ word`)
	r.expect("#1 ")
	r.send(`fold my\ box`)
	r.expect("#2 ")
	r.send("read  2", "retr")
	r.expect("=3 ")
	if got := r.data(3); string(got) != "z\r\n" {
		t.Errorf("data %q", got)
	}
	r.send("acks", "quit")
	r.expect("=0 ")
	r.expect("+ ")
}

func TestUnquotedSpaceInPassword(t *testing.T) {
	st := newStore(t, "fred", "two words", nil)
	r := dialRaw(t, serve(t, Options{Store: st}))
	r.send("HELO fred two words")
	r.expect("#0 ")
}

func TestBadLoginCloses(t *testing.T) {
	var logbuf bytes.Buffer
	opts, _ := fredStore(t)
	opts.Logger = zerolog.New(&logbuf)
	r := dialRaw(t, serve(t, opts))
	r.send("HELO fred hunter2-wrong")
	r.expect("- ")
	r.expectClose()
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
			r.send(tc.lines...)
			for _, w := range tc.want {
				if w == "" {
					r.data(21)
					continue
				}
				r.expect(w)
			}
			r.expectClose()
			if got := sizes(); len(got) != 3 {
				t.Errorf("after a protocol error %d messages left, want 3", len(got))
			}
		})
	}
}

func TestReadOutOfRangeAndDeleted(t *testing.T) {
	opts, _ := fredStore(t)
	r := dialRaw(t, serve(t, opts))
	r.send("HELO fred secret", "READ 0", "READ 4", "READ 99999999999999999999999", "READ 1", "RETR", "ACKD", "READ 1", "READ 2", "QUIT")
	r.expect("#3 ")
	r.expect("=0 ")
	r.expect("=0 ")
	r.expect("=0 ")
	r.expect("=19 ")
	r.data(19)
	r.expect("=19 ") // ACKD announces message 2
	r.expect("=0 ")  // message 1 is marked deleted
	r.expect("=19 ")
	r.expect("+ ")
}

func TestAckdThenQuitRemoves(t *testing.T) {
	opts, sizes := fredStore(t)
	r := dialRaw(t, serve(t, opts))
	r.send("HELO fred secret", "READ 2", "RETR", "ACKD", "QUIT")
	r.expect("#3 ")
	r.expect("=19 ")
	r.data(19)
	r.expect("=21 ")
	r.expect("+ ")
	r.expectClose()
	if got := sizes(); len(got) != 2 || got[1] != 21 {
		t.Errorf("left %v, want messages 1 and 3", got)
	}
}

func TestAckdThenHangupKeeps(t *testing.T) {
	opts, sizes := fredStore(t)
	r := dialRaw(t, serve(t, opts))
	r.send("HELO fred secret", "READ 1", "RETR", "ACKD")
	r.expect("#3 ")
	r.expect("=19 ")
	r.data(19)
	r.expect("=19 ")
	_ = r.conn.Close()
	if got := sizes(); len(got) != 3 {
		t.Errorf("after a hang-up %d messages left, want 3", len(got))
	}
}

func TestFoldCommitsPreviousFolder(t *testing.T) {
	opts, sizes := fredStore(t)
	r := dialRaw(t, serve(t, opts))
	r.send("HELO fred secret", "READ 1", "RETR", "ACKD", "FOLD old")
	r.expect("#3 ")
	r.expect("=19 ")
	r.data(19)
	r.expect("=19 ")
	r.expect("#1 ")
	// INBOX was released at FOLD: its deletion is already done, and the
	// folder is free while the session goes on in "old".
	if got := sizes(); len(got) != 2 {
		t.Errorf("after FOLD %d messages left in INBOX, want 2", len(got))
	}
	r.send("READ 1", "RETR", "ACKD", "FOLD inbox")
	r.expect("=21 ")
	r.data(21)
	r.expect("=0 ")
	r.expect("#2 ")
	r.send("FOLD nonesuch", "READ", "QUIT")
	r.expect("#0 ")
	r.expect("=0 ")
	r.expect("+ ")
	r.expectClose()
	if got := folderSizes(t, opts.Store, "fred", "secret", "old"); len(got) != 0 {
		t.Errorf("old holds %v, want nothing", got)
	}
}

func TestLockedFolder(t *testing.T) {
	opts, _ := fredStore(t)
	addr := serve(t, opts)
	first := dialRaw(t, addr)
	first.send("HELO fred secret")
	first.expect("#3 ")
	second := dialRaw(t, addr)
	second.send("HELO fred secret")
	second.expect("- [IN-USE]")
	second.expectClose()
	third := dialRaw(t, addr)
	first.send("FOLD old")
	first.expect("#1 ")
	third.send("HELO fred secret", "FOLD old")
	third.expect("#3 ")
	third.expect("- [IN-USE]")
	third.expectClose()
}

func TestOverlongLine(t *testing.T) {
	opts, _ := fredStore(t)
	r := dialRaw(t, serve(t, opts))
	r.send("HELO fred secret")
	r.expect("#3 ")
	r.send("FOLD " + strings.Repeat("a", 506)) // 511 + CRLF = 513 octets
	r.expect("- ")
	r.expectClose()
	r2 := dialRaw(t, serve(t, opts))
	r2.send("HELO fred secret", "FOLD "+strings.Repeat("a", 505)) // exactly 512
	r2.expect("#3 ")
	r2.expect("#0 ")
}

func TestTimeouts(t *testing.T) {
	opts, sizes := fredStore(t)
	opts.AuthTimeout = 100 * time.Millisecond
	opts.IdleTimeout = 300 * time.Millisecond
	addr := serve(t, opts)
	r := dialRaw(t, addr)
	r.expect("- Autologout")
	r.expectClose()

	r = dialRaw(t, addr)
	r.send("HELO fred secret", "READ 1", "RETR", "ACKD")
	r.expect("#3 ")
	r.expect("=")
	r.data(19)
	r.expect("=")
	r.expect("- Autologout")
	r.expectClose()
	if got := sizes(); len(got) != 3 {
		t.Errorf("after a timeout %d messages left, want 3", len(got))
	}
}

func TestMaxErrorsLenient(t *testing.T) {
	opts, _ := fredStore(t)
	opts.MaxErrors = 3
	r := dialRaw(t, serve(t, opts))
	r.send("NOOP", "HELO fred secret", "STAT", "RSET")
	r.expect("- ")
	r.expect("#3 ")
	r.expect("- ")
	r.expect("- ")
	r.expectClose()
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
	r.send("HELO fred secret", "READ 1", "RETR", "ACKD")
	r.expect("#3 ")
	r.expect("=")
	r.data(19)
	r.expect("=")
	cancel()
	<-accepted
	r.expectClose()
	if got := folderSizes(t, opts.Store, "fred", "secret", "INBOX"); len(got) != 3 {
		t.Errorf("after shutdown %d messages left, want 3", len(got))
	}
}
