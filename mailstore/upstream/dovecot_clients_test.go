package upstream_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"popgate/mailstore"
	"popgate/mailstore/upstream"
	"popgate/pop1"
	"popgate/pop1/pop1client"
	"popgate/pop1/port109"
	"popgate/pop2"
	"popgate/pop2/pop2client"
	"popgate/pop3/wire/wiretest"
)

// gwcMessages are the tricky messages of TestGatewayClientsAgainstDovecot.
// Each is APPENDed to Dovecot exactly as written here (no line-end
// conversion). A message without a final line end is tested on its own
// (gwcNoFinalNewline).
func gwcMessages() [][]byte {
	long := strings.Repeat("0123456789abcdef", 1250) // 20000 octets, beyond fetchmail's 8 KiB buffer and poplib's _MAXLINE
	return [][]byte{
		[]byte("Subject: lone dot\r\n\r\nbefore\r\n.\r\nafter\r\n"),
		[]byte("Subject: leading dots\r\n\r\n.\r\n..\r\n...three\r\n.leading\r\n. space\r\n.\r\n"),
		[]byte("Subject: 8-bit\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xfc\xdfe aus K\xf6ln, \xe9t\xe9 \xff\x80\x81\r\nUTF-8: \xc3\xa4\xc3\xb6\xc3\xbc \xe2\x82\xac\r\n"),
		[]byte("Subject: from lines\r\n\r\nFrom the start\r\n>From quoted\r\n>>From twice\r\n\r\nFrom again\r\n"),
		[]byte("Subject: long line\r\n\r\nshort\r\n" + long + "\r\n" + long[:9000] + "\r\nend\r\n"),
		[]byte("Subject: empty body\r\n\r\n"),
	}
}

// gwcDovecot starts the private Dovecot, or skips the test when Dovecot
// is not installed (fails under CI=true, where it must be).
func gwcDovecot(t *testing.T) *dovecotUp {
	t.Helper()
	if os.Getenv("CI") == "true" {
		if _, err := exec.LookPath("dovecot"); err != nil {
			found := false
			for _, c := range []string{"/usr/sbin/dovecot", "/usr/local/sbin/dovecot"} {
				if _, err := os.Stat(c); err == nil {
					found = true
				}
			}
			if !found {
				t.Fatal("CI=true but dovecot is not installed: apt-get install -y dovecot-imapd dovecot-pop3d")
			}
		}
	}
	return startDovecot(t)
}

// gwcDirect logs in to Dovecot's IMAPS as name and selects INBOX.
func gwcDirect(t *testing.T, d *dovecotUp, name string) (*imapclient.Client, uint32) {
	t.Helper()
	c, err := d.login(name)
	if err != nil {
		t.Fatalf("direct IMAP login: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	sel, err := c.Select(mailstore.Inbox, nil).Wait()
	if err != nil {
		t.Fatalf("direct SELECT: %v", err)
	}
	return c, sel.NumMessages
}

// gwcReference is what Dovecot serves over IMAP BODY[] for every INBOX
// message, in its canonical CRLF form (which adds only the final CRLF of
// a message that lacks one): what every POP client must get.
func gwcReference(t *testing.T, d *dovecotUp, name string) [][]byte {
	t.Helper()
	c, n := gwcDirect(t, d, name)
	defer func() { _ = c.Logout().Wait() }()
	if n == 0 {
		return nil
	}
	var all imap.SeqSet
	all.AddRange(1, 0) // 1:*
	sec := &imap.FetchItemBodySection{Peek: true}
	bufs, err := c.Fetch(all, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil {
		t.Fatalf("direct FETCH BODY.PEEK[]: %v", err)
	}
	var out [][]byte
	for _, b := range bufs {
		out = append(out, mailstore.ToCRLF(b.FindBodySection(sec)))
	}
	return out
}

// gwcAppendRaw APPENDs data to name's INBOX exactly as given.
func gwcAppendRaw(t *testing.T, d *dovecotUp, name string, data []byte) {
	t.Helper()
	c, err := d.login(name)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cmd := c.Append(mailstore.Inbox, int64(len(data)), nil)
	if _, err := cmd.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	_ = c.Logout().Wait()
}

// gwcCompare checks got against want message by message.
func gwcCompare(t *testing.T, who string, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s got %d messages, Dovecot serves %d", who, len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("%s message %d differs from Dovecot's BODY[]:\n got %q\nwant %q", who, i+1, gwcShort(got[i]), gwcShort(want[i]))
		}
	}
}

func gwcShort(b []byte) []byte {
	if len(b) > 300 {
		return append(append([]byte{}, b[:300]...), "..."...)
	}
	return b
}

// gwcPython retrieves every message with Python's poplib (USER/PASS,
// RETR) and returns them in CRLF form. poplib strips each line's CRLF
// and undoes the dot-stuffing; the script puts CRLF back.
const gwcPythonScript = `
import base64, poplib, sys, time
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
poplib._MAXLINE = 1 << 20
deadline = time.time() + 10
while True:
    p = poplib.POP3(host, port, timeout=60)
    try:
        p.user(user)
        p.pass_(pw)
        break
    except poplib.error_proto as e:
        p.close()
        if b"IN-USE" in e.args[0] and time.time() < deadline:
            time.sleep(0.05)
            continue
        raise
n, _ = p.stat()
for i in range(1, n + 1):
    _, lines, _ = p.retr(i)
    sys.stdout.write(base64.b64encode(b"".join(l + b"\r\n" for l in lines)).decode() + "\n")
p.quit()
`

func gwcPython(t *testing.T, addr, user, pass string) [][]byte {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", "-c", gwcPythonScript, host, port, user, pass)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 poplib: %v\n%s", err, stderr.Bytes())
	}
	var msgs [][]byte
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			t.Fatalf("python3 output: %v", err)
		}
		msgs = append(msgs, b)
	}
	return msgs
}

