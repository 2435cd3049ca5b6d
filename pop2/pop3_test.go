package pop2

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"popgate/pop2/pop2client"
	"popgate/pop3"
	"popgate/pop3/wire/wiretest"
)

// TestSameMailboxThroughPOP3 reads a mailbox through POP2, deletes one
// message with ACKD and QUIT, then looks at it through popgate's POP3
// front end: the counts, the sizes and the deletion must agree.
func TestSameMailboxThroughPOP3(t *testing.T) {
	msgs := []string{"Subject: a\n\nfirst\n", "Subject: b\n\n.\nsecond\n", "Subject: c\n\nth\xe9rd"}
	st := newStore(t, "fred", "secret", map[string][]string{"INBOX": msgs})
	c, err := pop2client.Dial(context.Background(), serve(t, Options{Store: st}))
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.Helo("fred", "secret")
	if err != nil || n != 3 {
		t.Fatalf("Helo = %d, %v", n, err)
	}
	var sizes []int64
	for i := 1; i <= n; i++ {
		size, err := c.Read(i)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, size)
	}
	if _, err := c.Read(2); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Retr(sizes[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ackd(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}

	p3, err := pop3.New(pop3.Options{Store: st, Hostname: "pop3.test"})
	if err != nil {
		t.Fatal(err)
	}
	r := dialPOP3(t, wiretest.Serve(t, p3.ServeConn))
	r.Send("USER fred")
	r.Expect("+OK")
	r.Send("PASS secret")
	r.Expect("+OK")
	r.Send("STAT")
	if got, want := r.Expect("+OK"), fmt.Sprintf("+OK 2 %d", sizes[0]+sizes[2]); !strings.HasPrefix(got, want) {
		t.Errorf("STAT = %q, want %q (POP2 sizes %v less message 2)", got, want, sizes)
	}
	r.Send("LIST")
	r.Expect("+OK")
	for i, want := range []int64{sizes[0], sizes[2]} {
		if got := r.Expect(""); got != fmt.Sprintf("%d %d", i+1, want) {
			t.Errorf("LIST line %q, want %d %d", got, i+1, want)
		}
	}
	r.Expect(".")
	r.Send("QUIT")
	r.Expect("+OK")
}

func dialPOP3(t *testing.T, addr string) *raw {
	t.Helper()
	r := wiretest.Dial(t, addr)
	r.Expect("+OK")
	return r
}
