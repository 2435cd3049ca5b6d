package mbox

import (
	"bytes"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"popgate/mailstore"
)

// Flavour is the convention for quoting body lines that would look like a
// "From " separator.
type Flavour int

const (
	// MboxO quotes a line starting "From " as ">From " and unquotes exactly
	// ">From ". A body line that really began ">From " comes back as
	// "From ": the format cannot tell them apart. This is what Debian's
	// Postfix local(8), procmail and Exim write, so it is the default.
	MboxO Flavour = iota
	// MboxRD quotes every line matching ">*From " by one more ">" and
	// unquotes by removing one, which is reversible (mutt, qmail's mbox).
	MboxRD
)

// String returns "mboxo" or "mboxrd".
func (f Flavour) String() string {
	switch f {
	case MboxO:
		return "mboxo"
	case MboxRD:
		return "mboxrd"
	}
	return fmt.Sprintf("Flavour(%d)", int(f))
}

// ParseFlavour parses "mboxo" or "mboxrd" (any case).
func ParseFlavour(s string) (Flavour, error) {
	switch strings.ToLower(s) {
	case "mboxo", "":
		return MboxO, nil
	case "mboxrd":
		return MboxRD, nil
	}
	return 0, fmt.Errorf("mbox: unknown flavour %q (want mboxo or mboxrd)", s)
}

const fromPrefix = "From "

// unquoter undoes the flavour's ">From " quoting as a stream, at any chunk
// boundaries. The scanner and the message reader share it, so that sizes
// and contents agree by construction.
type unquoter struct {
	rd      bool
	mid     bool // inside a line
	gts     int  // '>' octets held at the start of the line
	matched int  // octets of "From " matched after them
}

// add appends the unquoted form of p to dst.
func (u *unquoter) add(dst, p []byte) []byte {
	for len(p) > 0 {
		if u.mid {
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				return append(dst, p...)
			}
			dst = append(dst, p[:i+1]...)
			p = p[i+1:]
			u.mid = false
			continue
		}
		c := p[0]
		switch {
		case u.matched == 0 && c == '>' && (u.rd || u.gts == 0):
			u.gts++
			p = p[1:]
		case u.gts > 0 && c == fromPrefix[u.matched]:
			u.matched++
			p = p[1:]
			if u.matched == len(fromPrefix) {
				dst = appendGts(dst, u.gts-1)
				dst = append(dst, fromPrefix...)
				u.gts, u.matched, u.mid = 0, 0, true
			}
		default:
			// Not a quoted From: give back what was held; c is then
			// handled as line content (it may be the '\n' ending it).
			dst = u.flush(dst)
		}
	}
	return dst
}

// flush appends the octets held at the end of the stream (or of a line).
func (u *unquoter) flush(dst []byte) []byte {
	dst = appendGts(dst, u.gts)
	dst = append(dst, fromPrefix[:u.matched]...)
	u.gts, u.matched, u.mid = 0, 0, true
	return dst
}

func appendGts(dst []byte, n int) []byte {
	for ; n > 0; n-- {
		dst = append(dst, '>')
	}
	return dst
}

// unquoteReader streams r through an unquoter.
type unquoteReader struct {
	r       io.Reader
	u       unquoter
	in      []byte
	out     []byte
	pending []byte
	err     error
}

func newUnquoteReader(r io.Reader, f Flavour) *unquoteReader {
	return &unquoteReader{r: r, u: unquoter{rd: f == MboxRD}, in: make([]byte, 32*1024)}
}

func (q *unquoteReader) Read(p []byte) (int, error) {
	for len(q.pending) == 0 {
		if q.err != nil {
			return 0, q.err
		}
		n, err := q.r.Read(q.in)
		q.out = q.u.add(q.out[:0], q.in[:n])
		if err != nil {
			if errors.Is(err, io.EOF) {
				q.out = q.u.flush(q.out)
			}
			q.err = err
		}
		q.pending = q.out
	}
	n := copy(p, q.pending)
	q.pending = q.pending[n:]
	return n, nil
}

// quote appends the flavour's quoted form of one message to dst, converted
// to LF line ends where that is lossless (see lfForm), and with a final
// newline.
func quote(dst, msg []byte, f Flavour) []byte {
	for len(msg) > 0 {
		line := msg
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line = msg[:i+1]
		}
		msg = msg[len(line):]
		rest := line
		if f == MboxRD {
			rest = bytes.TrimLeft(line, ">")
		}
		if bytes.HasPrefix(rest, []byte(fromPrefix)) {
			dst = append(dst, '>')
		}
		dst = append(dst, line...)
	}
	return dst
}

// lfForm returns the form of msg to store: its canonical CRLF form with
// CRLF turned into LF, which reads back as the same CRLF form, unless the
// message holds "\r\r\n" (which would not), in which case the CRLF form is
// stored as it is. Either way the result ends in a newline unless empty.
func lfForm(msg []byte) []byte {
	c := mailstore.ToCRLF(msg)
	if bytes.Contains(c, []byte("\r\r\n")) {
		return c
	}
	return bytes.ReplaceAll(c, []byte("\r\n"), []byte("\n"))
}

// crlfSink counts (and optionally hashes) the canonical CRLF form of the
// octets written to it, by the rules of mailstore.ToCRLF, at any chunk
// boundaries.
type crlfSink struct {
	h    hash.Hash // nil: count only
	n    int64
	prev byte
	any  bool
}

var crlf = []byte("\r\n")

func (s *crlfSink) emit(p []byte) {
	s.n += int64(len(p))
	if s.h != nil {
		s.h.Write(p)
	}
}

func (s *crlfSink) write(p []byte) {
	if len(p) == 0 {
		return
	}
	s.any = true
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.emit(p)
			s.prev = p[len(p)-1]
			return
		}
		before := s.prev
		if i > 0 {
			before = p[i-1]
		}
		if before != '\r' {
			s.emit(p[:i])
			s.emit(crlf)
		} else {
			s.emit(p[:i+1])
		}
		s.prev = '\n'
		p = p[i+1:]
	}
}

// finish adds the final CRLF of a message that does not end in LF.
func (s *crlfSink) finish() {
	if s.any && s.prev != '\n' {
		s.emit(crlf)
		s.prev = '\n'
	}
}
