package upstream_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"popgate/mailstore"
	"popgate/mailstore/upstream"
)

// direct is a plain IMAP client on the test upstream, for looking behind
// the gateway's back.
func direct(t *testing.T, up *imapUpstream, user, pass string) *imapclient.Client {
	t.Helper()
	pem, err := os.ReadFile(up.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := imapclient.DialTLS(up.addr, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}})
	if err != nil {
		t.Fatalf("direct dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatalf("direct login: %v", err)
	}
	if _, err := c.Select(mailstore.Inbox, nil).Wait(); err != nil {
		t.Fatalf("direct select: %v", err)
	}
	return c
}

func directFlags(t *testing.T, c *imapclient.Client) map[imap.UID][]imap.Flag {
	t.Helper()
	var all imap.SeqSet
	all.AddRange(1, 0) // 1:*
	bufs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatalf("direct fetch: %v", err)
	}
	out := map[imap.UID][]imap.Flag{}
	for _, b := range bufs {
		out[b.UID] = b.Flags
	}
	return out
}

func seedIMAP(t *testing.T, up *imapUpstream, n int) {
	t.Helper()
	ctx := testCtx(t)
	if err := up.AddUser(ctx, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if err := up.Deliver(ctx, "alice", "", []byte(fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i))); err != nil {
			t.Fatal(err)
		}
	}
}

func openInbox(t *testing.T, s *upstream.Store) (mailstore.Maildrop, []mailstore.MessageInfo) {
	t.Helper()
	ctx := testCtx(t)
	acct, err := s.Login(ctx, "alice", "pw")
	if err != nil {
		t.Fatalf("Login = %v", err)
	}
	t.Cleanup(func() { _ = acct.Close() })
	md, err := acct.Open(ctx, "")
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	msgs, err := md.Messages(ctx)
	if err != nil {
		t.Fatalf("Messages = %v", err)
	}
	return md, msgs
}

// TestDovecotUIDL checks the unique-id format: Dovecot's default
// pop3_uidl_format %08Xu%08Xv.
func TestDovecotUIDL(t *testing.T) {
	up := startIMAP(t, nil, false)
	seedIMAP(t, up, 2)
	s := newStore(t, upstream.Options{URL: up.url(), CAFile: up.caFile})
	md, msgs := openInbox(t, s)
	defer md.Close()
	// imapmemserver gives INBOX UIDVALIDITY 1 and UIDs from 1.
	for i, want := range []string{"0000000100000001", "0000000200000001"} {
		if msgs[i].UID != want {
			t.Errorf("message %d UID = %q, want %q", i+1, msgs[i].UID, want)
		}
	}
}

// TestKeywordModeHidesOnly checks that keyword mode leaves the message
// upstream, with the keyword, and that POP no longer lists it.
func TestKeywordModeHidesOnly(t *testing.T) {
	up := startIMAP(t, nil, false)
	seedIMAP(t, up, 3)
	s := newStore(t, upstream.Options{URL: up.url(), CAFile: up.caFile, DeleteMode: upstream.DeleteKeyword})
	md, msgs := openInbox(t, s)
	if err := md.Commit(testCtx(t), mailstore.Changes{Deleted: []string{msgs[1].UID}, Seen: []string{msgs[0].UID}}); err != nil {
		t.Fatalf("Commit = %v", err)
	}
	flags := directFlags(t, direct(t, up, "alice", "pw"))
	if len(flags) != 3 {
		t.Fatalf("upstream has %d messages, want all 3 kept", len(flags))
	}
	if !hasFlag(flags[2], upstream.DefaultKeyword) || hasFlag(flags[2], string(imap.FlagDeleted)) {
		t.Errorf("message 2 flags = %v, want %s and not \\Deleted", flags[2], upstream.DefaultKeyword)
	}
	if !hasFlag(flags[1], string(imap.FlagSeen)) {
		t.Errorf("message 1 flags = %v, want \\Seen", flags[1])
	}
	md2, msgs2 := openInbox(t, s)
	defer md2.Close()
	if len(msgs2) != 2 || msgs2[0].UID != msgs[0].UID || msgs2[1].UID != msgs[2].UID || !msgs2[0].Seen {
		t.Errorf("after keyword delete POP sees %+v", msgs2)
	}
}

func hasFlag(flags []imap.Flag, f string) bool {
	for _, g := range flags {
		if strings.EqualFold(string(g), f) { // keywords are case-insensitive
			return true
		}
	}
	return false
}

