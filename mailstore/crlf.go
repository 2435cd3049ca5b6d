package mailstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// The canonical form of a stored message, as every store serves it:
//
//   - every LF not already preceded by CR becomes CRLF;
//   - a non-empty message that does not end in LF gets a final CRLF, so that
//     every line, the last included, ends in CRLF;
//   - every other octet (CR alone, NUL, 8-bit) is kept unchanged.
//
// Sizes are counted on this form. A message already in that form is left
// byte for byte as it is.

// ToCRLF returns the canonical CRLF form of msg. The result never aliases
// msg.
func ToCRLF(msg []byte) []byte {
	out := make([]byte, 0, len(msg)+len(msg)/32+2)
	var prev byte
	for _, c := range msg {
		if c == '\n' && prev != '\r' {
			out = append(out, '\r')
		}
		out = append(out, c)
		prev = c
	}
	if len(msg) > 0 && prev != '\n' {
		out = append(out, '\r', '\n')
	}
	return out
}

// CRLFSize returns the size of the canonical CRLF form of what r yields,
// reading r to its end.
func CRLFSize(r io.Reader) (int64, error) {
	br := bufio.NewReaderSize(r, 32*1024)
	var n int64
	var prev byte
	any := false
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			any = true
			n += int64(len(chunk))
			last := chunk[len(chunk)-1]
			if last == '\n' {
				before := prev
				if len(chunk) >= 2 {
					before = chunk[len(chunk)-2]
				}
				if before != '\r' {
					n++
				}
			}
			prev = last
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("mailstore: sizing message: %w", err)
		}
	}
	if any && prev != '\n' {
		n += 2
	}
	return n, nil
}

// NewCRLFReader returns a reader that yields the canonical CRLF form of r,
// converting as it streams (no whole-message buffering).
func NewCRLFReader(r io.Reader) io.Reader {
	return &crlfReader{r: r}
}

// NewCRLFReaderSize is NewCRLFReader for a source of about size octets
// (a message's stored or announced size): the first read asks for one
// octet more (within the reader's chunk bounds), so that a small message
// arrives in one read and its end in the next.
//
// A Read into a buffer of more than twice what is left of size converts
// in place in that buffer (as large reads always do), so a small message
// read into a large enough buffer costs the reader no buffers of its own.
func NewCRLFReaderSize(r io.Reader, size int64) io.Reader {
	c := &crlfReader{r: r}
	if size >= 0 {
		c.chunk = int(min(max(size+1, 512), crlfMaxChunk))
		c.sized, c.size = true, size
	}
	return c
}

type crlfReader struct {
	r       io.Reader
	prev    byte   // last octet read from r
	any     bool   // r yielded at least one octet
	pending []byte // converted octets not yet returned
	buf     []byte // input chunk, reused
	out     []byte // converted chunk, reused; pending points into it
	chunk   int    // current read size: starts small, doubles while reads fill it
	tail    [2]byte
	eof     bool
	err     error
	sized   bool  // size is the source's expected length
	size    int64 // expected octets from r (NewCRLFReaderSize)
	read    int64 // octets read from r so far
}

