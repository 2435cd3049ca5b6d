package pop3

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestHangUpAfterDeleRemovesNothing(t *testing.T) {
	store := newMemStore(t, msg1, msg2)
	e := startServer(t, store, nil)
	c := e.login()
	c.want("RETR 1", "+OK")
	c.body()
	c.want("DELE 1", "+OK")
	c.want("DELE 2", "+OK")
	_ = c.nc.Close()
	msgs := inbox(t, store, testUser, testPass)
	if len(msgs) != 2 {
		t.Fatalf("after hang-up: %d messages, want 2", len(msgs))
	}
	if msgs[0].Seen {
		t.Error("hang-up marked a message seen")
	}
}

func TestSecondSessionInUse(t *testing.T) {
	store := newMemStore(t, msg1)
	e := startServer(t, store, nil)
	first := e.login()
	second := e.dial()
	second.want("USER "+testUser, "+OK")
	second.want("PASS "+testPass, "-ERR [IN-USE] maildrop already locked")
	second.want("NOOP", "-ERR command not valid in this state")
	// Another user is not affected.
	second.want("USER bob", "+OK")
	second.want("PASS bobpw", "+OK maildrop has 0 messages (0 octets)")
	first.want("QUIT", "+OK")
	first.closed()
	third := e.login()
	third.want("STAT", "+OK 1 46")
}