// TestNoUIDPLUSKeepsOthersDeleted checks that without UIDPLUS a commit
// does not EXPUNGE a message another client flagged \Deleted.
func TestNoUIDPLUSKeepsOthersDeleted(t *testing.T) {
	up := startIMAP(t, imap.CapSet{imap.CapIMAP4rev1: {}}, false)
	seedIMAP(t, up, 2)
	if err := up.appendRaw("alice", "", []byte("Subject: theirs\r\n\r\nflagged by another client\r\n"), []imap.Flag{imap.FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, upstream.Options{URL: up.url(), CAFile: up.caFile})
	md, msgs := openInbox(t, s)
	if len(msgs) != 2 {
		t.Fatalf("snapshot has %d messages, want 2 (\\Deleted ones skipped)", len(msgs))
	}
	if err := md.Commit(testCtx(t), mailstore.Changes{Deleted: []string{msgs[0].UID}}); err != nil {
		t.Fatalf("Commit = %v", err)
	}
	flags := directFlags(t, direct(t, up, "alice", "pw"))
	if len(flags) != 3 {
		t.Fatalf("upstream has %d messages, want 3: no unsafe EXPUNGE", len(flags))
	}
	md2, msgs2 := openInbox(t, s)
	defer md2.Close()
	if len(msgs2) != 1 || msgs2[0].UID != msgs[1].UID {
		t.Errorf("after commit POP sees %+v, want only %s", msgs2, msgs[1].UID)
	}
}

// TestWindow checks that only the newest Window messages are served.
func TestWindow(t *testing.T) {
	t.Run("imap", func(t *testing.T) {
		up := startIMAP(t, nil, false)
		seedIMAP(t, up, 5)
		s := newStore(t, upstream.Options{URL: up.url(), CAFile: up.caFile, Window: 2})
		md, msgs := openInbox(t, s)
		defer md.Close()
		if len(msgs) != 2 || msgs[0].UID != "0000000400000001" || msgs[1].UID != "0000000500000001" {
			t.Errorf("window 2 gives %+v", msgs)
		}
	})
	t.Run("pop3", func(t *testing.T) {
		up := startPOP3(t, false)
		ctx := testCtx(t)
		_ = up.AddUser(ctx, "alice", "pw")
		for i := 1; i <= 5; i++ {
			_ = up.Deliver(ctx, "alice", "", []byte(fmt.Sprintf("Subject: %d\n\nx\n", i)))
		}
		s := newStore(t, upstream.Options{URL: up.url(), CAFile: up.caFile, Window: 2})
		md, msgs := openInbox(t, s)
		defer md.Close()
		if len(msgs) != 2 || msgs[0].UID != "mem4" || msgs[1].UID != "mem5" {
			t.Errorf("window 2 gives %+v", msgs)
		}
	})
}

// TestLoginErrors checks which failures are ErrAuthFailed and which are
// system errors.
func TestLoginErrors(t *testing.T) {
	ctx := testCtx(t)
	up := startIMAP(t, nil, false)
	seedIMAP(t, up, 1)
	pup := startPOP3(t, false)
	_ = pup.AddUser(ctx, "alice", "pw")

	for _, u := range []struct{ url, ca string }{{up.url(), up.caFile}, {pup.url(), pup.caFile}} {
		s := newStore(t, upstream.Options{URL: u.url, CAFile: u.ca})
		if _, err := s.Login(ctx, "alice", "wrong"); !errors.Is(err, mailstore.ErrAuthFailed) {
			t.Errorf("%s: wrong password = %v, want ErrAuthFailed", u.url, err)
		}
		if a, err := s.Login(ctx, "alice", "pw"); err != nil {
			t.Errorf("%s: right password = %v", u.url, err)
		} else {
			_ = a.Close() // a POP3 login holds the upstream's lock
		}
		// No CA file: the self-signed certificate is not trusted.
		s2 := newStore(t, upstream.Options{URL: u.url})
		_, err := s2.Login(ctx, "alice", "pw")
		var uerr x509.UnknownAuthorityError
		if err == nil || errors.Is(err, mailstore.ErrAuthFailed) || !errors.As(err, &uerr) {
			t.Errorf("%s: untrusted certificate = %v, want a TLS error, not ErrAuthFailed", u.url, err)
		}
		// Insecure accepts it.
		s3 := newStore(t, upstream.Options{URL: u.url, Insecure: true})
		if a, err := s3.Login(ctx, "alice", "pw"); err != nil {
			t.Errorf("%s: Insecure login = %v", u.url, err)
		} else {
			_ = a.Close()
		}
	}
	// Nothing listening.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	_ = ln.Close()
	s := newStore(t, upstream.Options{URL: "imaps://" + dead})
	if _, err := s.Login(ctx, "alice", "pw"); err == nil || errors.Is(err, mailstore.ErrAuthFailed) {
		t.Errorf("dead upstream = %v, want a network error", err)
	}
	if _, err := upstream.New(ctx, upstream.Options{URL: "imaps://" + dead, Probe: true}); err == nil {
		t.Errorf("New with Probe on a dead upstream succeeded")
	}
}

// TestNewRejects checks option validation.
func TestNewRejects(t *testing.T) {
	for _, o := range []upstream.Options{
		{URL: "http://example.org"},
		{URL: "imaps://user:pw@example.org"},
		{URL: "imaps://example.org/INBOX"},
		{URL: "imaps://example.org?x=1"},
		{URL: "imaps://"},
		{URL: "pop3s://example.org", DeleteMode: upstream.DeleteKeyword},
		{URL: "imaps://example.org", DeleteMode: "trash"},
		{URL: "imaps://example.org", Keyword: "bad keyword"},
		{URL: "imaps://example.org", Window: -1},
		{URL: "imaps://example.org", CAFile: "/nonexistent/ca.pem"},
	} {
		if _, err := upstream.New(testCtx(t), o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
	s, err := upstream.New(testCtx(t), upstream.Options{URL: "IMAPS://example.org"})
	if err != nil || s.Addr() != "example.org:993" {
		t.Errorf("New(IMAPS://example.org) = %v, addr %v", err, s)
	}
}

// TestNonCanonicalUpstream checks an upstream that stores bare LFs and
// reports their raw size: the content is served in CRLF form, the first
// session notices the size difference (ErrSizeMismatch, as for a
// length-framed protocol), and later sessions announce the right size.
func TestNonCanonicalUpstream(t *testing.T) {
	up := startIMAP(t, nil, false)
	seedIMAP(t, up, 0)
	raw := "Subject: lf\n\nline 1\nline 2\n"
	if err := up.appendRaw("alice", "", []byte(raw), nil); err != nil {
		t.Fatal(err)
	}
	want := mailstore.ToCRLF([]byte(raw))
	s := newStore(t, upstream.Options{URL: up.url(), CAFile: up.caFile})
	ctx := testCtx(t)

	md, msgs := openInbox(t, s)
	if msgs[0].Size == int64(len(want)) {
		t.Fatalf("first snapshot size = %d, the CRLF size: the upstream's raw size %d was expected to be off", msgs[0].Size, len(raw))
	}
	sess, err := mailstore.NewSession(ctx, md)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := sess.Open(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, mailstore.ErrSizeMismatch) {
		t.Errorf("first read = %v, want ErrSizeMismatch", err)
	}
	_ = sess.Close()

	md2, msgs2 := openInbox(t, s)
	defer md2.Close()
	if msgs2[0].Size != int64(len(want)) {
		t.Errorf("second snapshot size = %d, want CRLF size %d", msgs2[0].Size, len(want))
	}
	rc2, err := md2.OpenMessage(ctx, msgs2[0].UID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc2)
	rc2.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("second read = %q, %v; want %q", got, err, want)
	}
}

// TestNoFinalLineEnd checks a message stored in CRLF form without a
// final line end, whose RFC822.SIZE is two octets short of its CRLF
// form: the gateway reads its last octets while listing, so the first
// session already announces and serves the CRLF size; the check is made
// once per message, and a message delivered later is checked in its turn.
func TestNoFinalLineEnd(t *testing.T) {
	up := startIMAP(t, nil, false)
	seedIMAP(t, up, 0)
	raws := []string{"Subject: a\r\n\r\nno line end", "Subject: b\r\n\r\nends well\r\n", "Subject: c\r\n\r\n."}
	for _, raw := range raws {
		if err := up.appendRaw("alice", "", []byte(raw), nil); err != nil {
			t.Fatal(err)
		}
	}
	s := newStore(t, upstream.Options{URL: up.url(), CAFile: up.caFile})
	ctx := testCtx(t)
	check := func(name string, raws []string) {
		t.Helper()
		md, msgs := openInbox(t, s)
		defer md.Close()
		if len(msgs) != len(raws) {
			t.Fatalf("%s: %d messages listed, want %d", name, len(msgs), len(raws))
		}
		for i, raw := range raws {
			want := mailstore.ToCRLF([]byte(raw))
			if msgs[i].Size != int64(len(want)) {
				t.Errorf("%s: message %d: size %d, want CRLF size %d", name, i+1, msgs[i].Size, len(want))
				continue
			}
			rc, err := md.OpenMessage(ctx, msgs[i].UID)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(mailstore.ExactReader(rc, msgs[i].Size))
			rc.Close()
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: message %d = %q, %v; want %q", name, i+1, got, err, want)
			}
		}
	}
	check("first session", raws)
	check("second session", raws)
	late := "Subject: late\r\n\r\nalso no line end"
	if err := up.appendRaw("alice", "", []byte(late), nil); err != nil {
		t.Fatal(err)
	}
	check("after a delivery", append(raws, late))
}

// proxy forwards TCP to target and can cut every connection after a
// number of octets from the upstream.
type proxy struct {
	ln     net.Listener
	target string
	limit  atomic.Int64 // octets upstream→client before cutting; 0: none
	mu     sync.Mutex
	conns  []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
			go func() {
				var n int64
				buf := make([]byte, 4096)
				for {
					k, err := u.Read(buf)
					if k > 0 {
						n += int64(k)
						if lim := p.limit.Load(); lim > 0 && n > lim {
							_ = c.Close()
							_ = u.Close()
							return
						}
						if _, err := c.Write(buf[:k]); err != nil {
							return
						}
					}
					if err != nil {
						_ = c.Close()
						return
					}
				}
			}()
		}
	}()
	return p
}

