package pop3

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"popgate/mailstore"
)

// truncationNotice ends a message cut by Quirks.SizeCap.
const truncationNotice = "[popgate: message truncated here, it is too large for this client]\r\n"

// truncationReserve is what a cut needs after the last octet kept: a CRLF
// to end the cut line, the empty line that ends a cut header, the notice.
const truncationReserve = int64(2 + 2 + len(truncationNotice))

// quirkReader rewrites a message's CRLF form for the byte-changing
// [Quirks]: NUL replacement, the Status header, the missing end of the
// header, line wrapping and the size cap, in that order. It works line
// by line with a bounded buffer, so a message of any size streams through
// it, and it is deterministic: counting its output gives the size that
// RETR will send.
type quirkReader struct {
	src    *bufio.Reader
	q      Quirks
	status string // the Status line to insert, "" for none
	cap    int64  // the size cap for this reader, 0 for none

	out []byte // output not yet read
	off int

	started  bool  // the first line has been seen
	bol      bool  // the next input fragment starts a line
	inHeader bool  // still in the header
	dropping bool  // inside a Status header being replaced
	col      int   // octets on the current output line
	written  int64 // octets output so far
	ended    bool  // no more output (EOF or truncated)
	err      error // read error to report after the output
}

// quirkBufferSize bounds the fragment a line is read in.
const quirkBufferSize = 32 * 1024

// newQuirkReader wraps r. seen says an earlier session retrieved the
// message (Status: RO); capAdjust is taken off the size cap (the blank
// line that BlankBeforeDot adds after this reader).
func newQuirkReader(r io.Reader, q Quirks, seen bool, capAdjust int64) *quirkReader {
	qr := &quirkReader{src: bufio.NewReaderSize(r, quirkBufferSize), q: q, bol: true, inHeader: true}
	if q.StatusHeader {
		qr.status = "Status: U\r\n"
		if seen {
			qr.status = "Status: RO\r\n"
		}
	}
	if q.SizeCap > 0 {
		qr.cap = q.SizeCap - capAdjust
	}
	return qr
}

// Read implements io.Reader.
func (r *quirkReader) Read(p []byte) (int, error) {
	for r.off == len(r.out) {
		r.out, r.off = r.out[:0], 0
		if r.ended {
			if r.err != nil {
				return 0, r.err
			}
			return 0, io.EOF
		}
		r.step()
	}
	n := copy(p, r.out[r.off:])
	r.off += n
	return n, nil
}

// step processes one input fragment (a line, or part of a long one).
func (r *quirkReader) step() {
	if !r.started {
		r.started = true
		if r.status != "" {
			r.emit(r.status)
		}
	}
	frag, err := r.src.ReadSlice('\n')
	if len(frag) > 0 {
		r.line(frag, err == nil)
	}
	switch {
	case err == nil, errors.Is(err, bufio.ErrBufferFull):
	case errors.Is(err, io.EOF):
		r.finish()
	default:
		r.err = err
		r.ended = true
	}
}

// line handles one fragment; complete says it ends with LF.
func (r *quirkReader) line(frag []byte, complete bool) {
	content := frag
	if complete {
		content = frag[:len(frag)-1]
		if n := len(content); n > 0 && content[n-1] == '\r' {
			content = content[:n-1]
		}
	}
	if r.q.ReplaceNUL {
		// frag is the reader's buffer, already consumed: safe to change.
		for i, b := range content {
			if b == 0 {
				content[i] = '?'
			}
		}
	}
	start := r.bol
	r.bol = complete
	if r.inHeader {
		if start {
			switch {
			case len(content) == 0 && complete:
				r.inHeader, r.dropping = false, false
			case content[0] == ' ' || content[0] == '\t':
				// A continuation keeps the state of its field.
			case isHeaderField(content):
				r.dropping = r.q.StatusHeader && hasPrefixFold(content, "status:")
			default:
				// The body starts without the empty line.
				r.inHeader, r.dropping = false, false
				if r.q.AddEndOfHeaders {
					r.eol()
				}
			}
		}
		if r.dropping {
			return
		}
	}
	r.text(content)
	if complete {
		r.eol()
	}
}

// finish ends the output at the end of the input.
func (r *quirkReader) finish() {
	if r.inHeader && r.q.AddEndOfHeaders && r.started {
		if !r.bol {
			r.eol()
		}
		r.eol()
	}
	r.ended = true
}

