package mbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"popgate/mailstore"
	"popgate/pop3"
)

// This file checks issue 7's acceptance against a real Debian MDA:
// procmail (package procmail, installed by .ci/install-clients) writes the
// spool with its own dotlock and fcntl lock, and the store must serve what
// it wrote and never lose mail it delivers during sessions.

// procmail delivers to one spool in mailfilter mode (-m) with a private
// rcfile, as Postfix local(8) runs a mailbox_command: the caller writes the
// From_ line, procmail takes spool.lock (the ":" of the recipe) and an
// fcntl lock, quotes body "From " lines as ">From " (mboxo) and ends the
// message with an empty line unless it already ends with one.
type procmail struct {
	bin, rc string
	cred    *syscall.Credential // run as this user (when we are root)
}

// newProcmail prepares procmail for the spool path. It skips the test when
// procmail is not installed, and fails under CI=true, where
// .ci/install-clients must have installed it.
//
// Run as root, procmail creates /var/mail/root even in -m mode, so then it
// runs as nobody, which owns the spool directory (as a user owns their
// spool); this also checks that commits keep the spool's owner.
func newProcmail(t *testing.T, spool string) *procmail {
	t.Helper()
	bin, err := exec.LookPath("procmail")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("procmail not installed (.ci/install-clients installs it): %v", err)
		}
		t.Skip("procmail not installed (apt-get install procmail)")
	}
	dir := filepath.Dir(spool)
	top := filepath.Dir(dir)
	p := &procmail{bin: bin, rc: filepath.Join(top, "procmailrc")}
	// LOCKSLEEP: procmail sleeps 8 s by default after finding spool.lock
	// taken, which commits do all the time here.
	rc := fmt.Sprintf("LOCKSLEEP=0\n:0:\n%s\n", spool)
	if err := os.WriteFile(p.rc, []byte(rc), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Skipf("running as root without a nobody user for procmail: %v", err)
		}
		uid, _ := strconv.Atoi(nobody.Uid)
		gid, _ := strconv.Atoi(nobody.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		for _, f := range []string{top, dir, p.rc} {
			if err := os.Chown(f, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		// t.TempDir's parent is 0700; nobody must reach the spool.
		if err := os.Chmod(filepath.Dir(top), 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// procmailFromLine is the From_ line written before every message, as
// Postfix local does before piping to a mailbox_command.
const procmailFromLine = "From sender@example.org  Thu Nov 26 05:53:07 2026\n"

// deliver pipes msg to procmail.
func (p *procmail) deliver(msg string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, "-m", p.rc)
	cmd.Stdin = strings.NewReader(procmailFromLine + msg)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + filepath.Dir(p.rc)}
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	// procmail complains on stderr that nobody's home does not exist; only
	// the exit status tells.
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("procmail: %v: %s", err, out)
	}
	return nil
}

// procmailServed is the CRLF form the store serves for msg delivered by
// procmail: mboxo reading turns ">From " lines back into "From " (lossy: a
// line that was ">From " also loses its ">"), and when msg already ends
// with an empty line procmail adds no separator, so that line is taken as
// the separator.
func procmailServed(msg string) []byte {
	lines := strings.SplitAfter(msg, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ">From ") {
			lines[i] = l[1:]
		}
	}
	s := strings.Join(lines, "")
	if strings.HasSuffix(s, "\r\n\r\n") {
		s = s[:len(s)-2]
	} else if strings.HasSuffix(s, "\n\n") {
		s = s[:len(s)-1]
	}
	return mailstore.ToCRLF([]byte(s))
}

var mdaIDRE = regexp.MustCompile(`(?m)^X-Mda-Id: (\S+)\r$`)

// withoutStatus removes the "Status: RO" line a commit adds to retrieved
// messages.
func withoutStatus(b []byte) []byte {
	return bytes.Replace(b, []byte("\r\nStatus: RO\r\n"), []byte("\r\n"), 1)
}

