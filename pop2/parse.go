package pop2

import (
	"bytes"
	"errors"
	"strconv"
)

// command is one parsed POP2 command line.
type command struct {
	in input
	// bad is the reply text for a line the parser rejected (in is then
	// inOther): it names the problem and never echoes an argument.
	bad string
	// n is READ's message number; hasN reports that one was given.
	n    int64
	hasN bool
	// mailbox is FOLD's unquoted argument.
	mailbox string
	// user and password are HELO's unquoted arguments. The password never
	// reaches a log or a reply.
	user, password string
}

var keywords = map[string]input{
	"HELO": inHELO, "FOLD": inFOLD, "READ": inREAD, "RETR": inRETR,
	"ACKS": inACKS, "ACKD": inACKD, "NACK": inNACK, "QUIT": inQUIT,
}

// maxMessageNumber bounds READ's argument; larger numbers are simply out
// of range (no mailbox holds that many messages).
const maxMessageNumber = 1 << 40

// errDanglingQuote is a backslash at the very end of an argument.
var errDanglingQuote = errors.New("backslash at end of argument")

// parseCommand parses one command line (without its CRLF).
//
// Keywords are matched without regard to case (FLAG-937-CASE). A run of
// spaces separates the keyword from its arguments (FLAG-937-E2SPACES:
// RFC 937 Example 2, p.14, prints "READ  27"). Trailing spaces after a
// command that takes no argument are ignored; any other text there makes
// the line garbage, as the formal syntax (p.16) allows no argument.
func parseCommand(line []byte) command {
	word, rest, _ := bytes.Cut(line, []byte{' '})
	if len(word) != 4 {
		return command{in: inOther, bad: "Unknown command"}
	}
	in, ok := keywords[string(bytes.ToUpper(word))]
	if !ok {
		return command{in: inOther, bad: "Unknown command"}
	}
	arg := bytes.TrimLeft(rest, " ")
	switch in {
	case inHELO:
		return parseHelo(arg)
	case inFOLD:
		box, err := unquote(arg)
		if err != nil || box == "" {
			return command{in: inOther, bad: "Missing or malformed mailbox name"}
		}
		return command{in: inFOLD, mailbox: box}
	case inREAD:
		return parseRead(bytes.TrimRight(arg, " "))
	default:
		if len(bytes.TrimRight(arg, " ")) > 0 {
			return command{in: inOther, bad: "Bogus argument given to " + string(bytes.ToUpper(word))}
		}
		return command{in: in}
	}
}

func parseRead(arg []byte) command {
	if len(arg) == 0 {
		return command{in: inREAD}
	}
	for _, c := range arg {
		if c < '0' || c > '9' {
			return command{in: inOther, bad: "Invalid message number given to READ"}
		}
	}
	n, err := strconv.ParseInt(string(arg), 10, 64)
	if err != nil || n > maxMessageNumber {
		// All digits but too large: a number no mailbox reaches.
		n = maxMessageNumber
	}
	return command{in: inREAD, n: n, hasN: true}
}

// parseHelo splits "user password". The user is one word, with RFC 937
// quoting (p.6); the password is the rest of the line after the spaces
// that follow the user, unquoted, so that a client that does not quote
// a space inside a password still logs in (UW ipop2d does the same).
func parseHelo(arg []byte) command {
	bad := command{in: inOther, bad: "Missing user or password"}
	var user []byte
	i := 0
	for ; i < len(arg) && arg[i] != ' '; i++ {
		if arg[i] == '\\' {
			i++
			if i == len(arg) {
				return bad
			}
		}
		user = append(user, arg[i])
	}
	pass, err := unquote(bytes.TrimLeft(arg[i:], " "))
	if err != nil || len(user) == 0 || pass == "" {
		return bad
	}
	return command{in: inHELO, user: string(user), password: pass}
}

// unquote undoes RFC 937 quoting (p.6): a backslash makes the next octet
// literal, so "\ " is a space and "\\" a backslash.
func unquote(arg []byte) (string, error) {
	if bytes.IndexByte(arg, '\\') < 0 {
		return string(arg), nil
	}
	out := make([]byte, 0, len(arg))
	for i := 0; i < len(arg); i++ {
		if arg[i] == '\\' {
			i++
			if i == len(arg) {
				return "", errDanglingQuote
			}
		}
		out = append(out, arg[i])
	}
	return string(out), nil
}
