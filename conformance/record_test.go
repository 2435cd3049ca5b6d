package conformance_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"popgate/conformance"
	"popgate/mailstore/memstore"
	"popgate/pop3"
)

// recordMessages are the messages of the recorded maildrop: dot lines, a
// bare LF, no final newline, 8-bit octets, a line that looks like a txtar
// file marker, an empty message.
var recordMessages = [][]byte{
	[]byte("From: a@example.org\r\nSubject: dots\r\n\r\n.\r\n..two\r\n.three\r\nend\r\n"),
	[]byte("From: b@example.org\nSubject: bare LF\n\nline 1\nline 2\nline 3\n"),
	[]byte("Subject: no final newline\r\n\r\nlast line"),
	[]byte("Subject: 8-bit \xe9t\xe9 and UTF-8 \xc3\xa9\r\n\r\n-- marker.eml --\r\nbody \x00 nul\r\n"),
	[]byte(""),
	[]byte("Subject: never retrieved\r\n\r\n" + strings.Repeat("filler line\r\n", 20)),
}

const recordSecret = "s3cret-Pw!"

// recordServer serves POP3 over a memstore holding recordMessages for
// alice (password recordSecret), with every connection recorded into dir.
func recordServer(t *testing.T, dir string) (addr string, rec *conformance.Recorder) {
	t.Helper()
	ctx := context.Background()
	st := memstore.New()
	if err := st.AddUser(ctx, "alice", recordSecret); err != nil {
		t.Fatal(err)
	}
	for _, m := range recordMessages {
		if err := st.Deliver(ctx, "alice", "INBOX", m); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := pop3.New(pop3.Options{Store: st, Hostname: "record.test"})
	if err != nil {
		t.Fatal(err)
	}
	rec, err = conformance.NewRecorder(dir)
	if err != nil {
		t.Fatal(err)
	}
	rec.OnWrite = func(path string, err error) {
		if err != nil {
			t.Errorf("writing %s: %v", path, err)
		}
	}
	tgt, err := conformance.NewStoreTarget(ctx, st, func(ctx context.Context, c net.Conn) {
		srv.ServeConn(ctx, rec.Wrap(c, "pop3"))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tgt.Close(); err != nil {
			t.Error(err)
		}
	})
	return tgt.Addr(), rec
}

// popClient is a minimal POP3 client for the recording tests.
type popClient struct {
	t  *testing.T
	c  net.Conn
	r  *bufio.Reader
	ts string
}

func dialPOP(t *testing.T, addr string) *popClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	p := &popClient{t: t, c: c, r: bufio.NewReader(c)}
	g := p.line()
	p.ts = regexp.MustCompile(`<[^<>]*>`).FindString(g)
	return p
}

