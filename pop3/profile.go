package pop3

import (
	"fmt"
	"strconv"
	"strings"
)

// Profile selects which revision of POP3 a [Server] speaks: the commands
// it offers and the replies it sends. docs/eras.md has the table of
// commands by RFC.
//
// Every profile keeps popgate's safety rules, which the early RFCs do not
// state: nothing is removed unless QUIT reaches UPDATE (RFC 1725 §3 made
// this a rule; RFC 1081, 1225 and 1460 say nothing about a broken
// connection), command lines are bounded, and the idle timers run.
type Profile uint8

const (
	// ProfileModern, the zero value, is RFC 1939 plus the extensions of
	// docs/pop3-extensions.md: CAPA, response codes, AUTH, STLS, UTF8,
	// LANG.
	ProfileModern Profile = iota
	// ProfileRFC1081 is POP3 as RFC 1081 (1988) defined it: USER, PASS,
	// STAT, LIST, RETR, DELE, NOOP, LAST, RSET, QUIT, the optional TOP
	// and (with Options.RPOP) RPOP. No APOP, no UIDL. RSET puts LAST back
	// to its value at the start of the session.
	ProfileRFC1081
	// ProfileRFC1225 is RFC 1225 (1991): a republication of RFC 1081 with
	// no protocol change.
	ProfileRFC1225
	// ProfileRFC1460 is RFC 1460 (1993): RPOP removed, APOP added, RSET
	// sets LAST to 0.
	ProfileRFC1460
	// ProfileRFC1725 is RFC 1725 (1994): LAST removed, UIDL added.
	ProfileRFC1725
	// ProfileRFC1939 is RFC 1939 (1996) alone: the commands of RFC 1725
	// and no extension (no CAPA, AUTH, STLS, UTF8 or LANG, no response
	// codes).
	ProfileRFC1939
)

// profileNames are the names ParseProfile accepts, in Profile order.
var profileNames = [...]string{"modern", "rfc1081", "rfc1225", "rfc1460", "rfc1725", "rfc1939"}

// String returns the profile's name as the popgate flag spells it.
func (p Profile) String() string {
	if int(p) < len(profileNames) {
		return profileNames[p]
	}
	return "Profile(" + strconv.Itoa(int(p)) + ")"
}

// ParseProfile parses a profile name: modern, rfc1081, rfc1225, rfc1460,
// rfc1725 or rfc1939 (case-insensitive; "" is modern).
func ParseProfile(s string) (Profile, error) {
	if s == "" {
		return ProfileModern, nil
	}
	for i, n := range profileNames {
		if strings.EqualFold(s, n) {
			return Profile(i), nil
		}
	}
	return 0, fmt.Errorf("pop3: profile %q: want %s", s, strings.Join(profileNames[:], ", "))
}

func (p Profile) valid() bool { return int(p) < len(profileNames) }

// extensions reports whether the profile offers the post-1939 extensions
// (CAPA, response codes, AUTH, STLS, UTF8, LANG).
func (p Profile) extensions() bool { return p == ProfileModern }

// hasLast reports whether LAST is offered: it is in the minimal command
// set of RFC 1081, 1225 and 1460 and was removed by RFC 1725.
func (p Profile) hasLast() bool {
	return p == ProfileRFC1081 || p == ProfileRFC1225 || p == ProfileRFC1460
}

// lastResetsToZero reports whether RSET sets the highest number accessed
// to 0 (RFC 1460) rather than back to its value at the start of the
// session (RFC 1081, 1225).
func (p Profile) lastResetsToZero() bool { return p == ProfileRFC1460 }

// hasRPOP reports whether RPOP may be offered (RFC 1081, 1225).
func (p Profile) hasRPOP() bool { return p == ProfileRFC1081 || p == ProfileRFC1225 }

// hasAPOP reports whether APOP may be offered (RFC 1460 and later).
func (p Profile) hasAPOP() bool { return !p.hasRPOP() }

// hasUIDL reports whether UIDL is offered (RFC 1725 and later).
func (p Profile) hasUIDL() bool {
	return p == ProfileModern || p == ProfileRFC1725 || p == ProfileRFC1939
}

// applyProfile removes from t the commands the profile's RFC does not have
// and adds the ones only it has. It runs once in New, after the quirks
// and XTND options are checked.
func applyProfile(t commandTable, opts *Options) {
	p := opts.Profile
	if !p.extensions() {
		for _, v := range []string{"CAPA", "AUTH", "STLS", "UTF8", "LANG"} {
			delete(t, v)
		}
	}
	if !p.hasUIDL() {
		delete(t, "UIDL")
	}
	if !p.hasAPOP() {
		delete(t, "APOP")
	}
	if p.hasLast() {
		t.add(&command{verb: "LAST", states: []State{Transaction}, handle: (*conn).cmdLast})
	}
	if p.hasRPOP() && opts.RPOP != nil {
		t.add(&command{verb: "RPOP", states: []State{Authorization}, minArgs: 1, maxArgs: 1, handle: (*conn).cmdRPOP})
	}
	if opts.XTND.XLST || opts.XTND.XMIT != nil {
		t.add(&command{verb: "XTND", states: []State{Transaction}, minArgs: 1, maxArgs: 3, handle: (*conn).cmdXtnd})
	}
	q := opts.Quirks
	if q.HideCAPA {
		delete(t, "CAPA")
	}
	if q.AnswerProbes {
		if t["AUTH"] == nil {
			// Only the bare probe: a profile without AUTH has no mechanism.
			t.add(&command{verb: "AUTH", states: []State{Authorization}, maxArgs: 0, handle: (*conn).cmdAuthProbe})
		}
		both := []State{Authorization, Transaction}
		t.add(&command{verb: "XSENDER", states: both, maxArgs: 1, handle: (*conn).cmdXsender})
	}
}

// cmdLast answers LAST (RFC 1081, 1225, 1460): the highest message number
// accessed, in this session or an earlier committed one.
func (c *conn) cmdLast(request) (State, error) {
	c.reply("+OK " + strconv.Itoa(c.sess.Last()))
	return c.state, nil
}

// cmdAuthProbe answers the bare AUTH that Netscape and Outlook Express
// send after the greeting, in a profile that has no AUTH: an empty
// mechanism list, so that the client goes on with USER/PASS.
func (c *conn) cmdAuthProbe(request) (State, error) {
	c.reply("+OK no SASL mechanisms")
	c.wc.Line(".")
	return c.state, nil
}

// cmdXsender answers the qpopper XSENDER probe with -ERR, without
// counting it as a protocol error: popgate does not know who submitted a
// message.
func (c *conn) cmdXsender(request) (State, error) {
	c.reply("-ERR no sender information")
	return c.state, nil
}

// stripResponseCode removes an RFC 2449 §8 response code from an -ERR
// reply for profiles that predate it.
func stripResponseCode(reply string) string {
	rest, ok := strings.CutPrefix(reply, "-ERR [")
	if !ok {
		return reply
	}
	if i := strings.IndexByte(rest, ']'); i >= 0 {
		return "-ERR " + strings.TrimLeft(rest[i+1:], " ")
	}
	return reply
}
