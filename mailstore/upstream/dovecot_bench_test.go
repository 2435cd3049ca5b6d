package upstream_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"popgate/mailstore"
	"popgate/mailstore/upstream"
)

// BenchmarkDovecotOpen measures a gateway login and snapshot (LOGIN,
// SELECT, UID FETCH of sizes and flags) against Debian's Dovecot over
// IMAPS, for an INBOX of n messages of which every 50th has no final
// line end.
//
//   - first: a fresh gateway store each time, so that every message's
//     last two octets are fetched to learn its CRLF size (the price of
//     exact sizes from the first session on, paid once per process);
//   - again: the same store, whose size cache already knows them.
//
// Dovecot's own index is built before the timer starts. Each iteration
// also checks that every size listed is the CRLF size of the stored file.
func BenchmarkDovecotOpen(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run("n="+strconv.Itoa(n), func(b *testing.B) {
			d := startDovecot(b)
			const user, pass = "bench", "pw"
			if err := d.AddUser(testCtx(b), user, pass); err != nil {
				b.Fatal(err)
			}
			want := benchMaildir(b, filepath.Join(d.dir, "mail", user), n)
			opts := upstream.Options{URL: "imaps://" + d.imaps, CAFile: d.caFile}
			open := func(b *testing.B, s *upstream.Store) {
				ctx := testCtx(b)
				acct, err := s.Login(ctx, user, pass)
				if err != nil {
					b.Fatal(err)
				}
				defer acct.Close()
				md, err := acct.Open(ctx, "")
				if err != nil {
					b.Fatal(err)
				}
				defer md.Close()
				msgs, err := md.Messages(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if len(msgs) != len(want) {
					b.Fatalf("listed %d messages, stored %d", len(msgs), len(want))
				}
				for i, m := range msgs {
					if m.Size != want[i] {
						b.Fatalf("message %d: size %d, CRLF size %d", i+1, m.Size, want[i])
					}
				}
			}
			warm := newStore(b, opts)
			open(b, warm) // Dovecot builds its index; the cache fills
			b.Run("first", func(b *testing.B) {
				for b.Loop() {
					open(b, newStore(b, opts))
				}
			})
			b.Run("again", func(b *testing.B) {
				for b.Loop() {
					open(b, warm)
				}
			})
		})
	}
}

// benchMaildir writes n LF messages into the Maildir at dir (owned by
// the Dovecot mail user, as the parent is) and returns their CRLF sizes
// in delivery order.
func benchMaildir(b *testing.B, dir string, n int) []int64 {
	b.Helper()
	st, err := os.Stat(filepath.Dir(dir))
	if err != nil {
		b.Fatal(err)
	}
	uid, gid := fileOwner(st)
	for _, sub := range []string{"", "cur", "new", "tmp"} {
		p := filepath.Join(dir, sub)
		if err := os.MkdirAll(p, 0o700); err != nil {
			b.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			b.Fatal(err)
		}
	}
	sizes := make([]int64, n)
	for i := range n {
		msg := fmt.Sprintf("From: a@example.org\nSubject: message %d\n\nbody line one\nbody line two of message %d\n", i+1, i+1)
		if i%50 == 49 {
			msg = msg[:len(msg)-1] // no final line end
		}
		sizes[i] = int64(len(mailstore.ToCRLF([]byte(msg))))
		fn := filepath.Join(dir, "cur", fmt.Sprintf("%d.M%dP1.bench:2,", 1700000000+i, i))
		if err := os.WriteFile(fn, []byte(msg), 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.Chown(fn, uid, gid); err != nil {
			b.Fatal(err)
		}
	}
	return sizes
}

// fileOwner returns the owner of the file st describes.
func fileOwner(st os.FileInfo) (uid, gid int) {
	sys := st.Sys().(*syscall.Stat_t)
	return int(sys.Uid), int(sys.Gid)
}
