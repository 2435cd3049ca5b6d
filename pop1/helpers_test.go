package pop1

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"popgate/mailstore"
	"popgate/mailstore/memstore"
	"popgate/pop3/wire/wiretest"
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
	return wiretest.Serve(t, srv.ServeConn)
}

// raw is a line-level test client.
type raw = wiretest.Client

// dialRaw connects to addr and expects the POP1 greeting.
func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	r := wiretest.Dial(t, addr)
	r.Expect("+OK")
	return r
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
