package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// popgateBinary builds the command once per test run.
func popgateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "popgate-test-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "popgate")
		if out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = &buildError{err: err, out: string(out)}
		}
	})
	if buildErr != nil {
		t.Fatalf("building popgate: %v", buildErr)
	}
	return builtBin
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// TestInetdOverPipes serves one session on stdin/stdout pipes, as from ssh.
func TestInetdOverPipes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, popgateBinary(t), "--inetd", "pop3", "--log-level", "warn")
	cmd.Stdin = strings.NewReader("USER demo\r\nPASS demo\r\nSTAT\r\nDELE 1\r\nQUIT\r\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("popgate --inetd pop3: %v", err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\r\n"), "\r\n")
	// greeting, USER, PASS, STAT, DELE, QUIT
	if len(lines) != 6 {
		t.Fatalf("got %d reply lines, want 6: %q", len(lines), out)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, "+OK ") {
			t.Errorf("reply %d = %q, want +OK", i+1, l)
		}
	}
	if !strings.HasPrefix(lines[3], "+OK 4 ") {
		t.Errorf("STAT reply %q, want +OK 4 ...", lines[3])
	}
	if !strings.Contains(lines[5], "3 messages left") {
		t.Errorf("QUIT reply %q, want the UPDATE to have removed one message", lines[5])
	}
}

// TestInetdOverSocket hands the server one end of a socket pair as fds 0
// and 1, which is what inetd does, and talks POP2 over the other end
// through the port 109 dispatcher.
func TestInetdOverSocket(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	serverEnd := os.NewFile(uintptr(fds[0]), "server")
	clientFile := os.NewFile(uintptr(fds[1]), "client")
	client, err := net.FileConn(clientFile)
	clientFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, popgateBinary(t), "--inetd", "pop109", "--log-level", "warn")
	cmd.Stdin, cmd.Stdout = serverEnd, serverEnd
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serverEnd.Close()
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(client)
	read := func() string {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading: %v (%q)", err, l)
		}
		return strings.TrimRight(l, "\r\n")
	}
	if g := read(); !strings.HasPrefix(g, "+ POP2 ") {
		t.Fatalf("greeting %q, want the POP2 form", g)
	}
	if _, err := client.Write([]byte("HELO demo demo\r\n")); err != nil {
		t.Fatal(err)
	}
	if l := read(); !strings.HasPrefix(l, "#4") {
		t.Fatalf("HELO reply %q, want #4", l)
	}
	if _, err := client.Write([]byte("QUIT\r\n")); err != nil {
		t.Fatal(err)
	}
	if l := read(); !strings.HasPrefix(l, "+") {
		t.Fatalf("QUIT reply %q, want +", l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("popgate --inetd pop109 exited: %v", err)
	}
}