// TestProcmailSpoolServed delivers messages with procmail and checks each
// byte for byte through the POP3 front end, then again after the QUIT that
// rewrote the spool with Status headers.
func TestProcmailSpoolServed(t *testing.T) {
	s, spool := userStore(t, testOptions(t))
	pm := newProcmail(t, spool)
	long := strings.Repeat("0123456789", 1000)
	msgs := map[string]string{
		"plain":   "X-Mda-Id: plain\nSubject: plain\n\nbody\nFrom the start of a line\n>From already quoted\n>>From twice\nFrom\nFromage\n",
		"crlf":    "X-Mda-Id: crlf\r\nSubject: crlf\r\n\r\nFrom crlf\r\nline\r\n",
		"8bit":    "X-Mda-Id: 8bit\nSubject: 8bit\n\n\xe9t\xe9 \x00 nul\n" + long + "\n.\n..dots\n",
		"blank":   "X-Mda-Id: blank\nSubject: ends with an empty line\n\nbody\n\n",
		"blanks":  "X-Mda-Id: blanks\nSubject: ends with empty lines\n\nbody\n\n\n\n",
		"header":  "X-Mda-Id: header\nSubject: header only\n",
		"fromsep": "X-Mda-Id: fromsep\nSubject: From lines after empty lines\n\n\nFrom x@y Thu Jan  1 00:00:00 2000\nfake\n\nFrom \n",
		"last":    "X-Mda-Id: last\nSubject: last\n\nlast line\n",
	}
	order := []string{"plain", "crlf", "8bit", "blank", "blanks", "header", "fromsep", "last"}
	for _, id := range order {
		if err := pm.deliver(msgs[id]); err != nil {
			t.Fatal(err)
		}
	}

	srv, err := pop3.New(pop3.Options{Store: s, Hostname: "h"})
	if err != nil {
		t.Fatal(err)
	}
	pc, sc := net.Pipe()
	done := make(chan struct{})
	go func() {
		srv.ServeConn(context.Background(), sc)
		close(done)
	}()
	c := &popClient{t: t, r: bufio.NewReader(pc), w: pc}
	c.cmd("", "+OK")
	c.cmd("USER "+helperUser, "+OK")
	c.cmd("PASS pw", "+OK")
	if st := c.cmd("STAT", "+OK"); !strings.HasPrefix(st, fmt.Sprintf("+OK %d ", len(order))) {
		t.Fatalf("STAT = %q, want %d messages", st, len(order))
	}
	for n, id := range order {
		got := c.multi(fmt.Sprintf("RETR %d", n+1))
		if want := procmailServed(msgs[id]); !bytes.Equal(got, want) {
			t.Errorf("RETR %d (%s):\n got %q\nwant %q", n+1, id, got, want)
		}
	}
	c.cmd("QUIT", "+OK")
	<-done
	pc.Close()

	md := openInbox(t, s)
	defer md.Close()
	infos, err := md.Messages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != len(order) {
		t.Fatalf("after QUIT: %d messages, want %d", len(infos), len(order))
	}
	for n, m := range infos {
		got := readMessage(t, md, m)
		if !m.Seen {
			t.Errorf("message %d not seen after QUIT", n+1)
		}
		if want := procmailServed(msgs[order[n]]); !bytes.Equal(withoutStatus(got), want) {
			t.Errorf("after QUIT, message %d (%s):\n got %q\nwant %q", n+1, order[n], got, want)
		}
	}
}

