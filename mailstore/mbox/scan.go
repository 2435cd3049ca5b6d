package mbox

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"

	"popgate/mailstore"
)

// castagnoli is the CRC of the snapshot region check (hardware-accelerated).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// msgRec is one message of a snapshot. Offsets are into the spool file.
//
//	start    the "From " line (or 0 for leading text without one)
//	content  the first octet served (after the "From " line)
//	end      the end of what is served (the separating blank line excluded)
//	next     the start of the next message, or the snapshot size
type msgRec struct {
	start, content, end, next int64
	hdrEnd                    int64 // offset of the blank line ending the header; -1 if none
	size                      int64 // octets of the unquoted CRLF form
	uid                       string
	seen                      bool
	clFramed                  bool // a sane Content-Length header framed the body
	hdrCRLF                   bool // the header ends in "\r\n\r\n"
}

// snapshot is the scan of a spool's first size octets.
type snapshot struct {
	msgs []msgRec
	size int64
	crc  uint32 // CRC-32C of octets [0, size)
}

// scanner is the state of one pass over a spool.
type scanner struct {
	r         io.ReaderAt
	size      int64
	rd        bool
	msgs      []msgRec
	cur       *msgState
	prevBlank bool   // the previous line was empty (or this is the start)
	buf       []byte // scratch for the unquoter
}

// msgState is the message being scanned.
type msgState struct {
	rec       msgRec
	noFrom    bool // leading text before the first "From " line
	blankOnly bool // so far only blank lines (leading padding)
	inFrom    bool // inside the "From " line
	inHeader  bool
	volatile  bool  // the current header line is left out of the digest
	clEnd     int64 // end of a sane Content-Length body; -1 none or passed
	cl        int64 // Content-Length value; -1 none
	pend      [2]byte
	pendLen   int   // a held blank line: the separator if a "From " follows
	pendOff   int64 // its offset
	xuidl     string
	xuid      string
	sawStatus bool
	uq        unquoter
	size      crlfSink
	digest    crlfSink
}

// scan reads r's first size octets once and returns the messages found.
// Memory use is proportional to the number of messages, not their size.
func scan(ctx context.Context, r io.ReaderAt, size int64, f Flavour) (*snapshot, error) {
	crc := crc32.New(castagnoli)
	br := bufio.NewReaderSize(io.TeeReader(io.NewSectionReader(r, 0, size), crc), 64*1024)
	sc := &scanner{r: r, size: size, rd: f == MboxRD, prevBlank: true}
	sc.begin(0, true)
	var off int64
	lineStart := true
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("mbox: scanning spool: %w", err)
			}
		}
		frag, err := br.ReadSlice('\n')
		if len(frag) > 0 {
			sc.fragment(frag, off, lineStart)
			off += int64(len(frag))
			lineStart = frag[len(frag)-1] == '\n'
		}
		if err == nil || errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		return nil, fmt.Errorf("mbox: scanning spool at octet %d: %w", off, err)
	}
	if off != size {
		return nil, fmt.Errorf("mbox: spool shrank while locked (%d of %d octets): %w", off, size, ErrSpoolChanged)
	}
	sc.end(off)
	assignUIDs(sc.msgs)
	return &snapshot{msgs: sc.msgs, size: size, crc: crc.Sum32()}, nil
}

// begin starts a message at off.
func (sc *scanner) begin(off int64, noFrom bool) {
	m := &msgState{
		noFrom:    noFrom,
		blankOnly: noFrom,
		inFrom:    !noFrom,
		inHeader:  true,
		clEnd:     -1,
		cl:        -1,
		uq:        unquoter{rd: sc.rd},
	}
	m.rec = msgRec{start: off, content: off, end: off, hdrEnd: -1}
	m.digest.h = sha256.New()
	sc.cur = m
}

// end finishes the current message; off is where the next one starts.
func (sc *scanner) end(off int64) {
	m := sc.cur
	if m.clEnd >= 0 && m.clEnd == off {
		m.flushPending(sc)
	}
	out := m.uq.flush(sc.buf[:0])
	m.size.write(out)
	m.digest.write(out)
	m.size.finish()
	m.digest.finish()
	if m.noFrom && m.blankOnly {
		return // leading blank lines: padding, not a message
	}
	m.rec.next = off
	m.rec.size = m.size.n
	sum := m.digest.h.Sum(nil)
	switch {
	case mailstore.ValidUID(m.xuidl):
		m.rec.uid = m.xuidl
	case mailstore.ValidUID(m.xuid):
		m.rec.uid = m.xuid
	default:
		m.rec.uid = hex.EncodeToString(sum[:16])
	}
	sc.msgs = append(sc.msgs, m.rec)
}

