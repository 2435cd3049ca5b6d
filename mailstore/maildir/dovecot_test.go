package maildir

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"popgate/mailstore"
	"popgate/mailstore/users"
	"popgate/pop3/wire/wiretest"
)

// The Dovecot test serves one Maildir with Debian's Dovecot POP3 server
// (a private instance on a loopback port: own config, passwd-file, base
// and state directories under a temporary directory; no system service)
// and with this store, UIDLFormat dovecot, and compares what they show.
// It is skipped when the dovecot binary is missing, and fails then under
// CI=true. To run it:
//
//	apt-get install -y dovecot-pop3d
//	go test -race -run Dovecot ./mailstore/maildir/

// dovecotBin returns the dovecot binary, or skips (fails in CI).
func dovecotBin(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("dovecot")
	if err != nil {
		for _, c := range []string{"/usr/sbin/dovecot", "/usr/local/sbin/dovecot"} {
			if _, serr := os.Stat(c); serr == nil {
				p, err = c, nil
				break
			}
		}
	}
	if err != nil {
		msg := "dovecot not installed: apt-get install -y dovecot-pop3d, then go test -run Dovecot ./mailstore/maildir/"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	// Dovecot's login and internal processes run as these users (the
	// Debian package creates them).
	if os.Geteuid() == 0 {
		for _, u := range []string{"dovecot", "dovenull"} {
			if _, err := user.Lookup(u); err != nil {
				t.Fatalf("dovecot is installed but user %q is missing (install Debian's dovecot-core package)", u)
			}
		}
	}
	return p
}

// dovecotPOP3 is a private Dovecot POP3 instance over dir/mail/%u.
type dovecotPOP3 struct {
	bin, dir, conf string
	addr           string
	uid, gid       int // owner of the mail
}

// newDovecotPOP3 writes the configuration and the passwd-file (alice,
// PLAIN password testPW). As root, mail belongs to nobody: Dovecot never
// reads mail as root. As another user, everything runs as that user.
func newDovecotPOP3(t *testing.T) *dovecotPOP3 {
	t.Helper()
	bin := dovecotBin(t)
	dir, err := os.MkdirTemp("", "popgate-maildir-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	d := &dovecotPOP3{bin: bin, dir: dir, conf: filepath.Join(dir, "dovecot.conf"), uid: os.Getuid(), gid: os.Getgid()}
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("dovecot log:\n%s", log)
		}
		_ = os.RemoveAll(dir)
	})
	// Dovecot's unprivileged processes must reach the instance's files.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	svcUser := me.Username
	if os.Geteuid() == 0 {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Fatalf("no user nobody to own the mail (Dovecot refuses to read mail as root): %v", err)
		}
		d.uid, _ = strconv.Atoi(nobody.Uid)
		d.gid, _ = strconv.Atoi(nobody.Gid)
	}
	for _, sub := range []string{"mail", "home"} {
		p := filepath.Join(dir, sub)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, d.uid, d.gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte("alice:{PLAIN}"+testPW+"::::::\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	d.addr = "127.0.0.1:" + strconv.Itoa(port)
	// pop3_uidl_format is left at its default (%08Xu%08Xv), the format
	// UIDLDovecot reproduces.
	conf := fmt.Sprintf(`# Written by popgate's mailstore/maildir Dovecot test.
instance_name = popgate-maildir-%[1]d
base_dir = %[2]s/run
state_dir = %[2]s/state
log_path = %[2]s/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = 1
first_valid_gid = 1
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:%[2]s/mail/%%u
passdb {
  driver = passwd-file
  args = scheme=PLAIN %[2]s/passwd
}
userdb {
  driver = static
  args = uid=%[3]d gid=%[4]d home=%[2]s/home/%%u
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[5]d
  }
  inet_listener pop3s {
    port = 0
  }
}
service auth {
  user = %[6]s
}
service auth-worker {
  user = %[6]s
}
`, os.Getpid()*1000+port%1000, dir, d.uid, d.gid, port, svcUser)
	if err := os.WriteFile(d.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

// maildir is alice's Maildir as Dovecot finds it.
func (d *dovecotPOP3) maildir() string { return filepath.Join(d.dir, "mail", "alice") }

// start runs Dovecot in the foreground until the returned stop is
// called (or the test ends).
func (d *dovecotPOP3) start(t *testing.T) (stop func()) {
	t.Helper()
	cmd := exec.Command(d.bin, "-F", "-c", d.conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dovecot: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", d.addr, time.Second)
		if err == nil {
			_ = c.Close()
			return stop
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(d.dir, "dovecot.log"))
			t.Fatalf("dovecot exited: %s\n%s", out.String(), log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot not listening on %s", d.addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// popView is what a POP3 server shows of a maildrop.
type popView struct {
	uidls []string
	sizes []int64
	data  []string // each message's CRLF form, dot-unstuffed
}

// popFetch logs in as alice on a POP3 server at addr and returns its UIDL
// and LIST listings and every message (through TOP n 1000000, which, unlike
// RETR, does not make Dovecot set \Seen). It ends with QUIT and changes
// nothing.
func popFetch(t *testing.T, addr string) popView {
	t.Helper()
	c := wiretest.Dial(t, addr)
	c.Expect("+OK")
	c.Send("USER alice")
	c.Expect("+OK")
	c.Send("PASS " + testPW)
	c.Expect("+OK")
	multi := func(cmd string) []string {
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
	var v popView
	for k, l := range multi("UIDL") {
		f := strings.Fields(l)
		if len(f) != 2 || f[0] != strconv.Itoa(k+1) {
			t.Fatalf("UIDL line %q", l)
		}
		v.uidls = append(v.uidls, f[1])
	}
	for k, l := range multi("LIST") {
		f := strings.Fields(l)
		n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
		if len(f) != 2 || f[0] != strconv.Itoa(k+1) || err != nil {
			t.Fatalf("LIST line %q", l)
		}
		v.sizes = append(v.sizes, n)
	}
	for k := range v.uidls {
		lines := multi(fmt.Sprintf("TOP %d 1000000", k+1))
		v.data = append(v.data, strings.Join(lines, "\r\n")+"\r\n")
	}
	c.Send("QUIT")
	c.Expect("+OK")
	return v
}

// storeView opens alice's INBOX with the maildir store, UIDLFormat
// dovecot, and returns what it shows, then commits changes.
func storeView(t *testing.T, s *Store, changes func([]mailstore.MessageInfo) mailstore.Changes) popView {
	t.Helper()
	md := openDrop(t, s, "alice", "")
	msgs := list(t, md)
	var v popView
	for _, m := range msgs {
		v.uidls = append(v.uidls, m.UID)
		v.sizes = append(v.sizes, m.Size)
		v.data = append(v.data, read(t, md, m))
	}
	if err := md.Commit(context.Background(), changes(msgs)); err != nil {
		t.Fatalf("Commit = %v", err)
	}
	return v
}

// TestDovecotSameUIDLs proves that a Maildir Dovecot's POP3 server has
// served gives the same UIDL list through this store with UIDLFormat
// dovecot, in the same order, with the same LIST sizes where Dovecot's
// are the RFC 1939 sizes; and that after this store has marked messages
// seen and deleted one, Dovecot lists the rest under the same UIDLs.
func TestDovecotSameUIDLs(t *testing.T) {
	d := newDovecotPOP3(t)
	root := d.maildir()
	for _, sub := range []string{"", "cur", "new", "tmp"} {
		if err := os.Mkdir(filepath.Join(root, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	lf := func(s string) string { return s }
	crlf := func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }
	type msg struct {
		path, data string
	}
	body := func(i int, conv func(string) string) string {
		return conv(fmt.Sprintf("From: a@example.org\nSubject: message %d\n\nline one of %d\n.dot line\nend\n", i, i))
	}
	msgs := []msg{
		// As Dovecot's LDA names them: ,S= (LF size) and ,W= (CRLF size).
		{"new/1700000005.M5P100.mx.example,S=%S,W=%W", body(5, lf)},
		// As a plain MDA: no sizes in the name; CRLF content.
		{"new/1700000006.M6P100.mx.example", body(6, crlf)},
		{"cur/1700000001.M1P100.mx.example:2,S", body(1, lf)},
		{"cur/1700000002.M2P100.mx.example:2,FS", body(2, crlf)},
		{"cur/1700000003.M3P100.mx.example,S=%S,W=%W:2,RS", body(3, lf)},
		{"cur/1700000004.M4P100.mx.example:2,", body(4, lf)},
		// No final newline: popgate serves it with a CRLF added, Dovecot
		// does not count one (docs/maildir.md).
		{"cur/1700000007.M7P100.mx.example:2,", "Subject: message 7\n\nno final newline"},
	}
	for _, m := range msgs {
		w := int64(len(crlf(strings.ReplaceAll(m.data, "\r\n", "\n"))))
		name := strings.NewReplacer("%S", strconv.Itoa(len(m.data)), "%W", strconv.FormatInt(w, 10)).Replace(m.path)
		writeFile(t, filepath.Join(root, name), m.data)
	}
	if err := chownTree(d.maildir(), d.uid, d.gid); err != nil {
		t.Fatal(err)
	}

	stop := d.start(t)
	dv := popFetch(t, d.addr)
	stop()
	if len(dv.uidls) != len(msgs) {
		t.Fatalf("Dovecot lists %d messages, want %d", len(dv.uidls), len(msgs))
	}
	uidlist, err := os.ReadFile(filepath.Join(root, uidlistName))
	if err != nil {
		t.Fatalf("Dovecot wrote no %s: %v", uidlistName, err)
	}
	t.Logf("Dovecot UIDLs %v, sizes %v; %s:\n%s", dv.uidls, dv.sizes, uidlistName, uidlist)

	db := users.NewMemory()
	if err := db.SetPassword("alice", testPW, users.Plain); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Path: filepath.Join(d.dir, "mail", "%u"), Users: db, UIDLFormat: UIDLDovecot, Hostname: "test.example"})
	if err != nil {
		t.Fatal(err)
	}
	// popgate marks every message seen and deletes the second one.
	var deleted string
	pv := storeView(t, s, func(ms []mailstore.MessageInfo) mailstore.Changes {
		var c mailstore.Changes
		for _, m := range ms {
			c.Seen = append(c.Seen, m.UID)
		}
		deleted = ms[1].UID
		c.Deleted = []string{deleted}
		return c
	})
	if fmt.Sprint(pv.uidls) != fmt.Sprint(dv.uidls) {
		t.Errorf("UIDLs differ:\n dovecot %v\n popgate %v", dv.uidls, pv.uidls)
	}
	agree, differ := 0, 0
	for k := range dv.uidls {
		if k >= len(pv.uidls) {
			break
		}
		rfc := int64(len(pv.data[k])) // what RETR sends, before stuffing
		switch {
		case pv.sizes[k] != rfc:
			t.Errorf("message %d: popgate LIST %d, its content has %d octets", k+1, pv.sizes[k], rfc)
		case dv.sizes[k] == rfc:
			agree++
			if dv.sizes[k] != pv.sizes[k] {
				t.Errorf("message %d: LIST dovecot %d, popgate %d", k+1, dv.sizes[k], pv.sizes[k])
			}
			if dv.data[k] != pv.data[k] {
				t.Errorf("message %d content differs:\n dovecot %q\n popgate %q", k+1, dv.data[k], pv.data[k])
			}
		default:
			differ++
			t.Logf("message %d: Dovecot LIST %d is not the RFC size %d (popgate's)", k+1, dv.sizes[k], rfc)
		}
	}
	// Only the message without a final newline may differ.
	if agree != len(msgs)-1 || differ != 1 {
		t.Errorf("sizes agree for %d messages and differ for %d; want %d and 1", agree, differ, len(msgs)-1)
	}
	t.Logf("%d UIDLs identical; LIST sizes identical for %d of %d (the other has no final newline)", len(pv.uidls), agree, len(msgs))

	// Dovecot again, after popgate's flag renames and unlink.
	stop = d.start(t)
	dv2 := popFetch(t, d.addr)
	stop()
	var want []string
	for _, u := range dv.uidls {
		if u != deleted {
			want = append(want, u)
		}
	}
	if fmt.Sprint(dv2.uidls) != fmt.Sprint(want) {
		t.Errorf("after popgate, Dovecot lists %v, want %v", dv2.uidls, want)
	}
	// And popgate again: same UIDs (now from its cache).
	pv2 := storeView(t, s, func([]mailstore.MessageInfo) mailstore.Changes { return mailstore.Changes{} })
	if fmt.Sprint(pv2.uidls) != fmt.Sprint(want) {
		t.Errorf("popgate's second session lists %v, want %v", pv2.uidls, want)
	}
	seen := 0
	entries, _ := os.ReadDir(filepath.Join(root, "cur"))
	for _, e := range entries {
		if parseName(e.Name()).seen() {
			seen++
		}
	}
	if seen != len(want) || len(entries) != len(want) {
		t.Errorf("cur/ has %d files, %d seen; want %d, all seen", len(entries), seen, len(want))
	}
}

// chownTree gives root and everything under it to uid:gid (a no-op
// change when they are the caller's own).
func chownTree(root string, uid, gid int) error {
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}
