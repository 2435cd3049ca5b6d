package main

import (
	"context"
	"testing"
	"time"
)

// benchServe runs a scenario against an in-process popgate (POP3 over a
// Maildir) b.N sessions long; with -cpuprofile it profiles server and
// client together, which is how the hot paths of docs/performance.md
// were found.
func benchServe(b *testing.B, scenario string, users, msgs, size, bigSize int, user string) {
	ls := startLivePopgate(b, users, msgs, size, bigSize)
	cfg := benchConfig{scenario: scenario, addr: ls.addr, password: "pw", concurrency: max(users, 1),
		count: 1, timeout: 10 * time.Second, user: user}
	if user == "" {
		cfg.userTemplate = "u%d"
	}
	if _, err := runBench(context.Background(), cfg); err != nil { // warm the caches
		b.Fatal(err)
	}
	cfg.count = b.N
	b.ReportAllocs()
	b.ResetTimer()
	r, err := runBench(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	if r.Errors > 0 {
		b.Fatalf("%d errors: %v", r.Errors, r.ErrorSample)
	}
	if r.Bytes > 0 {
		b.SetBytes(r.Bytes / int64(b.N))
	}
}

// BenchmarkServeLogin is the login scenario (USER, PASS, STAT, QUIT) at
// concurrency 8.
func BenchmarkServeLogin(b *testing.B) { benchServe(b, "login", 8, 10, 4096, 0, "") }

// BenchmarkServeFetchall is the fetchall scenario over 1 000 messages of
// 4 KiB at concurrency 1.
func BenchmarkServeFetchall(b *testing.B) { benchServe(b, "fetchall", 1, 1000, 4096, 0, "") }

// BenchmarkServeBigmsg retrieves one 20 MB message.
func BenchmarkServeBigmsg(b *testing.B) { benchServe(b, "bigmsg", 0, 0, 0, 20_000_000, "big") }

// BenchmarkServeScale is the scale scenario (login, UIDL, LIST, QUIT)
// over 5 000 messages, cache warm.
func BenchmarkServeScale(b *testing.B) { benchServe(b, "scale", 1, 5000, 200, 0, "") }
