package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// scanOutcome is what a verifier concludes about a stream that starts
// with a multi-line body.
type scanOutcome struct {
	done  bool  // the terminator was found
	bad   bool  // a line without CRLF came first
	n     int64 // content octets, when done
	end   int   // octets of the body including the terminator, when done
	calls int   // scan calls (driver only)
}

func (o scanOutcome) same(p scanOutcome) bool {
	if o.done != p.done || o.bad != p.bad {
		return false
	}
	return !o.done || (o.n == p.n && o.end == p.end)
}

func (o scanOutcome) String() string {
	return fmt.Sprintf("{done %v bad %v n %d end %d}", o.done, o.bad, o.n, o.end)
}

// referenceScan is the plain line-by-line verifier that popbench used
// before bodyScanner: split at LF, demand CRLF, stop at ".CRLF", count
// every line, less one octet for a stuffed dot.
func referenceScan(stream []byte) scanOutcome {
	var o scanOutcome
	for i := 0; ; {
		j := bytes.IndexByte(stream[i:], '\n')
		if j < 0 {
			return o // incomplete
		}
		line := stream[i : i+j+1]
		if len(line) < 2 || line[len(line)-2] != '\r' {
			o.bad = true
			return o
		}
		i += len(line)
		if string(line) == ".\r\n" {
			o.done, o.end = true, i
			return o
		}
		o.n += int64(len(line))
		if line[0] == '.' {
			o.n--
		}
	}
}

// chunkedScan feeds stream to a bodyScanner in blocks of the given sizes
// (the last one repeats) and checks the scanner's own contract on the way.
func chunkedScan(t testing.TB, stream []byte, sizes []int) scanOutcome {
	var s bodyScanner
	var o scanOutcome
	for off, k := 0, 0; off < len(stream); k++ {
		size := sizes[min(k, len(sizes)-1)]
		block := stream[off:min(off+size, len(stream))]
		used, done, err := s.scan(block)
		o.calls++
		if used < 0 || used > len(block) {
			t.Fatalf("scan used %d of %d", used, len(block))
		}
		if err != nil {
			if !errors.Is(err, errProtocol) {
				t.Fatalf("error %v does not wrap errProtocol", err)
			}
			o.bad = true
			return o
		}
		if !done && used != len(block) {
			t.Fatalf("scan used %d of %d without finishing", used, len(block))
		}
		off += used
		if done {
			o.done, o.n, o.end = true, s.octets(), off
			return o
		}
	}
	return o
}

// compositions calls fn with every way to cut n octets into blocks of 1
// to k octets.
func compositions(n, k int, fn func([]int)) {
	var rec func(left int, acc []int)
	rec = func(left int, acc []int) {
		if left == 0 {
			fn(acc)
			return
		}
		for c := 1; c <= min(k, left); c++ {
			rec(left-c, append(acc, c))
		}
	}
	rec(n, nil)
}

// TestBodyScannerExhaustive compares the scanner with the reference on
// every stream of up to 6 octets over the alphabet that matters (dot, CR,
// LF, other), cut into blocks in every possible way.
func TestBodyScannerExhaustive(t *testing.T) {
	alphabet := []byte{'.', '\r', '\n', 'a'}
	maxLen := 6
	if testing.Short() {
		maxLen = 5
	}
	stream := make([]byte, 0, maxLen)
	var gen func()
	checked := 0
	gen = func() {
		want := referenceScan(stream)
		compositions(len(stream), len(stream), func(sizes []int) {
			if got := chunkedScan(t, stream, sizes); !got.same(want) {
				t.Fatalf("stream %q in blocks %v: scanner %v, reference %v", stream, sizes, got, want)
			}
			checked++
		})
		if len(stream) == maxLen {
			return
		}
		for _, c := range alphabet {
			stream = append(stream, c)
			gen()
			stream = stream[:len(stream)-1]
		}
	}
	gen()
	t.Logf("%d chunkings checked", checked)
}

// TestBodyScannerSplits cuts bodies, followed by the next reply, at
// every pair of positions, and short ones in every way into blocks of up
// to 4 octets.
func TestBodyScannerSplits(t *testing.T) {
	next := "+OK next reply\r\n"
	for _, body := range []string{
		".\r\n",                             // empty body
		"a\r\n.\r\n",                        // one line
		"..\r\n.\r\n",                       // a line that is one dot
		"...x\r\n\r\n..\r\n.\r\n",           // stuffed lines, an empty line
		".\ra\r\n.\r\n",                     // stuffed line starting with CR
		"x\r\r\n.\r\n",                      // CR before CRLF
		"x\n.\r\n",                          // bare LF
		"..\n.\r\n",                         // bare LF after a stuffed dot
		".\n",                               // bare LF terminator
		"\n.\r\n",                           // bare LF as the first octet
		"abc\r\n.x\r\n.\r",                  // incomplete
		"Subject: x\r\n\r\n.dot\r\n.\r\n",   // a message
		"line one\r\n..two\r\n...\r\n.\r\n", // dots of every kind
	} {
		stream := []byte(body + next)
		want := referenceScan(stream)
		if len(stream) <= 20 {
			compositions(len(stream), 4, func(sizes []int) {
				if got := chunkedScan(t, stream, sizes); !got.same(want) {
					t.Fatalf("%q in blocks %v: scanner %v, reference %v", stream, sizes, got, want)
				}
			})
		}
		for a := 1; a < len(stream); a++ {
			for b := a + 1; b <= len(stream); b++ {
				sizes := []int{a, b - a, len(stream)}
				if got := chunkedScan(t, stream, sizes); !got.same(want) {
					t.Fatalf("%q in blocks %v: scanner %v, reference %v", stream, sizes, got, want)
				}
			}
		}
	}
}

