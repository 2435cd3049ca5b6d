package pop1

// The server side of RFC 918 as data. The RFC has no state names and no
// decision table, only the Diagram on p.5; the states below are its server
// boxes, named after what the server waits for, and [rules] says, for
// every state and command, what the server does and where each reply
// leads. The connection loop looks every command up here, so the table is
// the protocol, not a comment about it. table_test.go checks it against a
// transcription of the Diagram's edges.

// state is what the server waits for.
type state int

const (
	stUser    state = iota // greeted (or a login failed): waiting for USER
	stPass                 // USER accepted: waiting for PASS
	stCommand              // logged in, no transaction: "Wait for Command"
	stRcev                 // RETR/RDEL answered "#xxx", mailbox locked: waiting for RCEV
	stRcvd                 // mail data sent: waiting for RCVD
	stDone                 // QUIT answered: the connection closes
	numStates
)

var stateNames = [numStates]string{"USER", "PASS", "COMMAND", "RCEV", "RCVD", "DONE"}

func (s state) String() string {
	if s < 0 || s >= numStates {
		return "state?"
	}
	return stateNames[s]
}

// input is a command keyword. RECV, the Diagram's spelling (FLAG-918-RECV),
// is parsed as inRCEV.
type input int

const (
	inUSER input = iota
	inPASS
	inRETR
	inRDEL
	inRCEV
	inRCVD
	inQUIT
	inNOOP
	inRSET
	inOther // an unknown keyword or an unparsable line
	numInputs
)

var inputNames = [numInputs]string{"USER", "PASS", "RETR", "RDEL", "RCEV", "RCVD", "QUIT", "NOOP", "RSET", "other"}

func (in input) String() string {
	if in < 0 || in >= numInputs {
		return "input?"
	}
	return inputNames[in]
}

// action is what the server does with a command.
type action int

const (
	actRefuse action = iota // negative reply, state unchanged, counts toward MaxErrors
	actUser                 // remember the name, "+OK"
	actPass                 // log in: "+OK", or a negative reply
	actOpen                 // RETR/RDEL: open and lock the mailbox, "#xxx"
	actRcev                 // send the mail data
	actRcvd                 // end the transaction (RDEL: delete what was sent), "+OK"
	actQuit                 // abort any transaction, "+OK", close
	actNoop                 // "+OK"
	actRset                 // abort any transaction (unlock, delete nothing), "+OK"
)

var actionNames = [...]string{"refuse", "user", "pass", "open", "rcev", "rcvd", "quit", "noop", "rset"}

func (a action) String() string {
	if a < 0 || int(a) >= len(actionNames) {
		return "action?"
	}
	return actionNames[a]
}

// rule is one cell of the table.
type rule struct {
	act action
	// ok is the state after a positive reply (for RCEV: after the data);
	// fail the state after a negative one. For RCEV, fail is where a
	// session would go if the data could not be sent, but a failed send
	// closes the connection ("Abort" in the Diagram).
	ok, fail state
	// drawn reports that the Diagram (p.5) draws this transition. Cells
	// with drawn false are popgate's decisions where the RFC is silent;
	// docs/pop1.md lists them.
	drawn bool
}

// refuse is the rule for a command that is not valid in st.
func refuse(st state) rule { return rule{act: actRefuse, ok: st, fail: st} }

// rules is the state machine: rules[input][state].
var rules = [numInputs][numStates]rule{
	inUSER: {
		stUser: {actUser, stPass, stUser, true},
		// A second USER replaces the first (a hand-typed session retyping
		// the name); the Diagram only draws PASS after USER.
		stPass:    {actUser, stPass, stUser, false},
		stCommand: refuse(stCommand), stRcev: refuse(stRcev), stRcvd: refuse(stRcvd), stDone: refuse(stDone),
	},
	inPASS: {
		stUser:    refuse(stUser),
		stPass:    {actPass, stCommand, stUser, true},
		stCommand: refuse(stCommand), stRcev: refuse(stRcev), stRcvd: refuse(stRcvd), stDone: refuse(stDone),
	},
	inRETR: {
		stUser: refuse(stUser), stPass: refuse(stPass),
		stCommand: {actOpen, stRcev, stCommand, true},
		stRcev:    refuse(stRcev), stRcvd: refuse(stRcvd), stDone: refuse(stDone),
	},
	inRDEL: {
		stUser: refuse(stUser), stPass: refuse(stPass),
		stCommand: {actOpen, stRcev, stCommand, true},
		stRcev:    refuse(stRcev), stRcvd: refuse(stRcvd), stDone: refuse(stDone),
	},
	inRCEV: {
		stUser: refuse(stUser), stPass: refuse(stPass), stCommand: refuse(stCommand),
		stRcev: {actRcev, stRcvd, stRcev, true},
		stRcvd: refuse(stRcvd), stDone: refuse(stDone),
	},
	inRCVD: {
		stUser: refuse(stUser), stPass: refuse(stPass), stCommand: refuse(stCommand), stRcev: refuse(stRcev),
		// "-ERR" (not all deleted) also returns to Wait for Command.
		stRcvd: {actRcvd, stCommand, stCommand, true},
		stDone: refuse(stDone),
	},
	inQUIT: {
		// The Diagram reaches QUIT from the -ERR of USER or PASS, which
		// is this state; QUIT right after the greeting is the same state.
		stUser:    {actQuit, stDone, stDone, true},
		stPass:    {actQuit, stDone, stDone, false},
		stCommand: {actQuit, stDone, stDone, true},
		// QUIT inside a transaction aborts it as RSET would.
		stRcev: {actQuit, stDone, stDone, false},
		stRcvd: {actQuit, stDone, stDone, false},
		stDone: refuse(stDone),
	},
	inNOOP: {
		stUser: refuse(stUser), stPass: refuse(stPass),
		stCommand: {actNoop, stCommand, stCommand, true},
		// NOOP inside a transaction changes nothing.
		stRcev: {actNoop, stRcev, stRcev, false},
		stRcvd: {actNoop, stRcvd, stRcvd, false},
		stDone: refuse(stDone),
	},
	inRSET: {
		stUser: refuse(stUser), stPass: refuse(stPass),
		stCommand: {actRset, stCommand, stCommand, true},
		stRcev:    {actRset, stCommand, stCommand, true},
		stRcvd:    {actRset, stCommand, stCommand, true},
		stDone:    refuse(stDone),
	},
	inOther: {
		stUser: refuse(stUser), stPass: refuse(stPass), stCommand: refuse(stCommand),
		stRcev: refuse(stRcev), stRcvd: refuse(stRcvd), stDone: refuse(stDone),
	},
}

// lookup returns the rule for in arriving in st.
func lookup(in input, st state) rule {
	if in < 0 || in >= numInputs || st < 0 || st >= numStates {
		return refuse(stDone)
	}
	return rules[in][st]
}
