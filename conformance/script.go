// Package conformance parses and replays POP dialogue transcripts: the
// second seam of popgate, beside the mailstore API.
//
// A transcript is a txtar archive (golang.org/x/tools/txtar). Its comment
// section is the dialogue, one directive per line; its files are message
// fixtures. docs/conformance.md describes the format for readers; in short:
//
//	proto: pop3                          header: protocol of the dialogue
//	user: mrose password=tanstaaf        header: an account to create
//	mailbox: mrose INBOX = m1 m2         header: fixtures to deliver, in order
//	requires: apop popgate               header: skip unless the target has these
//	banner: +OK ${...}                   header: greeting checked on every connection
//	# narration                          shown with failures
//	C: STAT                              client line (placeholders expanded), CRLF added
//	C= "STAT\r\nLIST\r\n"                client bytes, exactly (Go-quoted)
//	S: +OK 2 ${size}                     one server line, literal except ${...}
//	S~ \+OK [0-9]+ [0-9]+                one server line fully matching an RE2
//	S< m1 dot                            fixture m1 as sent by RETR (raw|dot|top N)
//	S< mbox m1 m2                        POP1 mail data: m1, m2 as an mboxrd blob
//	! conn 2                             switch connection (dialled on first use)
//	! hangup                             drop the current connection
//	! expect-close                       the server closes the current connection
//	! expect-mailbox mrose INBOX = m2    what the store holds now
//	! sleep 100ms                        pause
//
// Fixtures are "-- NAME.eml --" (text, served in its CRLF form) or
// "-- NAME.bytes --" (Go-quoted strings, concatenated, delivered exactly).
//
// [Parse] reads a transcript, [Run] or [Runner.Run] replays it against a
// [Target]: a [StoreTarget] (an in-process server over a fresh store) or any
// implementation that dials a remote server.
package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/tools/txtar"

	"popgate/mailstore"
)

// Script is a parsed transcript.
type Script struct {
	// Name identifies the script in failures, usually its file path.
	Name string
	// Proto is the protocol named by the proto: header (pop1, pop2, pop3).
	Proto string
	// Banner, if not empty, is the greeting every connection must start
	// with, written like an S: line.
	Banner     string
	BannerLine int
	// Users are the accounts of user: headers, in file order.
	Users []User
	// Mailboxes are the mailbox: headers: fixtures to deliver before the
	// dialogue starts.
	Mailboxes []Mailbox
	// Requires lists the features named by requires: headers.
	Requires []string
	// Steps is the dialogue.
	Steps []Step
	// Fixtures maps a fixture name (file name without .eml or .bytes) to
	// the fixture.
	Fixtures map[string]*Fixture
	// FixtureOrder lists fixture names in file order.
	FixtureOrder []string
	// Source is the file as given to Parse, for [Rewrite].
	Source []byte
}

// User is an account declared by a user: header.
type User struct {
	Name     string
	Password string
	// APOP is the shared secret of RFC 1939 §7; empty means the password.
	APOP string
}

// Secret returns the APOP shared secret: APOP if set, else the password.
func (u User) Secret() string {
	if u.APOP != "" {
		return u.APOP
	}
	return u.Password
}

// Mailbox lists fixtures, in delivery order, for one user's folder.
type Mailbox struct {
	User     string
	Folder   string
	Fixtures []string
	Line     int
}

// Fixture is a message from the archive's file section.
type Fixture struct {
	Name string
	// Raw is what is delivered to the store: the .eml text as written, or
	// the exact .bytes octets.
	Raw []byte
	// CRLF is the canonical form the store serves (mailstore.ToCRLF(Raw)).
	CRLF []byte
}

// StepKind says what a step does.
type StepKind int

// The step kinds, one per line form.
const (
	StepSend        StepKind = iota + 1 // C: text
	StepSendBytes                       // C= "bytes"
	StepLine                            // S: text
	StepRegexp                          // S~ regexp
	StepFixture                         // S< NAME raw|dot|top N, or S< mbox NAME...
	StepConn                            // ! conn N
	StepHangup                          // ! hangup
	StepExpectClose                     // ! expect-close
	StepExpectMail                      // ! expect-mailbox USER FOLDER = fix...
	StepSleep                           // ! sleep DURATION
	StepStartTLS                        // ! starttls
)

