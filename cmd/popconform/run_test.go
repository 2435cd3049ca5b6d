package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"popgate/conformance"
	"popgate/mailstore/maildir"
	"popgate/mailstore/memstore"
	"popgate/mailstore/users"
	"popgate/pop3"
)

// server starts popgate's POP3 front end over a memstore with one user,
// demo/pw, and an empty Inbox, on a loopback port.
func server(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	st := memstore.New()
	if err := st.AddUser(ctx, "demo", "pw"); err != nil {
		t.Fatal(err)
	}
	// One server runs every transcript from one address: keep the login
	// throttle (pop3.Limiter) out of the way.
	srv, err := pop3.New(pop3.Options{Store: st, Hostname: "popconform.test", Limiter: pop3.NewLimiter(pop3.LimiterOptions{IPThreshold: 1 << 20, UserThreshold: 1 << 20})})
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := conformance.NewStoreTarget(ctx, st, srv.ServeConn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tgt.Close(); err != nil {
			t.Error(err)
		}
	})
	return tgt.Addr()
}

func runArgs(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestRunTestdata replays the POP3 transcripts of the repository: nothing
// may fail; files with fixtures are skipped with the documented reason.
func TestRunTestdata(t *testing.T) {
	addr := server(t)
	dir := filepath.Join("..", "..", "conformance", "testdata", "pop3")
	code, out, errOut := runArgs(t, "--addr", addr, "--user", "demo", "--password", "pw", "--popgate", dir)
	t.Logf("popconform output:\n%s", out)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"PASS " + filepath.Join(dir, "rfc1939-greeting.txtar") + "\n",
		"PASS " + filepath.Join(dir, "rfc1939-quit-authorization.txtar") + "\n",
		"PASS " + filepath.Join(dir, "long-line.txtar") + "\n",
		"SKIP " + filepath.Join(dir, "rfc1939-stat.txtar") + ": " + noFixtures + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^[1-9][0-9]* passed, 0 failed, [1-9][0-9]* skipped\n\z`).MatchString(out) {
		t.Errorf("bad summary line:\n%s", out)
	}
}

func TestRunFailureAndSkip(t *testing.T) {
	addr := server(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("a-good.txtar", "proto: pop3\nuser: mrose password=secret\nS: +OK ${...}\nC: USER mrose\nS: +OK ${...}\nC: PASS secret\nS: +OK ${...}\nC: STAT\nS: +OK 0 0\n")
	bad := write("b-bad.txtar", "proto: pop3\n# The greeting is not -ERR.\nS: -ERR ${...}\n")
	pinned := write("c-pinned.txtar", "proto: pop3\nrequires: popgate\nS: +OK ${...}\n")

	code, out, _ := runArgs(t, "--addr", addr, "--user", "demo", "--password", "pw", good, bad, pinned)
	if code != exitFailed {
		t.Errorf("exit %d, want %d", code, exitFailed)
	}
	want := "PASS " + good + "\n" +
		"FAIL " + bad + ": " + bad + ":3: S: -ERR ${...}\n" +
		"SKIP " + pinned + ": requires popgate: checks popgate's own choices; add --popgate if the server is popgate\n" +
		"1 passed, 1 failed, 1 skipped\n"
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}

	_, out, _ = runArgs(t, "--addr", addr, "-v", bad)
	for _, w := range []string{"narration: The greeting is not -ERR.", `got:  "+OK popconform.test`} {
		if !strings.Contains(out, w) {
			t.Errorf("-v output lacks %q:\n%s", w, out)
		}
	}
}

func TestRunUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"x.txtar"}, exitUsage, "--addr is required"},
		{[]string{"--addr", "127.0.0.1:1"}, exitUsage, "at least one transcript"},
		{[]string{"--addr", "127.0.0.1:1", "--user", "u", "x"}, exitUsage, "--user and --password together"},
		{[]string{"--addr", "127.0.0.1:1", "no-such-file.txtar"}, exitUsage, "no-such-file.txtar"},
		{[]string{"--bogus"}, exitUsage, "unknown flag"},
		{[]string{"--help"}, exitOK, "usage: popconform"},
	}
	for _, tt := range tests {
		code, _, errOut := runArgs(t, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tt.args, code, errOut, tt.code, tt.want)
		}
	}
}

// fileUsers checks passwords against a passwd-file read at every login,
// as Dovecot does when the file changes: popconform --users-file rewrites
// it per transcript.
type fileUsers struct{ path string }

func (f fileUsers) Authenticate(ctx context.Context, user, password string) (users.Identity, error) {
	db, err := users.Open(f.path)
	if err != nil {
		return users.Identity{}, err
	}
	return db.Authenticate(ctx, user, password)
}

func (f fileUsers) AuthenticateAPOP(ctx context.Context, user, timestamp, digest string) (users.Identity, error) {
	db, err := users.Open(f.path)
	if err != nil {
		return users.Identity{}, err
	}
	return db.AuthenticateAPOP(ctx, user, timestamp, digest)
}

// TestRunSeedMaildir replays every POP3 transcript against popgate over
// a Maildir store, with popconform writing the fixtures and the users:
// nothing may fail, and only files that cannot be seeded are skipped.
func TestRunSeedMaildir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	if err := os.WriteFile(passwd, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := maildir.New(maildir.Options{Path: filepath.Join(dir, "mail", "%u", "Maildir"), Users: fileUsers{passwd}, Hostname: "seed.test"})
	if err != nil {
		t.Fatal(err)
	}
	// One server runs every transcript from one address: keep the login
	// throttle (pop3.Limiter) out of the way.
	srv, err := pop3.New(pop3.Options{Store: st, Hostname: "seed.test", Limiter: pop3.NewLimiter(pop3.LimiterOptions{IPThreshold: 1 << 20, UserThreshold: 1 << 20})})
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := conformance.NewStoreTarget(ctx, st, srv.ServeConn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tgt.Close() })
	td := filepath.Join("..", "..", "conformance", "testdata", "pop3")
	code, out, errOut := runArgs(t, "--addr", tgt.Addr(), "--popgate", "--seed-maildir", filepath.Join(dir, "mail", "%u", "Maildir"), "--users-file", passwd, td)
	t.Logf("popconform output:\n%s", out)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "PASS "+filepath.Join(td, "rfc1939-dele.txtar")+"\n") {
		t.Errorf("a transcript with fixtures and expect-mailbox did not pass:\n%s", out)
	}
}

func TestRunUsersFileNeedsSeed(t *testing.T) {
	code, _, errOut := runArgs(t, "--addr", "127.0.0.1:1", "--users-file", "x", "y.txtar")
	if code != exitUsage || !strings.Contains(errOut, "--users-file needs --seed-maildir") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
