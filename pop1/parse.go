package pop1

import (
	"bytes"
)

// command is one parsed POP1 command line.
type command struct {
	in input
	// verb is the keyword as the server names it (RECV is "RCEV"); "" for
	// an unknown one. It is safe to log.
	verb string
	// arg is the argument: USER's name, RETR's and RDEL's mailbox, PASS's
	// password. The password never reaches a log or a reply.
	arg string
}

var keywords = map[string]input{
	"USER": inUSER, "PASS": inPASS, "RETR": inRETR, "RDEL": inRDEL,
	"RCEV": inRCEV, "RECV": inRCEV, "RCVD": inRCVD,
	"QUIT": inQUIT, "NOOP": inNOOP, "RSET": inRSET,
}

// parseCommand parses one command line (without its line end).
//
// RFC 918 says nothing of case, spacing or argument syntax
// (FLAG-918-SILENT, FLAG-918-MAILBOX). Keywords are matched without regard
// to case, and RECV, the Diagram's spelling (p.5), is RCEV
// (FLAG-918-RECV). One or more spaces end the keyword. PASS takes the rest
// of the line after exactly one space, so a password may hold or end in
// spaces; USER, RETR and RDEL take the rest of the line without its
// leading and trailing spaces (a mailbox name may hold spaces). Commands
// without arguments ignore any text after the keyword.
func parseCommand(line []byte) command {
	word, rest, _ := bytes.Cut(line, []byte{' '})
	if len(word) != 4 {
		return command{in: inOther}
	}
	up := string(bytes.ToUpper(word))
	in, ok := keywords[up]
	if !ok {
		return command{in: inOther}
	}
	cmd := command{in: in, verb: up}
	switch in {
	case inRCEV:
		cmd.verb = "RCEV"
	case inPASS:
		cmd.arg = string(rest)
	case inUSER, inRETR, inRDEL:
		cmd.arg = string(bytes.Trim(rest, " "))
	}
	return cmd
}
