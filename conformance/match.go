package conformance

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Placeholders, written ${...} inside C: and S: lines and banner: headers:
//
//	${...}          any text, possibly empty (S: only)
//	${name}         a bound variable's value; on first use in an S: line it
//	                binds to one word (a run of non-space octets)
//	${name~RE}      like ${name}, but binds to what RE matches
//	${size NAME}    the octet count of fixture NAME in its CRLF form
//	${apop USER V}  the RFC 1939 §7 APOP digest: lower-case hex MD5 of the
//	                bound variable V (the greeting's <timestamp>) followed by
//	                USER's shared secret
//	${cram-md5 USER V}  the RFC 2195 CRAM-MD5 response to the base64
//	                challenge bound to V, base64-encoded: USER's name, a
//	                space and the hex HMAC-MD5 of the challenge keyed with
//	                USER's password

type phKind int

const (
	phLiteral phKind = iota
	phFree
	phVar
	phSize
	phAPOP
	phCRAM
)

// phNames names the placeholders that take a user, for messages.
var phNames = map[phKind]string{phAPOP: "apop", phCRAM: "cram-md5"}

// segment is a piece of a line: literal text or one placeholder.
type segment struct {
	kind    phKind
	text    string // literal text
	name    string // variable, fixture or user name
	re      string // phVar: the binding pattern ("" means one word)
	varName string // phAPOP: the timestamp variable; phCRAM: the challenge
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// splitPlaceholders cuts text into literal and placeholder segments. A
// pattern may contain braces ({1,70}); they nest, and \} is not a closer.
func splitPlaceholders(text string) ([]segment, error) {
	var segs []segment
	for {
		i := strings.Index(text, "${")
		if i < 0 {
			if text != "" {
				segs = append(segs, segment{kind: phLiteral, text: text})
			}
			return segs, nil
		}
		if i > 0 {
			segs = append(segs, segment{kind: phLiteral, text: text[:i]})
		}
		body, rest, err := cutPlaceholder(text[i+2:])
		if err != nil {
			return nil, err
		}
		sg, err := parsePlaceholder(body)
		if err != nil {
			return nil, err
		}
		segs = append(segs, sg)
		text = rest
	}
}

func cutPlaceholder(s string) (body, rest string, err error) {
	depth := 0
	for j := 0; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '{':
			depth++
		case '}':
			if depth == 0 {
				return s[:j], s[j+1:], nil
			}
			depth--
		}
	}
	return "", "", fmt.Errorf("unclosed placeholder ${%s", s)
}

func parsePlaceholder(body string) (segment, error) {
	if body == "..." {
		return segment{kind: phFree}, nil
	}
	if name, re, ok := strings.Cut(body, "~"); ok {
		if !identRE.MatchString(name) {
			return segment{}, fmt.Errorf("${%s}: %q is not a variable name", body, name)
		}
		if _, err := regexp.Compile(re); err != nil {
			return segment{}, fmt.Errorf("${%s}: %w", body, err)
		}
		return segment{kind: phVar, name: name, re: re}, nil
	}
	f := strings.Fields(body)
	switch {
	case len(f) == 2 && f[0] == "size":
		return segment{kind: phSize, name: f[1]}, nil
	case len(f) == 3 && f[0] == "apop":
		return segment{kind: phAPOP, name: f[1], varName: f[2]}, nil
	case len(f) == 3 && f[0] == "cram-md5":
		return segment{kind: phCRAM, name: f[1], varName: f[2]}, nil
	case len(f) == 1 && identRE.MatchString(f[0]) && f[0] != "size" && f[0] != "apop" && f[0] != "cram-md5":
		return segment{kind: phVar, name: f[0]}, nil
	}
	return segment{}, fmt.Errorf("bad placeholder ${%s} (want ${...}, ${name}, ${name~RE}, ${size FIXTURE}, ${apop USER VAR} or ${cram-md5 USER VAR})", body)
}

// env is what placeholders are evaluated in: bound variables, fixture sizes
// and user secrets.
type env struct {
	vars   map[string]string
	script *Script
	// secret returns the APOP shared secret of a script user (after any
	// credential mapping of the target).
	secret func(user string) (string, bool)
	// account returns a script user's account on the target (after any
	// credential mapping), for ${cram-md5 ...}.
	account func(user string) (User, bool)
}

func (e *env) value(sg segment) (string, error) {
	switch sg.kind {
	case phLiteral:
		return sg.text, nil
	case phVar:
		v, ok := e.vars[sg.name]
		if !ok {
			return "", fmt.Errorf("${%s} is not bound yet", sg.name)
		}
		return v, nil
	case phSize:
		f := e.script.Fixtures[sg.name]
		if f == nil {
			return "", fmt.Errorf("${size %s}: no such fixture", sg.name)
		}
		return strconv.Itoa(len(f.CRLF)), nil
	case phAPOP:
		ts, ok := e.vars[sg.varName]
		if !ok {
			return "", fmt.Errorf("${apop %s %s}: variable %s is not bound yet", sg.name, sg.varName, sg.varName)
		}
		secret, ok := e.secret(sg.name)
		if !ok {
			return "", fmt.Errorf("${apop %s %s}: no such user", sg.name, sg.varName)
		}
		return APOPDigest(ts, secret), nil
	case phCRAM:
		chal, ok := e.vars[sg.varName]
		if !ok {
			return "", fmt.Errorf("${cram-md5 %s %s}: variable %s is not bound yet", sg.name, sg.varName, sg.varName)
		}
		var u User
		if e.account != nil {
			u, ok = e.account(sg.name)
		}
		if !ok {
			return "", fmt.Errorf("${cram-md5 %s %s}: no such user", sg.name, sg.varName)
		}
		raw, err := base64.StdEncoding.DecodeString(chal)
		if err != nil {
			return "", fmt.Errorf("${cram-md5 %s %s}: the challenge is not base64: %w", sg.name, sg.varName, err)
		}
		return CRAMMD5Response(u.Name, u.Password, raw), nil
	}
	return "", errors.New("${...} matches server text; it cannot be sent")
}

