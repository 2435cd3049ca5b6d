package pop2

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"popgate/pop2/pop2client"
	"popgate/pop3"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err == nil {
			p3.ServeConn(context.Background(), conn)
		}
	}()
	r := dialPOP3(t, ln.Addr().String())
	r.send("USER fred")
	r.expect("+OK")
	r.send("PASS secret")
	r.expect("+OK")
	r.send("STAT")
	if got, want := r.expect("+OK"), fmt.Sprintf("+OK 2 %d", sizes[0]+sizes[2]); !strings.HasPrefix(got, want) {
		t.Errorf("STAT = %q, want %q (POP2 sizes %v less message 2)", got, want, sizes)
	}
	r.send("LIST")
	r.expect("+OK")
	for i, want := range []int64{sizes[0], sizes[2]} {
		if got := r.expect(""); got != fmt.Sprintf("%d %d", i+1, want) {
			t.Errorf("LIST line %q, want %d %d", got, i+1, want)
		}
	}
	r.expect(".")
	r.send("QUIT")
	r.expect("+OK")
}

func dialPOP3(t *testing.T, addr string) *raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	r := &raw{t: t, conn: c}
	r.r = newReader(c)
	r.expect("+OK")
	return r
}
