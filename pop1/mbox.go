package pop1

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"
)

// The mail data of a transaction (FLAG-918-FRAMING). RFC 918 says only
// that the server sends "the mail data" and announces its number of
// characters; popgate sends the mailbox as a Unix mbox ("mboxrd") with
// CRLF line ends, the form a 1984 mailbox file had, so that a client can
// append it to a local mailbox or split it into messages:
//
//	From <sender> <asctime date>CRLF      the separator line
//	<the message's CRLF form, quoted>     every line matching ^>*From  gets one more ">"
//	CRLF                                  a blank line after each message
//
// The sender is the address of the message's From: header and the date its
// Date: header, in UTC, in asctime form; when either is missing or
// unusable the separator says "MAILER-DAEMON" or the epoch,
// "Thu Jan  1 00:00:00 1970". The separator depends only on the message,
// so the same mailbox always gives the same octets. Every CRLF counts two
// characters in "#xxx".

// fromLine is what quoting looks for at the start of a line, after any
// '>' octets.
const fromLine = "From "

const (
	// unknownSender stands in for a missing or unusable From: address.
	unknownSender = "MAILER-DAEMON"
	// maxHeader bounds the octets of a header kept to find From: and Date:.
	maxHeader = 64 * 1024
	// maxSender bounds the sender address put in a separator line.
	maxSender = 256
)

// epoch is the separator date of a message without a usable Date: header.
var epoch = time.Unix(0, 0).UTC()

// errOverrun means the mail data would exceed the announced "#xxx".
var errOverrun = errors.New("pop1: mail data longer than announced")

// quoter applies mboxrd quoting to a message as it streams, at any chunk
// boundaries: a line that starts with zero or more '>' and then "From "
// gets one more '>' in front. The octets of a possible match are counted,
// not held, so a line of a million '>' costs no memory.
type quoter struct {
	mid     bool // inside a line, past any possible match
	gts     int  // '>' octets seen at the start of the line
	matched int  // octets of "From " matched after them
}

var gtRun = bytes.Repeat([]byte{'>'}, 256)

