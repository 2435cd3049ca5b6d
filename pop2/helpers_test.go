package pop2

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

// newStore returns a memstore with the given users ("name:password") and
// deliveries (folder name → messages) for the first user.
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
		opts.Hostname = "pop2.test"
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

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

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
	r := &raw{t: t, conn: c, r: newReader(c)}
	r.expect("+ POP2 ")
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

// data reads exactly n octets.
func (r *raw) data(n int) []byte {
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
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		r.t.Fatalf("want close, got %v", err)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// folderSizes lists the sizes of a folder's messages, waiting for the
// server to release the folder.
func folderSizes(t *testing.T, st mailstore.Store, user, password, folder string) []int64 {
	t.Helper()
	ctx := context.Background()
	acct, err := st.Login(ctx, user, password)
	if err != nil {
		t.Fatal(err)
	}
	// The server releases the lock when it sees a hang-up, which may be
	// a moment after the client closed.
	var md mailstore.Maildrop
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		md, err = acct.Open(ctx, folder)
		if err == nil {
			break
		}
		if !errors.Is(err, mailstore.ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("open %s: %v", folder, err)
		}
	}
	defer md.Close()
	msgs, err := md.Messages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Size
	}
	return out
}