// APOPDigest returns the RFC 1939 §7 digest: the lower-case hex MD5 of
// timestamp (angle brackets included) followed by secret.
func APOPDigest(timestamp, secret string) string {
	sum := md5.Sum([]byte(timestamp + secret))
	return hex.EncodeToString(sum[:])
}

// CRAMMD5Response returns the base64 client response of RFC 2195 to a
// decoded challenge: user, a space, and the lower-case hex HMAC-MD5 of the
// challenge keyed with password.
func CRAMMD5Response(user, password string, challenge []byte) string {
	mac := hmac.New(md5.New, []byte(password))
	mac.Write(challenge)
	return base64.StdEncoding.EncodeToString([]byte(user + " " + hex.EncodeToString(mac.Sum(nil))))
}

// expand evaluates a C: line.
func (e *env) expand(text string) (string, error) {
	segs, err := splitPlaceholders(text)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, sg := range segs {
		v, err := e.value(sg)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// lineMatcher is a compiled S: line: a regexp whose numbered groups bind
// the variables in binds (index i is group i+1).
type lineMatcher struct {
	re    *regexp.Regexp
	binds []string
}

// compileLine turns an S: text into a matcher, given the variables bound so
// far (values are used as literals). With a nil env only the syntax is
// checked.
func compileLine(text string, e *env) (*lineMatcher, error) {
	segs, err := splitPlaceholders(text)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString(`(?s)^`)
	m := &lineMatcher{}
	for i, sg := range segs {
		switch {
		case sg.kind == phLiteral && strings.HasSuffix(sg.text, " ") && i == len(segs)-2 && segs[i+1].kind == phFree:
			// "+OK ${...}" at the end of a line also matches "+OK": the
			// text after a status indicator is optional (RFC 1939 §3),
			// and so is the space before it.
			b.WriteString(regexp.QuoteMeta(sg.text[:len(sg.text)-1]) + `(?: .*)?`)
			return finishLine(&b, m)
		case sg.kind == phLiteral:
			b.WriteString(regexp.QuoteMeta(sg.text))
		case sg.kind == phFree:
			b.WriteString(`.*`)
		case sg.kind == phVar && (e == nil || !hasVar(e, sg.name)):
			re := sg.re
			if re == "" {
				re = `[^ ]+`
			}
			b.WriteString(`(` + stripGroups(re) + `)`)
			m.binds = append(m.binds, sg.name)
		case e == nil:
			b.WriteString(`.*`)
		default:
			v, err := e.value(sg)
			if err != nil {
				return nil, err
			}
			b.WriteString(regexp.QuoteMeta(v))
		}
	}
	return finishLine(&b, m)
}

// finishLine anchors and compiles the pattern built by compileLine.
func finishLine(b *strings.Builder, m *lineMatcher) (*lineMatcher, error) {
	b.WriteString(`$`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("bad S: line (pattern %q): %w", b.String(), err)
	}
	m.re = re
	return m, nil
}

func hasVar(e *env, name string) bool {
	_, ok := e.vars[name]
	return ok
}

// stripGroups makes the capturing groups of a user pattern non-capturing,
// so that group numbers stay ours. It keeps escapes and character classes
// intact.
func stripGroups(re string) string {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(re); i++ {
		c := re[i]
		switch {
		case c == '\\' && i+1 < len(re):
			b.WriteByte(c)
			i++
			b.WriteByte(re[i])
			continue
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
		case c == '(' && (i+1 >= len(re) || re[i+1] != '?'):
			b.WriteString("(?:")
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// match matches a server line (without its CRLF) and returns the new
// bindings, or false. A variable bound twice in one line must take one
// value.
func (m *lineMatcher) match(line []byte) (map[string]string, bool) {
	sub := m.re.FindSubmatch(line)
	if sub == nil {
		return nil, false
	}
	got := map[string]string{}
	for i, name := range m.binds {
		v := string(sub[i+1])
		if old, ok := got[name]; ok && old != v {
			return nil, false
		}
		got[name] = v
	}
	return got, true
}

// compileRegexp compiles an S~ pattern, anchored at both ends. Named groups
// (?P<name>...) bind variables.
func compileRegexp(pattern string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(`^(?:` + pattern + `)$`)
	if err != nil {
		return nil, fmt.Errorf("bad S~: pattern: %w", err)
	}
	return re, nil
}
