package pop2

import (
	"context"
	"errors"
	"testing"
	"time"

	"popgate/mailstore"
	"popgate/mailstore/memstore"
	"popgate/pop3/wire/wiretest"
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
	return wiretest.Serve(t, srv.ServeConn)
}

// raw is a line-level test client.
type raw = wiretest.Client

// dialRaw connects to addr and expects the POP2 greeting.
func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	r := wiretest.Dial(t, addr)
	r.Expect("+ POP2 ")
	return r
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
