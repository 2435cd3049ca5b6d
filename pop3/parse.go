package pop3

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
)

// parseCommand splits one command line (without its CRLF) into keyword and
// arguments. It does no I/O so that it can be fuzzed on its own.
//
// RFC 1939 §3: a case-insensitive keyword, then arguments separated by a
// single space. The parser accepts runs of spaces between arguments and
// trailing spaces (some clients send "STAT "), but rejects control
// characters (NUL, TAB, DEL, a stray CR) anywhere on the line. Octets
// above 0x7E are allowed in arguments (UTF-8 passwords) but never match a
// keyword.
func parseCommand(line []byte) (request, error) {
	if len(line) == 0 {
		return request{}, errEmptyCommand
	}
	for _, b := range line {
		if b < 0x20 || b == 0x7f {
			return request{}, errBadOctets
		}
	}
	kw, rest, _ := bytes.Cut(line, []byte{' '})
	if len(kw) == 0 {
		return request{}, errSyntax
	}
	req := request{verb: asciiUpper(kw), rest: string(rest)}
	for _, f := range strings.Split(req.rest, " ") {
		if f != "" {
			req.args = append(req.args, f)
		}
	}
	return req, nil
}

// asciiUpper upper-cases ASCII letters only, so that no Unicode case
// mapping can turn an 8-bit keyword into a known one.
func asciiUpper(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		out[i] = c
	}
	return string(out)
}

// looksLikePOP3 reports whether a first command line that is not a known
// command could still come from a POP3 client (a 3-4 letter keyword) rather
// than from another protocol spoken to the wrong port, such as an HTTP
// request line or an SMTP/POP2 HELO.
func looksLikePOP3(req request) bool {
	if len(req.verb) < 3 || len(req.verb) > 4 {
		return false
	}
	for i := 0; i < len(req.verb); i++ {
		if c := req.verb[i]; c < 'A' || c > 'Z' {
			return false
		}
	}
	switch req.verb {
	case "GET", "HEAD", "POST", "PUT", "HELO", "EHLO":
		return false
	}
	if n := len(req.args); n > 0 && strings.HasPrefix(req.args[n-1], "HTTP/") {
		return false
	}
	return true
}

// parseMsgNumber parses a message-number argument (RFC 1939 §5: decimal).
// Anything but digits is a syntax error. A number too large for any
// maildrop becomes 0, which the Session reports as no such message.
func parseMsgNumber(s string) (int, error) {
	if !allDigits(s) {
		return 0, errBadNumber
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		// Only a range error is possible after allDigits.
		return 0, nil
	}
	return int(n), nil
}

// parseLineCount parses TOP's line count (RFC 1939 §7: non-negative). A
// count too large to represent means "the whole body".
func parseLineCount(s string) (int64, error) {
	if !allDigits(s) {
		return 0, errBadNumber
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return math.MaxInt64, nil
	}
	if err != nil {
		return 0, errBadNumber
	}
	return n, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
