package maildir

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"popgate/mailstore"
	"popgate/mailstore/users"
)

const testPW = "pw"

// userDir provisions user and returns its Maildir.
func (e *testEnv) userDir(t testing.TB, s *Store, user string) string {
	t.Helper()
	if err := s.AddUser(context.Background(), user, testPW); err != nil {
		t.Fatalf("AddUser = %v", err)
	}
	return filepath.Join(e.dir, user, "Maildir")
}

func writeFile(t testing.TB, path string, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func openDrop(t testing.TB, s *Store, user, folder string) mailstore.Maildrop {
	t.Helper()
	ctx := context.Background()
	a, err := s.Login(ctx, user, testPW)
	if err != nil {
		t.Fatalf("Login = %v", err)
	}
	md, err := a.Open(ctx, folder)
	if err != nil {
		t.Fatalf("Open(%q) = %v", folder, err)
	}
	return md
}

func list(t testing.TB, md mailstore.Maildrop) []mailstore.MessageInfo {
	t.Helper()
	msgs, err := md.Messages(context.Background())
	if err != nil {
		t.Fatalf("Messages = %v", err)
	}
	return msgs
}

func read(t testing.TB, md mailstore.Maildrop, m mailstore.MessageInfo) string {
	t.Helper()
	rc, err := md.OpenMessage(context.Background(), m.UID)
	if err != nil {
		t.Fatalf("OpenMessage(%s) = %v", m.UID, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %s: %v", m.UID, err)
	}
	return string(data)
}

func TestFileForms(t *testing.T) {
	e := newEnv(t)
	s := e.store(t)
	root := e.userDir(t, s, "alice")
	cur := filepath.Join(root, "cur")
	files := []struct {
		name, data, want string
		seen             bool
		uid              string
	}{
		{"1000.M1P1.h:2,S", "Subject: seen\n\nbody\n", "Subject: seen\r\n\r\nbody\r\n", true, "1000.M1P1.h"},
		{"1001.M1P1.h:2,FRS", "x\n", "x\r\n", true, "1001.M1P1.h"},
		{"1002.M1P1.h:2,", "no final newline", "no final newline\r\n", false, "1002.M1P1.h"},
		{"1003.M1P1.h", "crlf\r\nalready\r\n", "crlf\r\nalready\r\n", false, "1003.M1P1.h"},
		{"1004.M1P1.h:2,T", "", "", false, "1004.M1P1.h"},
		{"1005.M1P1.h,S=3:2,", "a\nb", "a\r\nb\r\n", false, "1005.M1P1.h"},
		{"1006.M1P1.h,S=4,W=6:2,S", "a\nb\n", "a\r\nb\r\n", true, "1006.M1P1.h"},
		{"1007.M1P1.h with space", "sp\n", "sp\r\n", false, hashedUID("1007.M1P1.h with space")},
		{"1008." + strings.Repeat("long", 20), "long\n", "long\r\n", false, hashedUID("1008." + strings.Repeat("long", 20))},
		// ,S= fields that are wrong: the file's real end counts.
		{"1009.M1P1.h,S=2:2,", "abcdef\n", "abcdef\r\n", false, "1009.M1P1.h"},
		{"1010.M1P1.h,S=99:2,", "ab\n", "ab\r\n", false, "1010.M1P1.h"},
		{"1011.M1P1.h,S=0:2,", "z\n", "z\r\n", false, "1011.M1P1.h"},
	}
	for _, f := range files {
		writeFile(t, filepath.Join(cur, f.name), f.data)
	}
	md := openDrop(t, s, "alice", "")
	msgs := list(t, md)
	if len(msgs) != len(files) {
		t.Fatalf("%d messages, want %d", len(msgs), len(files))
	}
	for i, f := range files {
		m := msgs[i]
		got := read(t, md, m)
		if got != f.want || m.Size != int64(len(f.want)) || m.Seen != f.seen || m.UID != f.uid || !mailstore.ValidUID(m.UID) {
			t.Errorf("%s: uid %q size %d seen %v content %q; want uid %q size %d seen %v content %q",
				f.name, m.UID, m.Size, m.Seen, got, f.uid, len(f.want), f.seen, f.want)
		}
	}
	// The W= file was not opened to size it; the others were, once.
	if got := s.sizeReads.Load(); got != int64(len(files)-1) {
		t.Errorf("sizeReads = %d, want %d", got, len(files)-1)
	}
	if err := md.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSizedFile reads files through sizedFile (on msgFile) with ,S= values short,
// exact and long, into buffers of several sizes: the data is always whole,
// and an exact ,S= read into room to spare ends with io.EOF at once.
func TestSizedFile(t *testing.T) {
	dir := t.TempDir()
	data := strings.Repeat("0123456789", 50)
	path := filepath.Join(dir, "msg")
	writeFile(t, path, data)
	for _, size := range []int64{-1, 0, 1, 499, 500, 501, 10000} {
		for _, bufSize := range []int{1, 7, 499, 500, 501, 4096} {
			var f msgFile
			if err := f.open(path); err != nil {
				t.Fatal(err)
			}
			r := &sizedFile{f: &f, left: size}
			var got []byte
			buf := make([]byte, bufSize)
			reads := 0
			for {
				n, err := r.Read(buf)
				reads++
				got = append(got, buf[:n]...)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err == nil {
				t.Fatal("a second Close succeeded")
			}
			if _, err := f.Read(buf); err == nil || errors.Is(err, io.EOF) {
				t.Fatalf("Read after Close = %v, want an error", err)
			}
			if string(got) != data {
				t.Fatalf("S=%d, buffer %d: read %d octets, want the %d of the file", size, bufSize, len(got), len(data))
			}
			if size == int64(len(data)) && bufSize > len(data) && reads != 1 {
				t.Errorf("S=%d, buffer %d: %d reads, want 1", size, bufSize, reads)
			}
		}
	}
}

func TestNewMovedToCurKeepingFlags(t *testing.T) {
	e := newEnv(t)
	s := e.store(t)
	root := e.userDir(t, s, "alice")
	writeFile(t, filepath.Join(root, "new", "2000.M1P1.h"), "a\n")
	writeFile(t, filepath.Join(root, "new", "2001.M1P1.h:2,S"), "b\n")
	md := openDrop(t, s, "alice", "")
	msgs := list(t, md)
	if len(msgs) != 2 || msgs[0].Seen || !msgs[1].Seen {
		t.Fatalf("messages = %+v", msgs)
	}
	for _, n := range []string{"2000.M1P1.h:2,", "2001.M1P1.h:2,S"} {
		if _, err := os.Stat(filepath.Join(root, "cur", n)); err != nil {
			t.Errorf("cur/%s: %v", n, err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "new")); len(ents) != 0 {
		t.Errorf("new/ still has %d files", len(ents))
	}
	// Retrieved and committed: S flag set in the name, Seen next time.
	if err := md.Commit(context.Background(), mailstore.Changes{Seen: []string{msgs[0].UID, msgs[1].UID}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cur", "2000.M1P1.h:2,S")); err != nil {
		t.Errorf("seen flag not set: %v", err)
	}
	md = openDrop(t, s, "alice", "")
	defer md.Close()
	for _, m := range list(t, md) {
		if !m.Seen {
			t.Errorf("%s not seen after commit", m.UID)
		}
	}
}

func TestWithFlag(t *testing.T) {
	for in, want := range map[string]string{
		"a":        "a:2,S",
		"a:2,":     "a:2,S",
		"a:2,FT":   "a:2,FST",
		"a:2,RS":   "a:2,RS",
		"a:2,abc":  "a:2,Sabc",
		"a:1,xyz":  "a:1,xyz",
		"a,S=1:2,": "a,S=1:2,S",
	} {
		if got := parseName(in).withFlag('S'); got != want {
			t.Errorf("withFlag(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMidSessionChanges(t *testing.T) {
	e := newEnv(t)
	s := e.store(t)
	ctx := context.Background()
	root := e.userDir(t, s, "alice")
	for i := range 4 {
		if err := s.Deliver(ctx, "alice", "", []byte(fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i))); err != nil {
			t.Fatal(err)
		}
	}
	md := openDrop(t, s, "alice", "")
	msgs := list(t, md)
	if len(msgs) != 4 {
		t.Fatalf("%d messages", len(msgs))
	}
	// Delivered during the session: not in it.
	if err := s.Deliver(ctx, "alice", "", []byte("Subject: late\n\nlate\n")); err != nil {
		t.Fatal(err)
	}
	if n := len(list(t, md)); n != 4 {
		t.Errorf("snapshot grew to %d", n)
	}
	cur := filepath.Join(root, "cur")
	ents, _ := os.ReadDir(cur)
	names := make(map[string]string)
	for _, en := range ents {
		names[parseName(en.Name()).base] = en.Name()
	}
	byUID := func(uid string) string {
		for b, n := range names {
			if baseUID(b) == uid {
				return n
			}
		}
		t.Fatalf("no file for %s", uid)
		return ""
	}
	// Message 0 removed by someone else; message 1 renamed by another
	// program (flag T added).
	if err := os.Remove(filepath.Join(cur, byUID(msgs[0].UID))); err != nil {
		t.Fatal(err)
	}
	n1 := byUID(msgs[1].UID)
	if err := os.Rename(filepath.Join(cur, n1), filepath.Join(cur, parseName(n1).withFlag('T'))); err != nil {
		t.Fatal(err)
	}
	if _, err := md.OpenMessage(ctx, msgs[0].UID); !errors.Is(err, mailstore.ErrNoSuchMessage) {
		t.Errorf("OpenMessage(removed) = %v, want ErrNoSuchMessage", err)
	}
	if got := read(t, md, msgs[1]); got != "Subject: 1\r\n\r\nbody 1\r\n" {
		t.Errorf("renamed message = %q", got)
	}
	// Commit: delete the vanished one and message 2, mark 1 and 3 seen.
	err := md.Commit(ctx, mailstore.Changes{Deleted: []string{msgs[0].UID, msgs[2].UID}, Seen: []string{msgs[1].UID, msgs[3].UID}})
	if err != nil {
		t.Fatalf("Commit = %v", err)
	}
	md = openDrop(t, s, "alice", "")
	defer md.Close()
	after := list(t, md)
	if len(after) != 3 || after[0].UID != msgs[1].UID || after[1].UID != msgs[3].UID || !after[0].Seen || !after[1].Seen || after[2].Seen {
		t.Fatalf("after commit: %+v", after)
	}
	if got := read(t, md, after[2]); got != "Subject: late\r\n\r\nlate\r\n" {
		t.Errorf("late message = %q", got)
	}
	if _, err := os.Stat(filepath.Join(cur, parseName(n1).withFlag('T')[:len(n1)-len(parseName(n1).info)]+"2,ST")); err != nil {
		t.Errorf("renamed message did not get S next to T: %v", err)
	}
}

func TestCachePersistence(t *testing.T) {
	e := newEnv(t)
	s := e.store(t)
	ctx := context.Background()
	root := e.userDir(t, s, "alice")
	const n = 50
	for i := range n {
		if _, err := s.DeliverPlain(ctx, "alice", "", []byte(fmt.Sprintf("Subject: %d\n\n%s\n", i, strings.Repeat("x", i)))); err != nil {
			t.Fatal(err)
		}
	}
	md := openDrop(t, s, "alice", "")
	first := list(t, md)
	_ = md.Close()
	if got := s.sizeReads.Load(); got != n {
		t.Fatalf("cold login opened %d files, want %d", got, n)
	}
	if _, err := os.Stat(filepath.Join(root, cacheName)); err != nil {
		t.Fatalf("cache file: %v", err)
	}
	// A second login, and a login after a restart, open no message file.
	for _, st := range []*Store{s, e.store(t)} {
		before := st.sizeReads.Load()
		md = openDrop(t, st, "alice", "")
		again := list(t, md)
		_ = md.Close()
		if got := st.sizeReads.Load() - before; got != 0 {
			t.Errorf("cached login opened %d message files", got)
		}
		if fmt.Sprint(again) != fmt.Sprint(first) {
			t.Errorf("cached listing differs:\n%v\n%v", again, first)
		}
	}
	// A corrupt cache is rebuilt with the same UIDs and order.
	writeFile(t, filepath.Join(root, cacheName), "popgate-maildir-cache 1\nnext 3\ngarbage")
	md = openDrop(t, s, "alice", "")
	rebuilt := list(t, md)
	_ = md.Close()
	if fmt.Sprint(rebuilt) != fmt.Sprint(first) {
		t.Errorf("rebuilt listing differs")
	}
	// A leftover temporary cache file from a crash is removed.
	writeFile(t, filepath.Join(root, cacheTmp+"999"), "half")
	md = openDrop(t, s, "alice", "")
	_ = md.Close()
	if _, err := os.Stat(filepath.Join(root, cacheTmp+"999")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary cache file left: %v", err)
	}
}

func TestWrongWCorrected(t *testing.T) {
	e := newEnv(t)
	s := e.store(t)
	root := e.userDir(t, s, "alice")
	// Dovecot's W= does not count the CRLF popgate adds to a last line
	// without newline.
	writeFile(t, filepath.Join(root, "cur", "3000.M1P1.h,S=5,W=5:2,"), "a\nbcd")
	md := openDrop(t, s, "alice", "")
	m := list(t, md)[0]
	if m.Size != 5 {
		t.Fatalf("size = %d, want the W= value 5", m.Size)
	}
	sess, err := mailstore.NewSession(context.Background(), md)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := sess.Open(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	// The session's reader fails, having read the file to its end, so
	// the store has seen the real size.
	if _, err := io.ReadAll(rc); !errors.Is(err, mailstore.ErrSizeMismatch) {
		t.Errorf("read = %v, want ErrSizeMismatch", err)
	}
	_ = rc.Close()
	if err := sess.Close(); err != nil {
		t.Fatal(err)
	}
	md = openDrop(t, s, "alice", "")
	defer md.Close()
	if m := list(t, md)[0]; m.Size != 8 || read(t, md, m) != "a\r\nbcd\r\n" {
		t.Errorf("after correction: size %d", m.Size)
	}
}

func TestFolders(t *testing.T) {
	e := newEnv(t)
	s := e.store(t)
	ctx := context.Background()
	root := e.userDir(t, s, "alice")
	for _, f := range []string{"Sent", "Lists.Go"} {
		if err := s.Deliver(ctx, "alice", f, []byte("Subject: "+f+"\n\n")); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{".Sent", ".Lists.Go"} {
		if _, err := os.Stat(filepath.Join(root, d, "maildirfolder")); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, ".NotAFolder"), 0o700); err != nil {
		t.Fatal(err)
	}
	a, err := s.Login(ctx, "alice", testPW)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := a.Folders(ctx)
	if err != nil || strings.Join(fs, ",") != "INBOX,Lists.Go,Sent" {
		t.Fatalf("Folders = %v, %v", fs, err)
	}
	md, err := a.Open(ctx, "Lists.Go")
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, md, list(t, md)[0]); got != "Subject: Lists.Go\r\n\r\n" {
		t.Errorf("Lists.Go message = %q", got)
	}
	_ = md.Close()
	for _, bad := range []string{"../x", ".Sent", "NotAFolder", "a/b"} {
		if _, err := a.Open(ctx, bad); !errors.Is(err, mailstore.ErrNoSuchFolder) {
			t.Errorf("Open(%q) = %v, want ErrNoSuchFolder", bad, err)
		}
	}
}

func TestMissingMaildir(t *testing.T) {
	e := newEnv(t)
	s := e.store(t)
	ctx := context.Background()
	if err := e.db.SetPassword("bob", testPW, users.Plain); err != nil {
		t.Fatal(err)
	}
	// Parent missing: permanent failure.
	if _, err := s.Login(ctx, "bob", testPW); !errors.Is(err, mailstore.ErrPermanent) {
		t.Fatalf("Login without parent = %v, want ErrPermanent", err)
	}
	// Parent present: an empty Maildir is created.
	if err := os.Mkdir(filepath.Join(e.dir, "bob"), 0o700); err != nil {
		t.Fatal(err)
	}
	md := openDrop(t, s, "bob", "")
	if n := len(list(t, md)); n != 0 {
		t.Errorf("%d messages in a new Maildir", n)
	}
	_ = md.Close()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if _, err := os.Stat(filepath.Join(e.dir, "bob", "Maildir", sub)); err != nil {
			t.Error(err)
		}
	}
	// A Maildir that exists without some of its subdirectories gets them
	// when opened, and mail delivered into new/ before that is not lost.
	for _, missing := range [][]string{{"cur", "new", "tmp"}, {"cur"}, {"new", "tmp"}} {
		root := filepath.Join(e.dir, "bob", "Maildir")
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.RemoveAll(filepath.Join(root, sub)); err != nil {
				t.Fatal(err)
			}
		}
		for _, sub := range []string{"cur", "new", "tmp"} {
			if !slices.Contains(missing, sub) {
				if err := os.Mkdir(filepath.Join(root, sub), 0o700); err != nil {
					t.Fatal(err)
				}
			}
		}
		want := 0
		if !slices.Contains(missing, "new") {
			writeFile(t, filepath.Join(root, "new", "5000.M1P1.h"), "waiting\n")
			want = 1
		}
		md := openDrop(t, s, "bob", "")
		if n := len(list(t, md)); n != want {
			t.Errorf("missing %v: %d messages, want %d", missing, n, want)
		}
		_ = md.Close()
		for _, sub := range []string{"cur", "new", "tmp"} {
			if st, err := os.Stat(filepath.Join(root, sub)); err != nil || !st.IsDir() {
				t.Errorf("missing %v: after open, %s: %v", missing, sub, err)
			}
		}
	}
	// A file where the Maildir should be: permanent.
	if err := e.db.SetPassword("carol", testPW, users.Plain); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(e.dir, "carol"), "not a dir")
	if _, err := s.Login(ctx, "carol", testPW); !errors.Is(err, mailstore.ErrPermanent) {
		t.Errorf("Login with a file as parent = %v, want ErrPermanent", err)
	}
	// Unreadable Maildir (only meaningful when not root).
	if os.Geteuid() != 0 {
		root := filepath.Join(e.dir, "bob", "Maildir")
		if err := os.Chmod(filepath.Join(root, "cur"), 0); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(filepath.Join(root, "cur"), 0o700)
		a, err := s.Login(ctx, "bob", testPW)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Open(ctx, ""); !errors.Is(err, mailstore.ErrPermanent) {
			t.Errorf("Open of unreadable cur/ = %v, want ErrPermanent", err)
		}
	}
	// Wrong password and unknown user.
	if _, err := s.Login(ctx, "bob", "nope"); !errors.Is(err, mailstore.ErrAuthFailed) {
		t.Errorf("wrong password = %v", err)
	}
	if _, err := s.Login(ctx, "zed", testPW); !errors.Is(err, mailstore.ErrAuthFailed) {
		t.Errorf("unknown user = %v", err)
	}
}

func TestAPOPAndTemplate(t *testing.T) {
	dir := t.TempDir()
	pwfile := filepath.Join(dir, "passwd")
	hashed, err := users.Entry("hash@example.org", "hpw", users.SHA256Crypt)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, pwfile, "plain@example.org:{PLAIN}ppw::::"+dir+"/home/plain\n"+hashed+"\n")
	db, err := users.Open(pwfile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Path: dir + "/%d/%n/Maildir", Users: db, Hostname: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "example.org", "plain"), 0o700); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ts := "<123.456@h>"
	sum := md5.Sum([]byte(ts + "ppw"))
	a, err := s.LoginAPOP(ctx, "plain@example.org", ts, hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatalf("APOP = %v", err)
	}
	if a.User() != "plain@example.org" {
		t.Errorf("User = %q", a.User())
	}
	if _, err := os.Stat(filepath.Join(dir, "example.org", "plain", "Maildir", "cur")); err != nil {
		t.Errorf("%%d/%%n Maildir not created: %v", err)
	}
	if _, err := s.LoginAPOP(ctx, "hash@example.org", ts, hex.EncodeToString(sum[:])); !errors.Is(err, mailstore.ErrUnsupported) {
		t.Errorf("APOP with hashed secret = %v, want ErrUnsupported", err)
	}
	// A users.DB takes AddUser entries in memory (until its next Reload).
	if err := s.AddUser(ctx, "new@example.org", "npw"); err != nil {
		t.Errorf("AddUser = %v", err)
	}
	if _, err := s.Login(ctx, "new@example.org", "npw"); err != nil {
		t.Errorf("Login after AddUser = %v", err)
	}
	// %h uses the home from the users file.
	s2, err := New(Options{Path: "%h/Maildir", Users: db, Hostname: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "home", "plain"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Login(ctx, "plain@example.org", "ppw"); err != nil {
		t.Fatalf("Login with %%h = %v", err)
	}
	if _, err := s2.Login(ctx, "hash@example.org", "hpw"); !errors.Is(err, mailstore.ErrPermanent) {
		t.Errorf("Login with %%h and no home = %v, want ErrPermanent", err)
	}
	for _, bad := range []string{"", "/x/%z", "/x/%"} {
		if _, err := New(Options{Path: bad, Users: db}); err == nil {
			t.Errorf("New(Path %q) succeeded", bad)
		}
	}
	if _, err := New(Options{Path: "/x", Users: db, UIDLFormat: "courier"}); err == nil {
		t.Error("New with unknown UIDL format succeeded")
	}
}

func TestDovecotUIDL(t *testing.T) {
	e := newEnv(t)
	e.opts.UIDLFormat = UIDLDovecot
	s := e.store(t)
	root := e.userDir(t, s, "alice")
	writeFile(t, filepath.Join(root, "cur", "1500000000.M1P1.h,S=2,W=3:2,S"), "a\n")
	writeFile(t, filepath.Join(root, "cur", "1500000001.M1P1.h,S=2,W=3:2,"), "b\n")
	writeFile(t, filepath.Join(root, "cur", "1500000002.M1P1.h,S=2,W=3:2,"), "c\n")
	writeFile(t, filepath.Join(root, "new", "1400000000.M1P1.h,S=2,W=3"), "d\n")
	writeFile(t, filepath.Join(root, uidlistName), "3 V1275660208 N31 Gabc\n"+
		"29 W3 :1500000001.M1P1.h,S=2,W=3\n"+
		"7 :1500000000.M1P1.h,S=2,W=3\n"+
		"30 Pmy-old-uidl W3 :1500000002.M1P1.h,S=2,W=3\n")
	md := openDrop(t, s, "alice", "")
	defer md.Close()
	var got []string
	for _, m := range list(t, md) {
		got = append(got, m.UID)
	}
	want := []string{"000000074c0907b0", "0000001d4c0907b0", "my-old-uidl", "1400000000.M1P1.h"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("UIDs = %v, want %v", got, want)
	}

	// Version 1 header.
	uids, err := dovecotUIDLs(writeDir(t, "1 42 3\n1 a,S=1:2,\n2 b\n"))
	if err != nil || uids["a,S=1"].uidl != "000000010000002a" || uids["b"].uidl != "000000020000002a" {
		t.Errorf("v1 uidlist = %v, %v", uids, err)
	}
}

func writeDir(t *testing.T, uidlist string) string {
	d := t.TempDir()
	writeFile(t, filepath.Join(d, uidlistName), uidlist)
	return d
}

func TestDotlockLocking(t *testing.T) {
	e := newEnv(t)
	e.opts.LockMethod = LockDotlock
	e.opts.StaleLockTimeout = 400 * time.Millisecond
	s := e.store(t)
	root := e.userDir(t, s, "alice")
	other := e.store(t) // another front end or process over the same data
	lock := filepath.Join(root, lockName)
	ctx := context.Background()
	login := func(st *Store) mailstore.Account {
		a, err := st.Login(ctx, "alice", testPW)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	md := openDrop(t, s, "alice", "")
	// The lock is a symbolic link naming its holder.
	if target, err := os.Readlink(lock); err != nil || target != fmt.Sprintf("%d %s", os.Getpid(), s.host) {
		t.Fatalf("lock = %q, %v; want a symbolic link to \"<pid> <host>\"", target, err)
	}
	if _, err := login(other).Open(ctx, ""); !errors.Is(err, mailstore.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	// Deliveries are never blocked by the lock.
	if err := other.Deliver(ctx, "alice", "", []byte("x\n")); err != nil {
		t.Fatalf("Deliver while locked = %v", err)
	}
	// The holder refreshes the lock, so it does not go stale while held.
	time.Sleep(2 * e.opts.StaleLockTimeout)
	if _, err := login(other).Open(ctx, ""); !errors.Is(err, mailstore.ErrLocked) {
		t.Fatalf("Open of a held, refreshed lock = %v, want ErrLocked", err)
	}
	_ = md.Close()
	if _, err := os.Stat(lock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("lock left after Close: %v", err)
	}

	// A lock of a dead process on this host is broken at once.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("cannot run true:", err)
	}
	dead := cmd.ProcessState.Pid()
	writeFile(t, lock, fmt.Sprintf("%d %s\n", dead, s.host))
	md = openDrop(t, other, "alice", "")
	_ = md.Close()

	// A live holder (our parent) keeps its lock; on another host only age
	// counts.
	writeFile(t, lock, fmt.Sprintf("%d %s\n", os.Getppid(), s.host))
	if _, err := login(s).Open(ctx, ""); !errors.Is(err, mailstore.ErrLocked) {
		t.Errorf("Open over a live holder = %v, want ErrLocked", err)
	}
	writeFile(t, lock, fmt.Sprintf("%d elsewhere\n", dead))
	if _, err := login(s).Open(ctx, ""); !errors.Is(err, mailstore.ErrLocked) {
		t.Errorf("Open over a fresh remote lock = %v, want ErrLocked", err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(lock, old, old); err != nil {
		t.Fatal(err)
	}
	md = openDrop(t, s, "alice", "")
	_ = md.Close()

	// Folders lock independently.
	if err := s.Deliver(ctx, "alice", "Sent", []byte("s\n")); err != nil {
		t.Fatal(err)
	}
	md = openDrop(t, s, "alice", "")
	md2 := openDrop(t, other, "alice", "Sent")
	_ = md2.Close()
	_ = md.Close()
}

func TestCancelledContext(t *testing.T) {
	e := newEnv(t)
	s := e.store(t)
	e.userDir(t, s, "alice")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Login(ctx, "alice", testPW); !errors.Is(err, context.Canceled) {
		t.Errorf("Login = %v", err)
	}
	if err := s.Deliver(ctx, "alice", "", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Deliver = %v", err)
	}
	a, err := s.Login(context.Background(), "alice", testPW)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Open(ctx, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("Open = %v", err)
	}
	// The lock is not left behind.
	md := openDrop(t, s, "alice", "")
	_ = md.Close()
}

// TestRenameLocking checks the default lock method: one session per
// folder within a Store and between Stores, the token's names, a held
// token kept fresh, and tokens of dead or silent holders taken over.
func TestRenameLocking(t *testing.T) {
	e := newEnv(t)
	e.opts.StaleLockTimeout = 400 * time.Millisecond
	s := e.store(t)
	if s.opts.LockMethod != LockRename {
		t.Fatalf("default lock method %q", s.opts.LockMethod)
	}
	root := e.userDir(t, s, "alice")
	other := e.store(t)
	ctx := context.Background()
	tryOpen := func(st *Store, folder string) (mailstore.Maildrop, error) {
		a, err := st.Login(ctx, "alice", testPW)
		if err != nil {
			t.Fatal(err)
		}
		return a.Open(ctx, folder)
	}
	tokens := func() []string {
		t.Helper()
		entries, err := os.ReadDir(root)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries {
			if n := e.Name(); n == lockFreeName || strings.HasPrefix(n, lockHeldPrefix) {
				out = append(out, n)
			}
		}
		return out
	}

	md := openDrop(t, s, "alice", "")
	held := tokens()
	if len(held) != 1 || !strings.HasPrefix(held[0], fmt.Sprintf("%s%d.%s.", lockHeldPrefix, os.Getpid(), s.host)) {
		t.Fatalf("tokens while held: %v", held)
	}
	for name, st := range map[string]*Store{"same Store": s, "another Store": other} {
		_, err := tryOpen(st, "")
		if !errors.Is(err, mailstore.ErrLocked) || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
			t.Fatalf("%s: second Open = %v, want ErrLocked naming pid %d", name, err, os.Getpid())
		}
	}
	if err := other.Deliver(ctx, "alice", "", []byte("x\n")); err != nil {
		t.Fatalf("Deliver while locked = %v", err)
	}
	// The holder refreshes its token, so it does not go stale while held.
	time.Sleep(2 * e.opts.StaleLockTimeout)
	if _, err := tryOpen(other, ""); !errors.Is(err, mailstore.ErrLocked) {
		t.Fatalf("Open of a held, refreshed lock = %v, want ErrLocked", err)
	}
	_ = md.Close()
	if got := tokens(); len(got) != 1 || got[0] != lockFreeName {
		t.Fatalf("tokens after Close: %v", got)
	}
	// A token untouched for long (its last session was long ago) is
	// fresh again once taken: rename keeps the old time.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(root, lockFreeName), old, old); err != nil {
		t.Fatal(err)
	}
	md = openDrop(t, s, "alice", "")
	if _, err := tryOpen(other, ""); !errors.Is(err, mailstore.ErrLocked) {
		t.Fatalf("Open of a just-taken token last used long ago = %v, want ErrLocked", err)
	}
	_ = md.Close()

	// A token left by a dead process on this host is taken over at once.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("cannot run true:", err)
	}
	dead := cmd.ProcessState.Pid()
	leave := func(pid int, host string) string {
		t.Helper()
		name := filepath.Join(root, fmt.Sprintf("%s%d.%s.7", lockHeldPrefix, pid, host))
		if err := os.Rename(filepath.Join(root, lockFreeName), name); err != nil {
			t.Fatal(err)
		}
		return name
	}
	leave(dead, s.host)
	md = openDrop(t, other, "alice", "")
	_ = md.Close()
	// A live holder (our parent) keeps it; on another host only age counts.
	leave(os.Getppid(), s.host)
	if _, err := tryOpen(s, ""); !errors.Is(err, mailstore.ErrLocked) {
		t.Errorf("Open over a live holder = %v, want ErrLocked", err)
	}
	name := filepath.Join(root, fmt.Sprintf("%s%d.%s.7", lockHeldPrefix, os.Getppid(), s.host))
	remote := filepath.Join(root, fmt.Sprintf("%s%d.%s.7", lockHeldPrefix, dead, "elsewhere.example"))
	if err := os.Rename(name, remote); err != nil {
		t.Fatal(err)
	}
	if _, err := tryOpen(s, ""); !errors.Is(err, mailstore.ErrLocked) {
		t.Errorf("Open over a fresh remote lock = %v, want ErrLocked", err)
	}
	if err := os.Chtimes(remote, old, old); err != nil {
		t.Fatal(err)
	}
	md = openDrop(t, s, "alice", "")
	_ = md.Close()
	if got := tokens(); len(got) != 1 || got[0] != lockFreeName {
		t.Fatalf("tokens at the end: %v", got)
	}

	// Sessions racing for one folder through separate Stores: never two
	// at once, and one token in the end.
	var inside, overlaps, opened atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		st := e.store(t)
		wg.Go(func() {
			a, err := st.Login(ctx, "alice", testPW)
			if err != nil {
				t.Error(err)
				return
			}
			for range 200 {
				md, err := a.Open(ctx, "")
				if errors.Is(err, mailstore.ErrLocked) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				if inside.Add(1) != 1 {
					overlaps.Add(1)
				}
				opened.Add(1)
				inside.Add(-1)
				_ = md.Close()
			}
		})
	}
	wg.Wait()
	if overlaps.Load() != 0 || opened.Load() == 0 {
		t.Errorf("%d sessions opened, %d overlapping", opened.Load(), overlaps.Load())
	}
	if got := tokens(); len(got) != 1 || got[0] != lockFreeName {
		t.Fatalf("tokens after the race: %v", got)
	}
}

// TestFlockLocking checks the default lock method: one session per
// folder, whether the other session is in this Store, another Store of
// this process or another process, and a lock that its holder's death
// releases at once.
func TestFlockLocking(t *testing.T) {
	e := newEnv(t)
	e.opts.LockMethod = LockFlock
	s := e.store(t)
	root := e.userDir(t, s, "alice")
	other := e.store(t)
	lock := filepath.Join(root, lockName)
	ctx := context.Background()
	tryOpen := func(st *Store, folder string) (mailstore.Maildrop, error) {
		a, err := st.Login(ctx, "alice", testPW)
		if err != nil {
			t.Fatal(err)
		}
		return a.Open(ctx, folder)
	}

	md := openDrop(t, s, "alice", "")
	for name, st := range map[string]*Store{"same Store": s, "another Store": other} {
		_, err := tryOpen(st, "")
		if !errors.Is(err, mailstore.ErrLocked) {
			t.Fatalf("%s: second Open = %v, want ErrLocked", name, err)
		}
		if !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
			t.Errorf("%s: error %q does not name the holder's pid", name, err)
		}
	}
	if err := other.Deliver(ctx, "alice", "", []byte("x\n")); err != nil {
		t.Fatalf("Deliver while locked = %v", err)
	}
	// Folders lock independently.
	if err := s.Deliver(ctx, "alice", "Sent", []byte("s\n")); err != nil {
		t.Fatal(err)
	}
	md2, err := tryOpen(other, "Sent")
	if err != nil {
		t.Fatalf("Open of another folder = %v", err)
	}
	_ = md2.Close()
	_ = md.Close()
	if _, err := os.Stat(lock); err != nil {
		t.Fatalf("the lock file is kept between sessions: %v", err)
	}
	md = openDrop(t, other, "alice", "")
	_ = md.Close()

	// Another process holds the lock, then dies.
	bin, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("flock(1) not installed (util-linux)")
	}
	// -o: the lock stays with flock(1) itself, not with the command it
	// runs, so that killing flock(1) is the holder's death.
	cmd := exec.Command(bin, "-n", "-x", "-o", lock, "-c", "echo held; exec sleep 60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	buf := make([]byte, 5)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "held\n" {
		t.Fatalf("flock(1) = %q, %v", buf, err)
	}
	if _, err := tryOpen(s, ""); !errors.Is(err, mailstore.ErrLocked) {
		t.Fatalf("Open while another process holds the lock = %v, want ErrLocked", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_, _ = cmd.Process.Wait()
	md, err = tryOpen(s, "")
	if err != nil {
		t.Fatalf("Open after the holder died = %v", err)
	}
	_ = md.Close()
}

func TestParseCache(t *testing.T) {
	c := newCache()
	for _, e := range []cacheEntry{
		{seq: 1, size: 10, uid: "u1", name: "a b\n:2,S"},
		{seq: 2, size: 0, uid: "u2", name: "x,W=0:2,"},
		{seq: 4, size: 7, uid: "u3", name: `q"uote\`},
	} {
		e.base = parseName(e.name).base
		c.entries[e.base] = e
	}
	c.next = 5
	c.stamp = listStamp{curMtime: 1, newMtime: 2, listed: int64(10 * time.Second)}
	data := c.marshal()
	back, err := parseCache(data)
	if err != nil {
		t.Fatalf("parseCache(%q) = %v", data, err)
	}
	if back.next != 5 || back.stamp != c.stamp || len(back.list) != 3 {
		t.Fatalf("round trip = %+v", back)
	}
	for i, base := range []string{"a b\n", "x,W=0", `q"uote\`} {
		if back.list[i] != c.entries[base] {
			t.Errorf("entry %d = %+v, want %+v", i, back.list[i], c.entries[base])
		}
	}
	if !bytes.Contains(data, []byte("\ncur 1 2 10000000000\n")) || !bytes.Contains(data, []byte("2 0 u2 x,W=0:2,\n")) {
		t.Errorf("a plain name is not written as it is:\n%s", data)
	}
	for _, bad := range [][]byte{
		data[:len(data)-4],
		bytes.Replace(data, []byte("u2"), []byte("u1"), 1),
		bytes.Replace(data, []byte("next 5"), []byte("next 4"), 1),
		bytes.Replace(data, []byte("\n2 0 "), []byte("\n1 0 "), 1),
		bytes.Replace(data, []byte("cur 1 "), []byte("cur x "), 1),
		append(bytes.Clone(data), "trailing\n"...),
		[]byte("other\n"),
	} {
		if _, err := parseCache(bad); err == nil {
			t.Errorf("parseCache(%q) succeeded", bad)
		}
	}
	// Version 1 (base names, quoted; no stamp) is still read.
	v1 := "popgate-maildir-cache 1\nnext 3\n1 10 u1 \"a b\"\n2 5 u2 \"c,W=5\"\nend\n"
	old, err := parseCache([]byte(v1))
	if err != nil || len(old.list) != 2 || old.list[0].base != "a b" || old.list[1].uid != "u2" || old.list[1].name != "" ||
		old.stamp != (listStamp{}) {
		t.Fatalf("parseCache(v1) = %+v, %v", old, err)
	}
	// Entries whose names are unknown are written with an empty stamp.
	old.stamp = c.stamp
	if again, err := parseCache(old.marshal()); err != nil || again.stamp != (listStamp{}) {
		t.Errorf("v1 entries rewritten with stamp %+v, %v", again.stamp, err)
	}
}

// ageFolder sets the modification times of the folder's cur/ and new/
// to d ago.
func ageFolder(t *testing.T, dir string, d time.Duration) {
	t.Helper()
	when := time.Now().Add(-d)
	for _, sub := range []string{"cur", "new"} {
		if err := os.Chtimes(filepath.Join(dir, sub), when, when); err != nil {
			t.Fatal(err)
		}
	}
}

// TestListingReuse checks that a login reuses the cache's listing of cur/
// only when cur/ has not changed since a listing made while it was
// stable, and that every change another program makes to cur/ (a flag
// rename, a removal, new mail) is seen at the next login.
func TestListingReuse(t *testing.T) {
	e := newEnv(t)
	s := e.store(t)
	ctx := context.Background()
	root := e.userDir(t, s, "alice")
	cur := filepath.Join(root, "cur")
	for i := range 5 {
		if _, err := s.DeliverPlain(ctx, "alice", "", []byte(fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i))); err != nil {
			t.Fatal(err)
		}
	}
	login := func(name string, wantReused bool) []mailstore.MessageInfo {
		t.Helper()
		before := s.listingsReused.Load()
		md := openDrop(t, s, "alice", "")
		defer md.Close()
		msgs := list(t, md)
		for _, m := range msgs {
			if got := read(t, md, m); !strings.HasPrefix(got, "Subject: ") {
				t.Errorf("%s: message %s = %q", name, m.UID, got)
			}
		}
		if reused := s.listingsReused.Load() != before; reused != wantReused {
			t.Errorf("%s: listing reused = %v, want %v", name, reused, wantReused)
		}
		return msgs
	}
	first := login("first login", false)
	if len(first) != 5 {
		t.Fatalf("%d messages, want 5", len(first))
	}
	// cur/ was just changed (new/ was moved into it): not reusable.
	login("cur/ changed a moment ago", false)
	ageFolder(t, root, time.Minute)
	login("cur/ stable: listed and stamped", false)
	if got := login("unchanged since", true); fmt.Sprint(got) != fmt.Sprint(first) {
		t.Errorf("reused listing differs:\n%v\n%v", got, first)
	}

	// Another program marks a message seen: the rename is noticed.
	entries, err := os.ReadDir(cur)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	old := entries[0].Name()
	if err := os.Rename(filepath.Join(cur, old), filepath.Join(cur, parseName(old).withFlag('S'))); err != nil {
		t.Fatal(err)
	}
	ageFolder(t, root, 10*time.Second)
	got := login("after a flag rename", false)
	seen := 0
	for _, m := range got {
		if m.Seen {
			seen++
		}
	}
	if len(got) != 5 || seen != 1 {
		t.Errorf("after a flag rename: %d messages, %d seen; want 5, 1", len(got), seen)
	}
	login("renamed, listing reused", true)

	// Another program removes a message.
	if err := os.Remove(filepath.Join(cur, parseName(old).withFlag('S'))); err != nil {
		t.Fatal(err)
	}
	ageFolder(t, root, 10*time.Second)
	if got := login("after a removal", false); len(got) != 4 {
		t.Errorf("after a removal: %d messages, want 4", len(got))
	}
	if got := login("removed, listing reused", true); len(got) != 4 {
		t.Errorf("removed, listing reused: %d messages, want 4", len(got))
	}

	// New mail is moved from new/ to cur/, which changes cur/.
	if _, err := s.DeliverPlain(ctx, "alice", "", []byte("Subject: late\n\nlate\n")); err != nil {
		t.Fatal(err)
	}
	if got := login("after a delivery", false); len(got) != 5 {
		t.Errorf("after a delivery: %d messages, want 5", len(got))
	}

	// A commit of this session changes cur/ as well.
	ageFolder(t, root, 10*time.Second)
	login("stable again", false)
	md := openDrop(t, s, "alice", "")
	msgs := list(t, md)
	if err := md.Commit(ctx, mailstore.Changes{Deleted: []string{msgs[0].UID}, Seen: []string{msgs[1].UID}}); err != nil {
		t.Fatal(err)
	}
	if got := login("after a commit", false); len(got) != 4 || !got[0].Seen {
		t.Errorf("after a commit: %v", got)
	}
}

// TestCacheUpgrade checks that a version 1 cache keeps its UIDs and order
// and is rewritten in version 2.
func TestCacheUpgrade(t *testing.T) {
	e := newEnv(t)
	s := e.store(t)
	root := e.userDir(t, s, "alice")
	names := []string{"1600000002.M1P1.h,W=9:2,", "1600000001.M1P1.h,W=9:2,S"}
	for _, n := range names {
		writeFile(t, filepath.Join(root, "cur", n), "Subject:\n")
	}
	// The older message comes second in the v1 cache's order, with made-up UIDs.
	writeFile(t, filepath.Join(root, cacheName), "popgate-maildir-cache 1\nnext 9\n"+
		"3 9 first \"1600000002.M1P1.h,W=9\"\n7 9 second \"1600000001.M1P1.h,W=9\"\nend\n")
	md := openDrop(t, s, "alice", "")
	got := list(t, md)
	_ = md.Close()
	if len(got) != 2 || got[0].UID != "first" || got[1].UID != "second" || !got[1].Seen {
		t.Fatalf("listing = %v", got)
	}
	data, err := os.ReadFile(filepath.Join(root, cacheName))
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseCache(data)
	if err != nil || !bytes.HasPrefix(data, []byte(cacheHeader+"\n")) || len(c.list) != 2 || c.list[0].name != names[0] || c.list[1].name != names[1] {
		t.Errorf("cache after upgrade:\n%s\n%v", data, err)
	}
}

// fixedAuth is an Authenticator without APOP or password setting.
type fixedAuth struct{}

func (fixedAuth) Authenticate(_ context.Context, user, password string) (users.Identity, error) {
	if user == "alice" && password == testPW {
		return users.Identity{User: user}, nil
	}
	return users.Identity{}, fmt.Errorf("fixed: %w", mailstore.ErrAuthFailed)
}

func TestMinimalAuthenticator(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{Path: dir + "/%u", Users: fixedAuth{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.AddUser(ctx, "bob", "x"); !errors.Is(err, mailstore.ErrUnsupported) {
		t.Errorf("AddUser = %v, want ErrUnsupported", err)
	}
	if _, err := s.LoginAPOP(ctx, "alice", "<t>", "00"); !errors.Is(err, mailstore.ErrUnsupported) {
		t.Errorf("LoginAPOP = %v, want ErrUnsupported", err)
	}
	if _, err := s.Login(ctx, "alice", testPW); err != nil {
		t.Errorf("Login = %v", err)
	}
}

// TestMessageFilesClosed checks that reading messages, whole, in part or
// not at all, leaves no descriptor open once each reader is closed.
func TestMessageFilesClosed(t *testing.T) {
	fds := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("no /proc/self/fd: %v", err)
		}
		return len(entries)
	}
	e := newEnv(t)
	s := e.store(t)
	root := e.userDir(t, s, "alice")
	for i := range 20 {
		writeFile(t, filepath.Join(root, "cur", fmt.Sprintf("%d.M1P1.h,S=6:2,", 4000+i)), "hello\n")
	}
	md := openDrop(t, s, "alice", "")
	msgs := list(t, md)
	before := fds()
	for round := range 3 {
		for _, m := range msgs {
			rc, err := md.OpenMessage(context.Background(), m.UID)
			if err != nil {
				t.Fatal(err)
			}
			switch round {
			case 0:
				if b, err := io.ReadAll(rc); err != nil || string(b) != "hello\r\n" {
					t.Fatalf("read %q, %v", b, err)
				}
			case 1:
				var one [1]byte
				if _, err := rc.Read(one[:]); err != nil {
					t.Fatal(err)
				}
			}
			if err := rc.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if after := fds(); after != before {
		t.Errorf("%d descriptors open after reading, %d before", after, before)
	}
	if err := md.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestReadFile checks the cache's file reader on files of several sizes
// and on a missing file.
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 1, 511, 4096, 100_000} {
		data := strings.Repeat("c", n)
		path := filepath.Join(dir, strconv.Itoa(n))
		writeFile(t, path, data)
		got, err := readFile(path)
		if err != nil || string(got) != data {
			t.Errorf("readFile of %d octets = %d octets, %v", n, len(got), err)
		}
	}
	if _, err := readFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("readFile of a missing file = %v, want ErrNotExist", err)
	}
}

// TestSortFresh checks sortFresh against the plain comparison it replaced
// (Dovecot UID first, then the name's seconds and microseconds, then the
// base name) on names of every kind, with and without Dovecot UIDs.
func TestSortFresh(t *testing.T) {
	var names []string
	for i := range 300 {
		switch i % 6 {
		case 0:
			names = append(names, fmt.Sprintf("%d.M%dP1.h", 1700000000+i%7, (i*7919)%1000))
		case 1:
			names = append(names, fmt.Sprintf("%d.%d_1.h", 1700000000+i%5, i))
		case 2:
			names = append(names, fmt.Sprintf("x%d.weird", i))
		case 3:
			names = append(names, fmt.Sprintf("%d.M%dP%d.h,S=10", 1600000000+i%3, i%4, i))
		case 4:
			names = append(names, fmt.Sprintf("%d.Mx.h", 1700000000+i%2))
		default:
			names = append(names, fmt.Sprintf("%d", 1700000000+i%9))
		}
	}
	dove := map[string]dovecotEntry{}
	for i, n := range names {
		if i%4 == 0 {
			dove[n] = dovecotEntry{imapUID: uint32((i * 31) % 17)}
		}
	}
	var fresh []fileName
	for _, n := range names {
		fresh = append(fresh, parseName(n+":2,"))
	}
	want := slices.Clone(fresh)
	sort.SliceStable(want, func(i, j int) bool {
		di, iok := dove[want[i].base]
		dj, jok := dove[want[j].base]
		if iok != jok {
			return iok
		}
		if iok && di.imapUID != dj.imapUID {
			return di.imapUID < dj.imapUID
		}
		si, ui := deliveryOrder(want[i].base)
		sj, uj := deliveryOrder(want[j].base)
		if si != sj {
			return si < sj
		}
		if ui != uj {
			return ui < uj
		}
		return want[i].base < want[j].base
	})
	sortFresh(fresh, dove)
	for i := range fresh {
		if fresh[i].base != want[i].base {
			t.Fatalf("position %d: %q, want %q", i, fresh[i].base, want[i].base)
		}
	}
}