func (p *popClient) line() string {
	p.t.Helper()
	l, err := p.r.ReadString('\n')
	if err != nil {
		p.t.Fatalf("reading: %v (got %q)", err, l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// cmd sends a command and returns its status line; multi reads the
// multi-line body too.
func (p *popClient) cmd(line string, multi bool) (string, []string) {
	p.t.Helper()
	if _, err := fmt.Fprintf(p.c, "%s\r\n", line); err != nil {
		p.t.Fatal(err)
	}
	st := p.line()
	var body []string
	if multi && strings.HasPrefix(st, "+OK") {
		for {
			l := p.line()
			if l == "." {
				break
			}
			body = append(body, l)
		}
	}
	return st, body
}

// waitTraces waits for n transcript files in dir.
func waitTraces(t *testing.T, dir string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*.txtar"))
		if len(files) >= n || time.Now().After(deadline) {
			if len(files) != n {
				t.Fatalf("%d trace files in %s, want %d", len(files), dir, n)
			}
			return files
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// replayTrace parses a recorded file and replays it against a fresh
// popgate over an empty memstore: the runner seeds the recorded fixtures.
func replayTrace(t *testing.T, file string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s, err := conformance.Parse(file, data)
	if err != nil {
		t.Fatalf("the trace does not parse: %v\n%s", err, data)
	}
	st := memstore.New()
	srv, err := pop3.New(pop3.Options{Store: st, Hostname: "replay.test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tgt, err := conformance.NewStoreTarget(ctx, st, srv.ServeConn)
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	if err := conformance.Run(ctx, s, tgt); err != nil {
		t.Fatalf("replaying the trace: %v\n--- trace:\n%s", err, head(data, 4000))
	}
}

func head(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// TestRecordReplay records a session that uses most of POP3 (a failed
// login first), checks that no secret is in the file and that the file
// replays against a fresh server.
func TestRecordReplay(t *testing.T) {
	dir := t.TempDir()
	addr, _ := recordServer(t, dir)
	p := dialPOP(t, addr)
	p.cmd("CAPA", true)
	p.cmd("USER alice", false)
	if st, _ := p.cmd("PASS wrong-"+recordSecret, false); !strings.HasPrefix(st, "-ERR") {
		t.Fatalf("wrong password: %s", st)
	}
	p.cmd("USER alice", false)
	if st, _ := p.cmd("PASS "+recordSecret, false); !strings.HasPrefix(st, "+OK") {
		t.Fatalf("login: %s", st)
	}
	p.cmd("STAT", false)
	p.cmd("LIST", true)
	p.cmd("UIDL", true)
	p.cmd("TOP 2 1", true)
	for _, n := range []string{"1", "2", "3", "4", "5"} {
		p.cmd("RETR "+n, true)
	}
	p.cmd("LIST 6", false)
	p.cmd("UIDL 3", false)
	p.cmd("RETR 99", false)
	p.cmd("DELE 1", false)
	p.cmd("DELE 3", false)
	p.cmd("RSET", false)
	p.cmd("DELE 2", false)
	// Pipelined: three commands in one write.
	if _, err := p.c.Write([]byte("NOOP\r\nSTAT\r\nLIST 2\r\n")); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		p.line()
	}
	p.cmd("QUIT", false)
	_ = p.c.Close()

	files := waitTraces(t, dir, 1)
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(recordSecret)) {
		t.Errorf("the password is in the trace:\n%s", data)
	}
	for _, want := range []string{
		"proto: pop3\n", "user: alice password=redacted\n", "mailbox: alice INBOX = msg1 msg2 msg3 msg4 msg5 msg6\n",
		"C: PASS not-the-password\n", "C: PASS redacted\n", "S< msg1 dot\n", "S< msg2 top 1\n",
		"S: 1 ${size msg1}\n", "S: 3 ${uid3}\n", "S: +OK 3 ${uid3}\n", "S: +OK 6 ${size msg6}\n", "S: -ERR ${...}\n",
		"! expect-close\n", "! expect-mailbox alice INBOX = msg1 msg3 msg4 msg5 msg6\n",
		"-- msg6.eml --\nX-Recorded: message 6 was not retrieved\n", "made up to the listed size: message 6.",
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("trace lacks %q:\n%s", want, data)
		}
	}
	replayTrace(t, files[0])
}

// TestRecordAPOP records an APOP login and a client hang-up: the digest is
// not in the file, the replay computes it from the new greeting.
func TestRecordAPOP(t *testing.T) {
	dir := t.TempDir()
	addr, _ := recordServer(t, dir)
	p := dialPOP(t, addr)
	sum := md5.Sum([]byte(p.ts + recordSecret))
	digest := hex.EncodeToString(sum[:])
	if st, _ := p.cmd("APOP alice "+digest, false); !strings.HasPrefix(st, "+OK") {
		t.Fatalf("APOP: %s", st)
	}
	p.cmd("RETR 1", true)
	p.cmd("DELE 1", false)
	_ = p.c.Close() // no QUIT: nothing is removed

	files := waitTraces(t, dir, 1)
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{recordSecret, digest} {
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("secret %q is in the trace:\n%s", secret, data)
		}
	}
	for _, want := range []string{"requires: apop\n", "S: +OK ${...}${ts~<[^<>]*>}${...}\n", "C: APOP alice ${apop alice ts}\n", "! hangup\n",
		"! expect-mailbox alice INBOX = msg1\n"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("trace lacks %q:\n%s", want, data)
		}
	}
	replayTrace(t, files[0])
}

// TestRecordRedactsSASL checks the transcript a session with AUTH PLAIN
// and AUTH LOGIN exchanges gives, whether or not the server offers AUTH:
// no base64 of the secret may remain.
func TestRecordRedactsSASL(t *testing.T) {
	dir := t.TempDir()
	addr, _ := recordServer(t, dir)
	plain := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00" + recordSecret))
	login := base64.StdEncoding.EncodeToString([]byte(recordSecret))
	p := dialPOP(t, addr)
	p.cmd("AUTH PLAIN "+plain, false)
	if st, _ := p.cmd("AUTH LOGIN", false); strings.HasPrefix(st, "+ ") {
		p.cmd(base64.StdEncoding.EncodeToString([]byte("alice")), false)
		p.cmd(login, false)
	}
	p.cmd("QUIT", false)
	_ = p.c.Close()
	files := waitTraces(t, dir, 1)
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{recordSecret, plain, login} {
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("secret %q is in the trace:\n%s", secret, data)
		}
	}
	if _, err := conformance.Parse(files[0], data); err != nil {
		t.Errorf("the trace does not parse: %v\n%s", err, data)
	}
}

// TestRecordNoLogin: a session that never logs in has no user and no
// fixtures, and still replays.
func TestRecordNoLogin(t *testing.T) {
	dir := t.TempDir()
	addr, _ := recordServer(t, dir)
	p := dialPOP(t, addr)
	p.cmd("NOOP", false)
	p.cmd("QUIT", false)
	_ = p.c.Close()
	files := waitTraces(t, dir, 1)
	replayTrace(t, files[0])
}

// TestRecordStatOnly: the session learns sizes only from STAT; the
// fillers share the total so that STAT replays exactly.
func TestRecordStatOnly(t *testing.T) {
	dir := t.TempDir()
	addr, _ := recordServer(t, dir)
	p := dialPOP(t, addr)
	p.cmd("USER alice", false)
	p.cmd("PASS "+recordSecret, false)
	p.cmd("STAT", false)
	p.cmd("RETR 2", true)
	p.cmd("STAT", false)
	p.cmd("QUIT", false)
	_ = p.c.Close()
	files := waitTraces(t, dir, 1)
	replayTrace(t, files[0])
}

// TestRecordCRAMMD5 records a CRAM-MD5 login (RFC 2195): the response is
// not in the file, the replay computes it from the new challenge.
func TestRecordCRAMMD5(t *testing.T) {
	dir := t.TempDir()
	addr, _ := recordServer(t, dir)
	p := dialPOP(t, addr)
	st, _ := p.cmd("AUTH CRAM-MD5", false)
	chal, ok := strings.CutPrefix(st, "+ ")
	if !ok {
		t.Skipf("the server does not offer CRAM-MD5: %s", st)
	}
	raw, err := base64.StdEncoding.DecodeString(chal)
	if err != nil {
		t.Fatal(err)
	}
	resp := conformance.CRAMMD5Response("alice", recordSecret, raw)
	if st, _ := p.cmd(resp, false); !strings.HasPrefix(st, "+OK") {
		t.Fatalf("CRAM-MD5: %s", st)
	}
	p.cmd("STAT", false)
	p.cmd("QUIT", false)
	_ = p.c.Close()
	files := waitTraces(t, dir, 1)
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(resp)) || bytes.Contains(data, []byte(recordSecret)) {
		t.Errorf("a secret is in the trace:\n%s", data)
	}
	if !strings.Contains(string(data), "C: ${cram-md5 alice challenge1}\n") {
		t.Errorf("trace lacks the CRAM-MD5 placeholder:\n%s", data)
	}
	replayTrace(t, files[0])
}
