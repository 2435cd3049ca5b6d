package port109

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"popgate/mailstore"
	"popgate/mailstore/memstore"
	"popgate/pop1"
	"popgate/pop1/pop1client"
	"popgate/pop2"
	"popgate/pop2/pop2client"
	"popgate/pop3"
	"popgate/pop3/wire/wiretest"
)

var msgs = []string{
	"From: Postmaster <postmaster@isi.example>\nSubject: Welcome\nDate: Mon, 1 Oct 1984 09:00:00 -0700\n\nYour mailbox is ready.\n",
	"From: Rover <rover@fido.example>\nSubject: Lunch?\n\nNoon?\n.\nFrom the kennel, >From the yard\n>From quoted\n",
	"Subject: no final newline\n\nbare",
}

func newStore(t *testing.T) *memstore.Store { return newStoreTB(t) }

func newStoreTB(t testing.TB) *memstore.Store {
	t.Helper()
	ctx := context.Background()
	st := memstore.New()
	if err := st.AddUser(ctx, "fred", "secret"); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := st.Deliver(ctx, "fred", "", []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func want() [][]byte {
	var out [][]byte
	for _, m := range msgs {
		out = append(out, mailstore.ToCRLF([]byte(m)))
	}
	return out
}

func newDispatcher(t testing.TB, st mailstore.Store, opts Options) *Dispatcher {
	t.Helper()
	p1, err := pop1.New(pop1.Options{Store: st, Hostname: "port109.test"})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := pop2.New(pop2.Options{Store: st, Hostname: "port109.test"})
	if err != nil {
		t.Fatal(err)
	}
	opts.POP1, opts.POP2 = p1, p2
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestBothProtocolsSameMailbox retrieves one mailbox through one port 109
// listener with the POP2 client and then the POP1 client: both get every
// message byte for byte as the store holds it.
func TestBothProtocolsSameMailbox(t *testing.T) {
	st := newStore(t)
	d := newDispatcher(t, st, Options{})
	addr := wiretest.Serve(t, d.ServeConn)
	ctx := context.Background()

	c2, err := pop2client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c2.Greeting, "+ POP2 port109.test ") {
		t.Errorf("greeting %q is not RFC 937's", c2.Greeting)
	}
	n, err := c2.Helo("fred", "secret")
	if err != nil || n != len(msgs) {
		t.Fatalf("HELO = %d, %v", n, err)
	}
	got2, err := c2.FetchAll(n, pop2client.FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Quit(); err != nil {
		t.Fatal(err)
	}

	c1, err := pop1client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if c1.Greeting != c2.Greeting {
		t.Errorf("greetings differ: %q, %q", c1.Greeting, c2.Greeting)
	}
	if err := c1.Login("fred", "secret"); err != nil {
		t.Fatal(err)
	}
	got1, err := c1.Fetch("", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := c1.Quit(); err != nil {
		t.Fatal(err)
	}
	w := want()
	if len(got1) != len(w) || len(got2) != len(w) {
		t.Fatalf("POP1 got %d, POP2 got %d, want %d", len(got1), len(got2), len(w))
	}
	for i := range w {
		if !bytes.Equal(got2[i].Data, w[i]) {
			t.Errorf("POP2 message %d: %q, want %q", i+1, got2[i].Data, w[i])
		}
		if !bytes.Equal(got1[i].Data, w[i]) {
			t.Errorf("POP1 message %d: %q, want %q", i+1, got1[i].Data, w[i])
		}
	}
}

// TestPOP1DeleteVisibleElsewhere deletes with POP1 RDEL through port 109,
// after mail arrived mid-transaction, and checks the result through POP2
// (port 109 again) and POP3.
func TestPOP1DeleteVisibleElsewhere(t *testing.T) {
	st := newStore(t)
	d := newDispatcher(t, st, Options{})
	addr := wiretest.Serve(t, d.ServeConn)
	ctx := context.Background()
	c1, err := pop1client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c1.Login("fred", "secret"); err != nil {
		t.Fatal(err)
	}
	size, err := c1.Rdel("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	late := "Subject: late\n\narrived mid-transaction\n"
	if err := st.Deliver(ctx, "fred", "", []byte(late)); err != nil {
		t.Fatal(err)
	}
	data, err := c1.Rcev(size)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pop1client.Split(data); err != nil || len(got) != len(msgs) {
		t.Fatalf("Split: %d messages, %v", len(got), err)
	}
	if err := c1.Rcvd(); err != nil {
		t.Fatal(err)
	}
	if err := c1.Quit(); err != nil {
		t.Fatal(err)
	}

	lateCRLF := mailstore.ToCRLF([]byte(late))
	c2, err := pop2client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := c2.Helo("fred", "secret")
	if err != nil || n != 1 {
		t.Fatalf("POP2 HELO after POP1 RDEL = %d, %v; want 1", n, err)
	}
	got, err := c2.FetchAll(n, pop2client.FetchOptions{})
	if err != nil || len(got) != 1 || !bytes.Equal(got[0].Data, lateCRLF) {
		t.Fatalf("POP2 sees %+v, %v", got, err)
	}
	if err := c2.Quit(); err != nil {
		t.Fatal(err)
	}

	p3, err := pop3.New(pop3.Options{Store: st, Hostname: "pop3.test"})
	if err != nil {
		t.Fatal(err)
	}
	a3 := wiretest.Serve(t, p3.ServeConn)
	c3 := wiretest.Dial(t, a3)
	c3.Send("USER fred", "PASS secret", "STAT", "QUIT")
	var lines []string
	for i := 0; i < 5; i++ {
		l, err := c3.Line()
		if err != nil {
			t.Fatalf("POP3: %v after %q", err, lines)
		}
		lines = append(lines, strings.TrimSpace(l))
	}
	if wantStat := "+OK 1 " + strconv.Itoa(len(lateCRLF)); lines[3] != wantStat {
		t.Fatalf("POP3 STAT = %q, want %q", lines[3], wantStat)
	}
}

func TestFirstLines(t *testing.T) {
	st := newStore(t)
	d := newDispatcher(t, st, Options{})
	addr := wiretest.Serve(t, d.ServeConn)
	for _, tt := range []struct {
		send, want string
	}{
		{"QUIT", "+ OK bye"},
		{"quit", "+ OK bye"},
		{"STAT", "- Unknown command: send HELO (POP2) or USER (POP1)"},
		{"GET / HTTP/1.1", "- Unknown command: send HELO (POP2) or USER (POP1)"},
		{strings.Repeat("x", 600), "- Command line too long"},
		// Routed: the receiving front end answers.
		{"HELO fred wrong", "- Bad login"},
		{"user fred", "+OK send PASS"},
	} {
		c := wiretest.Dial(t, addr)
		c.Expect("+ POP2 ")
		c.Send(tt.send)
		l, err := c.Line()
		if err != nil || l != tt.want {
			t.Errorf("%.20q: got %q (%v), want %q", tt.send, l, err, tt.want)
		}
		_ = c.Conn.Close()
	}
}

func TestGreetingOptionAndMissingServer(t *testing.T) {
	st := newStore(t)
	p1, err := pop1.New(pop1.Options{Store: st, Hostname: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{}); err == nil {
		t.Error("New without servers succeeded")
	}
	if _, err := New(Options{POP1: p1, Greeting: "OK"}); err == nil {
		t.Error("greeting without '+' accepted")
	}
	d, err := New(Options{POP1: p1})
	if err != nil || d.Greeting() != p1.Greeting() {
		t.Fatalf("POP1-only greeting %q, %v", d.Greeting(), err)
	}
	d, err = New(Options{POP1: p1, Greeting: "+OK POP1 and POP2 server"})
	if err != nil {
		t.Fatal(err)
	}
	addr := wiretest.Serve(t, d.ServeConn)
	c := wiretest.Dial(t, addr)
	c.ExpectLine("+OK POP1 and POP2 server")
	c.Send("HELO fred secret")
	c.ExpectLine("- POP2 is not served on this port")
}

func TestFirstLineTimeout(t *testing.T) {
	d := newDispatcher(t, newStore(t), Options{FirstLineTimeout: 100 * time.Millisecond})
	addr := wiretest.Serve(t, d.ServeConn)
	c := wiretest.Dial(t, addr)
	_ = c.Conn.SetDeadline(time.Now().Add(wiretest.Timeout))
	all, err := io.ReadAll(c.Conn)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(all), "\r\n- Autologout; idle for too long\r\n") {
		t.Fatalf("got %q", all)
	}
}

func TestClassify(t *testing.T) {
	for line, want := range map[string]route{
		"HELO a b": routePOP2, "helo": routePOP2, "USER x": routePOP1, "User": routePOP1,
		"QUIT": routeQuit, "QUITX": routeReject, "": routeReject, " USER x": routeReject, "USERx": routeReject,
	} {
		if got := classify([]byte(line)); got != want {
			t.Errorf("classify(%q) = %v, want %v", line, got, want)
		}
	}
}