// Step is one dialogue line.
type Step struct {
	Kind StepKind
	// Line is the 1-based line number in the file.
	Line int
	// Text is the line as written, for messages.
	Text string
	// Narration is the nearest preceding # block.
	Narration string
	// Arg is the text after the prefix (C:, S:, S~) or the decoded bytes
	// of C=.
	Arg string
	// Fixture and Mode are set for S<; Lines is the TOP line count.
	Fixture string
	Mode    string
	Lines   int
	// Fixtures lists, for Mode "mbox" (S< mbox NAME...), the messages of
	// a POP1 mail data blob, in order.
	Fixtures []string
	// Conn is the connection number of ! conn.
	Conn int
	// Mailbox is set for ! expect-mailbox.
	Mailbox Mailbox
	// Sleep is the ! sleep duration.
	Sleep time.Duration
}

// Parse reads a transcript. name is used in error messages and kept as
// Script.Name.
func Parse(name string, data []byte) (*Script, error) {
	ar := txtar.Parse(data)
	s := &Script{Name: name, Fixtures: map[string]*Fixture{}, Source: data}
	if err := s.parseFixtures(ar); err != nil {
		return nil, err
	}
	lines := strings.Split(string(ar.Comment), "\n")
	var narration []string
	lastWasNarration := false
	for i, raw := range lines {
		ln := i + 1
		line := strings.TrimSuffix(raw, "\r")
		if strings.TrimSpace(line) == "" {
			lastWasNarration = false
			continue
		}
		if strings.HasPrefix(line, "#") {
			text := strings.TrimSpace(strings.TrimPrefix(line, "#"))
			if !lastWasNarration {
				narration = narration[:0]
			}
			if text != "" {
				narration = append(narration, text)
			}
			lastWasNarration = true
			continue
		}
		lastWasNarration = false
		st, isStep, err := s.parseLine(line, ln)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, ln, err)
		}
		if !isStep {
			continue
		}
		st.Line = ln
		st.Text = line
		st.Narration = strings.Join(narration, " ")
		s.Steps = append(s.Steps, st)
	}
	if s.Proto == "" {
		return nil, fmt.Errorf("%s: no proto: header", name)
	}
	return s, s.check()
}

func (s *Script) parseFixtures(ar *txtar.Archive) error {
	for _, f := range ar.Files {
		var fx *Fixture
		switch {
		case strings.HasSuffix(f.Name, ".eml"):
			fx = &Fixture{Name: strings.TrimSuffix(f.Name, ".eml"), Raw: f.Data}
		case strings.HasSuffix(f.Name, ".bytes"):
			raw, err := decodeBytes(f.Data)
			if err != nil {
				return fmt.Errorf("%s: fixture %s: %w", s.Name, f.Name, err)
			}
			fx = &Fixture{Name: strings.TrimSuffix(f.Name, ".bytes"), Raw: raw}
		default:
			return fmt.Errorf("%s: fixture %q: name must end in .eml or .bytes", s.Name, f.Name)
		}
		if _, dup := s.Fixtures[fx.Name]; dup {
			return fmt.Errorf("%s: fixture %q defined twice", s.Name, fx.Name)
		}
		fx.CRLF = mailstore.ToCRLF(fx.Raw)
		s.Fixtures[fx.Name] = fx
		s.FixtureOrder = append(s.FixtureOrder, fx.Name)
	}
	return nil
}

// decodeBytes concatenates the Go-quoted strings of a .bytes fixture, one
// or more per line; blank lines and # lines are ignored.
func decodeBytes(data []byte) ([]byte, error) {
	var out []byte
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for line != "" {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				return nil, fmt.Errorf("line %d: want a Go-quoted string: %w", i+1, err)
			}
			u, err := strconv.Unquote(q)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
			out = append(out, u...)
			line = strings.TrimSpace(line[len(q):])
		}
	}
	return out, nil
}

