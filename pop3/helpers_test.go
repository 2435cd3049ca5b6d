package pop3

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"popgate/mailstore"
	"popgate/mailstore/memstore"
)

const (
	testUser = "alice"
	testPass = "open sesame " // spaces, a trailing one included
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a running server on a loopback listener.
type env struct {
	t      *testing.T
	store  mailstore.Store
	srv    *Server
	addr   string
	logs   *syncBuffer
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newMemStore returns a memstore with testUser and msgs in the Inbox.
func newMemStore(t *testing.T, msgs ...string) *memstore.Store {
	t.Helper()
	ms := memstore.New()
	ctx := context.Background()
	if err := ms.AddUser(ctx, testUser, testPass); err != nil {
		t.Fatal(err)
	}
	if err := ms.AddUser(ctx, "bob", "bobpw"); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := ms.Deliver(ctx, testUser, "", []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	return ms
}

// startServer serves store over 127.0.0.1 with short test timeouts;
// mutate may change the options.
func startServer(t *testing.T, store mailstore.Store, mutate func(*Options)) *env {
	t.Helper()
	return startServerListener(t, store, mutate, nil)
}

// startServerListener is startServer with a listener wrapper (TLS).
func startServerListener(t *testing.T, store mailstore.Store, mutate func(*Options), wrap func(net.Listener) net.Listener) *env {
	t.Helper()
	logs := &syncBuffer{}
	opts := Options{
		Store:       store,
		Hostname:    "pop.example.test",
		Logger:      zerolog.New(logs).Level(zerolog.DebugLevel),
		AuthTimeout: 5 * time.Second,
		IdleTimeout: 5 * time.Second,
		LineTimeout: 2 * time.Second,
	}
	if mutate != nil {
		mutate(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		ln = wrap(ln)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, store: store, srv: srv, addr: ln.Addr().String(), logs: logs, cancel: cancel}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				srv.ServeConn(ctx, nc)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		cancel()
		e.wg.Wait()
		if strings.Contains(logs.String(), testPass) || strings.Contains(logs.String(), "bobpw") {
			t.Errorf("a password reached the log:\n%s", logs.String())
		}
		if strings.Contains(logs.String(), `"panic"`) {
			t.Errorf("panic logged:\n%s", logs.String())
		}
	})
	return e
}

// client is the test's side of one connection.
type client struct {
	t        *testing.T
	nc       net.Conn
	r        *bufio.Reader
	greeting string
}

func (e *env) dial() *client {
	e.t.Helper()
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = nc.Close() })
	c := &client{t: e.t, nc: nc, r: bufio.NewReader(nc)}
	c.greeting = c.status()
	if !strings.HasPrefix(c.greeting, "+OK ") {
		e.t.Fatalf("greeting %q", c.greeting)
	}
	return c
}

// login dials and logs in as testUser.
func (e *env) login() *client {
	e.t.Helper()
	c := e.dial()
	c.want("USER "+testUser, "+OK ")
	c.want("PASS "+testPass, "+OK ")
	return c
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, line+"\r\n"); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
}

// raw reads one line with its line end.
func (c *client) raw() (string, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	return c.r.ReadString('\n')
}

// status reads one status line and checks RFC 1939 §3 form and size.
func (c *client) status() string {
	c.t.Helper()
	line, err := c.raw()
	if err != nil {
		c.t.Fatalf("reading reply: %v (got %q)", err, line)
	}
	if !strings.HasSuffix(line, "\r\n") {
		c.t.Fatalf("reply %q does not end in CRLF", line)
	}
	if len(line) > 512 {
		c.t.Fatalf("reply of %d octets", len(line))
	}
	line = strings.TrimSuffix(line, "\r\n")
	if !strings.HasPrefix(line, "+OK ") && !strings.HasPrefix(line, "-ERR ") && line != "+OK" {
		c.t.Fatalf("malformed status line %q", line)
	}
	return line
}

// cmd sends line and returns the status reply.
func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line)
	return c.status()
}

// want sends line and checks the reply's prefix.
func (c *client) want(line, prefix string) string {
	c.t.Helper()
	got := c.cmd(line)
	if !strings.HasPrefix(got, prefix) {
		c.t.Fatalf("%s: got %q, want prefix %q", line, got, prefix)
	}
	return got
}

// body reads a multi-line body up to ".", undoing the dot-stuffing, and
// returns it with CRLF line ends.
func (c *client) body() string {
	c.t.Helper()
	var b strings.Builder
	for {
		line, err := c.raw()
		if err != nil {
			c.t.Fatalf("reading body: %v (have %q)", err, b.String())
		}
		if !strings.HasSuffix(line, "\r\n") {
			c.t.Fatalf("body line %q does not end in CRLF", line)
		}
		if line == ".\r\n" {
			return b.String()
		}
		b.WriteString(strings.TrimPrefix(line, "."))
	}
}

// lines reads a multi-line body and returns its lines.
func (c *client) lines() []string {
	c.t.Helper()
	b := c.body()
	if b == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(b, "\r\n"), "\r\n")
}

// closed checks that the server closes the connection without sending
// anything more.
func (c *client) closed() {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(c.r)
	if err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		c.t.Fatalf("waiting for close: %v", err)
	}
	if len(rest) > 0 {
		c.t.Fatalf("unexpected data before close: %q", rest)
	}
}

func isReset(err error) bool { return err != nil && strings.Contains(err.Error(), "reset") }

// inbox opens user's Inbox directly and returns its messages; it fails the
// test if the maildrop is still locked.
func inbox(t *testing.T, store mailstore.Store, user, pass string) []mailstore.MessageInfo {
	t.Helper()
	ctx := context.Background()
	var (
		acct mailstore.Account
		md   mailstore.Maildrop
		err  error
	)
	// The server releases the lock just after its last reply.
	for i := 0; i < 100; i++ {
		acct, err = store.Login(ctx, user, pass)
		if err != nil {
			t.Fatal(err)
		}
		md, err = acct.Open(ctx, "")
		if !errors.Is(err, mailstore.ErrLocked) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("opening inbox: %v", err)
	}
	defer func() { _ = md.Close() }()
	msgs, err := md.Messages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}
