package maildir

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkLoginList measures Login + Open + Messages + Close on a Maildir
// of 1 000 and 10 000 messages (100 000 with POPGATE_BENCH_100K=1), named
// without ,W= so that sizes must be counted: "cold" deletes the cache
// before each login, "cached" uses its sizes and UIDs but lists cur/
// (which changed a moment ago), "reused" also reuses its listing of cur/
// and skips new/ (both unchanged for a minute).
func BenchmarkLoginList(b *testing.B) {
	sizes := []int{1000, 10000}
	if os.Getenv("POPGATE_BENCH_100K") != "" {
		sizes = append(sizes, 100000)
	}
	for _, n := range sizes {
		e := newEnv(b)
		s := e.store(b)
		root := e.userDir(b, s, "alice")
		body := strings.Repeat("The quick brown fox jumps over the lazy dog.\n", 40)
		for i := range n {
			name := fmt.Sprintf("%d.M%dP1_%d.bench.example:2,", 1600000000+i, i%1000000, i)
			writeFile(b, filepath.Join(root, "cur", name), fmt.Sprintf("Subject: %d\n\n%s", i, body))
		}
		loginList := func(b *testing.B) {
			md := openDrop(b, s, "alice", "")
			if got := len(list(b, md)); got != n {
				b.Fatalf("%d messages, want %d", got, n)
			}
			if err := md.Close(); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("n=%d/cold", n), func(b *testing.B) {
			before := s.sizeReads.Load()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if err := os.Remove(filepath.Join(root, cacheName)); err != nil && !os.IsNotExist(err) {
					b.Fatal(err)
				}
				b.StartTimer()
				loginList(b)
			}
			b.ReportMetric(float64(s.sizeReads.Load()-before)/float64(b.N), "files-read/op")
		})
		cur := filepath.Join(root, "cur")
		for _, mode := range []string{"cached", "reused"} {
			b.Run(fmt.Sprintf("n=%d/%s", n, mode), func(b *testing.B) {
				when := time.Now() // cur/ just changed: its listing cannot be reused
				if mode == "reused" {
					when = when.Add(-time.Minute)
				}
				for _, d := range []string{cur, filepath.Join(root, "new")} {
					if err := os.Chtimes(d, when, when); err != nil {
						b.Fatal(err)
					}
				}
				loginList(b) // make sure the cache exists, with this listing
				before, reused := s.sizeReads.Load(), s.listingsReused.Load()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					loginList(b)
				}
				b.ReportMetric(float64(s.sizeReads.Load()-before)/float64(b.N), "files-read/op")
				b.ReportMetric(float64(s.listingsReused.Load()-reused)/float64(b.N), "listings-reused/op")
			})
		}
	}
}
