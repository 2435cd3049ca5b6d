package main

import (
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestSIGHUPReloadsEveryReloader sends SIGHUP to the test process: each
// reloader runs, a failing one is logged as kept, the others still run.
func TestSIGHUPReloadsEveryReloader(t *testing.T) {
	var logs syncBuffer
	var good, bad atomic.Int32
	stop := reloadOnSIGHUP(zerolog.New(&logs),
		reloader{what: "broken thing", reload: func() error { bad.Add(1); return errors.New("parse error") }},
		reloader{what: "users file", reload: func() error { good.Add(1); return nil }},
	)
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for good.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if good.Load() != 1 || bad.Load() != 1 {
		t.Fatalf("reloads: good %d, bad %d; want 1 each", good.Load(), bad.Load())
	}
	out := logs.String()
	for _, want := range []string{"broken thing not reloaded", "previous one stays in force", "users file reloaded"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