func TestPipelining(t *testing.T) {
	e := startServer(t, newMemStore(t, msg1, msg2), nil)
	c := e.dial()
	batch := "USER " + testUser + "\r\nPASS " + testPass + "\r\nSTAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\nUIDL 1\r\nTOP 2 1\r\nbogus\r\nNOOP\r\nQUIT\r\n"
	if _, err := io.WriteString(c.nc, batch); err != nil {
		t.Fatal(err)
	}
	c.status() // USER
	c.status() // PASS
	if got := c.status(); got != "+OK 2 100" {
		t.Errorf("STAT: %q", got)
	}
	c.status()
	if got := c.lines(); len(got) != 2 {
		t.Errorf("LIST: %q", got)
	}
	c.status()
	if got := c.body(); got != msg1 {
		t.Errorf("RETR: %q", got)
	}
	for _, want := range []string{"+OK message 1 deleted", "-ERR message 1 already deleted", "+OK top of message follows"} {
		if got := c.status(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if got := c.body(); !strings.HasSuffix(got, "\r\n\r\nline 1\r\n") {
		t.Errorf("TOP 2 1: %q", got)
	}
	for _, want := range []string{"-ERR unknown command", "+OK", "+OK pop.example.test POP3 server signing off (1 message left)"} {
		if got := c.status(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	c.closed()
}

func TestLineLength(t *testing.T) {
	e := startServer(t, newMemStore(t), nil)
	c := e.dial()
	// 255 octets with CRLF is the limit (RFC 2449 §4).
	c.want("NOOP "+strings.Repeat("x", MaxCommandLine-2-5), "-ERR command not valid in this state")
	c.want("USER "+strings.Repeat("u", MaxCommandLine-2-5), "+OK")
	c.send("USER " + strings.Repeat("u", MaxCommandLine-2-4))
	if got := c.status(); got != "-ERR line too long" {
		t.Errorf("over-long line: %q", got)
	}
	c.closed()

	// A flood without any line end is cut off the same way.
	c = e.dial()
	if _, err := io.WriteString(c.nc, strings.Repeat("A", 100000)); err != nil {
		t.Fatal(err)
	}
	if got := c.status(); got != "-ERR line too long" {
		t.Errorf("flood: %q", got)
	}
	c.closed()
}

func TestForeignFirstLine(t *testing.T) {
	e := startServer(t, newMemStore(t), nil)
	for _, line := range []string{
		"GET / HTTP/1.1",
		"OPTIONS * HTTP/1.0",
		"EHLO client.example",
		"HELO alice secret",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
		"\x00\x00\x00",
		"A001 CAPABILITY",
		"PRI * HTTP/2.0",
	} {
		c := e.dial()
		c.send(line)
		if got := c.status(); !strings.HasPrefix(got, "-ERR ") {
			t.Errorf("%q: got %q", line, got)
		}
		c.closed()
	}
	// A POP3-shaped unknown command first is answered and the session goes on.
	c := e.dial()
	c.want("XTND BBOARDS", "-ERR unknown command")
	c.want("STLS", "-ERR unknown command")
	c.want("CAPA", "+OK")
	c.lines()
	// Junk later is an error but not a reason to hang up.
	c.want("\x00\x01junk", "-ERR invalid characters")
	c.want("QUIT", "+OK")
	c.closed()
}

func TestMaxErrors(t *testing.T) {
	e := startServer(t, newMemStore(t), func(o *Options) { o.MaxErrors = 3 })
	c := e.dial()
	c.want("USER "+testUser, "+OK")
	c.want("PASS wrong", "-ERR [AUTH]")
	c.want("USER "+testUser, "+OK")
	c.want("PASS wrong again", "-ERR [AUTH]")
	c.want("FOO", "-ERR unknown command")
	if got := c.status(); got != "-ERR too many errors, closing connection" {
		t.Errorf("after the last error: %q", got)
	}
	c.closed()
}

func TestAuthTimeout(t *testing.T) {
	e := startServer(t, newMemStore(t), func(o *Options) { o.AuthTimeout = 200 * time.Millisecond })
	c := e.dial()
	start := time.Now()
	c.closed() // silently: RFC 1939 §3
	if d := time.Since(start); d < 150*time.Millisecond || d > 3*time.Second {
		t.Errorf("closed after %v", d)
	}
	if !strings.Contains(e.logs.String(), "autologout") {
		t.Errorf("autologout not logged")
	}
}

func TestIdleTimeoutAfterLogin(t *testing.T) {
	store := newMemStore(t, msg1)
	e := startServer(t, store, func(o *Options) {
		o.AuthTimeout = 100 * time.Millisecond
		o.IdleTimeout = 600 * time.Millisecond
	})
	c := e.login()
	// Longer than AuthTimeout: the TRANSACTION limit applies now.
	time.Sleep(300 * time.Millisecond)
	c.want("DELE 1", "+OK")
	c.closed()
	if msgs := inbox(t, store, testUser, testPass); len(msgs) != 1 {
		t.Errorf("autologout removed messages: %d left", len(msgs))
	}
}

// TestSlowLine: a line started but not finished is bounded by LineTimeout.
func TestSlowLine(t *testing.T) {
	e := startServer(t, newMemStore(t), func(o *Options) { o.LineTimeout = 200 * time.Millisecond })
	c := e.dial()
	if _, err := io.WriteString(c.nc, "NOO"); err != nil {
		t.Fatal(err)
	}
	c.closed()
}

func TestShutdownWhileIdle(t *testing.T) {
	store := newMemStore(t, msg1)
	srv, err := New(Options{Store: store, Hostname: "h"})
	if err != nil {
		t.Fatal(err)
	}
	pc, server := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		srv.ServeConn(ctx, server)
		close(done)
	}()
	c := &client{t: t, nc: pc, r: bufio.NewReader(pc)}
	c.status()
	c.want("USER "+testUser, "+OK")
	c.want("PASS "+testPass, "+OK")
	c.want("DELE 1", "+OK")
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not return after cancellation")
	}
	c.closed()
	if msgs := inbox(t, store, testUser, testPass); len(msgs) != 1 {
		t.Errorf("shutdown removed messages: %d left", len(msgs))
	}
}

func TestPanicRecovered(t *testing.T) {
	logs := &syncBuffer{}
	srv, err := New(Options{Store: &fakeStore{panicMsg: "boom"}, Logger: zerolog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	pc, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		srv.ServeConn(context.Background(), server)
		close(done)
	}()
	c := &client{t: t, nc: pc, r: bufio.NewReader(pc)}
	c.status()
	c.want("USER "+testUser, "+OK")
	c.send("PASS " + testPass)
	c.closed()
	<-done
	if l := logs.String(); !strings.Contains(l, `"panic":"boom"`) || !strings.Contains(l, "stack") {
		t.Errorf("panic not logged with stack:\n%s", l)
	}
}

func TestLogFields(t *testing.T) {
	e := startServer(t, newMemStore(t, msg1), nil)
	c := e.login()
	c.want("DELE 1", "+OK")
	c.want("QUIT", "+OK")
	c.closed()
	logs := e.logs.String()
	for _, want := range []string{`"proto":"pop3"`, `"conn":`, `"remote":"127.0.0.1:`, `"user":"alice"`, `"message":"update committed"`, `"deleted":1`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	if !strings.Contains(logs, `"cmd":"PASS"`) {
		t.Errorf("PASS command not logged at all")
	}
}
