//go:build unix

package pop3

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"popgate/mailstore"
)

// The server-side RETR benchmarks: one large message through the real
// RETR code to a client that only counts octets and watches for the
// terminator, and the same number of octets as raw writes on one
// loopback TCP stream. Compare BenchmarkRetrBig with BenchmarkLoopback
// from the same run; loopback throughput varies a lot from run to run.

// benchSizes are the message sizes of the big-message benchmarks.
var benchSizes = []int{20_000_000, 50_000_000}

// bigLFMessage returns a message of about size octets with LF line ends,
// lines of varying length and every 40th line starting with a dot, as a
// Maildir holds it.
func bigLFMessage(size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 200)
	b.WriteString("From: bench@example.test\nTo: big@example.test\nSubject: big\n\n")
	const text = "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. "
	for i := 0; b.Len() < size; i++ {
		if i%40 == 0 {
			b.WriteByte('.')
		}
		n := 20 + (i*37)%(len(text)-20)
		b.WriteString(text[:n])
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// readReply reads one multi-line reply into the void: it returns the
// octets read, status line included, once the last five end in the
// terminator. After dot-stuffing, CRLF "." CRLF occurs nowhere else.
func readReply(r io.Reader, buf []byte) (int64, error) {
	var total int64
	var tail [5]byte
	have := 0
	for {
		n, err := r.Read(buf)
		total += int64(n)
		if n >= 5 {
			copy(tail[:], buf[n-5:n])
			have = 5
		} else if n > 0 {
			keep := min(have, 5-n)
			copy(tail[:keep], tail[have-keep:have])
			copy(tail[keep:], buf[:n])
			have = keep + n
		}
		if have == 5 && string(tail[:]) == "\r\n.\r\n" {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loopWithCPU runs op b.N times and also reports the process's CPU time
// per MB (server and client together, both in this process): less
// sensitive than MB/s to other jobs on a shared machine.
func loopWithCPU(b *testing.B, bytesPerOp int64, op func()) {
	b.SetBytes(bytesPerOp)
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		op()
	}
	used := cpuTime() - start
	b.ReportMetric(float64(used.Microseconds())/(float64(b.N)*float64(bytesPerOp)/1e6), "cpu-µs/MB")
}

// benchServer serves store on a loopback listener until the benchmark
// ends and returns a logged-in connection.
func benchServer(b *testing.B, store mailstore.Store) (net.Conn, *bufio.Reader) {
	b.Helper()
	srv, err := New(Options{Store: store, Hostname: "bench", Logger: zerolog.Nop(),
		IdleTimeout: time.Minute, WriteTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { srv.ServeConn(ctx, nc) })
		}
	})
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = nc.Close()
		_ = ln.Close()
		cancel()
		wg.Wait()
	})
	br := bufio.NewReader(nc)
	for _, cmd := range []string{"", "USER " + testUser, "PASS " + testPass} {
		if cmd != "" {
			if _, err := io.WriteString(nc, cmd+"\r\n"); err != nil {
				b.Fatal(err)
			}
		}
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "+OK") {
			b.Fatalf("%q: %q, %v", cmd, line, err)
		}
	}
	return nc, br
}

// bigAttachment returns a message of about size octets with LF line ends
// that is mostly one base64 attachment, as most large mail is: 76-octet
// lines, none starting with a dot.
func bigAttachment(size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 200)
	b.WriteString("From: bench@example.test\nSubject: attachment\nContent-Type: application/octet-stream\n" +
		"Content-Transfer-Encoding: base64\n\n")
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	line := make([]byte, 77)
	for i := 0; b.Len() < size; i++ {
		for j := range 76 {
			line[j] = alphabet[(i*31+j*7)%64]
		}
		line[76] = '\n'
		b.Write(line)
	}
	return b.Bytes()
}

// BenchmarkRetrBig retrieves one large message over loopback TCP, the
// message served as a Maildir serves it (LF, through
// mailstore.NewCRLFReader) or as the memstore does (already CRLF). "text"
// has a line starting with a dot every 40 lines; "attach" is a base64
// attachment without any.
func BenchmarkRetrBig(b *testing.B) {
	for _, size := range benchSizes {
		for _, kind := range []string{"text", "attach"} {
			benchRetrBig(b, size, kind)
		}
	}
}

func benchRetrBig(b *testing.B, size int, kind string) {
	lf := bigLFMessage(size)
	if kind == "attach" {
		lf = bigAttachment(size)
	}
	crlfMsg := mailstore.ToCRLF(lf)
	want := wireForm(lf)
	for _, src := range []string{"lf", "crlf"} {
		b.Run(fmt.Sprintf("src=%s/msg=%s/size=%dMB", src, kind, size/1_000_000), func(b *testing.B) {
			store := &fakeStore{msgs: []fakeMsg{{uid: "big", data: string(crlfMsg), size: -1}}}
			if src == "lf" {
				store.msgs[0] = fakeMsg{uid: "big", data: string(lf), size: int64(len(crlfMsg))}
				store.lf = true
			}
			nc, br := benchServer(b, store)
			status := "+OK " + strconv.Itoa(len(crlfMsg)) + " octets\r\n"
			expect := int64(len(status) + len(want))
			buf := make([]byte, 256*1024)
			loopWithCPU(b, int64(len(want)), func() {
				if _, err := io.WriteString(nc, "RETR 1\r\n"); err != nil {
					b.Fatal(err)
				}
				n, err := readReply(br, buf)
				if err != nil {
					b.Fatal(err)
				}
				if n != expect {
					b.Fatalf("read %d octets, want %d", n, expect)
				}
			})
		})
	}
}

// BenchmarkLoopback is the ceiling for BenchmarkRetrBig: the same
// request and reply pattern on one loopback TCP stream, the reply one
// raw write of a pre-built buffer of the same size.
func BenchmarkLoopback(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%dMB", size/1_000_000), func(b *testing.B) {
			reply := wireForm(bigLFMessage(size))
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = ln.Close() }()
			done := make(chan error, 1)
			go func() {
				nc, err := ln.Accept()
				if err != nil {
					done <- err
					return
				}
				defer func() { _ = nc.Close() }()
				var req [1]byte
				for {
					if _, err := io.ReadFull(nc, req[:]); err != nil {
						if errors.Is(err, io.EOF) {
							err = nil
						}
						done <- err
						return
					}
					if _, err := nc.Write(reply); err != nil {
						done <- err
						return
					}
				}
			}()
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 256*1024)
			loopWithCPU(b, int64(len(reply)), func() {
				if _, err := nc.Write([]byte{'R'}); err != nil {
					b.Fatal(err)
				}
				n, err := readReply(nc, buf)
				if err != nil {
					b.Fatal(err)
				}
				if n != int64(len(reply)) {
					b.Fatalf("read %d octets, want %d", n, len(reply))
				}
			})
			_ = nc.Close()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