// parseLine handles one non-blank, non-narration line. It reports whether
// the line is a step (headers are not).
func (s *Script) parseLine(line string, ln int) (Step, bool, error) {
	switch {
	case strings.HasPrefix(line, "C:"):
		return Step{Kind: StepSend, Arg: lineArg(line)}, true, nil
	case strings.HasPrefix(line, "C="):
		b, err := decodeBytes([]byte(strings.TrimSpace(line[2:])))
		if err != nil {
			return Step{}, false, fmt.Errorf("bad C= line: %w", err)
		}
		return Step{Kind: StepSendBytes, Arg: string(b)}, true, nil
	case strings.HasPrefix(line, "S:"):
		arg := lineArg(line)
		if _, err := compileLine(arg, nil); err != nil {
			return Step{}, false, err
		}
		return Step{Kind: StepLine, Arg: arg}, true, nil
	case strings.HasPrefix(line, "S~"):
		arg := lineArg(line)
		if _, err := compileRegexp(arg); err != nil {
			return Step{}, false, err
		}
		return Step{Kind: StepRegexp, Arg: arg}, true, nil
	case strings.HasPrefix(line, "S<"):
		return parseFixtureStep(strings.Fields(line[2:]))
	case strings.HasPrefix(line, "!"):
		return parseDirective(strings.Fields(line[1:]), ln)
	}
	key, val, ok := strings.Cut(line, ":")
	if !ok {
		return Step{}, false, fmt.Errorf("unrecognised line %q (want a header, #, C:, C=, S:, S~, S< or !)", line)
	}
	val = strings.TrimSpace(val)
	switch strings.TrimSpace(key) {
	case "proto":
		s.Proto = val
	case "banner":
		if _, err := compileLine(val, nil); err != nil {
			return Step{}, false, err
		}
		s.Banner, s.BannerLine = val, ln
	case "requires":
		s.Requires = append(s.Requires, strings.Fields(val)...)
	case "user":
		u, err := parseUser(val)
		if err != nil {
			return Step{}, false, err
		}
		s.Users = append(s.Users, u)
	case "mailbox":
		mb, err := parseMailbox(val)
		if err != nil {
			return Step{}, false, fmt.Errorf("mailbox: %w", err)
		}
		mb.Line = ln
		s.Mailboxes = append(s.Mailboxes, mb)
	default:
		return Step{}, false, fmt.Errorf("unknown header %q", key)
	}
	return Step{}, false, nil
}

// lineArg returns the text after a two-character prefix and one optional
// space: "S: x" and "S:x" both give "x", "S:" gives "".
func lineArg(line string) string {
	return strings.TrimPrefix(line[2:], " ")
}

func parseUser(val string) (User, error) {
	f := strings.Fields(val)
	if len(f) == 0 {
		return User{}, errors.New("user: needs a name")
	}
	u := User{Name: f[0]}
	for _, kv := range f[1:] {
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case ok && k == "password":
			u.Password = v
		case ok && k == "apop":
			u.APOP = v
		default:
			return User{}, fmt.Errorf("user: unknown attribute %q (want password=P or apop=SECRET)", kv)
		}
	}
	return u, nil
}

// parseMailbox parses "USER FOLDER = fix1 fix2" (the list may be empty).
func parseMailbox(val string) (Mailbox, error) {
	head, list, ok := strings.Cut(val, "=")
	hf := strings.Fields(head)
	if !ok || len(hf) != 2 {
		return Mailbox{}, fmt.Errorf("want USER FOLDER = fixture..., got %q", val)
	}
	return Mailbox{User: hf[0], Folder: mailstore.FolderName(hf[1]), Fixtures: strings.Fields(list)}, nil
}

func parseFixtureStep(f []string) (Step, bool, error) {
	// S< mbox NAME...: POP1 mail data, an mboxrd blob of those fixtures.
	// "S< mbox raw" (and dot, top) still means a fixture called mbox.
	if len(f) >= 1 && f[0] == "mbox" && (len(f) == 1 || (f[1] != "raw" && f[1] != "dot" && f[1] != "top")) {
		return Step{Kind: StepFixture, Mode: "mbox", Fixtures: f[1:]}, true, nil
	}
	if len(f) < 2 {
		return Step{}, false, errors.New("bad S< line: want NAME raw, NAME dot or NAME top N")
	}
	st := Step{Kind: StepFixture, Fixture: f[0], Mode: f[1]}
	switch {
	case (f[1] == "raw" || f[1] == "dot") && len(f) == 2:
	case f[1] == "top" && len(f) == 3:
		n, err := strconv.Atoi(f[2])
		if err != nil || n < 0 {
			return Step{}, false, fmt.Errorf("bad S< %s top: want a line count, got %q", f[0], f[2])
		}
		st.Lines = n
	default:
		return Step{}, false, fmt.Errorf("bad S< line: want NAME raw, NAME dot or NAME top N, got %q", strings.Join(f, " "))
	}
	return st, true, nil
}

