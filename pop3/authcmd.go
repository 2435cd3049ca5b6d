package pop3

import (
	"encoding/base64"
	"strings"
)

// cmdAuth runs an RFC 5034 SASL exchange. With no argument it answers
// the RFC 1734-era probe that Netscape and Outlook Express send right
// after the greeting: +OK, one mechanism per line, and ".".
func (c *conn) cmdAuth(req request) (State, error) {
	if len(req.args) == 0 {
		c.reply("+OK SASL mechanisms follow")
		for _, name := range c.mechanismNames() {
			c.wc.Line(name)
		}
		c.wc.Line(".")
		return c.state, nil
	}
	mech := c.srv.findMechanism(req.args[0])
	if mech == nil {
		return c.state, errUnknownMech
	}
	method := "AUTH " + mech.name
	if !c.passwordsAllowed() {
		return c.state, c.refuseCleartext(method)
	}
	if w := c.srv.limiter.Check(c.ip, c.hasIP, ""); w > 0 {
		return c.state, c.loginRefused(method, "", &throttleError{wait: w})
	}
	var resp []byte // nil: no initial response
	if len(req.args) == 2 {
		if !mech.clientFirst {
			return c.state, errIRNotAllowed
		}
		ir, err := decodeSASL(req.args[1], true)
		if err != nil {
			return c.state, err
		}
		resp = ir
	}
	res := &saslResult{}
	srv := mech.start(c, res)
	for {
		challenge, done, err := srv.Next(resp)
		if res.ran {
			// The credentials were checked: the outcome is a login.
			return c.login(method, res.user, res.acct, res.err)
		}
		if err != nil {
			return c.state, errBadSASL
		}
		if done {
			// A mechanism that ends without checking anything.
			return c.state, errBadSASL
		}
		// RFC 5034 §4: "+" SP base64, and "+ " for an empty challenge.
		c.reply("+ " + base64.StdEncoding.EncodeToString(challenge))
		if !c.flush() {
			return c.state, nil
		}
		line, rerr := c.wc.ReadLineLimit(c.srv.opts.AuthTimeout, MaxSASLResponse)
		if rerr != nil {
			c.readFailed(rerr)
			c.closing = true
			return c.state, nil
		}
		text := string(line)
		if strings.TrimRight(text, " ") == "*" {
			return c.state, errAuthCancelled
		}
		if resp, err = decodeSASL(text, false); err != nil {
			return c.state, err
		}
	}
}