// write quotes p onto w.
func (q *quoter) write(w io.Writer, p []byte) error {
	for len(p) > 0 {
		if q.mid {
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				_, err := w.Write(p)
				return err
			}
			if _, err := w.Write(p[:i+1]); err != nil {
				return err
			}
			p = p[i+1:]
			q.mid = false
			continue
		}
		c := p[0]
		switch {
		case q.matched == 0 && c == '>':
			q.gts++
			p = p[1:]
		case c == fromLine[q.matched]:
			q.matched++
			p = p[1:]
			if q.matched == len(fromLine) {
				if err := q.release(w, true); err != nil {
					return err
				}
			}
		default:
			// Not a match: what was held goes out as it was, and c is
			// handled as part of the line.
			if err := q.release(w, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// release writes the held octets, with one more '>' if quote, and goes on
// inside the line.
func (q *quoter) release(w io.Writer, quote bool) error {
	n := q.gts
	if quote {
		n++
	}
	for n > 0 {
		k := min(n, len(gtRun))
		if _, err := w.Write(gtRun[:k]); err != nil {
			return err
		}
		n -= k
	}
	if q.matched > 0 {
		if _, err := io.WriteString(w, fromLine[:q.matched]); err != nil {
			return err
		}
	}
	q.gts, q.matched, q.mid = 0, 0, true
	return nil
}

// end writes what a message that ends inside a possible match still
// holds and readies the quoter for the next message.
func (q *quoter) end(w io.Writer) error {
	if q.gts > 0 || q.matched > 0 {
		if err := q.release(w, false); err != nil {
			return err
		}
	}
	*q = quoter{}
	return nil
}

// counter is a writer that only counts.
type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// headerGrabber keeps the start of a message until its header ends (an
// empty line) or maxHeader octets.
type headerGrabber struct {
	buf  []byte
	done bool
}

func (h *headerGrabber) add(p []byte) {
	if h.done {
		return
	}
	room := maxHeader - len(h.buf)
	if len(p) > room {
		p = p[:room]
	}
	start := max(0, len(h.buf)-3)
	h.buf = append(h.buf, p...)
	if i := bytes.Index(h.buf[start:], []byte("\n\r\n")); i >= 0 {
		h.buf = h.buf[:start+i+1]
		h.done = true
	} else if bytes.HasPrefix(h.buf, []byte("\r\n")) {
		h.buf = h.buf[:0]
		h.done = true
	} else if len(h.buf) >= maxHeader {
		h.done = true
	}
}

// separator returns the "From " line (without CRLF) for a message whose
// header (or its first maxHeader octets) is header.
func separator(header []byte) string {
	from, date := headerFields(header)
	sender := unknownSender
	if from != "" {
		if a, err := mail.ParseAddress(from); err == nil && usableSender(a.Address) {
			sender = a.Address
		} else if l, err := mail.ParseAddressList(from); err == nil && len(l) > 0 && usableSender(l[0].Address) {
			sender = l[0].Address
		}
	}
	when := epoch
	if date != "" {
		if t, err := mail.ParseDate(date); err == nil && t.UTC().Year() >= 1 && t.UTC().Year() <= 9999 {
			when = t.UTC()
		}
	}
	return "From " + sender + " " + when.Format(time.ANSIC)
}

// usableSender reports whether an address can stand in a separator line:
// printable ASCII without spaces, and not too long.
func usableSender(a string) bool {
	if a == "" || len(a) > maxSender {
		return false
	}
	for i := 0; i < len(a); i++ {
		if a[i] <= ' ' || a[i] >= 0x7f {
			return false
		}
	}
	return true
}

// headerFields returns the unfolded values of the first From: and Date:
// fields of header.
func headerFields(header []byte) (from, date string) {
	var name string
	var val strings.Builder
	var haveFrom, haveDate bool
	flush := func() {
		switch {
		case name == "from" && !haveFrom:
			from, haveFrom = strings.TrimSpace(val.String()), true
		case name == "date" && !haveDate:
			date, haveDate = strings.TrimSpace(val.String()), true
		}
		name = ""
		val.Reset()
	}
	for _, line := range bytes.Split(header, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if name != "" {
				val.WriteByte(' ')
				val.Write(bytes.TrimSpace(line))
			}
			continue
		}
		flush()
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = strings.ToLower(string(bytes.TrimSpace(k)))
		if name == "from" || name == "date" {
			val.Write(v)
		} else {
			name = ""
		}
	}
	flush()
	return from, date
}

// planMessage reads a message's CRLF form once and returns its separator
// line (without CRLF) and the size of its quoted form.
func planMessage(r io.Reader) (sep string, quoted int64, err error) {
	var (
		q   quoter
		cnt counter
		h   headerGrabber
		buf = make([]byte, 32*1024)
	)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			h.add(buf[:n])
			_ = q.write(&cnt, buf[:n])
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return "", 0, fmt.Errorf("pop1: sizing message: %w", rerr)
		}
	}
	_ = q.end(&cnt)
	return separator(h.buf), cnt.n, nil
}

// entrySize is the octets one message takes in the mail data: its
// separator line and CRLF, its quoted form, and the blank line.
func entrySize(sep string, quoted int64) int64 {
	return int64(len(sep)) + 2 + quoted + 2
}

// framedWriter passes at most left octets on to w; a write that would go
// beyond fails with errOverrun and writes nothing.
type framedWriter struct {
	w    io.Writer
	left int64
}

func (f *framedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > f.left {
		return 0, errOverrun
	}
	n, err := f.w.Write(p)
	f.left -= int64(n)
	return n, err
}

// writeEntry writes one message of the mail data: separator, quoted
// message read from r, blank line. chunk is called before each chunk of
// the message is written (to re-arm a write deadline).
func writeEntry(w io.Writer, sep string, r io.Reader, chunk func() error) error {
	if _, err := io.WriteString(w, sep+"\r\n"); err != nil {
		return err
	}
	var q quoter
	buf := make([]byte, 32*1024)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if chunk != nil {
				if err := chunk(); err != nil {
					return err
				}
			}
			if err := q.write(w, buf[:n]); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return fmt.Errorf("pop1: reading message: %w", rerr)
		}
	}
	if err := q.end(w); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\r\n")
	return err
}