// TestBodyScannerMessages checks generated messages, served as POP3
// would (CRLF, dot-stuffed), in random block sizes against their LIST
// size, and that the scanner stops at the terminator.
func TestBodyScannerMessages(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		msg := genMessage(i, 100+rng.IntN(20000))
		var wire bytes.Buffer
		var size int64
		for _, l := range bytes.SplitAfter(msg, []byte("\n")) {
			if len(l) == 0 {
				continue
			}
			l = append(bytes.TrimSuffix(l, []byte("\n")), '\r', '\n')
			size += int64(len(l))
			if l[0] == '.' {
				wire.WriteByte('.')
			}
			wire.Write(l)
		}
		wire.WriteString(".\r\n+OK\r\n")
		want := referenceScan(wire.Bytes())
		if !want.done || want.n != size {
			t.Fatalf("message %d: reference %v, size %d", i, want, size)
		}
		sizes := make([]int, 20)
		for k := range sizes {
			sizes[k] = 1 + rng.IntN(1+rng.IntN(5000))
		}
		if got := chunkedScan(t, wire.Bytes(), sizes); !got.same(want) || got.end != wire.Len()-len("+OK\r\n") {
			t.Fatalf("message %d in blocks %v: scanner %v, reference %v", i, sizes, got, want)
		}
	}
}

// TestBodyScannerNoAllocs: verifying a body allocates nothing.
func TestBodyScannerNoAllocs(t *testing.T) {
	stream := []byte("a\r\n..b\r\n\r\n.\r\n")
	var s bodyScanner
	allocs := testing.AllocsPerRun(100, func() {
		s.reset()
		for off := 0; off < len(stream); off += 3 {
			if _, done, err := s.scan(stream[off:min(off+3, len(stream))]); done || err != nil {
				break
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per body", allocs)
	}
}

// FuzzBodyScanner compares the scanner, fed in blocks derived from seed,
// with the line-by-line reference.
func FuzzBodyScanner(f *testing.F) {
	for _, s := range []string{".\r\n", "a\r\n.\r\n", "..\r\n.\r\n+OK\r\n", "x\n.\r\n", ".\ra\r\n.\r\n", "abc"} {
		f.Add([]byte(s), uint64(0))
		f.Add([]byte(s), uint64(0x0102030405))
	}
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		want := referenceScan(stream)
		// Block sizes of 1 to 16 octets, four bits each from seed; 0
		// means the whole stream at once.
		var sizes []int
		for s := seed; s != 0; s >>= 4 {
			sizes = append(sizes, int(s&15)+1)
		}
		if len(sizes) == 0 {
			sizes = []int{max(len(stream), 1)}
		}
		if got := chunkedScan(t, stream, sizes); !got.same(want) {
			t.Fatalf("%q in blocks %v: scanner %v, reference %v", stream, sizes, got, want)
		}
	})
}

// BenchmarkBodyScanner verifies a 1 MB dot-stuffed body in 512 KiB
// blocks: the client's cost per octet of RETR.
func BenchmarkBodyScanner(b *testing.B) {
	var wire bytes.Buffer
	for i := 0; wire.Len() < 1_000_000; i++ {
		for _, l := range bytes.SplitAfter(genMessage(i, 4096), []byte("\n")) {
			if len(l) == 0 {
				continue
			}
			if l[0] == '.' {
				wire.WriteByte('.')
			}
			wire.Write(l[:len(l)-1])
			wire.WriteString("\r\n")
		}
	}
	wire.WriteString(".\r\n")
	stream := wire.Bytes()
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	var s bodyScanner
	for b.Loop() {
		s.reset()
		for off := 0; off < len(stream); {
			used, done, err := s.scan(stream[off:min(off+bigReadSize, len(stream))])
			if err != nil {
				b.Fatal(err)
			}
			off += used
			if done {
				break
			}
		}
	}
}

// TestRetrNoAllocs: once a session runs, sending a RETR and verifying its
// reply allocates nothing.
func TestRetrNoAllocs(t *testing.T) {
	const runs = 100
	reply := "+OK 10 octets\r\nabc\r\n..de\r\n.\r\n"
	script := "+OK hi\r\n" + strings.Repeat(reply, runs+1)
	addr, _ := scriptedServer(t, script)
	cl, err := dial(context.Background(), addr, 5*time.Second, true)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.close()
	allocs := testing.AllocsPerRun(runs, func() {
		cl.queueRETR(1)
		if err := cl.flush(); err != nil {
			t.Fatal(err)
		}
		if err := cl.retrReply(1, 10); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per RETR", allocs)
	}
}
