// Package storetest is the suite every mailstore backend must pass, in the
// role testing/fstest plays for file systems.
//
// A backend's test file is a few lines:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, storetest.Harness{
//			New: func(t *testing.T) storetest.Backend { return newTestStore(t) },
//		})
//	}
//
// The suite checks the invariants documented in package mailstore: sizes
// equal the octets read, every line ends in CRLF, UIDs are unique, legal
// and stable, the maildrop lock fails fast, Close removes nothing, Commit
// removes exactly what it is given, later deliveries stay out of an open
// snapshot, returned slices are not aliased, and sessions of different
// users do not interfere.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"popgate/mailstore"
)

// Backend is a store under test: it must also accept users and deliveries.
type Backend interface {
	mailstore.Store
	mailstore.Provisioner
}

// Harness makes backends for the suite.
type Harness struct {
	// New returns a fresh, empty store. Each subtest calls it once.
	New func(t *testing.T) Backend
	// Reopen, if set, returns a new instance over the same data, as after a
	// restart. UID stability is then checked across the restart too.
	Reopen func(t *testing.T, b Backend) Backend
	// SingleFolder says the store has only INBOX (a POP3 gateway). The
	// Folders check then verifies that Folders lists INBOX alone and that
	// opening any other folder fails with ErrNoSuchFolder.
	SingleFolder bool
	// Skip names checks the backend cannot pass, each with the reason
	// (for example a real upstream server that alters NUL octets). The
	// reason is reported with the skip; keep this list as short as the
	// backend allows.
	Skip map[string]string
}

// Messages used by the suite, in the forms stores meet in the wild.
var corpus = []struct {
	name string
	raw  string
}{
	{"lf", "From: a@example.org\nSubject: plain LF\n\nHello.\n"},
	{"crlf", "From: b@example.org\r\nSubject: CRLF already\r\n\r\nHi.\r\n"},
	{"dot", "Subject: dots\n\n.\n..two\n.leading\nend\n"},
	{"nofinal", "Subject: no final newline\n\nlast line without LF"},
	{"eightbit", "Subject: =?iso-8859-1?q?caf=E9?=\n\ncaf\xe9 na\xefve \x00nul\n"},
	{"mixed", "Subject: mixed\r\n\nline1\r\nline2\nline3\r\n"},
}

const password = "s3cret pass"

