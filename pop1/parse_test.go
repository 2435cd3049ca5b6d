package pop1

import (
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		line string
		in   input
		verb string
		arg  string
	}{
		{"USER Fred", inUSER, "USER", "Fred"},
		{"user  fred  ", inUSER, "USER", "fred"},
		{"PASS password", inPASS, "PASS", "password"},
		{"PASS  two  spaces ", inPASS, "PASS", " two  spaces "},
		{"pass", inPASS, "PASS", ""},
		{"RETR mailbox", inRETR, "RETR", "mailbox"},
		{"RDEL", inRDEL, "RDEL", ""},
		{"rdel My Box", inRDEL, "RDEL", "My Box"},
		{"RCEV", inRCEV, "RCEV", ""},
		{"RECV", inRCEV, "RCEV", ""},
		{"recv", inRCEV, "RCEV", ""},
		{"RCVD", inRCVD, "RCVD", ""},
		{"QUIT now", inQUIT, "QUIT", ""},
		{"NOOP", inNOOP, "NOOP", ""},
		{"RsEt", inRSET, "RSET", ""},
		{"", inOther, "", ""},
		{"STAT", inOther, "", ""},
		{"RETRX", inOther, "", ""},
		{" RETR", inOther, "", ""},
		{"HELO fred secret", inOther, "", ""},
	}
	for _, tt := range tests {
		got := parseCommand([]byte(tt.line))
		if got.in != tt.in || got.verb != tt.verb || got.arg != tt.arg {
			t.Errorf("parseCommand(%q) = %+v, want in=%v verb=%q arg=%q", tt.line, got, tt.in, tt.verb, tt.arg)
		}
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"USER Fred", "PASS secret word", "RETR INBOX", "rdel", "RECV", "RCVD", "QUIT", "\x00\xff", "PASS "} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		cmd := parseCommand(line)
		if cmd.in < 0 || cmd.in >= numInputs {
			t.Fatalf("input %d out of range", cmd.in)
		}
		if cmd.in == inOther {
			if cmd.verb != "" || cmd.arg != "" {
				t.Fatalf("unknown command with verb %q arg %q", cmd.verb, cmd.arg)
			}
			return
		}
		if _, ok := keywords[cmd.verb]; !ok || !strings.EqualFold(cmd.verb, string(line[:4])) && cmd.verb != "RCEV" {
			t.Fatalf("verb %q for line %q", cmd.verb, line)
		}
		if len(cmd.arg) > len(line) {
			t.Fatalf("argument longer than the line")
		}
		switch cmd.in {
		case inUSER, inRETR, inRDEL:
			if strings.HasPrefix(cmd.arg, " ") || strings.HasSuffix(cmd.arg, " ") {
				t.Fatalf("argument %q not trimmed", cmd.arg)
			}
		case inPASS:
		default:
			if cmd.arg != "" {
				t.Fatalf("%v has argument %q", cmd.in, cmd.arg)
			}
		}
	})
}
