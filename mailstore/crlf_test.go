package mailstore

import (
	"bytes"
	"errors"
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
