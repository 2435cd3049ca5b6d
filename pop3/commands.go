package pop3

import (
	"slices"
	"strconv"
	"strings"
)

// State is a POP3 session state, named as RFC 1939 §3 names them.
type State uint8

const (
	// Authorization is the state after the greeting: the client must
	// identify itself (USER/PASS or APOP) before the maildrop is opened
	// (RFC 1939 §4).
	Authorization State = iota + 1
	// Transaction is the state once the maildrop is locked: messages can be
	// listed, retrieved and marked deleted (RFC 1939 §5).
	Transaction
	// Update is entered by QUIT from Transaction: the marked messages are
	// removed and the connection closes (RFC 1939 §6). No command is legal
	// in it.
	Update
)

// String returns the RFC 1939 name of the state.
func (s State) String() string {
	switch s {
	case Authorization:
		return "AUTHORIZATION"
	case Transaction:
		return "TRANSACTION"
	case Update:
		return "UPDATE"
	default:
		return "State(" + strconv.Itoa(int(s)) + ")"
	}
}

// request is one parsed command line.
type request struct {
	// verb is the keyword in upper case.
	verb string
	// args are the space-separated arguments (empty ones dropped).
	args []string
	// rest is the line after the keyword and its single space, unchanged:
	// PASS takes it whole because a password may contain spaces (RFC 1939
	// §7).
	rest string
}

// handlerFunc runs one command. It buffers its reply (or returns an error
// that [replyFor] turns into one) and returns the next state.
type handlerFunc func(c *conn, req request) (State, error)

// command is one row of the command table.
type command struct {
	verb string
	// states lists where the command is legal; anywhere else it gets
	// -ERR (RFC 1939 §3).
	states []State
	// minArgs and maxArgs bound len(req.args); maxArgs < 0 means no limit
	// (for commands that read req.rest).
	minArgs, maxArgs int
	// secret marks commands whose arguments are credentials: they are never
	// logged.
	secret bool
	handle handlerFunc
}

func (cmd *command) allowed(s State) bool { return slices.Contains(cmd.states, s) }

// commandTable maps an upper-case keyword to its row. Each Server builds
// its own in [newCommandTable]; extensions (CAPA tags, AUTH, STLS) add rows
// with [commandTable.add] there and capability lines with
// [capabilityList].
type commandTable map[string]*command

func (t commandTable) add(cmd *command) {
	t[strings.ToUpper(cmd.verb)] = cmd
}

// newCommandTable returns the RFC 1939 commands plus CAPA (RFC 2449 §5).
func newCommandTable() commandTable {
	t := commandTable{}
	registerAuthorization(t)
	registerTransaction(t)
	t.add(&command{verb: "QUIT", states: []State{Authorization, Transaction}, handle: (*conn).cmdQuit})
	t.add(&command{verb: "CAPA", states: []State{Authorization, Transaction}, handle: (*conn).cmdCapa})
	return t
}

// capability computes one CAPA line for the connection's current state;
// ok false leaves it out (RFC 2449 §5: some tags are state-dependent, such
// as STLS).
type capability func(c *conn) (line string, ok bool)

// capabilityList is the server's CAPA answer, in order. RFC 2449 §5: what
// is announced in AUTHORIZATION must also be announced in TRANSACTION.
type capabilityList []capability

func fixedCapability(line string) capability {
	return func(*conn) (string, bool) { return line, true }
}

func newCapabilityList(implementation string) capabilityList {
	return capabilityList{
		fixedCapability("TOP"),
		fixedCapability("USER"),
		fixedCapability("UIDL"),
		fixedCapability("RESP-CODES"),
		// RFC 3206 §6: a server that sends [AUTH] should say so.
		fixedCapability("AUTH-RESP-CODE"),
		fixedCapability("PIPELINING"),
		fixedCapability("IMPLEMENTATION " + implementation),
	}
}

// cmdCapa answers CAPA (RFC 2449 §5).
func (c *conn) cmdCapa(request) (State, error) {
	c.reply("+OK Capability list follows")
	for _, capa := range c.srv.capabilities {
		if line, ok := capa(c); ok {
			c.wc.Line(line)
		}
	}
	c.wc.Line(".")
	return c.state, nil
}

// cmdQuit ends the session. In AUTHORIZATION it just closes (RFC 1939 §4);
// in TRANSACTION it enters UPDATE (RFC 1939 §6).
func (c *conn) cmdQuit(req request) (State, error) {
	c.closing = true
	if c.state == Transaction {
		return c.update()
	}
	c.reply("+OK " + c.srv.greetName + " POP3 server signing off")
	return c.state, nil
}