// Run runs every check of the suite as a subtest of t.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("storetest: Harness.New is nil")
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"Login", testLogin},
		{"SizesAndCRLF", testSizesAndCRLF},
		{"UIDs", testUIDs},
		{"LockFailsFast", testLock},
		{"CloseRemovesNothing", testCloseRemovesNothing},
		{"CommitRemovesExactly", testCommit},
		{"SeenPersists", testSeen},
		{"DeliveryDuringSession", testDeliveryDuringSession},
		{"NoAliasing", testNoAliasing},
		{"Folders", testFolders},
		{"ConcurrentUsers", testConcurrentUsers},
		{"SessionNumbering", testSession},
	}
	for name := range h.Skip {
		found := false
		for _, tc := range tests {
			found = found || tc.name == name
		}
		if !found {
			t.Fatalf("storetest: Harness.Skip names unknown check %q", name)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if reason, ok := h.Skip[tc.name]; ok {
				t.Skip(reason)
			}
			tc.fn(t, h)
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// seed makes a backend with user "alice" and the corpus in her Inbox.
func seed(t *testing.T, h Harness) Backend {
	t.Helper()
	ctx := ctxT(t)
	b := h.New(t)
	if err := b.AddUser(ctx, "alice", password); err != nil {
		t.Fatalf("AddUser(alice) = %v", err)
	}
	for _, m := range corpus {
		if err := b.Deliver(ctx, "alice", "", []byte(m.raw)); err != nil {
			t.Fatalf("Deliver(%s) = %v", m.name, err)
		}
	}
	return b
}

func login(t *testing.T, s mailstore.Store, user string) mailstore.Account {
	t.Helper()
	acct, err := s.Login(ctxT(t), user, password)
	if err != nil {
		t.Fatalf("Login(%s) = %v", user, err)
	}
	t.Cleanup(func() { _ = acct.Close() })
	return acct
}

func open(t *testing.T, acct mailstore.Account, folder string) mailstore.Maildrop {
	t.Helper()
	md, err := acct.Open(ctxT(t), folder)
	if err != nil {
		t.Fatalf("Open(%q) = %v", folder, err)
	}
	return md
}

func messages(t *testing.T, md mailstore.Maildrop) []mailstore.MessageInfo {
	t.Helper()
	msgs, err := md.Messages(ctxT(t))
	if err != nil {
		t.Fatalf("Messages() = %v", err)
	}
	return msgs
}

func read(t *testing.T, md mailstore.Maildrop, uid string) []byte {
	t.Helper()
	rc, err := md.OpenMessage(ctxT(t), uid)
	if err != nil {
		t.Fatalf("OpenMessage(%q) = %v", uid, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %q: %v", uid, err)
	}
	return data
}

// contents returns the CRLF bodies of a folder, opening and closing it.
func contents(t *testing.T, s mailstore.Store, user, folder string) [][]byte {
	t.Helper()
	acct := login(t, s, user)
	md := open(t, acct, folder)
	defer md.Close()
	var out [][]byte
	for _, m := range messages(t, md) {
		out = append(out, read(t, md, m.UID))
	}
	return out
}

func uids(msgs []mailstore.MessageInfo) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.UID
	}
	return out
}

func testLogin(t *testing.T, h Harness) {
	b := seed(t, h)
	ctx := ctxT(t)
	for _, tc := range []struct{ user, pass string }{
		{"alice", "wrong"},
		{"alice", ""},
		{"nobody", password},
		{"", ""},
	} {
		if _, err := b.Login(ctx, tc.user, tc.pass); !errors.Is(err, mailstore.ErrAuthFailed) {
			t.Errorf("Login(%q, %q) = %v, want ErrAuthFailed", tc.user, tc.pass, err)
		}
	}
	acct := login(t, b, "alice")
	if acct.User() != "alice" {
		t.Errorf("User() = %q, want alice", acct.User())
	}
}

func testSizesAndCRLF(t *testing.T, h Harness) {
	b := seed(t, h)
	md := open(t, login(t, b, "alice"), "")
	defer md.Close()
	msgs := messages(t, md)
	if len(msgs) != len(corpus) {
		t.Fatalf("Messages() has %d entries, want %d", len(msgs), len(corpus))
	}
	for i, m := range msgs {
		data := read(t, md, m.UID)
		if int64(len(data)) != m.Size {
			t.Errorf("%s: Size = %d, read %d octets", corpus[i].name, m.Size, len(data))
		}
		want := mailstore.ToCRLF([]byte(corpus[i].raw))
		if !bytes.Equal(data, want) {
			t.Errorf("%s: content = %q, want %q", corpus[i].name, data, want)
		}
		if err := checkCRLF(data); err != nil {
			t.Errorf("%s: %v", corpus[i].name, err)
		}
	}
}

// checkCRLF reports a bare LF or a final line without CRLF.
func checkCRLF(data []byte) error {
	for i, c := range data {
		if c == '\n' && (i == 0 || data[i-1] != '\r') {
			return fmt.Errorf("bare LF at octet %d", i)
		}
	}
	if len(data) > 0 && !bytes.HasSuffix(data, []byte("\r\n")) {
		return fmt.Errorf("last line does not end in CRLF")
	}
	return nil
}

func testUIDs(t *testing.T, h Harness) {
	b := seed(t, h)
	first := uidsOf(t, b)
	seen := map[string]bool{}
	for _, u := range first {
		if !mailstore.ValidUID(u) {
			t.Errorf("UID %q is not a legal RFC 1939 unique-id", u)
		}
		if seen[u] {
			t.Errorf("UID %q appears twice", u)
		}
		seen[u] = true
	}
	again := uidsOf(t, b)
	if fmt.Sprint(first) != fmt.Sprint(again) {
		t.Errorf("UIDs changed across sessions: %v then %v", first, again)
	}
	if h.Reopen != nil {
		b2 := h.Reopen(t, b)
		if got := uidsOf(t, b2); fmt.Sprint(first) != fmt.Sprint(got) {
			t.Errorf("UIDs changed across a restart: %v then %v", first, got)
		}
		b = b2
	}
	// A UID is never reused: delete one message, deliver an identical
	// copy, and the new copy must get a UID of its own.
	acct := login(t, b, "alice")
	md := open(t, acct, "")
	if err := md.Commit(ctxT(t), mailstore.Changes{Deleted: []string{first[0]}}); err != nil {
		t.Fatalf("Commit = %v", err)
	}
	if err := b.Deliver(ctxT(t), "alice", "", []byte(corpus[0].raw+"X-Redelivered: yes\n")); err != nil {
		t.Fatalf("Deliver = %v", err)
	}
	for _, u := range uidsOf(t, b) {
		if u == first[0] {
			t.Errorf("deleted UID %q was reused", u)
		}
	}
}

func uidsOf(t *testing.T, s mailstore.Store) []string {
	t.Helper()
	md := open(t, login(t, s, "alice"), "")
	defer md.Close()
	return uids(messages(t, md))
}

func testLock(t *testing.T, h Harness) {
	b := seed(t, h)
	md := open(t, login(t, b, "alice"), "")
	start := time.Now()
	_, err := login(t, b, "alice").Open(ctxT(t), "")
	if !errors.Is(err, mailstore.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second Open took %v; the lock must fail fast", d)
	}
	if err := md.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	md2 := open(t, login(t, b, "alice"), "")
	_ = md2.Close()
	if err := md2.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	// After Commit the lock is free too.
	md3 := open(t, login(t, b, "alice"), "")
	if err := md3.Commit(ctxT(t), mailstore.Changes{}); err != nil {
		t.Fatalf("empty Commit = %v", err)
	}
	_ = md3.Close()
	open(t, login(t, b, "alice"), "").Close()
}

func testCloseRemovesNothing(t *testing.T, h Harness) {
	b := seed(t, h)
	before := contents(t, b, "alice", "")
	md := open(t, login(t, b, "alice"), "")
	s, err := mailstore.NewSession(ctxT(t), md)
	if err != nil {
		t.Fatalf("NewSession = %v", err)
	}
	for n := 1; n <= s.Count(); n++ {
		if err := s.Delete(n); err != nil {
			t.Fatalf("Delete(%d) = %v", n, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Session.Close = %v", err)
	}
	after := contents(t, b, "alice", "")
	if !equalAll(before, after) {
		t.Fatalf("Close changed the maildrop: %d messages before, %d after", len(before), len(after))
	}
}

func equalAll(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func testCommit(t *testing.T, h Harness) {
	b := seed(t, h)
	before := contents(t, b, "alice", "")
	md := open(t, login(t, b, "alice"), "")
	msgs := messages(t, md)
	// Delete the 2nd and the last; keep the others in order.
	del := []string{msgs[1].UID, msgs[len(msgs)-1].UID}
	if err := md.Commit(ctxT(t), mailstore.Changes{Deleted: del}); err != nil {
		t.Fatalf("Commit = %v", err)
	}
	after := contents(t, b, "alice", "")
	want := append([][]byte{before[0]}, before[2:len(before)-1]...)
	if !equalAll(after, want) {
		t.Fatalf("after Commit: %d messages, want %d (exactly the others, in order)", len(after), len(want))
	}
	// Deleting a UID that is already gone is not an error, and removes
	// nothing else.
	md = open(t, login(t, b, "alice"), "")
	if err := md.Commit(ctxT(t), mailstore.Changes{Deleted: []string{del[0]}}); err != nil {
		t.Errorf("Commit of a vanished UID = %v, want nil", err)
	}
	if got := contents(t, b, "alice", ""); !equalAll(got, want) {
		t.Errorf("Commit of a vanished UID changed the maildrop")
	}
}

func testSeen(t *testing.T, h Harness) {
	b := seed(t, h)
	md := open(t, login(t, b, "alice"), "")
	msgs := messages(t, md)
	for _, m := range msgs {
		if m.Seen {
			t.Fatalf("freshly delivered %q is Seen", m.UID)
		}
	}
	if err := md.Commit(ctxT(t), mailstore.Changes{Seen: []string{msgs[2].UID}}); err != nil {
		t.Fatalf("Commit = %v", err)
	}
	md = open(t, login(t, b, "alice"), "")
	defer md.Close()
	got := messages(t, md)
	for i, m := range got {
		if m.Seen != (i == 2) {
			t.Errorf("message %d Seen = %v, want %v", i+1, m.Seen, i == 2)
		}
	}
	if fmt.Sprint(uids(got)) != fmt.Sprint(uids(msgs)) {
		t.Errorf("marking seen changed UIDs: %v then %v", uids(msgs), uids(got))
	}
	s, err := mailstore.NewSession(ctxT(t), md)
	if err != nil {
		t.Fatalf("NewSession = %v", err)
	}
	if s.Last() != 3 {
		t.Errorf("Session.Last() = %d after message 3 was seen, want 3", s.Last())
	}
}

func testDeliveryDuringSession(t *testing.T, h Harness) {
	b := seed(t, h)
	md := open(t, login(t, b, "alice"), "")
	msgs := messages(t, md)
	late := "Subject: late\n\narrived mid-session\n"
	if err := b.Deliver(ctxT(t), "alice", "", []byte(late)); err != nil {
		t.Fatalf("Deliver during session = %v", err)
	}
	if got := messages(t, md); len(got) != len(msgs) {
		t.Errorf("snapshot grew from %d to %d during the session", len(msgs), len(got))
	}
	// Delete everything the session saw; the late message must survive.
	if err := md.Commit(ctxT(t), mailstore.Changes{Deleted: uids(msgs)}); err != nil {
		t.Fatalf("Commit = %v", err)
	}
	got := contents(t, b, "alice", "")
	if len(got) != 1 || !bytes.Equal(got[0], mailstore.ToCRLF([]byte(late))) {
		t.Fatalf("after commit: %q, want only the late message", got)
	}
}

func testNoAliasing(t *testing.T, h Harness) {
	b := seed(t, h)
	md := open(t, login(t, b, "alice"), "")
	defer md.Close()
	first := messages(t, md)
	want := uids(first)
	for i := range first {
		first[i].UID = "clobbered"
		first[i].Size = -1
	}
	second := messages(t, md)
	if fmt.Sprint(uids(second)) != fmt.Sprint(want) {
		t.Fatalf("modifying the returned slice changed the next Messages(): %v", uids(second))
	}
	data := read(t, md, second[0].UID)
	for i := range data {
		data[i] = 'X'
	}
	if again := read(t, md, second[0].UID); bytes.Contains(again, []byte("XXXX")) {
		t.Fatalf("modifying read bytes changed the message")
	}
}

func testFolders(t *testing.T, h Harness) {
	b := seed(t, h)
	if h.SingleFolder {
		acct := login(t, b, "alice")
		folders, err := acct.Folders(ctxT(t))
		if err != nil || len(folders) != 1 || folders[0] != mailstore.Inbox {
			t.Fatalf("Folders() = %v, %v; want [INBOX] alone", folders, err)
		}
		if _, err := acct.Open(ctxT(t), "Archive"); !errors.Is(err, mailstore.ErrNoSuchFolder) {
			t.Errorf("Open(Archive) = %v, want ErrNoSuchFolder", err)
		}
		md := open(t, acct, "inbox")
		defer md.Close()
		if n := len(messages(t, md)); n != len(corpus) {
			t.Errorf("inbox has %d messages, want %d", n, len(corpus))
		}
		return
	}
	if err := b.Deliver(ctxT(t), "alice", "Archive", []byte("Subject: old\n\nold mail\n")); err != nil {
		t.Fatalf("Deliver to Archive = %v", err)
	}
	acct := login(t, b, "alice")
	folders, err := acct.Folders(ctxT(t))
	if err != nil {
		t.Fatalf("Folders() = %v", err)
	}
	if len(folders) < 2 || folders[0] != mailstore.Inbox {
		t.Fatalf("Folders() = %v, want INBOX first and Archive", folders)
	}
	found := false
	for _, f := range folders {
		found = found || f == "Archive"
	}
	if !found {
		t.Fatalf("Folders() = %v, want Archive listed", folders)
	}
	if _, err := acct.Open(ctxT(t), "No-Such-Folder"); !errors.Is(err, mailstore.ErrNoSuchFolder) {
		t.Errorf("Open(No-Such-Folder) = %v, want ErrNoSuchFolder", err)
	}
	// Folders lock independently: INBOX and Archive open at once.
	in := open(t, acct, "INBOX")
	defer in.Close()
	ar := open(t, acct, "Archive")
	defer ar.Close()
	if n := len(messages(t, ar)); n != 1 {
		t.Errorf("Archive has %d messages, want 1", n)
	}
	if n := len(messages(t, in)); n != len(corpus) {
		t.Errorf("INBOX has %d messages, want %d", n, len(corpus))
	}
	if _, err := acct.Open(ctxT(t), "inbox"); !errors.Is(err, mailstore.ErrLocked) {
		t.Errorf("Open(inbox) while INBOX is open = %v, want ErrLocked (names are the same folder)", err)
	}
}

func testConcurrentUsers(t *testing.T, h Harness) {
	b := seed(t, h)
	ctx := ctxT(t)
	const users = 4
	for u := 0; u < users; u++ {
		name := fmt.Sprintf("user%d", u)
		if err := b.AddUser(ctx, name, password); err != nil {
			t.Fatalf("AddUser(%s) = %v", name, err)
		}
		for i := 0; i < 5; i++ {
			msg := fmt.Sprintf("Subject: %s #%d\n\nbody of %s %d\n", name, i, name, i)
			if err := b.Deliver(ctx, name, "", []byte(msg)); err != nil {
				t.Fatalf("Deliver = %v", err)
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, users)
	for u := 0; u < users; u++ {
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			errs <- deleteOddMessages(ctx, b, name)
		}(fmt.Sprintf("user%d", u))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for u := 0; u < users; u++ {
		name := fmt.Sprintf("user%d", u)
		got := contents(t, b, name, "")
		if len(got) != 2 {
			t.Errorf("%s has %d messages, want 2", name, len(got))
			continue
		}
		for i, want := range []int{1, 3} {
			exp := mailstore.ToCRLF([]byte(fmt.Sprintf("Subject: %s #%d\n\nbody of %s %d\n", name, want, name, want)))
			if !bytes.Equal(got[i], exp) {
				t.Errorf("%s message %d = %q, want %q", name, i+1, got[i], exp)
			}
		}
	}
	if n := len(contents(t, b, "alice", "")); n != len(corpus) {
		t.Errorf("alice has %d messages after others' sessions, want %d", n, len(corpus))
	}
}

// deleteOddMessages deletes messages 1, 3 and 5 of user's Inbox through a
// Session, reading every message first.
func deleteOddMessages(ctx context.Context, b Backend, user string) error {
	acct, err := b.Login(ctx, user, password)
	if err != nil {
		return fmt.Errorf("%s: Login: %w", user, err)
	}
	defer acct.Close()
	md, err := acct.Open(ctx, "")
	if err != nil {
		return fmt.Errorf("%s: Open: %w", user, err)
	}
	s, err := mailstore.NewSession(ctx, md)
	if err != nil {
		return fmt.Errorf("%s: NewSession: %w", user, err)
	}
	for n := 1; n <= s.Count(); n++ {
		rc, err := s.Open(ctx, n)
		if err != nil {
			_ = s.Close()
			return fmt.Errorf("%s: Open(%d): %w", user, n, err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			_ = s.Close()
			return fmt.Errorf("%s: reading %d: %w", user, n, err)
		}
		if n%2 == 1 {
			if err := s.Delete(n); err != nil {
				_ = s.Close()
				return fmt.Errorf("%s: Delete(%d): %w", user, n, err)
			}
		}
	}
	if _, err := s.Commit(ctx); err != nil {
		return fmt.Errorf("%s: Commit: %w", user, err)
	}
	return nil
}

func testSession(t *testing.T, h Harness) {
	b := seed(t, h)
	md := open(t, login(t, b, "alice"), "")
	s, err := mailstore.NewSession(ctxT(t), md)
	if err != nil {
		t.Fatalf("NewSession = %v", err)
	}
	defer s.Close()
	n, size := s.Stat()
	var want int64
	for _, m := range corpus {
		want += int64(len(mailstore.ToCRLF([]byte(m.raw))))
	}
	if n != len(corpus) || size != want {
		t.Errorf("Stat() = %d, %d; want %d, %d", n, size, len(corpus), want)
	}
	for _, bad := range []int{0, -1, len(corpus) + 1} {
		if _, err := s.Message(bad); !errors.Is(err, mailstore.ErrNoSuchMessage) {
			t.Errorf("Message(%d) = %v, want ErrNoSuchMessage", bad, err)
		}
	}
	if err := s.Delete(2); err != nil {
		t.Fatalf("Delete(2) = %v", err)
	}
	if err := s.Delete(2); !errors.Is(err, mailstore.ErrMessageDeleted) {
		t.Errorf("Delete(2) twice = %v, want ErrMessageDeleted", err)
	}
	if _, err := s.Open(ctxT(t), 2); !errors.Is(err, mailstore.ErrMessageDeleted) {
		t.Errorf("Open(2) after Delete = %v, want ErrMessageDeleted", err)
	}
	n2, size2 := s.Stat()
	if n2 != n-1 || size2 != size-int64(len(mailstore.ToCRLF([]byte(corpus[1].raw)))) {
		t.Errorf("Stat() after Delete(2) = %d, %d", n2, size2)
	}
	if l := s.List(); len(l) != n-1 || l[1].N != 3 {
		t.Errorf("List() after Delete(2) = %+v; want numbers kept (no renumbering)", l)
	}
	s.Reset()
	if n3, size3 := s.Stat(); n3 != n || size3 != size {
		t.Errorf("Stat() after Reset = %d, %d; want %d, %d", n3, size3, n, size)
	}
}
