package upstream_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"popgate/mailstore"
	"popgate/mailstore/upstream"
	"popgate/mailstore/upstream/pop3client"
	"popgate/pop3"
	"popgate/pop3/wire/wiretest"
)

// startGateway serves popgate's POP3 front end over store on a plain
// loopback port, as on the retro LAN.
func startGateway(t testing.TB, store mailstore.Store) string {
	t.Helper()
	srv, err := pop3.New(pop3.Options{Store: store, Hostname: "gateway.test"})
	if err != nil {
		t.Fatal(err)
	}
	return wiretest.Serve(t, srv.ServeConn)
}

// popLogin logs in to the gateway like an old client, retrying while the
// previous session of the same user is still being torn down.
func popLogin(t testing.TB, addr, user, pass string) *pop3client.Client {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c, err := pop3client.New(conn, 60*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.User(user); err != nil {
			t.Fatalf("USER: %v", err)
		}
		err = c.Pass(pass)
		if err == nil {
			return c
		}
		_ = c.Close()
		var pe *pop3client.Error
		if errors.As(err, &pe) && pe.Code == "IN-USE" && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		t.Fatalf("PASS: %v", err)
	}
}

// upstreamBodies fetches every INBOX message straight from the upstream
// with BODY.PEEK[]: what the upstream serves.
func upstreamBodies(t *testing.T, c *imapclient.Client) [][]byte {
	t.Helper()
	var all imap.SeqSet
	all.AddRange(1, 0)
	// Select again rather than read c.Mailbox(): the client may not have
	// recorded the earlier SELECT yet (a flake under -race).
	sel, err := c.Select(mailstore.Inbox, nil).Wait()
	if err != nil {
		t.Fatalf("direct select: %v", err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	sec := &imap.FetchItemBodySection{Peek: true}
	bufs, err := c.Fetch(all, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil {
		t.Fatalf("direct fetch: %v", err)
	}
	var out [][]byte
	for _, b := range bufs {
		out = append(out, b.FindBodySection(sec))
	}
	return out
}

// TestEndToEnd drives popgate's POP3 front end over an imaps:// upstream
// as an old client would: RETR is byte-identical to what the upstream
// serves, DELE+QUIT removes upstream, a hang-up removes nothing.
func TestEndToEnd(t *testing.T) {
	up := startIMAP(t, nil, false)
	seedIMAP(t, up, 3)
	ctx := testCtx(t)
	_ = up.Deliver(ctx, "alice", "", []byte("Subject: dots\n\n.\n..two\n.leading\nend\n"))
	s := newStore(t, upstream.Options{URL: up.url(), CAFile: up.caFile})
	gw := startGateway(t, s)
	check := direct(t, up, "alice", "pw")
	want := upstreamBodies(t, check)

	c := popLogin(t, gw, "alice", "pw")
	list, err := c.List()
	if err != nil || len(list) != len(want) {
		t.Fatalf("LIST = %v, %v; want %d messages", list, err, len(want))
	}
	for i, l := range list {
		r, err := c.Retr(l.N)
		if err != nil {
			t.Fatalf("RETR %d: %v", l.N, err)
		}
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("RETR %d body: %v", l.N, err)
		}
		if !bytes.Equal(got, want[i]) || int64(len(got)) != l.Size {
			t.Errorf("RETR %d = %q (LIST %d), upstream serves %q", l.N, got, l.Size, want[i])
		}
	}

	// Hang-up after DELE: nothing removed.
	if err := c.Dele(1); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	c = popLogin(t, gw, "alice", "pw")
	if n, _, err := c.Stat(); err != nil || n != len(want) {
		t.Fatalf("after hang-up STAT = %d, %v; want %d", n, err, len(want))
	}
	// DELE + QUIT: removed upstream.
	if err := c.Dele(1); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT = %v", err)
	}
	check = direct(t, up, "alice", "pw")
	got := upstreamBodies(t, check)
	if len(got) != len(want)-1 || !bytes.Equal(got[0], want[1]) {
		t.Errorf("after DELE 1 + QUIT upstream has %d messages, want %d without the first", len(got), len(want)-1)
	}
}

// TestStreamingMemory sends a 50 MB message through the gateway (upstream
// POP3 over TLS → upstream store → POP3 front end → client) and logs the
// peak heap growth over the baseline, which holds the upstream's copy of
// the message. The in-process upstream is popgate's POP3 server over a
// memstore, which serves without copying; go-imap's imapmemserver builds
// each FETCH body in memory, so the IMAP path is measured against Dovecot
// (TestDovecot), out of process. Streaming keeps the growth a small
// constant; a buffering gateway would add at least 50 MB.
func TestStreamingMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB transfer skipped in -short mode")
	}
	up := startPOP3(t, false)
	ctx := testCtx(t)
	if err := up.AddUser(ctx, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	msg := bigMessage(50 << 20)
	if err := up.Deliver(ctx, "alice", "", msg); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, upstream.Options{URL: up.url(), CAFile: up.caFile})
	measureRetr(t, s, sha256.Sum256(msg), len(msg))
}

func bigMessage(size int) []byte {
	line := []byte("The quick brown fox jumps over the lazy dog, 0123456789 ABCDEFGHIJKLMNOP\r\n")
	msg := make([]byte, 0, size+len(line))
	msg = append(msg, "Subject: fifty megabytes\r\n\r\n"...)
	for len(msg) < size {
		msg = append(msg, line...)
	}
	return msg
}

// measureRetr fetches message 1 of alice through a POP3 gateway over s
// and logs (and bounds) the peak heap growth.
func measureRetr(t *testing.T, s mailstore.Store, wantSum [32]byte, size int) {
	t.Helper()
	gw := startGateway(t, s)
	c := popLogin(t, gw, "alice", "pw")
	defer c.Close()

	// A low GC percentage keeps garbage (per-chunk buffers) from showing up
	// as growth: with the default 100 the heap may double the live
	// baseline (the upstream's copy) before a collection.
	defer debug.SetGCPercent(debug.SetGCPercent(5))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak {
					peak = m.HeapInuse
				}
			}
		}
	}()
	start := time.Now()
	r, err := c.Retr(1)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, r)
	close(stop)
	<-done
	if err != nil {
		t.Fatalf("RETR: %v", err)
	}
	if n != int64(size) || !bytes.Equal(h.Sum(nil), wantSum[:]) {
		t.Fatalf("RETR of %d octets differs from the upstream message (%d octets)", n, size)
	}
	growth := int64(peak) - int64(base)
	t.Logf("%d MB message: %d octets in %v; heap in use %.1f MB before, peak growth %.1f MB",
		size>>20, n, time.Since(start).Round(time.Millisecond), float64(base)/(1<<20), float64(growth)/(1<<20))
	if growth > 16<<20 {
		t.Errorf("heap grew by %.1f MB while streaming a %d MB message: not streaming", float64(growth)/(1<<20), size>>20)
	}
}
