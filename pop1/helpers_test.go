package pop1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"popgate/mailstore"
	"popgate/mailstore/memstore"
)

// newStore returns a memstore with one user and deliveries (folder name →
// messages).
func newStore(t *testing.T, user, password string, folders map[string][]string) *memstore.Store {
	t.Helper()
	ctx := context.Background()
	st := memstore.New()
	if err := st.AddUser(ctx, user, password); err != nil {
		t.Fatal(err)
	}
	for folder, msgs := range folders {
		for _, m := range msgs {
			if err := st.Deliver(ctx, user, folder, []byte(m)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return st
}

// serve runs a Server on a loopback listener until the test ends.
func serve(t *testing.T, opts Options) string {
	t.Helper()
	if opts.Hostname == "" {
		opts.Hostname = "pop1.test"
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv.ServeConn(ctx, c)
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// raw is a line-level test client.
type raw struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	r := &raw{t: t, conn: c, r: bufio.NewReader(c)}
	r.expect("+OK")
	return r
}

func (r *raw) send(lines ...string) {
	r.t.Helper()
	_ = r.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(r.conn, strings.Join(lines, "\r\n")+"\r\n"); err != nil {
		r.t.Fatalf("send %q: %v", lines, err)
	}
}

func (r *raw) line() (string, error) {
	_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	s, err := r.r.ReadString('\n')
	if err != nil {
		return s, err
	}
	if !strings.HasSuffix(s, "\r\n") {
		r.t.Fatalf("reply %q does not end in CRLF", s)
	}
	return strings.TrimSuffix(s, "\r\n"), nil
}

// expect reads one line and checks its prefix.
func (r *raw) expect(prefix string) string {
	r.t.Helper()
	s, err := r.line()
	if err != nil {
		r.t.Fatalf("waiting for %q: %v (got %q)", prefix, err, s)
	}
	if !strings.HasPrefix(s, prefix) {
		r.t.Fatalf("got %q, want prefix %q", s, prefix)
	}
	return s
}

// expectLine reads one line and checks it whole.
func (r *raw) expectLine(want string) {
	r.t.Helper()
	s, err := r.line()
	if err != nil || s != want {
		r.t.Fatalf("got %q (%v), want %q", s, err, want)
	}
}

// data reads exactly n octets.
func (r *raw) data(n int64) []byte {
	r.t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(r.r, b); err != nil {
		r.t.Fatalf("reading %d octets: %v", n, err)
	}
	return b
}

// expectClose checks that the server closes without sending more.
func (r *raw) expectClose() {
	r.t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := r.r.ReadByte()
	if err == nil {
		rest, _ := r.r.ReadString('\n')
		r.t.Fatalf("want close, got %q", string(b)+rest)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "connection reset") {
		r.t.Fatalf("want close, got %v", err)
	}
}

// folder returns the CRLF contents of a folder, waiting for the server to
// release its lock.
func folder(t *testing.T, st mailstore.Store, user, password, name string) [][]byte {
	t.Helper()
	ctx := context.Background()
	acct, err := st.Login(ctx, user, password)
	if err != nil {
		t.Fatal(err)
	}
	defer acct.Close()
	var md mailstore.Maildrop
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		md, err = acct.Open(ctx, name)
		if err == nil {
			break
		}
		if !errors.Is(err, mailstore.ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("open %s: %v", name, err)
		}
	}
	defer md.Close()
	infos, err := md.Messages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, mi := range infos {
		rc, err := md.OpenMessage(ctx, mi.UID)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
