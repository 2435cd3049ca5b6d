package pop3

import "strings"

// cmdUTF8 turns on UTF-8 mode (RFC 6856 §2). From then on user names and
// passwords must be valid UTF-8. popgate sends messages unchanged in
// either mode, so UTF8 changes nothing else.
func (c *conn) cmdUTF8(request) (State, error) {
	c.utf8 = true
	c.reply("+OK UTF8 enabled")
	return c.state, nil
}

// languages returns the reply languages popgate has: tag and name in that
// language (RFC 6856 §3). The first is the default.
func languages() [][2]string { return [][2]string{{"en", "English"}} }

// cmdLang lists the languages (no argument) or selects one (RFC 6856 §3).
// A range matches by RFC 4647 §3.4 lookup: "*" is the default, and a
// range is shortened at its last "-" until it names a language, so
// "en-US" selects "en".
func (c *conn) cmdLang(req request) (State, error) {
	if len(req.args) == 0 {
		c.reply("+OK Language listing follows")
		for _, l := range languages() {
			c.wc.Line(l[0] + " " + l[1])
		}
		c.wc.Line(".")
		return c.state, nil
	}
	if tag, ok := lookupLanguage(req.args[0]); ok {
		c.reply("+OK " + tag + " Language changed")
		return c.state, nil
	}
	return c.state, errBadLanguage
}

var errBadLanguage = &protocolError{"unsupported language"}

// lookupLanguage matches a language range against [languages].
func lookupLanguage(r string) (string, bool) {
	if r == "*" {
		return languages()[0][0], true
	}
	r = strings.ToLower(r)
	for r != "" {
		for _, l := range languages() {
			if r == l[0] {
				return l[0], true
			}
		}
		i := strings.LastIndexByte(r, '-')
		if i < 0 {
			break
		}
		r = r[:i]
		// RFC 4647 §3.4: drop a single-letter subtag left at the end.
		if j := strings.LastIndexByte(r, '-'); j >= 0 && j == len(r)-2 {
			r = r[:j]
		}
	}
	return "", false
}