// gwcOwnClient retrieves every message with popgate's own POP3 client.
func gwcOwnClient(t *testing.T, addr, user, pass string) [][]byte {
	t.Helper()
	msgs, err := gwcOwnClientErr(t, addr, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func gwcOwnClientErr(t *testing.T, addr, user, pass string) ([][]byte, error) {
	t.Helper()
	c := popLogin(t, addr, user, pass)
	defer c.Close()
	list, err := c.List()
	if err != nil {
		return nil, fmt.Errorf("LIST: %w", err)
	}
	var msgs [][]byte
	for _, l := range list {
		r, err := c.Retr(l.N)
		if err != nil {
			return nil, fmt.Errorf("RETR %d: %w", l.N, err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return nil, fmt.Errorf("RETR %d body: %w", l.N, err)
		}
		if int64(len(b)) != l.Size {
			return nil, fmt.Errorf("RETR %d gave %d octets, LIST said %d", l.N, len(b), l.Size)
		}
		msgs = append(msgs, b)
	}
	if err := c.Quit(); err != nil {
		return nil, fmt.Errorf("QUIT: %w", err)
	}
	return msgs, nil
}

// gwcFetchmail runs fetchmail in keep mode (USER/PASS, no TLS on the
// loopback gateway) with an MDA that writes each message to its own file,
// and returns the files' contents.
func gwcFetchmail(t *testing.T, addr, user, pass string) [][]byte {
	t.Helper()
	me, err := osuser.Current()
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	out := filepath.Join(work, "out")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	mda := filepath.Join(work, "mda.sh")
	if err := os.WriteFile(mda, []byte("#!/bin/sh\nexec cat > \"$(mktemp "+out+"/msg.XXXXXX)\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(addr, ":")
	rc := fmt.Sprintf("set no syslog\n"+
		"poll 127.0.0.1 protocol POP3 port %s auth password timeout 60\n"+
		"  user %q there with password %q is %q here\n"+
		"  keep fetchall norewrite sslproto ''\n"+
		"  mda %q\n", port, user, pass, me.Username, mda)
	rcFile := filepath.Join(work, "fetchmailrc")
	if err := os.WriteFile(rcFile, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "fetchmail", "--fetchmailrc", rcFile, "--pidfile", filepath.Join(work, "pid"), "--nodetach", "--nosyslog")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "HOME="+work, "FETCHMAILHOME="+work)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fetchmail: %v\n%s", err, b)
	}
	files, err := filepath.Glob(filepath.Join(out, "msg.*"))
	if err != nil {
		t.Fatal(err)
	}
	var msgs [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, b)
	}
	return msgs
}

// gwcFetchmailUndo removes exactly what fetchmail 6.4 adds to a message
// it delivers to an MDA: its Received: header first, and after the first
// 8191 octets of a line longer than its 8192-octet buffer a NUL, one
// stray octet and an LF (see conformance/interop). The line ends stay
// LF; the caller compares with the LF form of the reference.
func gwcFetchmailUndo(b []byte) ([]byte, error) {
	if !bytes.HasPrefix(b, []byte("Received:")) {
		return nil, fmt.Errorf("no Received: header first: %q", gwcShort(b))
	}
	end := 0
	for {
		i := bytes.IndexByte(b[end:], '\n')
		if i < 0 {
			return nil, errors.New("unterminated Received: header")
		}
		end += i + 1
		if end >= len(b) || (b[end] != ' ' && b[end] != '\t') {
			break
		}
	}
	if !bytes.Contains(b[:end], []byte("(fetchmail-")) {
		return nil, fmt.Errorf("the first header is not fetchmail's: %q", b[:end])
	}
	b = b[end:]
	const chunk = 8191
	var out []byte
	run := 0
	for i := 0; i < len(b); i++ {
		if run == chunk && b[i] == 0 && i+2 < len(b) && b[i+2] == '\n' {
			i += 2
			run = 0
			continue
		}
		out = append(out, b[i])
		run++
		if b[i] == '\n' {
			run = 0
		}
	}
	return out, nil
}

// gwcPort109 serves popgate's POP1 and POP2 over store behind one
// port 109 dispatcher on loopback.
func gwcPort109(t *testing.T, store mailstore.Store) string {
	t.Helper()
	p1, err := pop1.New(pop1.Options{Store: store, Hostname: "gateway.test"})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := pop2.New(pop2.Options{Store: store, Hostname: "gateway.test"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := port109.New(port109.Options{POP1: p1, POP2: p2})
	if err != nil {
		t.Fatal(err)
	}
	return wiretest.Serve(t, d.ServeConn)
}

// gwcRetryInUse retries f while the previous session of the user is
// still being torn down (a "-" reply mentioning a lock or "in use").
func gwcRetryInUse(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		s := strings.ToLower(err.Error())
		if time.Now().Before(deadline) && (strings.Contains(s, "in use") || strings.Contains(s, "in-use") || strings.Contains(s, "lock")) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		t.Fatalf("%s: %v", what, err)
	}
}

// TestGatewayClientsAgainstDovecot is issue 9's acceptance: real POP
// clients through popgate's POP3 and port 109 front ends over a private
// Dovecot upstream get every message byte for byte as Dovecot serves it
// over IMAP BODY[] (in CRLF form), and deletions reach Dovecot only
// after a clean QUIT.
func TestGatewayClientsAgainstDovecot(t *testing.T) {
	const user, pass = "alice", "pw"
	d := gwcDovecot(t)
	ctx := testCtx(t)
	if err := d.AddUser(ctx, user, pass); err != nil {
		t.Fatal(err)
	}
	for _, m := range gwcMessages() {
		gwcAppendRaw(t, d, user, m)
	}
	want := gwcReference(t, d, user)
	if len(want) != len(gwcMessages()) {
		t.Fatalf("Dovecot holds %d messages, %d were appended", len(want), len(gwcMessages()))
	}
	for i, m := range gwcMessages() {
		if !bytes.Equal(want[i], mailstore.ToCRLF(m)) {
			t.Logf("note: Dovecot serves message %d as %q (appended %q)", i+1, gwcShort(want[i]), gwcShort(m))
		}
	}

	store := newStore(t, upstream.Options{URL: "imaps://" + d.imaps, CAFile: d.caFile})
	gw := startGateway(t, store)
	gw109 := gwcPort109(t, store)

	t.Run("OwnPOP3Client", func(t *testing.T) {
		gwcCompare(t, "popgate's pop3client", gwcOwnClient(t, gw, user, pass), want)
	})

	t.Run("PythonPoplib", func(t *testing.T) {
		if _, err := exec.LookPath("python3"); err != nil {
			t.Skip("python3 not installed")
		}
		gwcCompare(t, "Python poplib", gwcPython(t, gw, user, pass), want)
	})

	t.Run("Fetchmail", func(t *testing.T) {
		if _, err := exec.LookPath("fetchmail"); err != nil {
			t.Skip("fetchmail not installed")
		}
		files := gwcFetchmail(t, gw, user, pass)
		if len(files) != len(want) {
			t.Fatalf("fetchmail delivered %d messages, Dovecot holds %d", len(files), len(want))
		}
		// The MDA's files are in no particular order: match each to a
		// distinct reference message.
		used := make([]bool, len(want))
	files:
		for _, f := range files {
			got, err := gwcFetchmailUndo(f)
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range want {
				if !used[i] && bytes.Equal(got, toLFForm(w)) {
					used[i] = true
					continue files
				}
			}
			t.Errorf("fetchmail delivered a message that is none of Dovecot's (LF form, fetchmail's additions removed): %q", gwcShort(got))
		}
	})

	t.Run("POP1ViaPort109", func(t *testing.T) {
		var msgs []pop1client.Message
		gwcRetryInUse(t, "POP1", func() error {
			c, err := pop1client.Dial(ctx, gw109)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.Login(user, pass); err != nil {
				return err
			}
			if msgs, err = c.Fetch("", false); err != nil {
				return err
			}
			return c.Quit()
		})
		var got [][]byte
		for _, m := range msgs {
			got = append(got, m.Data)
		}
		gwcCompare(t, "pop1client", got, want)
	})

	t.Run("POP2ViaPort109", func(t *testing.T) {
		var msgs []pop2client.Message
		gwcRetryInUse(t, "POP2", func() error {
			c, err := pop2client.Dial(ctx, gw109)
			if err != nil {
				return err
			}
			defer c.Close()
			n, err := c.Helo(user, pass)
			if err != nil {
				return err
			}
			if msgs, err = c.FetchAll(n, pop2client.FetchOptions{}); err != nil {
				return err
			}
			return c.Quit()
		})
		var got [][]byte
		for _, m := range msgs {
			got = append(got, m.Data)
		}
		gwcCompare(t, "pop2client", got, want)
	})

	t.Run("POP3SUpstream", func(t *testing.T) {
		s3 := newStore(t, upstream.Options{URL: "pop3s://" + d.pop3s, CAFile: d.caFile})
		gw3 := startGateway(t, s3)
		gwcCompare(t, "pop3client over pop3s://", gwcOwnClient(t, gw3, user, pass), want)
		if _, err := exec.LookPath("python3"); err != nil {
			t.Log("python3 not installed: poplib over pop3s:// skipped")
			return
		}
		gwcCompare(t, "Python poplib over pop3s://", gwcPython(t, gw3, user, pass), want)
	})

	t.Run("NoFinalNewline", func(t *testing.T) {
		gwcNoFinalNewline(t, d)
	})

	t.Run("Deletion", func(t *testing.T) {
		// DELE everything, then hang up: nothing is removed upstream.
		c := popLogin(t, gw, user, pass)
		for i := range want {
			if err := c.Dele(i + 1); err != nil {
				t.Fatalf("DELE %d: %v", i+1, err)
			}
		}
		_ = c.Close()
		// The next login waits for the hung-up session's end.
		c = popLogin(t, gw, user, pass)
		if n, _, err := c.Stat(); err != nil || n != len(want) {
			t.Fatalf("after hang-up STAT = %d, %v; want %d", n, err, len(want))
		}
		_ = c.Close()
		c = popLogin(t, gw, user, pass) // again: the STAT session is gone too
		_ = c.Close()
		gwcCompare(t, "Dovecot after DELE + hang-up", gwcReference(t, d, user), want)

		// DELE everything, then QUIT: all removed upstream.
		c = popLogin(t, gw, user, pass)
		for i := range want {
			if err := c.Dele(i + 1); err != nil {
				t.Fatalf("DELE %d: %v", i+1, err)
			}
		}
		if err := c.Quit(); err != nil {
			t.Fatalf("QUIT: %v", err)
		}
		if got := gwcReference(t, d, user); len(got) != 0 {
			t.Errorf("after DELE of all + QUIT Dovecot still holds %d messages", len(got))
		}
	})
}

// toLFForm is the CRLF form with LF line ends: what fetchmail hands its
// MDA.
func toLFForm(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")) }

// gwcNoFinalNewline APPENDs a message without a final line end (bob's
// only message). Dovecot stores and serves it as it is, and its
// RFC822.SIZE (and its POP3 LIST size) counts no final CRLF; the gateway
// serves the canonical CRLF form, two octets longer. Over IMAP the
// gateway fetches the last octets of every message whose size it does
// not know yet and announces the CRLF size, so every session, the first
// one too, must serve the message byte for byte. Over POP3 the first
// session has already announced the upstream's size when it meets the
// difference, so it breaks off that RETR (closing the connection: the
// framing is lost) and keeps the right size for later sessions; its
// result is logged, not asserted, and a later session must serve the
// message byte for byte.
func gwcNoFinalNewline(t *testing.T, d *dovecotUp) {
	const user, pass = "bob", "pw2"
	if err := d.AddUser(testCtx(t), user, pass); err != nil {
		t.Fatal(err)
	}
	msg := []byte("Subject: no final newline\r\n\r\nlast line has no CRLF")
	gwcAppendRaw(t, d, user, msg)
	want := gwcReference(t, d, user)
	if len(want) != 1 || !bytes.Equal(want[0], mailstore.ToCRLF(msg)) {
		t.Fatalf("Dovecot serves %q, want %q", want, mailstore.ToCRLF(msg))
	}
	for _, url := range []string{"imaps://" + d.imaps, "pop3s://" + d.pop3s} {
		gw := startGateway(t, newStore(t, upstream.Options{URL: url, CAFile: d.caFile}))
		if strings.HasPrefix(url, "imaps:") {
			gwcCompare(t, url+" first session", gwcOwnClient(t, gw, user, pass), want)
		} else if got, err := gwcOwnClientErr(t, gw, user, pass); err != nil {
			t.Logf("%s: first session: %v (the upstream's size was announced)", url, err)
		} else {
			gwcCompare(t, url+" first session", got, want)
		}
		gwcCompare(t, url+" later session", gwcOwnClient(t, gw, user, pass), want)
		if _, err := exec.LookPath("python3"); err == nil {
			gwcCompare(t, "Python poplib over "+url, gwcPython(t, gw, user, pass), want)
		}
	}
}
