package mbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"popgate/mailstore"
)

// userStore is a store with helperUser ("u", password "pw") and the path
// of that user's spool.
func userStore(t testing.TB, opts Options) (*Store, string) {
	t.Helper()
	s := newStore(t, opts)
	if err := s.AddUser(context.Background(), helperUser, "pw"); err != nil {
		t.Fatal(err)
	}
	return s, s.spoolPath(helperUser)
}

func openInbox(t *testing.T, s *Store) mailstore.Maildrop {
	t.Helper()
	acct, err := s.Login(context.Background(), helperUser, "pw")
	if err != nil {
		t.Fatalf("Login = %v", err)
	}
	md, err := acct.Open(context.Background(), "")
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	return md
}

func deliverN(t *testing.T, s *Store, tag string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		msg := fmt.Sprintf("Subject: %s-%d\n\nbody %d\nFrom here on\n", tag, i, i)
		if err := s.Deliver(context.Background(), helperUser, "", []byte(msg)); err != nil {
			t.Fatalf("Deliver = %v", err)
		}
	}
}

func TestMissingAndEmptySpool(t *testing.T) {
	s, path := userStore(t, testOptions(t))
	md := openInbox(t, s)
	if msgs, err := md.Messages(context.Background()); err != nil || len(msgs) != 0 {
		t.Fatalf("missing spool: Messages() = %v, %v; want empty", msgs, err)
	}
	if err := md.Commit(context.Background(), mailstore.Changes{Deleted: []string{"x"}}); err != nil {
		t.Fatalf("missing spool: Commit = %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("opening a missing spool created it: %v", err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := inbox(t, s); len(got) != 0 {
		t.Errorf("0-byte spool: %q, want empty", got)
	}
}

func TestAppendVisibleNextSession(t *testing.T) {
	s, _ := userStore(t, testOptions(t))
	deliverN(t, s, "a", 2)
	md := openInbox(t, s)
	deliverN(t, s, "b", 1)
	subs, msgs, err := subjects(context.Background(), md)
	if err != nil || len(subs) != 2 {
		t.Fatalf("session sees %q (%v), want the 2 older messages", subs, err)
	}
	if err := md.Commit(context.Background(), mailstore.Changes{Deleted: []string{msgs[0].UID}}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(inbox(t, s), " "); got != "a-1 b-0" {
		t.Errorf("next session sees %q, want a-1 b-0", got)
	}
}

func TestCommitRefusesForeignRewrite(t *testing.T) {
	s, path := userStore(t, testOptions(t))
	deliverN(t, s, "a", 3)
	md := openInbox(t, s)
	msgs, _ := md.Messages(context.Background())
	// A mail reader expunges the first message behind our back.
	data, _ := os.ReadFile(path)
	i := strings.Index(string(data), "\n\nFrom ")
	changed := data[i+2:]
	if err := os.WriteFile(path, changed, 0o600); err != nil {
		t.Fatal(err)
	}
	err := md.Commit(context.Background(), mailstore.Changes{Deleted: []string{msgs[2].UID}})
	if !errors.Is(err, ErrSpoolChanged) {
		t.Fatalf("Commit after a foreign rewrite = %v, want ErrSpoolChanged", err)
	}
	if now, _ := os.ReadFile(path); string(now) != string(changed) {
		t.Errorf("a refused commit changed the spool")
	}
	// Same size, different bytes: the checksum catches it.
	md = openInbox(t, s)
	msgs, _ = md.Messages(context.Background())
	now, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.Replace(string(now), "body 1", "BODY 1", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := md.Commit(context.Background(), mailstore.Changes{Deleted: []string{msgs[1].UID}}); !errors.Is(err, ErrSpoolChanged) {
		t.Fatalf("Commit after an in-place edit = %v, want ErrSpoolChanged", err)
	}
}

func TestTruncateAndRewrite(t *testing.T) {
	s, path := userStore(t, testOptions(t))
	deliverN(t, s, "a", 4)
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	md := openInbox(t, s)
	msgs, _ := md.Messages(context.Background())
	if err := md.Commit(context.Background(), mailstore.Changes{Deleted: []string{msgs[3].UID}}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) {
		t.Errorf("deleting the last message replaced the spool; want truncation in place")
	}
	md = openInbox(t, s)
	msgs, _ = md.Messages(context.Background())
	if err := md.Commit(context.Background(), mailstore.Changes{Deleted: []string{msgs[0].UID}, Seen: []string{msgs[1].UID}}); err != nil {
		t.Fatal(err)
	}
	after2, _ := os.Stat(path)
	if os.SameFile(after, after2) {
		t.Errorf("deleting the first message did not rewrite the spool")
	}
	if after2.Mode().Perm() != 0o640 {
		t.Errorf("rewrite changed the mode to %v, want 0640", after2.Mode().Perm())
	}
	md = openInbox(t, s)
	defer md.Close()
	got, _ := md.Messages(context.Background())
	if len(got) != 2 || got[0].UID != msgs[1].UID || !got[0].Seen || got[1].Seen {
		t.Errorf("after rewrite: %+v; want a-1 (seen, same UID) and a-2", got)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "Subject: a-1\nStatus: RO\n\n") {
		t.Errorf("spool lacks the Status header:\n%s", data)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*popgate*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestLocks(t *testing.T) {
	opts := testOptions(t)
	opts.LockTimeout = 200 * time.Millisecond
	s, path := userStore(t, opts)
	deliverN(t, s, "a", 1)
	// A live MDA holds the dotlock (our own pid: alive).
	if err := os.WriteFile(path+".lock", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(context.Background(), helperUser, "", []byte("x\n")); !errors.Is(err, ErrSpoolBusy) {
		t.Errorf("Deliver under a live dotlock = %v, want ErrSpoolBusy", err)
	}
	// A dead one left it: removed.
	if err := os.WriteFile(path+".lock", []byte("999999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deliverN(t, s, "b", 1)
	// An old one: removed too.
	if err := os.WriteFile(path+".lock", []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-10 * time.Minute)
	if err := os.Chtimes(path+".lock", old, old); err != nil {
		t.Fatal(err)
	}
	deliverN(t, s, "c", 1)
	// The maildrop lock does not block delivery, and fails fast for a
	// second session from another process's point of view (a new Store).
	md := openInbox(t, s)
	deliverN(t, s, "d", 1)
	s2, _ := userStore(t, opts)
	acct, _ := s2.Login(context.Background(), helperUser, "pw")
	if _, err := acct.Open(context.Background(), ""); !errors.Is(err, mailstore.ErrLocked) {
		t.Errorf("second Open from another store = %v, want ErrLocked", err)
	}
	md.Close()
	if got := strings.Join(inbox(t, s2), " "); got != "a-0 b-0 c-0 d-0" {
		t.Errorf("inbox = %q", got)
	}
}

func TestAuth(t *testing.T) {
	opts := testOptions(t)
	opts.FolderDir = "%h/mail"
	home := t.TempDir()
	opts.Home = func(string) (string, error) { return home, nil }
	s, _ := userStore(t, opts)
	ctx := context.Background()
	if _, err := s.LoginAPOP(ctx, helperUser, "<1.2@h>", "00"); !errors.Is(err, mailstore.ErrAuthFailed) {
		t.Errorf("bad APOP = %v", err)
	}
	// md5("<1.2@h>pw")
	if _, err := s.LoginAPOP(ctx, helperUser, "<1.2@h>", "5e9b13653423c4d0523f1bd951085ec9"); err != nil {
		t.Errorf("APOP = %v", err)
	}
	for _, bad := range []string{"../etc", ".hidden", "a/b", ""} {
		if _, err := s.Login(ctx, bad, "pw"); !errors.Is(err, mailstore.ErrAuthFailed) {
			t.Errorf("Login(%q) = %v, want ErrAuthFailed", bad, err)
		}
	}
	noAPOP, _ := New(Options{Path: opts.Path, Auth: plainOnly{}})
	if _, err := noAPOP.LoginAPOP(ctx, helperUser, "<1@h>", "x"); !errors.Is(err, mailstore.ErrUnsupported) {
		t.Errorf("APOP without an APOPAuthenticator = %v, want ErrUnsupported", err)
	}
	if err := s.Deliver(ctx, helperUser, "Old", []byte("Subject: old\n\nx\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(home, "mail", "Old")); err != nil {
		t.Errorf("folder not under %%h/mail: %v", err)
	}
	acct, _ := s.Login(ctx, helperUser, "pw")
	if _, err := acct.Open(ctx, "../x"); !errors.Is(err, mailstore.ErrNoSuchFolder) {
		t.Errorf("Open(../x) = %v, want ErrNoSuchFolder", err)
	}
}

type plainOnly struct{}

func (plainOnly) Authenticate(context.Context, string, string) (Identity, error) {
	return Identity{}, mailstore.ErrAuthFailed
}

// TestAppendDuringCommit keeps delivering from a goroutine and from another
// process while sessions delete and commit, then checks that every message
// survived exactly once (deleted by a session, or still in the spool).
func TestAppendDuringCommit(t *testing.T) {
	s, path := userStore(t, testOptions(t))
	deliverN(t, s, "pre", 10)
	const perAppender = 150
	cmd := exec.Command(os.Args[0])
	cmd.Env = helperEnv("append", s.opts.Path, "MBOX_N="+strconv.Itoa(perAppender), "MBOX_TAG=proc")
	out := &strings.Builder{}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	procDone := make(chan error, 1)
	go func() { procDone <- cmd.Wait() }()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < perAppender; i++ {
			msg := fmt.Sprintf("Subject: gor-%d\n\n>From quoted\nFrom bare %d\n", i, i)
			if err := s.Deliver(context.Background(), helperUser, "", []byte(msg)); err != nil {
				t.Errorf("Deliver = %v", err)
				return
			}
		}
	}()
	goroutineDone := make(chan struct{})
	go func() { wg.Wait(); close(goroutineDone) }()

	deleted := map[string]int{}
	var procErr error
	running := 2
	for round := 0; running > 0 || round%2 == 1; round++ {
		select {
		case procErr = <-procDone:
			running--
			procDone = nil
		case <-goroutineDone:
			running--
			goroutineDone = nil
		default:
		}
		md := openInbox(t, s)
		subs, msgs, err := subjects(context.Background(), md)
		if err != nil {
			t.Fatal(err)
		}
		var c mailstore.Changes
		for i, m := range msgs {
			if (i+round)%2 == 0 {
				c.Deleted = append(c.Deleted, m.UID)
				deleted[subs[i]]++
			}
		}
		if err := md.Commit(context.Background(), c); err != nil {
			t.Fatalf("Commit = %v", err)
		}
	}
	if procErr != nil {
		t.Fatalf("appender process: %v: %s", procErr, out)
	}
	seen := deleted
	for _, sub := range inbox(t, s) {
		seen[sub]++
	}
	want := map[string]bool{}
	for _, tag := range []string{"proc", "gor"} {
		for i := 0; i < perAppender; i++ {
			want[fmt.Sprintf("%s-%d", tag, i)] = true
		}
	}
	for i := 0; i < 10; i++ {
		want[fmt.Sprintf("pre-%d", i)] = true
	}
	for sub, n := range seen {
		if !want[sub] {
			t.Errorf("unexpected message %q", sub)
		} else if n != 1 {
			t.Errorf("message %q seen %d times", sub, n)
		}
	}
	for sub := range want {
		if seen[sub] == 0 {
			t.Errorf("message %q lost", sub)
		}
	}
	_ = path
}

// TestCrashDuringCommit SIGKILLs a process that is committing deletions,
// while this process delivers, and checks that the spool is always whole:
// every kept and every delivered message present exactly once, in order,
// each deleted one either present or gone. MBOX_CRASH_ITERATIONS sets the
// number of rounds (default 30).
func TestCrashDuringCommit(t *testing.T) {
	iters := 30
	if v, err := strconv.Atoi(os.Getenv("MBOX_CRASH_ITERATIONS")); err == nil {
		iters = v
	}
	if testing.Short() {
		iters = 3
	}
	killedMidCommit := 0
	for it := 0; it < iters; it++ {
		s, path := userStore(t, testOptions(t))
		// keep-0, del-0 ... del-39, keep-1 ... keep-39: the helper deletes
		// message 2 forty times, each commit a rewrite.
		var order []string
		order = append(order, "keep-0")
		for i := 0; i < 40; i++ {
			order = append(order, fmt.Sprintf("del-%d", i))
		}
		for i := 1; i < 40; i++ {
			order = append(order, fmt.Sprintf("keep-%d", i))
		}
		var spool []byte
		for _, sub := range order {
			msg := fmt.Sprintf("Subject: %s\n\nFrom here\n%s\n", sub, strings.Repeat("line of text\n", 200))
			spool = append(spool, "From x Thu Jan  1 00:00:00 1970\n"...)
			spool = append(quote(spool, []byte(msg), MboxO), '\n')
		}
		if err := os.WriteFile(path, spool, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0])
		cmd.Env = helperEnv("commitloop", s.opts.Path)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until the helper has committed once, then kill it at a
		// random point of the following commits.
		var ready [6]byte
		if _, err := io.ReadFull(stdout, ready[:]); err != nil {
			t.Fatalf("helper did not start: %v", err)
		}
		stop := make(chan struct{})
		var delivered []string
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				sub := fmt.Sprintf("new-%d", i)
				if err := s.Deliver(context.Background(), helperUser, "", []byte("Subject: "+sub+"\n\nnew\n")); err != nil {
					t.Errorf("Deliver = %v", err)
					return
				}
				delivered = append(delivered, sub)
				time.Sleep(time.Millisecond)
			}
		}()
		time.Sleep(time.Duration(rand.IntN(30000)) * time.Microsecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		close(stop)
		wg.Wait()
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*"+tmpInfix+"*")); len(left) > 0 {
			killedMidCommit++
		}
		got := inbox(t, s)
		checkCrashResult(t, it, got, delivered)
	}
	t.Logf("%d rounds, %d killed while writing a temporary spool", iters, killedMidCommit)
}

func checkCrashResult(t *testing.T, it int, got, delivered []string) {
	t.Helper()
	count := map[string]int{}
	for _, sub := range got {
		count[sub]++
	}
	for sub, n := range count {
		if n != 1 {
			t.Errorf("round %d: %q present %d times", it, sub, n)
		}
	}
	for i := 0; i < 40; i++ {
		if count[fmt.Sprintf("keep-%d", i)] != 1 {
			t.Errorf("round %d: keep-%d lost", it, i)
		}
	}
	for _, sub := range delivered {
		if count[sub] != 1 {
			t.Errorf("round %d: delivered %s lost", it, sub)
		}
	}
	// Order: keep-0, the del messages not yet deleted (a suffix of
	// del-0..39: each commit took the first), keep-1..39, new-N ascending.
	var want []string
	want = append(want, "keep-0")
	firstDel := 40
	for i := 39; i >= 0 && count[fmt.Sprintf("del-%d", i)] == 1; i-- {
		firstDel = i
	}
	for i := firstDel; i < 40; i++ {
		want = append(want, fmt.Sprintf("del-%d", i))
	}
	for i := 1; i < 40; i++ {
		want = append(want, fmt.Sprintf("keep-%d", i))
	}
	want = append(want, delivered...)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("round %d: spool holds\n%q\nwant\n%q", it, got, want)
	}
}