// TestUpstreamDropsMidMessage checks that a connection lost during a
// message makes the reader fail and the commit remove nothing.
func TestUpstreamDropsMidMessage(t *testing.T) {
	up := startIMAP(t, nil, false)
	seedIMAP(t, up, 1)
	big := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxy\r\n"), 20000)
	if err := up.Deliver(testCtx(t), "alice", "", append([]byte("Subject: big\r\n\r\n"), big...)); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, up.addr)
	s := newStore(t, upstream.Options{URL: "imaps://" + p.ln.Addr().String(), CAFile: up.caFile})
	ctx := testCtx(t)
	md, msgs := openInbox(t, s)
	sess, err := mailstore.NewSession(ctx, md)
	if err != nil {
		t.Fatal(err)
	}
	_ = sess.Delete(1)
	p.limit.Store(200 * 1024) // well inside the 1.4 MB message
	rc, err := sess.Open(ctx, 2)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err == nil {
		t.Fatalf("reading through a cut connection gave %d octets and no error", n)
	}
	if _, err := sess.Commit(ctx); err == nil {
		t.Errorf("Commit after a lost connection succeeded")
	}
	p.limit.Store(0)
	flags := directFlags(t, direct(t, up, "alice", "pw"))
	if len(flags) != 2 {
		t.Errorf("upstream has %d messages after a failed session, want 2", len(flags))
	}
	for uid, f := range flags {
		if hasFlag(f, string(imap.FlagDeleted)) {
			t.Errorf("message %d flagged \\Deleted after a failed session", uid)
		}
	}
	if len(msgs) != 2 {
		t.Errorf("snapshot had %d messages", len(msgs))
	}
	// The lock was released: a new session works.
	md2, _ := openInbox(t, s)
	_ = md2.Close()
}

// TestCancelClosesUpstream checks that cancelling the session context
// (hang-up, shutdown) ends the upstream connection and releases the lock.
func TestCancelClosesUpstream(t *testing.T) {
	up := startIMAP(t, nil, false)
	seedIMAP(t, up, 1)
	s := newStore(t, upstream.Options{URL: up.url(), CAFile: up.caFile})
	ctx, cancel := contextWithCancel(t)
	acct, err := s.Login(ctx, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	md, err := acct.Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	time.Sleep(100 * time.Millisecond) // context.AfterFunc runs in its own goroutine
	msgs, _ := md.Messages(testCtx(t))
	if _, err := md.OpenMessage(testCtx(t), msgs[0].UID); err == nil {
		t.Errorf("OpenMessage on a maildrop whose context ended succeeded")
	}
	if err := md.Commit(testCtx(t), mailstore.Changes{Deleted: []string{msgs[0].UID}}); err == nil {
		t.Errorf("Commit after cancel succeeded")
	}
	md2, msgs2 := openInbox(t, s)
	defer md2.Close()
	if len(msgs2) != 1 {
		t.Errorf("after cancel: %d messages, want 1", len(msgs2))
	}
}
