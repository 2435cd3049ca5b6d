package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"popgate/mailstore"
	"popgate/pop1/pop1client"
	"popgate/pop2/pop2client"
)

// syncBuffer is a bytes.Buffer safe for one writer and one polling reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startRun runs the program in the background and returns the address its
// first listener printed, a stop function and a channel with the exit
// status.
func startRun(t *testing.T, args ...string) (string, *syncBuffer, context.CancelFunc, <-chan int) {
	t.Helper()
	addr, _, stderr, cancel, done := startRunOut(t, args...)
	return addr, stderr, cancel, done
}

// startRunOut is startRun that also returns the program's stdout.
func startRunOut(t *testing.T, args ...string) (string, *syncBuffer, *syncBuffer, context.CancelFunc, <-chan int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, &stdout, &stderr) }()
	re := regexp.MustCompile(`POP\d on (\S+)`)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		// The welcome text is complete once it says how to stop.
		out := stdout.String()
		if m := re.FindStringSubmatch(out); m != nil && strings.Contains(out, "Ctrl-C") {
			t.Cleanup(cancel)
			return m[1], &stdout, &stderr, cancel, done
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("run exited with %d before listening; stderr:\n%s", code, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	t.Fatalf("no listening address printed; stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	return "", nil, nil, nil, nil
}

type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading reply: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (c *client) cmd(s string) string {
	c.t.Helper()
	if _, err := c.c.Write([]byte(s + "\r\n")); err != nil {
		c.t.Fatalf("sending %q: %v", s, err)
	}
	return c.line()
}

func expectPrefix(t *testing.T, got, prefix string) {
	t.Helper()
	if !strings.HasPrefix(got, prefix) {
		t.Fatalf("reply %q, want prefix %q", got, prefix)
	}
}

func TestDemoServesPOP3(t *testing.T) {
	addr, _, _, _ := startRun(t, "--pop3", "127.0.0.1:0", "--hostname", "demo.test")
	c := dial(t, addr)
	expectPrefix(t, c.line(), "+OK")
	expectPrefix(t, c.cmd("USER demo"), "+OK")
	expectPrefix(t, c.cmd("PASS demo"), "+OK")
	want := "+OK " + strconv.Itoa(len(demoMessages)) + " "
	expectPrefix(t, c.cmd("STAT"), want)
	expectPrefix(t, c.cmd("QUIT"), "+OK")
}

func TestShutdownClosesIdleSessionsWithoutUpdate(t *testing.T) {
	addr, _, stop, done := startRun(t, "--pop3", "127.0.0.1:0", "--shutdown-timeout", "200ms")
	c := dial(t, addr)
	expectPrefix(t, c.line(), "+OK")
	expectPrefix(t, c.cmd("USER demo"), "+OK")
	expectPrefix(t, c.cmd("PASS demo"), "+OK")
	expectPrefix(t, c.cmd("DELE 1"), "+OK")
	stop()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("run returned %d after shutdown, want 0", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after shutdown")
	}
	// The idle session was closed by the server, with no reply to a QUIT
	// it never received.
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if l, err := c.r.ReadString('\n'); err == nil {
		t.Fatalf("read %q after shutdown, want the connection closed", l)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatalf("listener %s still accepts after shutdown", addr)
	}
}

func TestListenFailureIsOneLineAndNonZero(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stdout, stderr syncBuffer
	code := run(context.Background(), []string{"--pop3", ln.Addr().String()}, &stdout, &stderr)
	if code == 0 {
		t.Fatalf("run on a busy port returned 0")
	}
	// Log lines may come first; the error itself is one "popgate:" line.
	var errLines []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.HasPrefix(l, "popgate:") {
			errLines = append(errLines, l)
		}
	}
	msg := strings.Join(errLines, "\n")
	if len(errLines) != 1 || !strings.Contains(msg, ln.Addr().String()) || !strings.Contains(msg, "in use") {
		t.Fatalf("stderr = %q, want one line naming the address and 'in use'", msg)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"--log-format", "xml"},
		{"--log-level", "loud"},
		{"stray-argument"},
	} {
		var stdout, stderr syncBuffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("run(%q) = %d, want 2; stderr %q", args, code, stderr.String())
		}
	}
	var stdout, stderr syncBuffer
	if code := run(context.Background(), []string{"--help"}, &stdout, &stderr); code != 0 {
		t.Errorf("run(--help) = %d, want 0", code)
	}
	if !strings.Contains(stderr.String(), "--pop3") {
		t.Errorf("--help output does not list --pop3: %q", stderr.String())
	}
	if code := run(context.Background(), []string{"--store", "nosuch:x", "--pop3", "127.0.0.1:0"}, &stdout, &stderr); code != 1 {
		t.Errorf("run with an unknown store = %d, want 1", code)
	}
}

// TestDemoServesPOP2AndPOP3TheSameMailbox fetches the demo maildrop over
// POP2 and checks each message against the demo text in its CRLF form.
func TestDemoServesPOP2AndPOP3TheSameMailbox(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, stdout, _, _, _ := startRunOut(t, "--pop3", "127.0.0.1:0", "--pop2", "127.0.0.1:0")
	m := regexp.MustCompile(`POP2 on (\S+)`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no POP2 address printed: %q", stdout.String())
	}
	c, err := pop2client.Dial(ctx, m[1])
	if err != nil {
		t.Fatalf("pop2 dial: %v", err)
	}
	defer c.Close()
	n, err := c.Helo(demoUser, demoPassword)
	if err != nil || n != len(demoMessages) {
		t.Fatalf("HELO = %d, %v; want %d messages", n, err, len(demoMessages))
	}
	msgs, err := c.FetchAll(n, pop2client.FetchOptions{InFlight: 8})
	if err != nil {
		t.Fatalf("FetchAll: %v", err)
	}
	for i, msg := range msgs {
		if want := mailstore.ToCRLF([]byte(demoMessages[i])); !bytes.Equal(msg.Data, want) {
			t.Errorf("POP2 message %d = %q, want %q", i+1, msg.Data, want)
		}
	}
}

