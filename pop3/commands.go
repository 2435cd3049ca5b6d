package pop3

import (
	"fmt"
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

// newCommandTable returns the RFC 1939 commands plus CAPA (RFC 2449 §5),
// AUTH (RFC 5034), UTF8 and LANG (RFC 6856), and STLS (RFC 2595 §4) if
// stls is set.
func newCommandTable(stls bool) commandTable {
	t := commandTable{}
	registerAuthorization(t)
	registerTransaction(t)
	both := []State{Authorization, Transaction}
	t.add(&command{verb: "QUIT", states: both, handle: (*conn).cmdQuit})
	t.add(&command{verb: "CAPA", states: both, handle: (*conn).cmdCapa})
	// AUTH arguments are credentials (an initial response).
	t.add(&command{verb: "AUTH", states: []State{Authorization}, maxArgs: 2, secret: true, handle: (*conn).cmdAuth})
	t.add(&command{verb: "UTF8", states: []State{Authorization}, handle: (*conn).cmdUTF8})
	t.add(&command{verb: "LANG", states: both, maxArgs: 1, handle: (*conn).cmdLang})
	if stls {
		t.add(&command{verb: "STLS", states: []State{Authorization}, handle: (*conn).cmdStls})
	}
	return t
}

// capability computes one CAPA line for the connection's current state;
// ok false leaves it out (RFC 2449 §5: some tags are state-dependent, such
// as STLS).
type capability struct {
	// tag is the capability keyword.
	tag string
	// verbs are the commands the tag announces; New checks that the
	// command table has them, so that CAPA never promises a missing one.
	verbs []string
	// line returns the whole line for c now, ok false to leave it out.
	line func(c *conn) (line string, ok bool)
}

// capabilityList is the server's CAPA answer, in order. RFC 2449 §5: what
// is announced in AUTHORIZATION must also be announced in TRANSACTION,
// except STLS (RFC 2595 §4: only where it may be used).
type capabilityList []capability

func fixedCapability(tag string, verbs ...string) capability {
	return capability{tag: tag, verbs: verbs, line: func(*conn) (string, bool) { return tag, true }}
}

// newCapabilityList returns every capability popgate can announce; each
// one decides per connection whether it is true there.
func newCapabilityList(implementation string) capabilityList {
	return capabilityList{
		fixedCapability("TOP", "TOP"),
		// RFC 2449 §6.2: USER/PASS, only where cleartext login is allowed.
		{tag: "USER", verbs: []string{"USER", "PASS"}, line: func(c *conn) (string, bool) {
			return "USER", c.passwordsAllowed()
		}},
		// RFC 5034 §3 (updating RFC 2449 §6.3): still announced after
		// login; filtered like USER (RFC 5034 §4: no plaintext mechanism
		// before TLS by default).
		{tag: "SASL", verbs: []string{"AUTH"}, line: func(c *conn) (string, bool) {
			names := c.mechanismNames()
			return "SASL " + strings.Join(names, " "), len(names) > 0
		}},
		fixedCapability("RESP-CODES"),
		// RFC 3206 §6: a server that sends [AUTH] should say so.
		fixedCapability("AUTH-RESP-CODE"),
		// RFC 2449 §6.5: the same value in both states (not per user).
		{tag: "LOGIN-DELAY", line: func(c *conn) (string, bool) {
			d := c.srv.opts.LoginDelay
			return "LOGIN-DELAY " + strconv.Itoa(seconds(d)), d > 0
		}},
		fixedCapability("PIPELINING"),
		// RFC 2449 §6.7: only when the site states a policy.
		{tag: "EXPIRE", line: func(c *conn) (string, bool) {
			e := c.srv.opts.Expire
			return "EXPIRE " + strings.ToUpper(e), e != ""
		}},
		fixedCapability("UIDL", "UIDL"),
		// RFC 2595 §4: only in AUTHORIZATION, never once TLS is on; RFC
		// 6856 §2.1: not after UTF8.
		{tag: "STLS", verbs: []string{"STLS"}, line: func(c *conn) (string, bool) {
			return "STLS", c.srv.tlsConfig != nil && !c.tls && !c.utf8 && c.state == Authorization
		}},
		// RFC 6856 §2: UTF-8 user names and passwords are accepted with
		// USER, PASS and APOP, before the UTF8 command too.
		{tag: "UTF8", verbs: []string{"UTF8"}, line: func(*conn) (string, bool) { return "UTF8 USER", true }},
		fixedCapability("LANG", "LANG"),
		fixedCapability("IMPLEMENTATION " + implementation),
	}
}

// check verifies, once in New, that every command a capability announces
// is in the table (STLS only when TLS is configured).
func (l capabilityList) check(t commandTable) error {
	for _, capa := range l {
		for _, v := range capa.verbs {
			if t[v] == nil && v != "STLS" {
				return fmt.Errorf("pop3: capability %s announces %s, which this server does not offer", capa.tag, v)
			}
		}
	}
	return nil
}

// checkExpire validates Options.Expire: "", "NEVER" or decimal days.
func checkExpire(e string) error {
	if e == "" || strings.EqualFold(e, "NEVER") || (allDigits(e) && len(e) <= 9) {
		return nil
	}
	return fmt.Errorf("pop3: Options.Expire %q: want NEVER or a number of days", e)
}

// cmdCapa answers CAPA (RFC 2449 §5).
func (c *conn) cmdCapa(request) (State, error) {
	c.reply("+OK Capability list follows")
	for _, capa := range c.srv.capabilities {
		if line, ok := capa.line(c); ok {
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
