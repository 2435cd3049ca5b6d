package main

import (
	"bytes"
	"fmt"
)

// bodyScanner verifies the body of a multi-line reply (RFC 1939 section 3)
// in blocks of any size, as they arrive: it finds the terminating
// ".CRLF" line, counts the octets of the content after dot-unstuffing
// (every line end counted as CRLF), and rejects a line feed that does not
// follow a carriage return. It looks at each line only through
// bytes.IndexByte, so a 50 MB body costs about one IndexByte call per line,
// and it keeps its state between blocks, so a CRLF, a ".." or the
// terminator may be split across two blocks anywhere. The zero value is
// ready for a body; reset prepares it for the next one. It allocates
// nothing.
type bodyScanner struct {
	n     int64     // content octets so far
	state scanState // where in a line the next octet falls
	prev  byte      // the octet before the next one, within the body
}

// scanState is the position of a bodyScanner within the current line.
type scanState uint8

const (
	atLineStart scanState = iota // the next octet starts a line
	afterDot                     // the line so far is "."
	afterDotCR                   // the line so far is ".\r"
	inLine                       // inside a line that is not the terminator
)

// reset prepares s for a new body.
func (s *bodyScanner) reset() { *s = bodyScanner{} }

// octets returns the content octets counted so far; after the end of the
// body, the size LIST announces for it.
func (s *bodyScanner) octets() int64 { return s.n }

// scan consumes block, the next octets of the body. It returns how many
// octets belong to the body: all of block, unless the terminating line
// ends inside it, in which case done is true and used stops right after
// that line's LF (what follows is the next reply). An error wraps
// errProtocol; the scanner is then unusable until reset.
func (s *bodyScanner) scan(block []byte) (used int, done bool, err error) {
	i := 0
	for i < len(block) {
		switch s.state {
		case atLineStart:
			if block[i] == '.' {
				// A stuffed dot or the terminator: not content either way.
				s.state, s.prev = afterDot, '.'
				i++
				continue
			}
			s.state, s.prev = inLine, '\n'
		case afterDot:
			if block[i] == '\r' {
				s.state, s.prev = afterDotCR, '\r'
				i++
				continue
			}
			s.state = inLine
		case afterDotCR:
			if block[i] == '\n' {
				return i + 1, true, nil
			}
			// ".\r" then more: a stuffed line whose content starts
			// with a CR.
			s.n++
			s.state = inLine
		case inLine:
			rest := block[i:]
			j := bytes.IndexByte(rest, '\n')
			if j < 0 {
				s.n += int64(len(rest))
				s.prev = rest[len(rest)-1]
				return len(block), false, nil
			}
			before := s.prev
			if j > 0 {
				before = rest[j-1]
			}
			if before != '\r' {
				return i + j, false, fmt.Errorf("multi-line reply line without CRLF: %w", errProtocol)
			}
			s.n += int64(j + 1)
			i += j + 1
			s.state = atLineStart
		}
	}
	return len(block), false, nil
}