// TestProcmailDeliversDuringSessions runs procmail deliveries (four at a
// time, MBOX_MDA_N in all, default 200) while sessions retrieve, delete
// and commit in a loop, then checks that every delivered message is either
// deleted by a session (exactly once) or in the spool (exactly once), with
// its exact content.
func TestProcmailDeliversDuringSessions(t *testing.T) {
	s, spool := userStore(t, testOptions(t))
	pm := newProcmail(t, spool)
	total := 200
	if v, err := strconv.Atoi(os.Getenv("MBOX_MDA_N")); err == nil && v > 0 {
		total = v
	}
	msg := func(i int) string {
		return fmt.Sprintf("X-Mda-Id: c-%d\nSubject: c-%d\n\nFrom body %d\n>From quoted\n%s\n", i, i, i, strings.Repeat("x", i*37))
	}
	const workers = 4
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := pm.deliver(msg(i)); err != nil {
					t.Errorf("delivering c-%d: %v", i, err)
				}
			}
		}()
	}
	stop := make(chan struct{})
	go func() {
		defer close(next)
		for i := 0; i < total; i++ {
			select {
			case next <- i:
			case <-stop:
				return
			}
		}
	}()
	// On a failure, no procmail is left running past the test.
	defer func() { close(stop); wg.Wait() }()
	delivered := make(chan struct{})
	go func() { wg.Wait(); close(delivered) }()

	ctx := context.Background()
	deleted := map[string]int{}
	rounds, commits, busy := 0, 0, 0
	check := func(sess *mailstore.Session, n int) string {
		rc, err := sess.Open(ctx, n)
		if err != nil {
			t.Fatalf("Open(%d) = %v", n, err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("reading message %d: %v", n, err)
		}
		sm := mdaIDRE.FindSubmatch(data)
		if sm == nil {
			t.Fatalf("message %d has no X-Mda-Id: %q", n, data)
		}
		id := string(sm[1])
		i, _ := strconv.Atoi(strings.TrimPrefix(id, "c-"))
		if want := procmailServed(msg(i)); !bytes.Equal(withoutStatus(data), want) {
			t.Fatalf("message %s:\n got %q\nwant %q", id, data, want)
		}
		return id
	}
	for finished := false; !finished; rounds++ {
		select {
		case <-delivered:
			finished = true // one more round sees the last deliveries
		default:
		}
		md := openBusy(t, s, &busy)
		sess, err := mailstore.NewSession(ctx, md)
		if err != nil {
			t.Fatal(err)
		}
		var marked []string
		for _, m := range sess.List() {
			id := check(sess, m.N)
			sess.MarkRetrieved(m.N)
			// Every other session deletes the messages c-0, c-3, c-6...
			if i, _ := strconv.Atoi(strings.TrimPrefix(id, "c-")); i%3 == 0 && rounds%2 == 0 {
				if err := sess.Delete(m.N); err != nil {
					t.Fatal(err)
				}
				marked = append(marked, id)
			}
		}
		if rounds%5 == 4 {
			// A session that ends without QUIT removes nothing.
			if err := sess.Close(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if _, err := sess.Commit(ctx); err != nil {
			t.Fatalf("round %d: Commit = %v", rounds, err)
		}
		commits++
		for _, id := range marked {
			deleted[id]++
		}
		time.Sleep(10 * time.Millisecond)
	}

	seen := map[string]int{}
	for id, n := range deleted {
		seen[id] += n
	}
	md := openBusy(t, s, &busy)
	sess, err := mailstore.NewSession(ctx, md)
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	for _, m := range sess.List() {
		seen[check(sess, m.N)]++
		kept++
	}
	sess.Close()
	for i := 0; i < total; i++ {
		id := fmt.Sprintf("c-%d", i)
		if deleted[id] > 0 && i%3 != 0 {
			t.Errorf("message %s deleted but never marked", id)
		}
		if seen[id] != 1 {
			t.Errorf("message %s seen %d times (deleted %d)", id, seen[id], deleted[id])
		}
		delete(seen, id)
	}
	for id := range seen {
		t.Errorf("unexpected message %s", id)
	}
	if len(deleted) == 0 || kept == 0 {
		t.Errorf("deleted %d, kept %d: the test exercised nothing", len(deleted), kept)
	}
	entries, err := os.ReadDir(filepath.Dir(spool))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if name := e.Name(); name != filepath.Base(spool) && name != "."+filepath.Base(spool)+".pop.lock" {
			t.Errorf("left in the spool directory: %s", name)
		}
	}
	t.Logf("%d procmail deliveries, %d sessions (%d commits, %d opens retried), %d deleted, %d kept", total, rounds, commits, busy, len(deleted), kept)
}

// openBusy opens the Inbox, retrying on ErrLocked for up to 5 s and
// counting the retries in *busy. Only this process locks the maildrop, but
// a procmail being started holds a copy of the lock's descriptor (and so
// the flock) between fork and exec, which closes it.
func openBusy(t *testing.T, s *Store, busy *int) mailstore.Maildrop {
	t.Helper()
	acct, err := s.Login(context.Background(), helperUser, "pw")
	if err != nil {
		t.Fatalf("Login = %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		md, err := acct.Open(context.Background(), "")
		if err == nil {
			return md
		}
		if !errors.Is(err, mailstore.ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("Open = %v", err)
		}
		*busy++
		time.Sleep(time.Millisecond)
	}
}

// readMessage reads message m of md whole, checking its size.
func readMessage(t *testing.T, md mailstore.Maildrop, m mailstore.MessageInfo) []byte {
	t.Helper()
	rc, err := md.OpenMessage(context.Background(), m.UID)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != m.Size {
		t.Fatalf("message %s: size %d, read %d", m.UID, m.Size, len(data))
	}
	return data
}

// popClient is a minimal POP3 client over a net.Pipe.
type popClient struct {
	t *testing.T
	r *bufio.Reader
	w io.Writer
}

// cmd sends line (none if empty) and returns the status line, which must
// start with want.
func (c *popClient) cmd(line, want string) string {
	c.t.Helper()
	if line != "" {
		if _, err := io.WriteString(c.w, line+"\r\n"); err != nil {
			c.t.Fatal(err)
		}
	}
	got, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("%s: %v", line, err)
	}
	got = strings.TrimSuffix(got, "\r\n")
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("%s: got %q, want %s", line, got, want)
	}
	return got
}

// multi sends line and returns the multi-line reply, dot-unstuffed, with
// its CRLFs.
func (c *popClient) multi(line string) []byte {
	c.t.Helper()
	c.cmd(line, "+OK")
	var out []byte
	for {
		l, err := c.r.ReadBytes('\n')
		if err != nil {
			c.t.Fatalf("%s: %v", line, err)
		}
		if string(l) == ".\r\n" {
			return out
		}
		out = append(out, bytes.TrimPrefix(l, []byte("."))...)
	}
}
