package pop3

import (
	"bytes"
	"io"
)

// dotWriter streams a message as the body of a POP3 multi-line reply
// (RFC 1939 §3): a line that starts with "." gets another "." in front,
// and Close adds the terminating ".CRLF". It keeps no more than a few
// flags between writes, so a message of any size streams through it.
//
// Stores serve the canonical CRLF form, but the writer does not trust
// that: a bare LF is sent as CRLF and a last line without a line end gets
// one. Otherwise a broken store could make a client see a line "." (the
// end of the reply) inside a message. A lone CR is passed on unchanged.
//
// With a body line limit (TOP), it passes the header lines and the blank
// line after them, then that many body lines, and then reports Done and
// discards the rest.
type dotWriter struct {
	w       io.Writer
	bol     bool  // at the beginning of a line
	prevCR  bool  // the last octet written was CR
	lineLen int   // octets of the current line written so far
	inBody  bool  // the blank line after the headers has been written
	limit   int64 // body lines still to send; < 0 means all
	done    bool
}

const (
	crlf    = "\r\n"
	lf      = "\n"
	dot     = "."
	dotCRLF = ".\r\n"
)

// newDotWriter returns a dot-stuffing writer onto w. bodyLines < 0 sends
// the whole message; otherwise only the headers and that many body lines.
func newDotWriter(w io.Writer, bodyLines int64) *dotWriter {
	return &dotWriter{w: w, bol: true, limit: bodyLines}
}

// Done reports that the TOP line limit is reached: the rest of the message
// would be discarded, so the caller can stop reading it.
func (d *dotWriter) Done() bool { return d.done }

// Write stuffs p onto the underlying writer. It always consumes all of p
// unless the underlying writer fails.
func (d *dotWriter) Write(p []byte) (int, error) {
	if d.limit < 0 {
		return d.writeAll(p)
	}
	n := len(p)
	for len(p) > 0 && !d.done {
		if d.bol {
			if p[0] == '.' {
				if _, err := io.WriteString(d.w, dot); err != nil {
					return 0, err
				}
			}
			d.bol = false
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if _, err := d.w.Write(p); err != nil {
				return 0, err
			}
			d.lineLen += len(p)
			d.prevCR = p[len(p)-1] == '\r'
			break
		}
		cr := d.prevCR
		if i > 0 {
			cr = p[i-1] == '\r'
		}
		if _, err := d.w.Write(p[:i]); err != nil {
			return 0, err
		}
		end := lf
		if !cr {
			end = crlf
		}
		if _, err := io.WriteString(d.w, end); err != nil {
			return 0, err
		}
		length := d.lineLen + i
		d.endLine(length == 0 || (length == 1 && cr))
		p = p[i+1:]
	}
	return n, nil
}

// writeAll is Write for a whole message (no TOP limit). It hands runs of
// lines that need no change to the underlying writer in one call, and
// splits a run only where a line starts with "." or ends in a bare LF.
func (d *dotWriter) writeAll(p []byte) (int, error) {
	n := len(p)
	run := 0 // p[run:i] is still to be written unchanged
	i := 0
	for i < len(p) {
		if d.bol && p[i] == '.' {
			if _, err := d.w.Write(p[run:i]); err != nil {
				return 0, err
			}
			if _, err := io.WriteString(d.w, dot); err != nil {
				return 0, err
			}
			run = i
		}
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			d.bol, d.prevCR = false, p[len(p)-1] == '\r'
			d.lineLen += len(p) - i
			break
		}
		e := i + j
		cr := d.prevCR
		if e > 0 {
			cr = p[e-1] == '\r'
		}
		if !cr {
			if _, err := d.w.Write(p[run:e]); err != nil {
				return 0, err
			}
			if _, err := io.WriteString(d.w, crlf); err != nil {
				return 0, err
			}
			run = e + 1
		}
		d.bol, d.prevCR, d.lineLen = true, false, 0
		i = e + 1
	}
	if run < len(p) {
		if _, err := d.w.Write(p[run:]); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// endLine updates the line state after a line end; empty says the line
// had no octets but its CRLF.
func (d *dotWriter) endLine(empty bool) {
	d.bol, d.prevCR, d.lineLen = true, false, 0
	if d.limit < 0 {
		return
	}
	if !d.inBody {
		if empty {
			d.inBody = true
			d.done = d.limit == 0
		}
		return
	}
	d.limit--
	d.done = d.limit == 0
}

// Close ends an unterminated last line and writes the ".CRLF" that ends
// the multi-line reply. It does not close the underlying writer.
func (d *dotWriter) Close() error {
	if !d.bol {
		end := crlf
		if d.prevCR {
			end = lf
		}
		if _, err := io.WriteString(d.w, end); err != nil {
			return err
		}
		d.bol = true
	}
	_, err := io.WriteString(d.w, dotCRLF)
	return err
}
