package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// benchServe runs a scenario against an in-process popgate (POP3 over a
// Maildir) b.N sessions long; with -cpuprofile it profiles server and
// client together, which is how the hot paths of docs/performance.md
// were found.
func benchServe(b *testing.B, scenario string, users, msgs, size, bigSize int, user string, opts ...func(*benchConfig, *liveServer)) {
	ls := startLivePopgate(b, users, msgs, size, bigSize)
	cfg := benchConfig{scenario: scenario, addr: ls.addr, password: "pw", concurrency: max(users, 1),
		count: 1, timeout: 10 * time.Second, user: user}
	if user == "" {
		cfg.userTemplate = "u%d"
	}
	for _, o := range opts {
		o(&cfg, ls)
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
// 4 KiB at concurrency 1, with the default pipeline.
func BenchmarkServeFetchall(b *testing.B) { benchServe(b, "fetchall", 1, 1000, 4096, 0, "") }

// BenchmarkServeFetchallDepth1 is BenchmarkServeFetchall with one RETR
// per round trip (--pipeline 1).
func BenchmarkServeFetchallDepth1(b *testing.B) {
	benchServe(b, "fetchall", 1, 1000, 4096, 0, "", func(c *benchConfig, _ *liveServer) { c.pipeline = 1 })
}

// BenchmarkServeBigmsg retrieves one 20 MB message.
func BenchmarkServeBigmsg(b *testing.B) { benchServe(b, "bigmsg", 0, 0, 0, 20_000_000, "big") }

// BenchmarkServeScale is the scale scenario (login, UIDL, LIST, QUIT)
// over 5 000 messages, cache warm.
func BenchmarkServeScale(b *testing.B) { benchServe(b, "scale", 1, 5000, 200, 0, "") }

// BenchmarkServeScaleCold is the scale scenario with the Maildir cache
// deleted before every session, as popbench compare's cold runs do:
// every login lists cur/, parses each name and writes the cache anew.
// POPGATE_BENCH_100K=1 uses 100 000 messages instead of 5 000.
func BenchmarkServeScaleCold(b *testing.B) {
	n := 5000
	if os.Getenv("POPGATE_BENCH_100K") != "" {
		n = 100_000
	}
	benchServe(b, "scale", 1, n, 200, 0, "", func(c *benchConfig, ls *liveServer) {
		c.coldRemove = []string{filepath.Join(ls.mail, "%u", "popgate-cache")}
	})
}

// blastServer answers every command line on one loopback connection with
// reply, written from memory: a server that costs nearly nothing, so
// that a benchmark against it measures the client.
func blastServer(b *testing.B, reply []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		if _, err := nc.Write([]byte("+OK hi\r\n")); err != nil {
			return
		}
		r := bufio.NewReader(nc)
		for {
			if _, err := r.ReadSlice('\n'); err != nil {
				return
			}
			if _, err := nc.Write(reply); err != nil {
				return
			}
		}
	}()
	return ln.Addr().String()
}

// BenchmarkClientRetr is popbench's own cost of a RETR of a 20 MB
// message: the reply comes from memory, so the figure is the verifying
// client's throughput over loopback, the bound of bigmsg for any server.
func BenchmarkClientRetr(b *testing.B) {
	var wire bytes.Buffer
	wire.WriteString("+OK message follows\r\n")
	var size int64
	for i := 0; size < 20_000_000; i++ {
		for _, l := range bytes.SplitAfter(genMessage(i, 4096), []byte("\n")) {
			if len(l) == 0 {
				continue
			}
			if l[0] == '.' {
				wire.WriteByte('.')
			}
			wire.Write(l[:len(l)-1])
			wire.WriteString("\r\n")
			size += int64(len(l)) + 1
		}
	}
	wire.WriteString(".\r\n")
	cl, err := dial(context.Background(), blastServer(b, wire.Bytes()), 10*time.Second, true)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.close()
	b.SetBytes(size)
	b.ReportAllocs()
	// CPU time of the whole process (client and the trivial server)
	// varies less than wall time on a shared machine.
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	for b.Loop() {
		cl.queueRETR(1)
		if err := cl.flush(); err != nil {
			b.Fatal(err)
		}
		if err := cl.retrReply(1, size); err != nil {
			b.Fatal(err)
		}
	}
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
	b.ReportMetric(float64(cpu)/1e6/float64(b.N), "cpu-ms/op")
}
