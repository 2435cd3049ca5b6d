package pop3

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

// stuff runs the dot-stuffer over in, written in chunks of size chunk.
func stuff(t testing.TB, in string, limit int64, chunk int) string {
	t.Helper()
	var out bytes.Buffer
	d := newDotWriter(&out, limit)
	for p := []byte(in); len(p) > 0 && !d.Done(); {
		n := min(chunk, len(p))
		if m, err := d.Write(p[:n]); err != nil || m != n {
			t.Fatalf("Write = %d, %v", m, err)
		}
		p = p[n:]
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestDotWriter(t *testing.T) {
	const hdr = "Subject: x\r\n\r\n"
	tests := []struct {
		name  string
		in    string
		limit int64
		want  string
	}{
		{"empty", "", -1, ".\r\n"},
		{"plain", "a\r\nb\r\n", -1, "a\r\nb\r\n.\r\n"},
		{"lone dot line", hdr + ".\r\n", -1, hdr + "..\r\n.\r\n"},
		{"dot lines", ".a\r\n..b\r\nc.\r\n. \r\n", -1, "..a\r\n...b\r\nc.\r\n.. \r\n.\r\n"},
		{"bare LF", "a\n.\nb\n", -1, "a\r\n..\r\nb\r\n.\r\n"},
		{"no final newline", "a\r\nb", -1, "a\r\nb\r\n.\r\n"},
		{"final CR only", "a\r\nb\r", -1, "a\r\nb\r\n.\r\n"},
		{"lone CR kept", "a\rb\r\n", -1, "a\rb\r\n.\r\n"},
		{"only dot no newline", ".", -1, "..\r\n.\r\n"},
		{"top 0", hdr + "1\r\n2\r\n", 0, hdr + ".\r\n"},
		{"top 1", hdr + "1\r\n2\r\n", 1, hdr + "1\r\n.\r\n"},
		{"top beyond", hdr + "1\r\n2\r\n", 99, hdr + "1\r\n2\r\n.\r\n"},
		{"top stuffs", hdr + ".1\r\n.2\r\n", 1, hdr + "..1\r\n.\r\n"},
		{"top no body", "Subject: x\r\n", 0, "Subject: x\r\n.\r\n"},
		{"top bare LF", "S: x\n\n1\n2\n", 1, "S: x\r\n\r\n1\r\n.\r\n"},
		{"top header with CR inside", "S: \rx\r\n\r\n1\r\n", 0, "S: \rx\r\n\r\n.\r\n"},
		{"top unterminated body", hdr + "1", 5, hdr + "1\r\n.\r\n"},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 2, 3, 7, 1 << 20} {
			if got := stuff(t, tt.in, tt.limit, chunk); got != tt.want {
				t.Errorf("%s (chunk %d): got %q, want %q", tt.name, chunk, got, tt.want)
			}
		}
	}
}

// unstuff is a client's reading of a multi-line reply body.
func unstuff(t *testing.T, s string) string {
	t.Helper()
	if !strings.HasSuffix(s, "\r\n.\r\n") && s != ".\r\n" {
		t.Fatalf("no terminator in %q", s)
	}
	var b strings.Builder
	r := bufio.NewReader(strings.NewReader(s))
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("unterminated %q", s)
		}
		if line == ".\r\n" {
			if rest, _ := io.ReadAll(r); len(rest) > 0 {
				t.Fatalf("data after terminator: %q", rest)
			}
			return b.String()
		}
		b.WriteString(strings.TrimPrefix(line, "."))
	}
}

// TestDotWriterRoundTrip checks that a client recovers canonical input
// exactly, whatever the chunking.
func TestDotWriterRoundTrip(t *testing.T) {
	in := "From: x\r\n\r\n.\r\n..\r\n.x\r\nend\r\n" + strings.Repeat(".", 3000) + "\r\n"
	for _, chunk := range []int{1, 5, 64, 4096} {
		if got := unstuff(t, stuff(t, in, -1, chunk)); got != in {
			t.Errorf("chunk %d: round trip changed the message", chunk)
		}
	}
}

func TestDotWriterWriteError(t *testing.T) {
	d := newDotWriter(errWriter{}, -1)
	if _, err := d.Write([]byte(".a\r\n")); err == nil {
		t.Error("Write succeeded on a failing writer")
	}
	if err := d.Close(); err == nil {
		t.Error("Close succeeded on a failing writer")
	}
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func BenchmarkDotStuff(b *testing.B) {
	var msg bytes.Buffer
	msg.WriteString("From: bench@example.test\r\nSubject: benchmark\r\n\r\n")
	for msg.Len() < 1<<20 {
		msg.WriteString("The quick brown fox jumps over the lazy dog, again and again.\r\n")
		msg.WriteString(".a line that needs a stuffing dot\r\n")
	}
	data := msg.Bytes()
	w := bufio.NewWriterSize(io.Discard, 32*1024)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		d := newDotWriter(w, -1)
		for p := data; len(p) > 0; {
			n := min(32*1024, len(p))
			if _, err := d.Write(p[:n]); err != nil {
				b.Fatal(err)
			}
			p = p[n:]
		}
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