// fragment handles one piece of a line (a whole line unless it is longer
// than the read buffer); atStart says it begins the line.
func (sc *scanner) fragment(p []byte, off int64, atStart bool) {
	m := sc.cur
	complete := p[len(p)-1] == '\n'
	blank := atStart && complete && (len(p) == 1 || (len(p) == 2 && p[0] == '\r'))
	if atStart {
		clBoundary := m.clEnd >= 0 && off == m.clEnd
		if clBoundary {
			// The framed body ends here: a held blank line was part of it.
			m.flushPending(sc)
			m.clEnd = -1
		}
		inCL := m.clEnd >= 0 && off < m.clEnd
		if !inCL && (sc.prevBlank || clBoundary) && bytes.HasPrefix(p, []byte(fromPrefix)) {
			sc.end(off)
			sc.begin(off, false)
			m = sc.cur
		}
	}
	if complete {
		sc.prevBlank = blank
	}
	if m.inFrom {
		// The "From " line is not served, but it tells otherwise identical
		// messages apart in the digest.
		if complete {
			m.digest.h.Write(bytes.TrimRight(p, "\r\n"))
			m.digest.h.Write([]byte{'\n'})
			m.inFrom = false
			m.rec.content = off + int64(len(p))
			m.rec.end = m.rec.content
		} else {
			m.digest.h.Write(p)
		}
		return
	}
	if blank {
		m.flushPending(sc)
		m.pendLen = copy(m.pend[:], p)
		m.pendOff = off
		if m.inHeader {
			m.inHeader = false
			m.rec.hdrEnd = off
			m.rec.hdrCRLF = len(p) == 2
			sc.checkContentLength(m, off+int64(len(p)))
		}
		return
	}
	m.flushPending(sc)
	m.blankOnly = false
	if m.inHeader && atStart {
		m.header(p)
	}
	m.feed(sc, p, !(m.inHeader && m.volatile))
	m.rec.end = off + int64(len(p))
}

// flushPending feeds a held blank line: it turned out to be content.
func (m *msgState) flushPending(sc *scanner) {
	if m.pendLen == 0 {
		return
	}
	m.feed(sc, m.pend[:m.pendLen], true)
	m.rec.end = m.pendOff + int64(m.pendLen)
	m.pendLen = 0
}

// feed passes raw content octets through the unquoter to the size counter
// and, unless the line is a volatile header, the digest.
func (m *msgState) feed(sc *scanner, p []byte, digest bool) {
	out := m.uq.add(sc.buf[:0], p)
	m.size.write(out)
	if digest {
		m.digest.write(out)
	}
	sc.buf = out[:0]
}

// header notes the header fields the store uses from the first fragment p
// of a header line, and whether the line is volatile: rewritten by mail
// readers (flags, Content-Length), so left out of the UID digest.
func (m *msgState) header(p []byte) {
	if p[0] == ' ' || p[0] == '\t' {
		return // a continuation keeps the field's volatility
	}
	m.volatile = false
	i := bytes.IndexByte(p, ':')
	if i <= 0 {
		return
	}
	name := p[:i]
	value := string(bytes.TrimSpace(p[i+1:]))
	switch {
	case bytes.EqualFold(name, []byte("Status")):
		m.volatile = true
		if !m.sawStatus {
			m.sawStatus = true
			m.rec.seen = bytes.ContainsRune([]byte(value), 'R')
		}
	case bytes.EqualFold(name, []byte("X-Status")), bytes.EqualFold(name, []byte("X-Keywords")),
		bytes.EqualFold(name, []byte("X-IMAP")), bytes.EqualFold(name, []byte("X-IMAPbase")):
		m.volatile = true
	case bytes.EqualFold(name, []byte("X-UID")):
		m.volatile = true
		if m.xuid == "" {
			m.xuid = value
		}
	case bytes.EqualFold(name, []byte("X-UIDL")):
		if m.xuidl == "" {
			m.xuidl = value
		}
	case bytes.EqualFold(name, []byte("Content-Length")):
		m.volatile = true
		if m.cl < 0 {
			if n, err := strconv.ParseInt(value, 10, 64); err == nil && n >= 0 && n < 1<<50 && value[0] != '+' {
				m.cl = n
			}
		}
	}
}

// checkContentLength honours a Content-Length header if it is sane: the
// body it frames lies inside the snapshot, ends at a line end, and is
// followed by nothing, one blank line, or a "From " line.
func (sc *scanner) checkContentLength(m *msgState, body int64) {
	if m.cl < 0 {
		return
	}
	end := body + m.cl
	if end > sc.size {
		return
	}
	if end > body {
		var b [1]byte
		if _, err := sc.r.ReadAt(b[:], end-1); err != nil || b[0] != '\n' {
			return
		}
	}
	var tail [7]byte
	n, err := sc.r.ReadAt(tail[:min(int64(len(tail)), sc.size-end)], end)
	if err != nil && !errors.Is(err, io.EOF) {
		return
	}
	t := tail[:n]
	for _, sep := range []string{"", "\n", "\r\n"} {
		rest, ok := bytes.CutPrefix(t, []byte(sep))
		if !ok {
			continue
		}
		if (end+int64(len(sep)) == sc.size && len(rest) == 0) || bytes.HasPrefix(rest, []byte(fromPrefix)) {
			m.clEnd = end
			m.rec.clFramed = true
			return
		}
	}
}

// assignUIDs makes duplicate UIDs unique, deterministically: the second
// and later holders of a UID get "-2", "-3", ... (the first free one, also
// avoiding every UID used as such elsewhere in the spool).
func assignUIDs(msgs []msgRec) {
	natural := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		natural[m.uid] = true
	}
	used := make(map[string]bool, len(msgs))
	for i := range msgs {
		base := msgs[i].uid
		if !used[base] {
			used[base] = true
			continue
		}
		if len(base) > 60 {
			base = base[:60]
		}
		for k := 2; ; k++ {
			c := base + "-" + strconv.Itoa(k)
			if !used[c] && !natural[c] {
				msgs[i].uid = c
				used[c] = true
				break
			}
		}
	}
}