func parseDirective(f []string, ln int) (Step, bool, error) {
	if len(f) == 0 {
		return Step{}, false, errors.New("empty ! directive")
	}
	args := f[1:]
	switch f[0] {
	case "conn":
		if len(args) != 1 {
			return Step{}, false, errors.New("! conn: want a connection number")
		}
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 1 {
			return Step{}, false, fmt.Errorf("! conn: bad number %q", args[0])
		}
		return Step{Kind: StepConn, Conn: n}, true, nil
	case "starttls":
		if len(args) != 0 {
			return Step{}, false, errors.New("! starttls takes no arguments")
		}
		return Step{Kind: StepStartTLS}, true, nil
	case "hangup", "expect-close":
		if len(args) != 0 {
			return Step{}, false, fmt.Errorf("! %s takes no arguments", f[0])
		}
		if f[0] == "hangup" {
			return Step{Kind: StepHangup}, true, nil
		}
		return Step{Kind: StepExpectClose}, true, nil
	case "expect-mailbox":
		mb, err := parseMailbox(strings.Join(args, " "))
		if err != nil {
			return Step{}, false, fmt.Errorf("! expect-mailbox: %w", err)
		}
		mb.Line = ln
		return Step{Kind: StepExpectMail, Mailbox: mb}, true, nil
	case "sleep":
		if len(args) != 1 {
			return Step{}, false, errors.New("! sleep: want a duration")
		}
		d, err := time.ParseDuration(args[0])
		if err != nil || d < 0 {
			return Step{}, false, fmt.Errorf("! sleep: bad duration %q", args[0])
		}
		return Step{Kind: StepSleep, Sleep: d}, true, nil
	}
	return Step{}, false, fmt.Errorf("unknown directive ! %s", f[0])
}

// check validates cross-references: users, fixtures and placeholders that
// must name something.
func (s *Script) check() error {
	users := map[string]bool{}
	for _, u := range s.Users {
		if users[u.Name] {
			return fmt.Errorf("%s: user %q declared twice", s.Name, u.Name)
		}
		users[u.Name] = true
	}
	checkBox := func(mb Mailbox, what string) error {
		if !users[mb.User] {
			return fmt.Errorf("%s:%d: %s names user %q, who has no user: header", s.Name, mb.Line, what, mb.User)
		}
		for _, f := range mb.Fixtures {
			if s.Fixtures[f] == nil {
				return fmt.Errorf("%s:%d: %s names fixture %q, which is not in the archive", s.Name, mb.Line, what, f)
			}
		}
		return nil
	}
	for _, mb := range s.Mailboxes {
		if err := checkBox(mb, "mailbox:"); err != nil {
			return err
		}
	}
	for _, st := range s.Steps {
		switch st.Kind {
		case StepExpectMail:
			if err := checkBox(st.Mailbox, "! expect-mailbox"); err != nil {
				return err
			}
		case StepFixture:
			for _, name := range st.Fixtures {
				if s.Fixtures[name] == nil {
					return fmt.Errorf("%s:%d: S< mbox names fixture %q, which is not in the archive", s.Name, st.Line, name)
				}
			}
			if st.Mode != "mbox" && s.Fixtures[st.Fixture] == nil {
				return fmt.Errorf("%s:%d: S< names fixture %q, which is not in the archive", s.Name, st.Line, st.Fixture)
			}
		case StepSend, StepLine:
			if err := s.checkPlaceholders(st.Arg, users); err != nil {
				return fmt.Errorf("%s:%d: %w", s.Name, st.Line, err)
			}
		}
	}
	return nil
}

func (s *Script) checkPlaceholders(text string, users map[string]bool) error {
	segs, err := splitPlaceholders(text)
	if err != nil {
		return err
	}
	for _, sg := range segs {
		switch sg.kind {
		case phSize:
			if s.Fixtures[sg.name] == nil {
				return fmt.Errorf("${size %s}: no such fixture", sg.name)
			}
		case phAPOP, phCRAM:
			if !users[sg.name] {
				return fmt.Errorf("${%s %s %s}: user %q has no user: header", phNames[sg.kind], sg.name, sg.varName, sg.name)
			}
		}
	}
	return nil
}

// NeedsStore reports whether the script places fixtures or inspects the
// store: it has mailbox: headers or ! expect-mailbox steps.
func (s *Script) NeedsStore() bool {
	if len(s.Mailboxes) > 0 {
		return true
	}
	for _, st := range s.Steps {
		if st.Kind == StepExpectMail {
			return true
		}
	}
	return false
}

// User returns the declared user called name.
func (s *Script) User(name string) (User, bool) {
	for _, u := range s.Users {
		if u.Name == name {
			return u, true
		}
	}
	return User{}, false
}

// Rewrite returns the script's source with each fixed line replaced: the
// -update mode of the tests writes the result back to the file.
func Rewrite(src []byte, fixes []Fix) []byte {
	if len(fixes) == 0 {
		return src
	}
	lines := bytes.Split(src, []byte("\n"))
	for _, f := range fixes {
		if f.Line >= 1 && f.Line <= len(lines) {
			lines[f.Line-1] = []byte(f.Text)
		}
	}
	return bytes.Join(lines, []byte("\n"))
}

// Fix is a replacement for one transcript line, proposed in update mode.
type Fix struct {
	Line int
	Text string
}
