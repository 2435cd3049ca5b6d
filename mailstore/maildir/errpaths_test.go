package maildir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/rs/zerolog"

	"popgate/pop3"
	"popgate/pop3/wire/wiretest"
)

// The tests of this file drive a POP3 server (pop3.New) over the maildir
// store on loopback and check that a file-system failure gives a clear
// -ERR [SYS/...] reply and a log line, and loses no message.

// syncBuf is a log sink shared by the server's goroutines and the test.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// hasLine reports whether one log line contains every one of words.
func (b *syncBuf) hasLine(words ...string) bool {
	for _, l := range strings.Split(b.String(), "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			return true
		}
	}
	return false
}

// pop3Over serves s with a POP3 server on loopback, logging to log.
func pop3Over(t *testing.T, s *Store, log io.Writer) string {
	t.Helper()
	srv, err := pop3.New(pop3.Options{Store: s, Hostname: "test.example", Logger: zerolog.New(log)})
	if err != nil {
		t.Fatal(err)
	}
	return wiretest.Serve(t, srv.ServeConn)
}

// popLogin connects and sends USER and PASS for alice; it returns the
// client and the reply to PASS.
func popLogin(t *testing.T, addr string) (*wiretest.Client, string) {
	t.Helper()
	return popLoginAs(t, addr, "alice")
}

// popLoginAs is popLogin for another user (password testPW).
func popLoginAs(t *testing.T, addr, user string) (*wiretest.Client, string) {
	t.Helper()
	c := wiretest.Dial(t, addr)
	c.Expect("+OK")
	c.Send("USER " + user)
	c.Expect("+OK")
	c.Send("PASS " + testPW)
	l, err := c.Line()
	if err != nil {
		t.Fatalf("PASS: %v", err)
	}
	return c, l
}

// popMulti sends cmd and returns the lines of its multi-line reply.
func popMulti(t *testing.T, c *wiretest.Client, cmd string) []string {
	t.Helper()
	c.Send(cmd)
	c.Expect("+OK")
	var lines []string
	for {
		l, err := c.Line()
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		if l == "." {
			return lines
		}
		lines = append(lines, strings.TrimPrefix(l, "."))
	}
}

