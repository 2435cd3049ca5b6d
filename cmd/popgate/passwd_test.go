package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"popgate/mailstore"
	"popgate/mailstore/users"
)

func TestPasswdMakesAnEntryTheUsersFileAccepts(t *testing.T) {
	for _, scheme := range []string{"SHA512-CRYPT", "PLAIN", "BLF-CRYPT"} {
		var stdout, stderr syncBuffer
		code := runPasswd([]string{"--scheme", scheme, "alice"}, strings.NewReader("open sesame\n"), &stdout, &stderr)
		if code != 0 {
			t.Fatalf("passwd --scheme %s = %d; stderr %q", scheme, code, stderr.String())
		}
		line := strings.TrimSpace(stdout.String())
		if !strings.HasPrefix(line, "alice:{"+scheme+"}") {
			t.Fatalf("passwd --scheme %s printed %q", scheme, line)
		}
		if scheme != "PLAIN" && strings.Contains(line, "open sesame") {
			t.Fatalf("hashed entry contains the password: %q", line)
		}
		file := filepath.Join(t.TempDir(), "users")
		if err := os.WriteFile(file, []byte(line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := users.Open(file)
		if err != nil {
			t.Fatalf("users.Open of the printed entry: %v", err)
		}
		ctx := context.Background()
		if _, err := db.Authenticate(ctx, "alice", "open sesame"); err != nil {
			t.Errorf("%s: right password rejected: %v", scheme, err)
		}
		if _, err := db.Authenticate(ctx, "alice", "open sesame!"); !errors.Is(err, mailstore.ErrAuthFailed) {
			t.Errorf("%s: wrong password = %v, want ErrAuthFailed", scheme, err)
		}
	}
}

func TestPasswdUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		stdin string
		code  int
	}{
		{nil, "pw\n", 2},
		{[]string{"a", "b"}, "pw\n", 2},
		{[]string{"alice"}, "", 1},
		{[]string{"--scheme", "ROT13", "alice"}, "pw\n", 1},
		{[]string{"bad:name"}, "pw\n", 1},
	} {
		var stdout, stderr syncBuffer
		if code := runPasswd(tc.args, strings.NewReader(tc.stdin), &stdout, &stderr); code != tc.code {
			t.Errorf("passwd %q = %d, want %d; stderr %q", tc.args, code, tc.code, stderr.String())
		}
		if stdout.String() != "" {
			t.Errorf("passwd %q printed %q on failure", tc.args, stdout.String())
		}
	}
}

// TestRunAsDropsPrivileges starts the real binary as root with --run-as
// nobody and reads the serving process's credentials from /proc.
func TestRunAsDropsPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: --run-as is a root-only operation")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	bin := popgateBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--pop3", "127.0.0.1:0", "--run-as", "nobody", "--log-level", "warn")
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	re := regexp.MustCompile(`POP3 on (\S+)`)
	var addr string
	for i := 0; i < 200 && addr == ""; i++ {
		if m := re.FindStringSubmatch(stdout.String()); m != nil {
			addr = m[1]
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if addr == "" {
		t.Fatalf("server did not start; stderr %q", stderr.String())
	}
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	uidLine := regexp.MustCompile(`(?m)^Uid:\s+(.*)$`).FindStringSubmatch(string(status))
	if uidLine == nil {
		t.Fatalf("no Uid line in /proc status")
	}
	for _, f := range strings.Fields(uidLine[1]) {
		if f != nobody.Uid {
			t.Fatalf("Uid line %q: want every id %s (nobody)", uidLine[1], nobody.Uid)
		}
	}
	// It still serves after dropping root.
	c := dial(t, addr)
	expectPrefix(t, c.line(), "+OK")
	expectPrefix(t, c.cmd("USER demo"), "+OK")
	expectPrefix(t, c.cmd("PASS demo"), "+OK")
	expectPrefix(t, c.cmd("QUIT"), "+OK")
}