// text outputs line content, wrapping it at Quirks.WrapLines: header
// lines are folded (before a space if there is one in reach, else with
// a space added), body lines are broken.
func (r *quirkReader) text(b []byte) {
	w := r.q.WrapLines
	for len(b) > 0 && !r.ended {
		if w == 0 || r.col+len(b) <= w {
			r.emitBytes(b)
			return
		}
		room := w - r.col
		cut, atSpace := room, false
		if r.inHeader {
			if j := lastSpace(b[:min(room+1, len(b))]); j > 0 || (j == 0 && r.col > 0) {
				cut, atSpace = j, true
			}
		}
		r.emitBytes(b[:cut])
		b = b[cut:]
		r.eol()
		if r.inHeader && !atSpace {
			r.emit(" ")
		}
	}
}

// eol ends an output line.
func (r *quirkReader) eol() { r.emit("\r\n") }

func (r *quirkReader) emit(s string) { r.emitBytes([]byte(s)) }

// emitBytes appends b to the output, applying the size cap. b is line
// content or a whole line end.
func (r *quirkReader) emitBytes(b []byte) {
	if r.ended || len(b) == 0 {
		return
	}
	if r.cap > 0 {
		budget := r.cap - truncationReserve - r.written
		if int64(len(b)) > budget {
			if budget > 0 && b[len(b)-1] != '\n' {
				r.put(b[:budget])
			}
			r.truncate()
			return
		}
	}
	r.put(b)
}

func (r *quirkReader) put(b []byte) {
	r.out = append(r.out, b...)
	r.written += int64(len(b))
	if b[len(b)-1] == '\n' {
		r.col = 0
	} else {
		r.col += len(b)
	}
}

// truncate ends the cut line and the header if need be, adds the notice
// and stops the output.
func (r *quirkReader) truncate() {
	if r.col > 0 {
		r.put([]byte("\r\n"))
	}
	if r.inHeader {
		r.put([]byte("\r\n"))
	}
	r.put([]byte(truncationNotice))
	r.ended = true
}

// isHeaderField reports whether line starts with an RFC 5322 field name
// and a colon.
func isHeaderField(line []byte) bool {
	for i, c := range line {
		if c == ':' {
			return i > 0
		}
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return false
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}

// lastSpace returns the index of the last space or tab in b, or -1.
func lastSpace(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ' ' || b[i] == '\t' {
			return i
		}
	}
	return -1
}

// readCloser joins a reader and a closer.
type readCloser struct {
	io.Reader
	io.Closer
}

// openMessage returns message n as this server sends it: the store's
// CRLF form through the quirk transforms, ended by the blank line of
// Quirks.BlankBeforeDot if blank is set. sendMessage writes that line
// itself, after TOP's line limit.
func (c *conn) openMessage(n int, blank bool) (io.ReadCloser, error) {
	rc, err := c.sess.Open(c.ctx, n)
	if err != nil {
		return nil, err
	}
	q := c.srv.opts.Quirks
	blank = blank && q.BlankBeforeDot
	if !q.rewrites() && !blank {
		return rc, nil
	}
	m, err := c.sess.Message(n)
	if err != nil {
		_ = rc.Close()
		return nil, err
	}
	var r io.Reader = rc
	if q.rewrites() {
		var adjust int64
		if q.BlankBeforeDot {
			adjust = 2
		}
		r = newQuirkReader(rc, q, m.Seen, adjust)
	}
	if blank {
		r = io.MultiReader(r, strings.NewReader(crlf))
	}
	return readCloser{Reader: r, Closer: rc}, nil
}

// wireSize is the size of message n as this server sends it: the stored
// size, unless a quirk changes the octets. Sizes that need the message
// read are counted once per session.
func (c *conn) wireSize(n int, m mailstore.MessageInfo) (int64, error) {
	q := c.srv.opts.Quirks
	switch {
	case q.sizeNeutral():
		return m.Size, nil
	case !q.rewrites():
		return m.Size + 2, nil // only the blank line before the dot
	}
	if s, ok := c.sizes[n]; ok {
		return s, nil
	}
	rc, err := c.openMessage(n, true)
	if err != nil {
		return 0, fmt.Errorf("sizing message %d: %w", n, err)
	}
	size, err := io.Copy(io.Discard, rc)
	_ = rc.Close()
	if err != nil {
		return 0, fmt.Errorf("sizing message %d: %w", n, err)
	}
	if c.sizes == nil {
		c.sizes = make(map[int]int64)
	}
	c.sizes[n] = size
	return size, nil
}

// stat is Session.Stat with wire sizes.
func (c *conn) stat() (count int, size int64, err error) {
	if c.srv.opts.Quirks.sizeNeutral() {
		count, size = c.sess.Stat()
		return count, size, nil
	}
	for _, m := range c.sess.List() {
		s, err := c.wireSize(m.N, m.MessageInfo)
		if err != nil {
			return 0, 0, err
		}
		count++
		size += s
	}
	return count, size, nil
}