// mailFiles returns the content of every message file of the Maildir
// root (cur/ and new/), by base-name UID, and the file names.
func mailFiles(t *testing.T, root string) (map[string]string, []string) {
	t.Helper()
	out := map[string]string{}
	var names []string
	for _, sub := range []string{"cur", "new"} {
		entries, err := os.ReadDir(filepath.Join(root, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(root, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out[baseUID(parseName(e.Name()).base)] = string(data)
			names = append(names, sub+"/"+e.Name())
		}
	}
	slices.Sort(names)
	return out, names
}

// noLeftovers checks that no temporary file of popgate remains and that
// the folder is not locked: the rename method's token is free, no dotlock
// exists, and the permanent lock file of the flock method, if there is
// one, is free.
func noLeftovers(t *testing.T, root string) {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if name == lockName {
			f, err := os.OpenFile(filepath.Join(root, name), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := flockExclusive(f); err != nil {
				t.Errorf("the folder is still locked: %v", err)
			}
			_ = f.Close()
			continue
		}
		if name == lockFreeName || name == lockGuardName {
			continue // the rename method's permanent token (free) and guard
		}
		if strings.HasPrefix(name, lockName) || strings.HasPrefix(name, cacheTmp) {
			t.Errorf("%s left in the Maildir", name)
		}
	}
}

// deliverN delivers n distinct messages to alice's INBOX.
func deliverN(t *testing.T, s *Store, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		msg := fmt.Sprintf("From: a@example.org\nSubject: %d\n\nbody %d\n%s\n", i, i, strings.Repeat("x", 100*i))
		if err := s.Deliver(context.Background(), "alice", "", []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestUnreadableMaildir: a Maildir, a cur/ or a message that the server
// may not read gives -ERR [SYS/PERM] and an error log line, and every
// message is there once the permissions are repaired. Permissions do not
// stop root, so as root the test runs itself again as nobody.
func TestUnreadableMaildir(t *testing.T) {
	if os.Geteuid() == 0 {
		runAsNobody(t, "TestUnreadableMaildir")
		return
	}
	e := newEnv(t)
	log := &syncBuf{}
	e.opts.Logger = zerolog.New(log)
	s := e.store(t)
	root := e.userDir(t, s, "alice")
	deliverN(t, s, 3)
	md := openDrop(t, s, "alice", "") // new/ → cur/, cache written
	var uids []string
	for _, m := range list(t, md) {
		uids = append(uids, m.UID)
	}
	if err := md.Close(); err != nil {
		t.Fatal(err)
	}
	// One more waits in new/: it must not be lost when cur/ is unwritable.
	deliverN(t, s, 1)
	want, wantNames := mailFiles(t, root)
	addr := pop3Over(t, s, log)

	for _, tc := range []struct{ name, dir string }{
		{"maildir 000", root},
		{"cur 000", filepath.Join(root, "cur")},
	} {
		if err := os.Chmod(tc.dir, 0); err != nil {
			t.Fatal(err)
		}
		c, reply := popLogin(t, addr)
		if err := os.Chmod(tc.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(reply, "-ERR [SYS/PERM] ") {
			t.Errorf("%s: PASS reply %q, want -ERR [SYS/PERM]", tc.name, reply)
		}
		c.Send("QUIT")
		c.Expect("+OK")
		if !log.hasLine(`"level":"error"`, "command failed", "permission denied", tc.dir) {
			t.Errorf("%s: no error log line naming %s; log:\n%s", tc.name, tc.dir, log)
		}
		got, names := mailFiles(t, root)
		if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(names) != fmt.Sprint(wantNames) {
			t.Errorf("%s: Maildir changed:\n got %v\nwant %v", tc.name, names, wantNames)
		}
		noLeftovers(t, root)
	}

	// An unreadable message: RETR fails, the session goes on, QUIT
	// commits and the message stays (not marked seen).
	c, reply := popLogin(t, addr)
	if !strings.HasPrefix(reply, "+OK") {
		t.Fatalf("PASS = %q", reply)
	}
	_, names := mailFiles(t, root)
	var first string
	for _, n := range names {
		if baseUID(parseName(filepath.Base(n)).base) == uids[0] {
			first = filepath.Join(root, n)
		}
	}
	if err := os.Chmod(first, 0); err != nil {
		t.Fatal(err)
	}
	c.Send("RETR 1")
	reply = c.Expect("-ERR")
	if !strings.HasPrefix(reply, "-ERR [SYS/PERM] ") {
		t.Errorf("RETR of an unreadable message: %q, want -ERR [SYS/PERM]", reply)
	}
	if !log.hasLine(`"level":"error"`, "command failed", "permission denied", uids[0]) {
		t.Errorf("no error log line for the unreadable message; log:\n%s", log)
	}
	lines := popMulti(t, c, "RETR 2")
	c.Send("QUIT")
	c.Expect("+OK")
	if err := os.Chmod(first, 0o600); err != nil {
		t.Fatal(err)
	}
	if len(lines) == 0 {
		t.Error("RETR 2 returned nothing")
	}
	got, names := mailFiles(t, root)
	if fmt.Sprint(got) != fmt.Sprint(want) || len(names) != len(wantNames) {
		t.Errorf("after the RETR failure the Maildir has %v, want %v", names, wantNames)
	}
	noLeftovers(t, root)
	t.Logf("%d messages kept through 3 permission failures", len(got))
}

// runAsNobody runs the test named name again in a copy of the test
// binary, as the user nobody, and fails if it does not pass there.
func runAsNobody(t *testing.T, name string) {
	t.Helper()
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("running as root and there is no user nobody to check permissions as: %v", err)
	}
	uid, _ := strconv.ParseUint(nobody.Uid, 10, 32)
	gid, _ := strconv.ParseUint(nobody.Gid, 10, 32)
	dir, err := os.MkdirTemp("", "popgate-as-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	// The go test build directory is private to root: copy the binary.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "maildir.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tmp, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^"+name+"$", "-test.count=1", "-test.v")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "HOME="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	t.Logf("as nobody (uid %d):\n%s", uid, out)
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+name)) {
		t.Fatalf("%s as nobody did not pass: %v", name, err)
	}
}

// TestFullDisk fills a small tmpfs under a session: the commit (unlinks
// and renames, which need no space) succeeds, and the cache that cannot
// be saved (it needs more than the one deleted message freed) is logged.
// On the full disk both a folder opened before and one never opened can
// still be read: the session lock renames a token file (made empty on
// the first login), which needs no data block. No message is lost.
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs; TestCommitFailureKeepsMail covers a failing commit")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "popgate-test", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); TestCommitFailureKeepsMail covers a failing commit", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
			_ = exec.Command("umount", "-l", mnt).Run()
		}
	})
	e := newEnv(t)
	e.opts.Path = filepath.Join(mnt, "%u", "Maildir")
	log := &syncBuf{}
	e.opts.Logger = zerolog.New(log)
	s := e.store(t)
	if err := s.AddUser(context.Background(), "alice", testPW); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(mnt, "alice", "Maildir")
	const n = 60 // a cache of more than one page
	deliverN(t, s, n)
	if err := s.AddUser(context.Background(), "bob", testPW); err != nil {
		t.Fatal(err)
	}
	want, _ := mailFiles(t, root)
	addr := pop3Over(t, s, log)

	c, reply := popLogin(t, addr)
	if !strings.HasPrefix(reply, "+OK") {
		t.Fatalf("PASS = %q", reply)
	}
	uidls := popMulti(t, c, "UIDL")
	popMulti(t, c, "RETR 1")
	c.Send("DELE 2")
	c.Expect("+OK")

	filler := filepath.Join(mnt, "filler")
	fillErr := fill(filler)
	if !errors.Is(fillErr, syscall.ENOSPC) {
		t.Fatalf("filling the tmpfs: %v, want ENOSPC", fillErr)
	}
	c.Send("QUIT")
	reply = c.Expect("+OK")
	t.Logf("QUIT on a full disk: %q", reply)
	if !log.hasLine(`"level":"warn"`, "cannot save maildir cache", "no space left on device") {
		t.Errorf("no warning about the cache; log:\n%s", log)
	}

	// Logins while the disk is full (again: the deletion freed some).
	if err := fill(filler); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the tmpfs: %v, want ENOSPC", err)
	}
	c, reply = popLogin(t, addr)
	if !strings.HasPrefix(reply, "+OK") {
		t.Errorf("PASS on a full disk, folder opened before: %q, want +OK", reply)
	} else if got := popMulti(t, c, "UIDL"); len(got) != n-1 {
		t.Errorf("UIDL on a full disk lists %d messages, want %d", len(got), n-1)
	}
	c.Send("QUIT")
	c.Expect("+OK")
	c, reply = popLoginAs(t, addr, "bob")
	if !strings.HasPrefix(reply, "+OK maildrop has 0 messages") {
		t.Errorf("PASS on a full disk, folder never opened: %q, want +OK and no messages", reply)
	}
	c.Send("QUIT")
	c.Expect("+OK")
	noLeftovers(t, root)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	got, names := mailFiles(t, root)
	delete(want, strings.Fields(uidls[1])[1])
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the full disk the Maildir has %v, want the %d messages not deleted", names, n-1)
	}
	seen := 0
	for _, n := range names {
		if parseName(filepath.Base(n)).seen() {
			seen++
		}
	}
	if seen != 1 {
		t.Errorf("%d messages marked seen, want 1 (RETR 1): %v", seen, names)
	}
	// With space again, the next session sees the same UIDLs.
	c, reply = popLogin(t, addr)
	if !strings.HasPrefix(reply, "+OK") {
		t.Fatalf("PASS = %q", reply)
	}
	after := popMulti(t, c, "UIDL")
	c.Send("QUIT")
	c.Expect("+OK")
	var wantU []string
	for k, l := range slices.Delete(slices.Clone(uidls), 1, 2) {
		wantU = append(wantU, strconv.Itoa(k+1)+" "+strings.Fields(l)[1])
	}
	if fmt.Sprint(after) != fmt.Sprint(wantU) {
		t.Errorf("UIDL after = %v, want %v", after, wantU)
	}
	t.Logf("full disk: %d of %d messages kept (1 deleted as asked), UIDLs unchanged", len(got), n)
}

