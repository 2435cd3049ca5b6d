package pop2

// The server side of RFC 937 as data: the states of the Server State
// Diagram (p.18) and the Server Decision Table with its actions (pp.22-23).
// The connection loop looks every command up in [decisionTable] and runs
// the action it names, so the table below is the protocol, not a comment
// about it.

// state is a server state, named as RFC 937 names it.
type state int

const (
	stLSTN state = iota // listening: no connection yet
	stAUTH              // greeted, waiting for HELO
	stMBOX              // a mailbox is selected, no message chosen
	stITEM              // READ announced a message size
	stNEXT              // RETR sent the data, an acknowledgment is due
	stDONE              // QUIT answered, the connection closes
	numStates
)

var stateNames = [numStates]string{"LSTN", "AUTH", "MBOX", "ITEM", "NEXT", "DONE"}

func (s state) String() string {
	if s < 0 || s >= numStates {
		return "state?"
	}
	return stateNames[s]
}

// input is a row of the decision table: an event or a command keyword.
type input int

const (
	inOpen input = iota
	inHELO
	inFOLD
	inREAD
	inRETR
	inACKS
	inACKD
	inNACK
	inQUIT
	inClose
	inOther
	inTimeout
	numInputs
)

var inputNames = [numInputs]string{
	"Open", "HELO", "FOLD", "READ", "RETR", "ACKS", "ACKD", "NACK", "QUIT", "Close", "other", "Timeout",
}

func (in input) String() string {
	if in < 0 || in >= numInputs {
		return "input?"
	}
	return inputNames[in]
}

// action is a numbered action of the Server Decision Table (p.23).
type action int

const (
	actNone    action = 0 // the table's one blank cell (Timeout in LSTN)
	actGarbage action = 1 // send "- error" and close
	actGreet   action = 2 // send the greeting, go to AUTH
	actHelo    action = 3 // authorize: "#NNN" and MBOX, or "- error" and close
	actQuit    action = 4 // "+ Bye", go to DONE
	actFold    action = 5 // select a mailbox: "#NNN" (the RFC prints "+NNN"), MBOX
	actRead    action = 6 // "=CCC", go to ITEM
	actRetr    action = 7 // send the data and go to NEXT, or close
	actAck     action = 8 // ACKS/ACKD/NACK, "=CCC", go to ITEM
	actClose   action = 9 // close the connection
)

// decisionTable is RFC 937's Server Decision Table (p.22), row by row:
// decisionTable[input][state] is the action to take.
var decisionTable = [numInputs][numStates]action{
	//            LSTN AUTH MBOX ITEM NEXT DONE
	inOpen:    {2, 1, 1, 1, 1, 1},
	inHELO:    {1, 3, 1, 1, 1, 1},
	inFOLD:    {1, 1, 5, 5, 1, 1},
	inREAD:    {1, 1, 6, 6, 1, 1},
	inRETR:    {1, 1, 1, 7, 1, 1},
	inACKS:    {1, 1, 1, 1, 8, 1},
	inACKD:    {1, 1, 1, 1, 8, 1},
	inNACK:    {1, 1, 1, 1, 8, 1},
	inQUIT:    {1, 4, 4, 4, 1, 1},
	inClose:   {1, 1, 1, 1, 1, 9},
	inOther:   {1, 1, 1, 1, 1, 1},
	inTimeout: {0, 1, 1, 1, 1, 1},
}

// decide returns the action for in arriving in state st.
func decide(in input, st state) action {
	if in < 0 || in >= numInputs || st < 0 || st >= numStates {
		return actGarbage
	}
	return decisionTable[in][st]
}
