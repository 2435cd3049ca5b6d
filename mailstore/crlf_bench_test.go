package mailstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// BenchmarkCRLFReaderSmall streams a typical 4 KiB LF message: what a
// fetchall of many small messages does once per message.
func BenchmarkCRLFReaderSmall(b *testing.B) {
	in := []byte(strings.Repeat("a typical line of a mail message, about 60 octets long.\n", 70))
	buf := make([]byte, 32*1024)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{NewCRLFReader(bytes.NewReader(in))}, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCRLFSize counts the CRLF size of a 56 KB LF message, what a
// Maildir without ,W= fields does once per new message.
func BenchmarkCRLFSize(b *testing.B) {
	in := []byte(strings.Repeat("a typical line of a mail message, about 60 octets long.\n", 1000))
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := CRLFSize(bytes.NewReader(in)); err != nil {
			b.Fatal(err)
		}
	}
}

// benchDrop is an in-memory Maildrop for the Session benchmarks.
type benchDrop struct{ msgs []MessageInfo }

func (d *benchDrop) Messages(context.Context) ([]MessageInfo, error) {
	return append([]MessageInfo(nil), d.msgs...), nil
}
func (d *benchDrop) OpenMessage(context.Context, string) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("")), nil
}
func (d *benchDrop) Commit(context.Context, Changes) error { return nil }
func (d *benchDrop) Close() error                          { return nil }

// BenchmarkSession measures the Session operations a POP3 session runs on
// a maildrop of 10 000 messages: NewSession, Stat, List, then Message
// and MarkRetrieved for each message, and Commit.
func BenchmarkSession(b *testing.B) {
	drop := &benchDrop{}
	for i := range 10000 {
		drop.msgs = append(drop.msgs, MessageInfo{UID: fmt.Sprintf("uid%d", i), Size: 4200})
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		s, err := NewSession(ctx, drop)
		if err != nil {
			b.Fatal(err)
		}
		if n, _ := s.Stat(); n != 10000 {
			b.Fatal(n)
		}
		if l := s.List(); len(l) != 10000 {
			b.Fatal(len(l))
		}
		for n := 1; n <= 10000; n++ {
			if _, err := s.Message(n); err != nil {
				b.Fatal(err)
			}
			s.MarkRetrieved(n)
		}
		if _, err := s.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCRLFReaderLarge reads a 4 MB LF message with 256 KiB reads, as
// POP3 RETR of a large message does; such reads convert in place.
func BenchmarkCRLFReaderLarge(b *testing.B) {
	in := []byte(strings.Repeat("a typical line of a mail message, about 60 octets long.\n", 70000))
	buf := make([]byte, 256*1024)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		r := NewCRLFReader(bytes.NewReader(in))
		for {
			_, err := r.Read(buf)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}
