package maildir

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"popgate/mailstore"
	"popgate/mailstore/users"
)

var long = flag.Bool("long", false, "run long crash-safety and load tests")

// crashHelperEnv names the Maildir parent the helper process works on.
const crashHelperEnv = "POPGATE_MAILDIR_CRASH_HELPER"

// crashCorpus returns the messages of one crash iteration: base name →
// content, and whether the helper deletes it.
type crashMsg struct {
	data   []byte
	delete bool
}

// TestCrashHelper is the process the crash test kills: it opens alice's
// INBOX (a cold open: sizes are counted and the cache written), reads some
// messages, deletes every message marked X-Delete and marks the others
// seen, and commits.
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashHelperEnv)
	if dir == "" {
		t.Skip("helper process for TestCrashSafety")
	}
	fmt.Println("ready")
	db := users.NewMemory()
	if err := db.SetPassword("alice", testPW, users.Plain); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Path: filepath.Join(dir, "%u", "Maildir"), Users: db, Hostname: "test.example"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := s.Login(ctx, "alice", testPW)
	if err != nil {
		t.Fatal(err)
	}
	md, err := a.Open(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	sess, err := mailstore.NewSession(ctx, md)
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= sess.Count(); n++ {
		rc, err := sess.Open(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(rc); err != nil {
			t.Fatal(err)
		}
		_ = rc.Close()
		if bytes.Contains(buf.Bytes(), []byte("X-Delete: yes")) {
			if err := sess.Delete(n); err != nil {
				t.Fatal(err)
			}
		} else {
			sess.MarkRetrieved(n)
		}
	}
	fmt.Println("commit")
	if _, err := sess.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestCrashSafety(t *testing.T) {
	if os.Getenv(crashHelperEnv) != "" {
		t.Skip("in helper")
	}
	budget, maxIter := 8*time.Second, 400
	if *long || os.Getenv("POPGATE_LONG_TESTS") != "" {
		budget, maxIter = 3*time.Minute, 5000
	}
	if testing.Short() {
		budget, maxIter = time.Second, 10
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	start := time.Now()
	// The first run is not killed; it measures the helper's whole work
	// and its commit. Later runs are killed at a random instant of one
	// or the other, so that about half the kills land inside Commit.
	var work, commit time.Duration
	outcomes := map[string]int{}
	iter := 0
	for ; iter < maxIter && (iter < 3 || time.Since(start) < budget); iter++ {
		dir := t.TempDir()
		want := seedCrash(t, dir, rng)
		var delay time.Duration
		atCommit := rng.IntN(2) == 0
		if iter > 0 {
			span := work
			if atCommit {
				// Deletions come first in Commit: aim at them often.
				span = commit
				if rng.IntN(2) == 0 {
					span = commit / 4
				}
			}
			delay = time.Duration(rng.Int64N(int64(span) + 1))
		}
		took, commitTook, killed := runHelper(t, dir, delay, atCommit, iter == 0)
		if iter == 0 {
			work, commit = took, commitTook
		}
		outcomes[checkCrash(t, dir, want, killed)]++
		if t.Failed() {
			t.Fatalf("iteration %d (delay %v) failed", iter, delay)
		}
	}
	t.Logf("%d iterations in %v (helper work %v, commit %v): %v", iter, time.Since(start).Round(time.Millisecond), work, commit, outcomes)
}

// seedCrash fills alice's Maildir with a mix of messages: in new/ and
// cur/, with and without size fields, some already seen.
func seedCrash(t *testing.T, dir string, rng *rand.Rand) map[string]crashMsg {
	root := filepath.Join(dir, "alice", "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	want := make(map[string]crashMsg)
	for i := range 150 {
		del := i%3 == 0
		body := strings.Repeat(fmt.Sprintf("line %d of message %d\n", rng.IntN(1000), i), 1+rng.IntN(30))
		data := []byte(fmt.Sprintf("Subject: %d\nX-Delete: %s\n\n%s", i, map[bool]string{true: "yes", false: "no"}[del], body))
		base := fmt.Sprintf("%d.M%dP99_%d.test.example", 1700000000+i, i, i)
		if i%2 == 0 {
			base += fmt.Sprintf(",S=%d,W=%d", len(data), len(mailstore.ToCRLF(data)))
		}
		var path string
		switch i % 4 {
		case 0:
			path = filepath.Join(root, "new", base)
		case 1:
			path = filepath.Join(root, "cur", base+":2,")
		case 2:
			path = filepath.Join(root, "cur", base+":2,S")
		default:
			path = filepath.Join(root, "cur", base)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		want[base] = crashMsg{data: data, delete: del}
	}
	return want
}

// runHelper starts the helper on dir and, unless wait, SIGKILLs it delay
// after it reports ready (or, if atCommit, after it starts committing). It
// returns how long the helper worked and committed, and whether it was
// killed before finishing.
func runHelper(t *testing.T, dir string, delay time.Duration, atCommit, wait bool) (work, commit time.Duration, killed bool) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(out)
	line, err := br.ReadString('\n')
	if err != nil || line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper did not start: %q %v %s", line, err, stderr.String())
	}
	ready := time.Now()
	var rest bytes.Buffer
	committing := make(chan time.Time, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		for {
			line, err := br.ReadString('\n')
			if line == "commit\n" {
				committing <- time.Now()
			} else {
				rest.WriteString(line)
			}
			if err != nil {
				return
			}
		}
	}()
	var commitStart time.Time
	if !wait {
		if atCommit {
			select {
			case commitStart = <-committing:
			case <-copied:
			}
		}
		time.Sleep(delay)
		_ = cmd.Process.Signal(syscall.SIGKILL)
	}
	<-copied
	err = cmd.Wait()
	end := time.Now()
	if commitStart.IsZero() {
		select {
		case commitStart = <-committing:
		default:
			commitStart = end
		}
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return end.Sub(ready), end.Sub(commitStart), true
		}
	}
	if err != nil {
		t.Fatalf("helper failed: %v\n%s\n%s", err, rest.String(), stderr.String())
	}
	return end.Sub(ready), end.Sub(commitStart), false
}

// checkCrash verifies the Maildir after the helper ran or was killed and
// returns how far the commit got.
func checkCrash(t *testing.T, dir string, want map[string]crashMsg, killed bool) string {
	t.Helper()
	root := filepath.Join(dir, "alice", "Maildir")
	found := make(map[string]string) // base → path
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(root, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			fn := parseName(e.Name())
			m, ok := want[fn.base]
			if !ok {
				t.Errorf("stray file %s/%s", sub, e.Name())
				continue
			}
			if prev, dup := found[fn.base]; dup {
				t.Errorf("message %s twice: %s and %s", fn.base, prev, e.Name())
			}
			p := filepath.Join(root, sub, e.Name())
			found[fn.base] = p
			data, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(data, m.data) {
				t.Errorf("message %s damaged (%v)", e.Name(), err)
			}
		}
	}
	deleted := 0
	for base, m := range want {
		if _, ok := found[base]; !ok {
			if !m.delete {
				t.Errorf("message %s lost", base)
			}
			deleted++
		}
	}
	if data, err := os.ReadFile(filepath.Join(root, cacheName)); err == nil {
		if _, err := parseCache(data); err != nil {
			t.Errorf("cache file damaged: %v", err)
		}
	}
	// The lock is recoverable: a new session opens at once and lists
	// every remaining message with its right size.
	s, err := New(Options{Path: filepath.Join(dir, "%u", "Maildir"), Users: usersWith(t, "alice"), Hostname: "test.example"})
	if err != nil {
		t.Fatal(err)
	}
	md := openDrop(t, s, "alice", "")
	msgs := list(t, md)
	if len(msgs) != len(found) {
		t.Errorf("session lists %d messages, %d files remain", len(msgs), len(found))
	}
	for _, m := range msgs {
		content := read(t, md, m)
		if int64(len(content)) != m.Size || !mailstore.ValidUID(m.UID) {
			t.Errorf("message %s: size %d, content %d", m.UID, m.Size, len(content))
		}
	}
	if err := md.Close(); err != nil {
		t.Error(err)
	}
	if !killed {
		if deleted != 50 {
			t.Errorf("completed run deleted %d messages, want 50", deleted)
		}
		return "completed"
	}
	switch deleted {
	case 0:
		return "killed before deleting"
	case 50:
		return "killed after deleting"
	default:
		return "killed mid-commit"
	}
}

func usersWith(t *testing.T, names ...string) *users.DB {
	db := users.NewMemory()
	for _, n := range names {
		if err := db.SetPassword(n, testPW, users.Plain); err != nil {
			t.Fatal(err)
		}
	}
	return db
}
