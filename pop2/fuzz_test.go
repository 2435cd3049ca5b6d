package pop2

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"popgate/mailstore"
)

// FuzzSession feeds arbitrary octets into a live session (over net.Pipe,
// after a successful HELO or not) and checks that the server ends without
// a panic or a hang, and with its folder released.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"HELO fred secret\r\nREAD 1\r\nRETR\r\nACKD\r\nQUIT\r\n",
		"HELO fred secret\r\nREAD\r\nRETR\r\nNACK\r\nRETR\r\nACKS\r\nFOLD old\r\nREAD 1\r\nQUIT\r\n",
		"HELO fred secret\r\nFOLD \\\r\nREAD 99999999999999999999\r\nRETR\r\n",
		"helo fred secret\nread  2\nretr\nackd\nfold inbox\nquit\n",
		"HELO fred secret\r\n\x00\xff\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"HELO fred secret\r\nREAD 3\r\nRETR\r\nACKD\r\nREAD 3\r\nRETR\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, junk []byte) {
		opts, _ := fredStore(t)
		opts.AuthTimeout = time.Second
		opts.IdleTimeout = time.Second
		opts.LineTimeout = time.Second
		opts.WriteTimeout = time.Second
		opts.MaxErrors = 3
		srv, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeConn(context.Background(), server)
		}()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		go func() {
			_, _ = client.Write(junk)
			_ = client.Close()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("session with input %q did not end", junk)
		}
		// The folder must be free again: the session released it.
		acct, err := opts.Store.Login(context.Background(), "fred", "secret")
		if err != nil {
			t.Fatal(err)
		}
		md, err := acct.Open(context.Background(), mailstore.Inbox)
		if err != nil {
			t.Fatalf("after input %q: %v", junk, err)
		}
		_ = md.Close()
	})
}