// fill appends to path until the file system is full and returns the
// error that stopped it.
func fill(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
}

// TestCommitFailureKeepsMail injects ENOSPC into the unlinks and EIO into
// the renames of Commit (Store.removeHook, Store.renameHook): QUIT gets
// -ERR [SYS/TEMP], the failure is logged, every message is still there
// and the lock is released.
func TestCommitFailureKeepsMail(t *testing.T) {
	e := newEnv(t)
	log := &syncBuf{}
	e.opts.Logger = zerolog.New(log)
	s := e.store(t)
	root := e.userDir(t, s, "alice")
	var failing atomic.Bool
	s.removeHook = func(name string) error {
		if failing.Load() {
			return &fs.PathError{Op: "remove", Path: name, Err: syscall.ENOSPC}
		}
		return os.Remove(name)
	}
	s.renameHook = func(oldpath, newpath string) error {
		if failing.Load() {
			return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: syscall.EIO}
		}
		return os.Rename(oldpath, newpath)
	}
	deliverN(t, s, 4)
	addr := pop3Over(t, s, log)
	c, reply := popLogin(t, addr)
	if !strings.HasPrefix(reply, "+OK") {
		t.Fatalf("PASS = %q", reply)
	}
	uidls := popMulti(t, c, "UIDL")
	want, wantNames := mailFiles(t, root) // after new/ → cur/
	popMulti(t, c, "RETR 1")
	c.Send("DELE 2")
	c.Expect("+OK")
	c.Send("DELE 3")
	c.Expect("+OK")
	failing.Store(true)
	c.Send("QUIT")
	quit := c.Expect("-ERR")
	if !strings.HasPrefix(quit, "-ERR [SYS/TEMP] ") {
		t.Errorf("QUIT with failing unlinks: %q, want -ERR [SYS/TEMP]", quit)
	}
	c.ExpectClose()
	failing.Store(false)
	if !log.hasLine(`"level":"error"`, "update failed", "no space left on device", "input/output error") {
		t.Errorf("no error log line for the failed update; log:\n%s", log)
	}
	got, names := mailFiles(t, root)
	if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(names) != fmt.Sprint(wantNames) {
		t.Errorf("after the failed commit the Maildir has %v, want %v", names, wantNames)
	}
	noLeftovers(t, root)
	// The lock was released: the next session has every message, same
	// UIDLs.
	c, reply = popLogin(t, addr)
	if !strings.HasPrefix(reply, "+OK") {
		t.Fatalf("PASS after the failed commit = %q", reply)
	}
	after := popMulti(t, c, "UIDL")
	c.Send("QUIT")
	c.Expect("+OK")
	if fmt.Sprint(after) != fmt.Sprint(uidls) {
		t.Errorf("UIDL after = %v, want %v", after, uidls)
	}
	t.Logf("QUIT reply %q; %d of %d messages kept", quit, len(got), len(want))
}
