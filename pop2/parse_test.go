package pop2

import (
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		line string
		want command
	}{
		{"HELO fred secret", command{in: inHELO, user: "fred", password: "secret"}},
		{"helo fred secret", command{in: inHELO, user: "fred", password: "secret"}},
		{`HELO j\ smith my\ pass\\word`, command{in: inHELO, user: "j smith", password: `my pass\word`}},
		{"HELO fred two words", command{in: inHELO, user: "fred", password: "two words"}},
		{"HELO   fred   secret", command{in: inHELO, user: "fred", password: "secret"}},
		{"HELO fred", command{in: inOther, bad: "Missing user or password"}},
		{`HELO fred secret\`, command{in: inOther, bad: "Missing user or password"}},
		{`HELO fred\`, command{in: inOther, bad: "Missing user or password"}},
		{"HELO", command{in: inOther, bad: "Missing user or password"}},
		{"FOLD /usr/spool/mail/smith", command{in: inFOLD, mailbox: "/usr/spool/mail/smith"}},
		{"FOLD my box", command{in: inFOLD, mailbox: "my box"}},
		{`FOLD my\ box\\`, command{in: inFOLD, mailbox: `my box\`}},
		{"FOLD", command{in: inOther, bad: "Missing or malformed mailbox name"}},
		{"FOLD ", command{in: inOther, bad: "Missing or malformed mailbox name"}},
		{"READ", command{in: inREAD}},
		{"READ ", command{in: inREAD}},
		{"READ 13", command{in: inREAD, n: 13, hasN: true}},
		{"READ  27", command{in: inREAD, n: 27, hasN: true}},
		{"READ 27 ", command{in: inREAD, n: 27, hasN: true}},
		{"READ 0", command{in: inREAD, n: 0, hasN: true}},
		{"READ 99999999999999999999999", command{in: inREAD, n: maxMessageNumber, hasN: true}},
		{"READ -1", command{in: inOther, bad: "Invalid message number given to READ"}},
		{"READ 1 2", command{in: inOther, bad: "Invalid message number given to READ"}},
		{"READ x", command{in: inOther, bad: "Invalid message number given to READ"}},
		{"RETR", command{in: inRETR}},
		{"retr  ", command{in: inRETR}},
		{"RETR 1", command{in: inOther, bad: "Bogus argument given to RETR"}},
		{"ACKS", command{in: inACKS}},
		{"ACKD", command{in: inACKD}},
		{"NACK", command{in: inNACK}},
		{"QUIT", command{in: inQUIT}},
		{"QUIT now", command{in: inOther, bad: "Bogus argument given to QUIT"}},
		{"", command{in: inOther, bad: "Unknown command"}},
		{" QUIT", command{in: inOther, bad: "Unknown command"}},
		{"QUITX", command{in: inOther, bad: "Unknown command"}},
		{"STAT", command{in: inOther, bad: "Unknown command"}},
		{"USER fred", command{in: inOther, bad: "Unknown command"}},
	} {
		if got := parseCommand([]byte(tc.line)); got != tc.want {
			t.Errorf("parseCommand(%q) = %+v, want %+v", tc.line, got, tc.want)
		}
	}
}

// FuzzParseCommand checks that the parser never panics, never returns
// more than it was given, and never echoes input in its error text.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"HELO fred secret", `HELO a\ b c\\d`, "FOLD x", "READ", "READ  27", "READ 1x",
		"RETR", "ACKS", "ACKD", "NACK", "QUIT", `HELO \`, "read 99999999999999999999",
		"\x00\xff", strings.Repeat("A", 600),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		c := parseCommand(line)
		if len(c.user)+len(c.password)+len(c.mailbox) > len(line) {
			t.Fatalf("parseCommand(%q) returned more than its input", line)
		}
		if c.in < 0 || c.in >= numInputs {
			t.Fatalf("parseCommand(%q) gave input %d", line, c.in)
		}
		if c.bad != "" && (c.in != inOther || len(c.bad) > 64) {
			t.Fatalf("parseCommand(%q) = %+v", line, c)
		}
		if c.hasN && (c.n < 0 || c.n > maxMessageNumber) {
			t.Fatalf("parseCommand(%q) gave n=%d", line, c.n)
		}
	})
}
