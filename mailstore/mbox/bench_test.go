package mbox

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"popgate/mailstore"
)

// benchSpool writes a spool of n messages of about size octets each and
// returns its bytes.
func benchSpool(n, size int) []byte {
	body := strings.Repeat("The quick brown fox jumps over the lazy dog.\n", size/45+1)
	var spool []byte
	for i := 0; i < n; i++ {
		spool = append(spool, "From sender@example.org Thu Jan  1 00:00:00 1970\n"...)
		spool = append(spool, fmt.Sprintf("Subject: message %d\nFrom: a@example.org\n\n", i)...)
		spool = append(spool, body...)
		spool = append(spool, '\n')
	}
	return spool
}

type benchCase struct {
	name string
	n    int
	size int
}

func benchCases() []benchCase {
	cs := []benchCase{{"1000x2KB", 1000, 2048}, {"10000x2KB", 10000, 2048}}
	if os.Getenv("MBOX_BENCH_BIG") != "" {
		cs = append(cs, benchCase{"100MB", 10000, 10 * 1024})
	}
	return cs
}

// heapMetric reports the live heap after op, which must stay flat as the
// spool grows (it is proportional to the message count, not the size).
func heapMetric(b *testing.B) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
}

// BenchmarkLoginList measures login, Open (the scan) and LIST.
func BenchmarkLoginList(b *testing.B) {
	for _, bc := range benchCases() {
		b.Run(bc.name, func(b *testing.B) {
			s, path := userStore(b, benchOptions(b))
			spool := benchSpool(bc.n, bc.size)
			if err := os.WriteFile(path, spool, 0o600); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(spool)))
			b.ReportAllocs()
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				acct, err := s.Login(ctx, helperUser, "pw")
				if err != nil {
					b.Fatal(err)
				}
				md, err := acct.Open(ctx, "")
				if err != nil {
					b.Fatal(err)
				}
				msgs, err := md.Messages(ctx)
				if err != nil || len(msgs) != bc.n {
					b.Fatalf("Messages = %d, %v", len(msgs), err)
				}
				md.Close()
			}
			b.StopTimer()
			heapMetric(b)
		})
	}
}

// BenchmarkCommit measures a commit deleting one mid-spool message (a full
// rewrite) including the Open that precedes it.
func BenchmarkCommit(b *testing.B) {
	for _, bc := range benchCases() {
		b.Run(bc.name, func(b *testing.B) {
			s, path := userStore(b, benchOptions(b))
			spool := benchSpool(bc.n+b.N, bc.size)
			if err := os.WriteFile(path, spool, 0o600); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(spool)))
			b.ReportAllocs()
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				acct, _ := s.Login(ctx, helperUser, "pw")
				md, err := acct.Open(ctx, "")
				if err != nil {
					b.Fatal(err)
				}
				msgs, _ := md.Messages(ctx)
				if err := md.Commit(ctx, mailstore.Changes{Deleted: []string{msgs[len(msgs)/2].UID}}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			heapMetric(b)
		})
	}
}

func benchOptions(b *testing.B) Options {
	dir := b.TempDir()
	opts := Options{Path: dir + "/spool/%u", Auth: NewTable()}
	if err := mkdirs(opts); err != nil {
		b.Fatal(err)
	}
	return opts
}
