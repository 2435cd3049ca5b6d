package mailstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

var crlfCases = []struct{ in, want string }{
	{"", ""},
	{"a", "a\r\n"},
	{"a\n", "a\r\n"},
	{"a\r\n", "a\r\n"},
	{"a\nb", "a\r\nb\r\n"},
	{"\n\n", "\r\n\r\n"},
	{"a\rb\n", "a\rb\r\n"},
	{"a\r", "a\r\r\n"},
	{"x\x00\xff\n", "x\x00\xff\r\n"},
	{"a\r\n\nb\r\n", "a\r\n\r\nb\r\n"},
}

func TestToCRLF(t *testing.T) {
	for _, tc := range crlfCases {
		if got := string(ToCRLF([]byte(tc.in))); got != tc.want {
			t.Errorf("ToCRLF(%q) = %q, want %q", tc.in, got, tc.want)
		}
		n, err := CRLFSize(strings.NewReader(tc.in))
		if err != nil || n != int64(len(tc.want)) {
			t.Errorf("CRLFSize(%q) = %d, %v; want %d", tc.in, n, err, len(tc.want))
		}
		got, err := io.ReadAll(NewCRLFReader(iotest.OneByteReader(strings.NewReader(tc.in))))
		if err != nil || string(got) != tc.want {
			t.Errorf("NewCRLFReader(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestCRLFReaderIsAReader(t *testing.T) {
	in := strings.Repeat("line of text\n", 5000)
	if err := iotest.TestReader(NewCRLFReader(strings.NewReader(in)), ToCRLF([]byte(in))); err != nil {
		t.Fatal(err)
	}
}

// readVaried reads r to its end with buffers of the given sizes in turn,
// so that a read may convert in place (at least crlfDirectMin octets) or
// through the reader's buffers, and the two alternate.
func readVaried(r io.Reader, sizes ...int) ([]byte, error) {
	var out []byte
	bufs := make([][]byte, len(sizes))
	for i, n := range sizes {
		bufs[i] = make([]byte, n)
	}
	for i := 0; ; i++ {
		p := bufs[i%len(bufs)]
		n, err := r.Read(p)
		if n < 0 || n > len(p) {
			return out, fmt.Errorf("Read returned %d for a buffer of %d", n, len(p))
		}
		out = append(out, p[:n]...)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// crlfAdversarial are inputs for the in-place conversion: every line end
// doubled in size, CR at chunk edges, lines longer than any buffer, no
// final line end.
func crlfAdversarial() []string {
	long := strings.Repeat("x", 300*1024)
	return []string{
		strings.Repeat("\n", 200*1024),
		strings.Repeat("\r\n", 100*1024),
		strings.Repeat("\r", 100*1024),
		strings.Repeat("a\r", 70*1024) + "\n",
		long,
		long + "\n" + long,
		long + "\r",
		strings.Repeat("line of text\n", 20000) + "no final line end",
		strings.Repeat("mixed\r\nlf\n.dot\n\r\r\n", 10000) + "\r",
		strings.Repeat("y", 32*1024-1) + "\r\n" + strings.Repeat("z", 64*1024) + "\n\n",
	}
}

func TestCRLFReaderDirect(t *testing.T) {
	var inputs []string
	for _, tc := range crlfCases {
		inputs = append(inputs, tc.in)
	}
	inputs = append(inputs, crlfAdversarial()...)
	sources := map[string]func(io.Reader) io.Reader{
		"plain":   func(r io.Reader) io.Reader { return r },
		"half":    iotest.HalfReader,
		"dataerr": iotest.DataErrReader,
		"onebyte": iotest.OneByteReader,
	}
	sizeSets := [][]int{
		{crlfDirectMin},
		{crlfDirectMin + 1},
		{256 * 1024},
		{256 * 1024, 100, crlfDirectMin - 1, 1},
		{1, 3 * crlfDirectMin, 7},
	}
	for i, in := range inputs {
		want := ToCRLF([]byte(in))
		for name, src := range sources {
			if name == "onebyte" && len(in) > 1000 {
				continue
			}
			for _, sizes := range sizeSets {
				got, err := readVaried(NewCRLFReader(src(strings.NewReader(in))), sizes...)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("input %d (%d octets), %s source, reads of %v: %d octets, %v; want %d octets",
						i, len(in), name, sizes, len(got), err, len(want))
				}
			}
		}
	}
}

func TestCRLFReaderDirectError(t *testing.T) {
	boom := errors.New("disk on fire")
	r := NewCRLFReader(io.MultiReader(strings.NewReader("a\nb"), iotest.ErrReader(boom)))
	got, err := readVaried(r, crlfDirectMin)
	if !errors.Is(err, boom) || string(got) != "a\r\nb" {
		t.Errorf("got %q, %v; want %q and the source's error", got, err, "a\r\nb")
	}
	if n, err := r.Read(make([]byte, crlfDirectMin)); n != 0 || !errors.Is(err, boom) {
		t.Errorf("Read after the error = %d, %v", n, err)
	}
}

func TestExactReader(t *testing.T) {
	for _, tc := range []struct {
		data string
		size int64
		ok   bool
	}{
		{"hello", 5, true},
		{"", 0, true},
		{"hello", 4, false},
		{"hello", 6, false},
	} {
		_, err := io.ReadAll(ExactReader(strings.NewReader(tc.data), tc.size))
		if tc.ok && err != nil {
			t.Errorf("ExactReader(%q, %d) = %v, want nil", tc.data, tc.size, err)
		}
		if !tc.ok && !errors.Is(err, ErrSizeMismatch) {
			t.Errorf("ExactReader(%q, %d) = %v, want ErrSizeMismatch", tc.data, tc.size, err)
		}
	}
}

// TestExactReaderBuffers checks ExactReader with buffers smaller and
// larger than the message and sources that return little or much per
// read: what it returns is always a prefix of the data no longer than
// size, and it ends cleanly exactly when the data has size octets.
func TestExactReaderBuffers(t *testing.T) {
	sources := map[string]func(io.Reader) io.Reader{
		"plain": func(r io.Reader) io.Reader { return r },
		"half":  iotest.HalfReader,
		"byte":  iotest.OneByteReader,
		"0,nil": func(r io.Reader) io.Reader { return &zeroFirstReader{r: r} },
	}
	for _, data := range []string{"", "h", "hello", strings.Repeat("x", 300)} {
		for _, size := range []int64{0, 1, int64(len(data)) - 1, int64(len(data)), int64(len(data)) + 1, 1000} {
			if size < 0 {
				continue
			}
			for name, src := range sources {
				for _, bufSize := range []int{1, 2, 7, 64, 4096} {
					got, err := readVaried(ExactReader(src(strings.NewReader(data)), size), bufSize)
					if int64(len(got)) > size || !strings.HasPrefix(data, string(got)) {
						t.Fatalf("%s, %q size %d, buffer %d: returned %q", name, data, size, bufSize, got)
					}
					ok := int64(len(data)) == size
					if ok && (err != nil || string(got) != data) {
						t.Fatalf("%s, %q size %d, buffer %d: %q, %v; want all, nil", name, data, size, bufSize, got, err)
					}
					if !ok && !errors.Is(err, ErrSizeMismatch) {
						t.Fatalf("%s, %q size %d, buffer %d: %v, want ErrSizeMismatch", name, data, size, bufSize, err)
					}
					if !ok {
						// The mismatch sticks: reading on does not turn
						// into a clean end.
						r := ExactReader(src(strings.NewReader(data)), size)
						_, _ = readVaried(r, bufSize)
						if n, err := r.Read(make([]byte, bufSize)); n != 0 || !errors.Is(err, ErrSizeMismatch) {
							t.Fatalf("%s, %q size %d, buffer %d: a Read after the mismatch = %d, %v", name, data, size, bufSize, n, err)
						}
					}
				}
			}
		}
	}
}

// zeroFirstReader answers every other Read with 0, nil.
type zeroFirstReader struct {
	r    io.Reader
	turn bool
}

func (z *zeroFirstReader) Read(p []byte) (int, error) {
	z.turn = !z.turn
	if z.turn {
		return 0, nil
	}
	return z.r.Read(p)
}

// countingReader counts the reads that reach its source.
type countingReader struct {
	r     io.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}

// TestCRLFReaderSizeReads checks that a reader told the message's size
// reads a small message in one read and its end in the next, where the
// plain reader starts with small reads.
func TestCRLFReaderSizeReads(t *testing.T) {
	msg := []byte(strings.Repeat("a line of a message of some four kilobytes\n", 100))
	for _, tc := range []struct {
		name  string
		new   func(io.Reader) io.Reader
		reads int
	}{
		{"sized", func(r io.Reader) io.Reader { return NewCRLFReaderSize(r, int64(len(msg))) }, 2},
		{"sized by the CRLF size", func(r io.Reader) io.Reader { return NewCRLFReaderSize(r, int64(len(ToCRLF(msg)))) }, 2},
		{"unsized", NewCRLFReader, 3},
	} {
		src := &countingReader{r: bytes.NewReader(msg)}
		buf := make([]byte, 32*1024)
		var got []byte
		r := tc.new(src)
		for {
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, ToCRLF(msg)) {
			t.Errorf("%s: wrong output", tc.name)
		}
		if src.reads != tc.reads {
			t.Errorf("%s: %d reads of the source, want %d", tc.name, src.reads, tc.reads)
		}
	}
}

// TestCRLFReaderSizeInPlace checks that a small message read into a
// buffer of more than twice its size is converted in that buffer: the
// reader allocates nothing but itself.
func TestCRLFReaderSizeInPlace(t *testing.T) {
	msg := []byte(strings.Repeat("a line of a message of some four kilobytes\n", 100))
	want := ToCRLF(msg)
	buf := make([]byte, 32*1024)
	src := bytes.NewReader(msg)
	var got int
	allocs := testing.AllocsPerRun(50, func() {
		src.Reset(msg)
		r := NewCRLFReaderSize(src, int64(len(want)))
		got = 0
		for {
			n, err := r.Read(buf[got:])
			got += n
			if err != nil {
				break
			}
		}
	})
	if !bytes.Equal(buf[:got], want) {
		t.Fatalf("got %d octets, want the %d of the CRLF form", got, len(want))
	}
	if allocs > 1 {
		t.Errorf("%v allocations per message, want 1 (the reader)", allocs)
	}
}

func FuzzCRLF(f *testing.F) {
	for _, tc := range crlfCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want := ToCRLF(in)
		n, err := CRLFSize(bytes.NewReader(in))
		if err != nil || n != int64(len(want)) {
			t.Fatalf("CRLFSize = %d, %v; want %d", n, err, len(want))
		}
		got, err := io.ReadAll(NewCRLFReader(iotest.HalfReader(bytes.NewReader(in))))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("NewCRLFReader = %q, %v; want %q", got, err, want)
		}
		for _, hint := range []int64{-1, 0, int64(len(in)), int64(len(want)), int64(len(in)/3 + 1), 1 << 20} {
			got, err := io.ReadAll(NewCRLFReaderSize(iotest.HalfReader(bytes.NewReader(in)), hint))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("NewCRLFReaderSize(%d) = %q, %v; want %q", hint, got, err, want)
			}
		}
		// In place (large reads) and buffered (small ones), alternating.
		sizes := []int{crlfDirectMin, 1 + len(in)%97, 2*crlfDirectMin + len(in)%13}
		got, err = readVaried(NewCRLFReader(iotest.HalfReader(bytes.NewReader(in))), sizes...)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("NewCRLFReader, reads of %v = %q, %v; want %q", sizes, got, err, want)
		}
		// Sized: the first read has room for all of it (in place), then
		// small reads, then one with room for the rest; and a hint that
		// is too small, which must not matter either.
		for _, hint := range []int64{int64(len(in)), int64(len(in) / 2)} {
			sizes = []int{2*len(in) + 2, 1 + len(in)%7, 2*len(in) + 2}
			got, err = readVaried(NewCRLFReaderSize(iotest.HalfReader(bytes.NewReader(in)), hint), sizes...)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("NewCRLFReaderSize(%d), reads of %v = %q, %v; want %q", hint, sizes, got, err, want)
			}
		}
		for i, c := range want {
			if c == '\n' && (i == 0 || want[i-1] != '\r') {
				t.Fatalf("bare LF at %d in %q", i, want)
			}
		}
		if !bytes.Equal(ToCRLF(want), want) {
			t.Fatalf("ToCRLF is not idempotent on %q", in)
		}
	})
}

func BenchmarkCRLFReader(b *testing.B) {
	in := []byte(strings.Repeat("a typical line of a mail message, about 60 octets long.\n", 1000))
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := io.Copy(io.Discard, NewCRLFReader(bytes.NewReader(in))); err != nil {
			b.Fatal(err)
		}
	}
}