func (c *crlfReader) Read(p []byte) (int, error) {
	if len(c.pending) == 0 && !c.eof && (len(p) >= crlfDirectMin || c.fitsHalf(len(p))) {
		return c.readDirect(p)
	}
	for len(c.pending) == 0 {
		if c.eof {
			return 0, c.err
		}
		c.fill(len(p))
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Read sizes of the CRLF reader: small messages (most mail) get small
// buffers, large ones grow to the largest chunk.
const (
	crlfFirstChunk = 4 * 1024
	crlfMaxChunk   = 32 * 1024
	// crlfDirectMin is the shortest Read that converts in place in the
	// caller's buffer (readDirect) instead of through the reader's own.
	crlfDirectMin = 64 * 1024
)

// fitsHalf reports whether the rest of a sized source, with one octet
// more to see its end, fits in half of a buffer of n octets, so that
// readDirect gets it in one read.
func (c *crlfReader) fitsHalf(n int) bool {
	return c.sized && c.read <= c.size && int64(n/2) > c.size-c.read
}

// readDirect reads up to len(p)/2 octets into the upper half of p and
// converts them into p from its start, without a buffer of its own or a
// second copy. Output never overtakes unread input: each of the r octets
// consumed so far added at most one CR, so the output ends at or before
// 2r, which is before the next unread octet at h+r while r < h.
func (c *crlfReader) readDirect(p []byte) (int, error) {
	h := len(p) / 2
	for {
		n, err := c.r.Read(p[h : 2*h])
		w := 0
		if n > 0 {
			c.any = true
			c.read += int64(n)
		}
		for r := h; r < h+n; {
			i := bytes.IndexByte(p[r:h+n], '\n')
			if i < 0 {
				c.prev = p[h+n-1]
				w += copy(p[w:], p[r:h+n])
				break
			}
			before := c.prev
			if i > 0 {
				before = p[r+i-1]
			}
			w += copy(p[w:], p[r:r+i])
			if before != '\r' {
				p[w] = '\r'
				w++
			}
			p[w] = '\n'
			w++
			c.prev = '\n'
			r += i + 1
		}
		if err != nil {
			c.eof = true
			c.err = err
			if errors.Is(err, io.EOF) {
				c.err = io.EOF
				if c.any && c.prev != '\n' {
					c.tail = [2]byte{'\r', '\n'}
					c.pending = c.tail[:]
				}
			}
		}
		if w > 0 {
			return w, nil
		}
		if c.eof {
			if len(c.pending) > 0 {
				n := copy(p, c.pending)
				c.pending = c.pending[n:]
				return n, nil
			}
			return 0, c.err
		}
	}
}

// fill reads one chunk from r and converts it into pending. It reuses its
// buffers, so a message of any size streams through two bounded chunks,
// and copies whole lines at a time.
func (c *crlfReader) fill(want int) {
	if c.chunk == 0 {
		c.chunk = crlfFirstChunk
	}
	want = min(max(want, 512), c.chunk)
	if cap(c.buf) < want {
		c.buf = make([]byte, want)
	}
	in := c.buf[:want]
	n, err := c.r.Read(in)
	in = in[:n]
	c.read += int64(n)
	if n == want && c.chunk < crlfMaxChunk {
		c.chunk = min(2*c.chunk, crlfMaxChunk)
	}
	if need := n + n/16 + 2; cap(c.out) < need {
		c.out = make([]byte, 0, max(need, 2*want))
	}
	out := c.out[:0]
	if n > 0 {
		c.any = true
	}
	for len(in) > 0 {
		i := bytes.IndexByte(in, '\n')
		if i < 0 {
			out = append(out, in...)
			c.prev = in[len(in)-1]
			break
		}
		before := c.prev
		if i > 0 {
			before = in[i-1]
		}
		out = append(out, in[:i]...)
		if before != '\r' {
			out = append(out, '\r')
		}
		out = append(out, '\n')
		c.prev = '\n'
		in = in[i+1:]
	}
	if err != nil {
		c.eof = true
		c.err = err
		if errors.Is(err, io.EOF) {
			c.err = io.EOF
			if c.any && c.prev != '\n' {
				out = append(out, '\r', '\n')
			}
		}
	}
	c.out = out
	c.pending = out
}

// ExactReader wraps r, which must yield exactly size octets. Reading past
// size, or reaching EOF before it, gives an error wrapping ErrSizeMismatch,
// so a length-framed protocol never sends a wrongly framed message.
//
// Reads pass the caller's whole buffer to r (and use it as scratch space
// to check that r has ended), so a source that converts in the caller's
// buffer, like NewCRLFReaderSize's, sees the buffer's real size. Octets
// past size are never returned; when there are some, the source is read
// to its end before the error is returned (see drain).
func ExactReader(r io.Reader, size int64) io.Reader {
	return &exactReader{r: r, left: size}
}

type exactReader struct {
	r    io.Reader
	left int64
	one  [1]byte // scratch for the end check when the caller's buffer is empty
	bad  error   // the size mismatch, once found; every later Read returns it
}

// drain reads the source to its end, using buf (or a small buffer) as
// scratch, once the message has proved longer than announced. The transfer
// fails anyway; reading on lets a store that learns a message's real size
// at its end (the Maildir cache) announce the right size next time.
func (e *exactReader) drain(buf []byte) {
	if len(buf) < 512 {
		buf = make([]byte, 4096)
	}
	for idle := 0; idle < 100; {
		n, err := e.r.Read(buf)
		if err != nil {
			return
		}
		if n == 0 {
			idle++ // a source stuck returning 0, nil is left alone
		} else {
			idle = 0
		}
	}
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.bad != nil {
		return 0, e.bad
	}
	if e.left == 0 {
		// Check that the source is really at its end. A reader may
		// return 0, nil; it gets one more try before the end is taken.
		scratch := p
		if len(scratch) == 0 {
			scratch = e.one[:]
		}
		for range 2 {
			n, err := e.r.Read(scratch)
			if n > 0 {
				e.drain(scratch)
				e.bad = fmt.Errorf("message longer than announced: %w", ErrSizeMismatch)
				return 0, e.bad
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return 0, err
			}
			if err != nil {
				break
			}
		}
		return 0, io.EOF
	}
	n, err := e.r.Read(p)
	if int64(n) > e.left {
		n = int(e.left)
		e.left = 0
		if err == nil {
			e.drain(p[n:])
		}
		e.bad = fmt.Errorf("message longer than announced: %w", ErrSizeMismatch)
		return n, e.bad
	}
	e.left -= int64(n)
	if errors.Is(err, io.EOF) {
		if e.left > 0 {
			e.bad = fmt.Errorf("message %d octets shorter than announced: %w", e.left, ErrSizeMismatch)
			return n, e.bad
		}
		err = nil
	}
	return n, err
}
