package pop2

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// rfcTable is RFC 937's Server Decision Table (p.22) transcribed as
// numbers, one row per input, columns LSTN AUTH MBOX ITEM NEXT DONE; 0 is
// the blank cell.
var rfcTable = map[string][numStates]action{
	"Open":    {2, 1, 1, 1, 1, 1},
	"HELO":    {1, 3, 1, 1, 1, 1},
	"FOLD":    {1, 1, 5, 5, 1, 1},
	"READ":    {1, 1, 6, 6, 1, 1},
	"RETR":    {1, 1, 1, 7, 1, 1},
	"ACKS":    {1, 1, 1, 1, 8, 1},
	"ACKD":    {1, 1, 1, 1, 8, 1},
	"NACK":    {1, 1, 1, 1, 8, 1},
	"QUIT":    {1, 4, 4, 4, 1, 1},
	"Close":   {1, 1, 1, 1, 1, 9},
	"other":   {1, 1, 1, 1, 1, 1},
	"Timeout": {0, 1, 1, 1, 1, 1},
}

func TestDecisionTableMatchesRFC(t *testing.T) {
	for in := input(0); in < numInputs; in++ {
		want, ok := rfcTable[in.String()]
		if !ok {
			t.Errorf("input %v is not in the RFC table", in)
			continue
		}
		for st := state(0); st < numStates; st++ {
			if got := decide(in, st); got != want[st] {
				t.Errorf("decide(%v, %v) = %d, want %d", in, st, got, want[st])
			}
		}
	}
}

// TestDecisionTableFromRFCText parses the table out of the RFC text, when
// the shared copy is present, and compares it with the package's table.
func TestDecisionTableFromRFCText(t *testing.T) {
	data, err := os.ReadFile("/work/shared/rfc/rfc937.txt")
	if err != nil {
		t.Skipf("RFC 937 text not available: %v", err)
	}
	text := string(data)
	start := strings.Index(text, "Server Decision Table")
	if start < 0 {
		t.Fatal("no Server Decision Table in the RFC text")
	}
	rows := 0
	for _, line := range strings.Split(text[start:], "\n")[1:40] {
		name, rest, ok := strings.Cut(line, "|")
		name = strings.TrimSpace(name)
		if !ok || name == "INPUT" || name == "" || strings.HasPrefix(name, "-") {
			continue
		}
		in := -1
		for i, n := range inputNames {
			if n == name {
				in = i
			}
		}
		if in < 0 {
			t.Errorf("RFC row %q is not an input of the table", name)
			continue
		}
		cells := strings.Split(strings.TrimSuffix(strings.TrimSpace(rest), "|"), "|")
		if len(cells) != int(numStates) {
			t.Fatalf("RFC row %q has %d cells", name, len(cells))
		}
		for st, cell := range cells {
			want := 0
			if c := strings.TrimSpace(cell); c != "" {
				if want, err = strconv.Atoi(c); err != nil {
					t.Fatalf("RFC row %q cell %q", name, c)
				}
			}
			if got := decisionTable[in][st]; int(got) != want {
				t.Errorf("table[%s][%v] = %d, RFC says %d", name, state(st), got, want)
			}
		}
		rows++
	}
	if rows != int(numInputs) {
		t.Errorf("parsed %d rows from the RFC, want %d", rows, numInputs)
	}
}

func TestStateAndInputNames(t *testing.T) {
	if stITEM.String() != "ITEM" || inNACK.String() != "NACK" || state(-1).String() != "state?" || input(99).String() != "input?" {
		t.Error("names do not match the RFC's")
	}
	if decide(input(99), stAUTH) != actGarbage {
		t.Error("an unknown input must be garbage")
	}
}
