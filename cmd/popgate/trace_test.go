package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTraceRecordsSessionsWithoutSecrets runs popgate with --trace and
// checks that a POP3 session becomes a transcript that names the user,
// holds the retrieved message as a fixture, and never the password.
func TestTraceRecordsSessionsWithoutSecrets(t *testing.T) {
	dir := t.TempDir()
	addr, _, stop, done := startRun(t, "--pop3", "127.0.0.1:0", "--trace", dir)
	c := dial(t, addr)
	expectPrefix(t, c.line(), "+OK")
	expectPrefix(t, c.cmd("USER demo"), "+OK")
	expectPrefix(t, c.cmd("PASS demo"), "+OK")
	expectPrefix(t, c.cmd("RETR 1"), "+OK")
	for {
		if c.line() == "." {
			break
		}
	}
	expectPrefix(t, c.cmd("QUIT"), "+OK")
	stop()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("popgate did not stop")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) != 1 {
		t.Fatalf("trace dir holds %v (%v), want one transcript", files, err)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, want := range []string{"proto: pop3", "C: USER demo", "C: RETR 1", "Welcome to the Post Office"} {
		if !strings.Contains(text, want) {
			t.Errorf("transcript lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "PASS demo") {
		t.Errorf("transcript contains the password:\n%s", text)
	}
}