// TestDemoPort109ServesPOP1AndPOP2 runs the demo's default listeners and
// fetches the same maildrop through the shared POP1+POP2 port with both
// historical clients, then through POP3.
func TestDemoPort109ServesPOP1AndPOP2(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, stdout, _, _, _ := startRunOut(t, "--pop3", "127.0.0.1:0", "--pop109", "127.0.0.1:0")
	m := regexp.MustCompile(`POP1\+POP2 on (\S+)`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no POP1+POP2 address printed: %q", stdout.String())
	}
	want := make([][]byte, len(demoMessages))
	for i, msg := range demoMessages {
		want[i] = mailstore.ToCRLF([]byte(msg))
	}

	c2, err := pop2client.Dial(ctx, m[1])
	if err != nil {
		t.Fatalf("pop2 dial: %v", err)
	}
	n, err := c2.Helo(demoUser, demoPassword)
	if err != nil || n != len(demoMessages) {
		t.Fatalf("HELO = %d, %v", n, err)
	}
	msgs2, err := c2.FetchAll(n, pop2client.FetchOptions{})
	if err != nil {
		t.Fatalf("POP2 FetchAll: %v", err)
	}
	if err := c2.Quit(); err != nil {
		t.Fatalf("POP2 QUIT: %v", err)
	}
	c2.Close()

	c1, err := pop1client.Dial(ctx, m[1])
	if err != nil {
		t.Fatalf("pop1 dial: %v", err)
	}
	defer c1.Close()
	if err := c1.Login(demoUser, demoPassword); err != nil {
		t.Fatalf("POP1 login: %v", err)
	}
	msgs1, err := c1.Fetch("", false)
	if err != nil {
		t.Fatalf("POP1 Fetch: %v", err)
	}
	if len(msgs1) != len(want) || len(msgs2) != len(want) {
		t.Fatalf("POP1 got %d messages, POP2 %d; want %d", len(msgs1), len(msgs2), len(want))
	}
	for i := range want {
		if !bytes.Equal(msgs2[i].Data, want[i]) {
			t.Errorf("POP2 message %d differs from the store", i+1)
		}
		if !bytes.Equal(msgs1[i].Data, want[i]) {
			t.Errorf("POP1 message %d differs from the store", i+1)
		}
	}
}

// TestWrongMaildirSizeCorrectedOverTheWire: a Maildir file whose ,W=
// field is two octets short (Dovecot's LDA does this for a message without
// a final newline) fails its first RETR with a closed connection, and the
// next session announces and serves the real size.
func TestWrongMaildirSizeCorrectedOverTheWire(t *testing.T) {
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	if err := os.WriteFile(passwd, []byte("ann:{PLAIN}pw::::::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(dir, "mail", "ann")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	body := "Subject: x\n\nno final newline"
	name := "1700000000.M1P1.h,S=" + strconv.Itoa(len(body)) + ",W=" + strconv.Itoa(len(body)+2) + ":2,"
	if err := os.WriteFile(filepath.Join(md, "cur", name), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, _, _, _ := startRun(t, "--pop3", "127.0.0.1:0", "--store", "maildir:"+filepath.Join(dir, "mail", "%u"),
		"--users", passwd, "--plaintext", "allow")
	want := "Subject: x\r\n\r\nno final newline\r\n"
	login := func() *client {
		c := dial(t, addr)
		expectPrefix(t, c.line(), "+OK")
		expectPrefix(t, c.cmd("USER ann"), "+OK")
		expectPrefix(t, c.cmd("PASS pw"), "+OK")
		return c
	}
	c := login()
	expectPrefix(t, c.cmd("LIST 1"), "+OK 1 "+strconv.Itoa(len(body)+2))
	if _, err := c.c.Write([]byte("RETR 1\r\n")); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(c.r)
	if strings.HasSuffix(string(rest), "\r\n.\r\n") {
		t.Fatalf("the first RETR ended as if complete: %q", rest)
	}
	// The hung-up session gives its lock back; then the size is right.
	var got string
	for deadline := time.Now().Add(5 * time.Second); ; {
		c = login()
		got = c.cmd("LIST 1")
		if got == "+OK 1 "+strconv.Itoa(len(want)) || time.Now().After(deadline) {
			break
		}
		c.cmd("QUIT")
		time.Sleep(20 * time.Millisecond)
	}
	if got != "+OK 1 "+strconv.Itoa(len(want)) {
		t.Fatalf("second session: LIST 1 = %q, want the real size %d", got, len(want))
	}
	expectPrefix(t, c.cmd("RETR 1"), "+OK")
	var msg strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading RETR: %v", err)
		}
		if l == ".\r\n" {
			break
		}
		msg.WriteString(l)
	}
	if msg.String() != want {
		t.Errorf("RETR 1 = %q, want %q", msg.String(), want)
	}
	expectPrefix(t, c.cmd("QUIT"), "+OK")
}
