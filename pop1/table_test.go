package pop1

import (
	"fmt"
	"testing"
)

// edge is one transition drawn in RFC 918's Diagram (p.5): in state from,
// the client sends cmd; a positive reply leads to ok, a negative one (if
// the Diagram draws one) to fail.
type edge struct {
	from     state
	cmd      input
	ok, fail state
}

// diagram is the Diagram transcribed by hand, box by box. The server boxes
// after the greeting, after USER's "+OK", after PASS's "+OK" (the big loop
// on the left, "Wait for Command"), after "#xxx" and after the data are
// the states stUser, stPass, stCommand, stRcev and stRcvd.
var diagram = []edge{
	// Open → S → +OK → C: USER → S: +OK → C: PASS → S: +OK → the loop.
	// USER's and PASS's -ERR lead back to the USER box, and from there
	// also to QUIT.
	{stUser, inUSER, stPass, stUser},
	{stPass, inPASS, stCommand, stUser},
	{stUser, inQUIT, stDone, stDone},
	// The loop: QUIT, RETR or RDEL (with -ERR back to the loop), RSET,
	// NOOP.
	{stCommand, inQUIT, stDone, stDone},
	{stCommand, inRETR, stRcev, stCommand},
	{stCommand, inRDEL, stRcev, stCommand},
	{stCommand, inRSET, stCommand, stCommand},
	{stCommand, inNOOP, stCommand, stCommand},
	// After #xxx: RECV (the data; a failure is "Abort", no reply), or the
	// path down to RSET.
	{stRcev, inRCEV, stRcvd, stRcev},
	{stRcev, inRSET, stCommand, stCommand},
	// After the data: RCVD, whose +OK and -ERR both rejoin the loop, or
	// RSET.
	{stRcvd, inRCVD, stCommand, stCommand},
	{stRcvd, inRSET, stCommand, stCommand},
}

// extensions are the cells popgate fills where the Diagram draws
// nothing. docs/pop1.md explains each.
var extensions = []edge{
	{stPass, inUSER, stPass, stUser}, // USER again replaces the name
	{stPass, inQUIT, stDone, stDone}, // QUIT while waiting for PASS
	{stRcev, inQUIT, stDone, stDone}, // QUIT inside a transaction aborts it
	{stRcvd, inQUIT, stDone, stDone}, // likewise after the data
	{stRcev, inNOOP, stRcev, stRcev}, // NOOP inside a transaction
	{stRcvd, inNOOP, stRcvd, stRcvd}, // likewise after the data
}

func TestTableMatchesDiagram(t *testing.T) {
	seen := map[[2]int]bool{}
	check := func(e edge, drawn bool) {
		t.Helper()
		r := lookup(e.cmd, e.from)
		name := fmt.Sprintf("%v in %v", e.cmd, e.from)
		if r.act == actRefuse {
			t.Errorf("%s: refused, want an action", name)
		}
		if r.ok != e.ok || r.fail != e.fail {
			t.Errorf("%s: leads to %v / %v, want %v / %v", name, r.ok, r.fail, e.ok, e.fail)
		}
		if r.drawn != drawn {
			t.Errorf("%s: drawn = %v, want %v", name, r.drawn, drawn)
		}
		seen[[2]int{int(e.cmd), int(e.from)}] = true
	}
	for _, e := range diagram {
		check(e, true)
	}
	for _, e := range extensions {
		check(e, false)
	}
	// Every other cell refuses and keeps the state.
	for in := input(0); in < numInputs; in++ {
		for st := state(0); st < numStates; st++ {
			if seen[[2]int{int(in), int(st)}] {
				continue
			}
			r := lookup(in, st)
			if r.act != actRefuse || r.ok != st || r.fail != st || r.drawn {
				t.Errorf("%v in %v: %+v, want a refusal that keeps the state", in, st, r)
			}
		}
	}
}

// TestTableActions checks that each command runs its own action wherever
// it is accepted.
func TestTableActions(t *testing.T) {
	want := map[input]action{
		inUSER: actUser, inPASS: actPass, inRETR: actOpen, inRDEL: actOpen, inRCEV: actRcev,
		inRCVD: actRcvd, inQUIT: actQuit, inNOOP: actNoop, inRSET: actRset,
	}
	for in := input(0); in < numInputs; in++ {
		for st := state(0); st < numStates; st++ {
			r := lookup(in, st)
			if r.act != actRefuse && r.act != want[in] {
				t.Errorf("%v in %v runs %v, want %v", in, st, r.act, want[in])
			}
		}
	}
	if r := lookup(input(-1), stUser); r.act != actRefuse {
		t.Errorf("out-of-range input: %+v", r)
	}
	if s := state(99).String(); s != "state?" {
		t.Errorf("state(99) = %q", s)
	}
}
