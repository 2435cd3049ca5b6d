package conformance

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/tools/txtar"

	"popgate/mailstore"
)

// sessionInfo is what a transcript's header says about the session.
type sessionInfo struct {
	proto      string
	remote     string
	start      time.Time
	clientGone bool
}

// recLine is one line of the session: a client or server line with its
// line end, or an unterminated rest at the end of the stream.
type recLine struct {
	client bool
	data   []byte
}

// splitLines cuts the recorded events into lines, in the order in which
// they were completed.
func splitLines(events []recEvent) []recLine {
	var out []recLine
	var partial [2][]byte // [0] server, [1] client
	idx := func(client bool) int {
		if client {
			return 1
		}
		return 0
	}
	for _, ev := range events {
		i := idx(ev.client)
		buf := append(partial[i], ev.data...)
		for {
			j := bytes.IndexByte(buf, '\n')
			if j < 0 {
				break
			}
			out = append(out, recLine{client: ev.client, data: buf[: j+1 : j+1]})
			buf = buf[j+1:]
		}
		partial[i] = append([]byte(nil), buf...)
	}
	for i, rest := range partial {
		if len(rest) > 0 {
			out = append(out, recLine{client: i == 1, data: rest})
		}
	}
	return out
}

// buildTranscript turns a recorded session into a transcript file.
func buildTranscript(info sessionInfo, events []recEvent) []byte {
	lines := splitLines(events)
	if info.proto == "pop3" {
		b := newPOP3Builder(info)
		return b.build(lines)
	}
	return buildGeneric(info, lines)
}

// clientStep writes a client line as C: when it reads back identically,
// else as C= with the exact octets.
func clientStep(data []byte) string {
	text, ok := bytes.CutSuffix(data, []byte("\r\n"))
	if ok && len(text) > 0 && isPlainText(text) && !bytes.Contains(text, []byte("${")) &&
		text[len(text)-1] != ' ' && text[len(text)-1] != '\t' {
		return "C: " + string(text)
	}
	return "C= " + strconv.Quote(string(data))
}

// isPlainText reports whether a line can stand in a transcript as it is:
// valid UTF-8 without control characters.
func isPlainText(b []byte) bool {
	s := string(b)
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// serverStep writes a server line literally (S:, or S~ for octets an S:
// line cannot hold). Lines without CRLF cannot be expressed; they are
// written as narration.
func serverStep(data []byte) string {
	body, ok := bytes.CutSuffix(data, []byte("\r\n"))
	if !ok {
		return "# (the server sent " + strconv.Quote(string(data)) + ", which does not end in CRLF)"
	}
	return proposeLine(body)
}

// buildGeneric records POP1 and POP2 line by line: client lines with the
// password of HELO (POP2) or PASS (POP1) replaced, server lines literally.
func buildGeneric(info sessionInfo, lines []recLine) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Recorded by popgate --trace: a %s session from %s, %s.\n", strings.ToUpper(info.proto), info.remote, info.start.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "# %s sessions are recorded line by line: passwords read %q, message\n", strings.ToUpper(info.proto), RecordedPassword)
	b.WriteString("# data stands as S: lines, and the mailbox is not reproduced (add the\n# fixtures and a mailbox: line to replay it).\n\n")
	fmt.Fprintf(&b, "proto: %s\n", info.proto)
	var users []string
	seen := map[string]bool{}
	var steps []string
	for _, l := range lines {
		if !l.client {
			steps = append(steps, serverStep(l.data))
			continue
		}
		f := strings.Fields(string(l.data))
		switch {
		case len(f) >= 3 && strings.EqualFold(f[0], "HELO"):
			if !seen[f[1]] {
				seen[f[1]] = true
				users = append(users, f[1])
			}
			steps = append(steps, "C: "+f[0]+" "+f[1]+" "+RecordedPassword)
		case len(f) >= 2 && strings.EqualFold(f[0], "PASS"):
			steps = append(steps, "C: "+f[0]+" "+RecordedPassword)
		case len(f) == 2 && strings.EqualFold(f[0], "USER"):
			if !seen[f[1]] {
				seen[f[1]] = true
				users = append(users, f[1])
			}
			steps = append(steps, clientStep(l.data))
		default:
			steps = append(steps, clientStep(l.data))
		}
	}
	for _, u := range users {
		fmt.Fprintf(&b, "user: %s password=%s\n", u, RecordedPassword)
	}
	b.WriteString("\n")
	for _, s := range steps {
		b.WriteString(s + "\n")
	}
	if info.clientGone {
		b.WriteString("! hangup\n")
	}
	return []byte(b.String())
}

// pop3Cmd is a client command waiting for its status line.
type pop3Cmd struct {
	verb string
	args []string
	// secretStep is the index in steps of the line carrying a secret, -1
	// if none; failStep replaces it when the login failed, so that it
	// fails again on replay.
	secretStep int
	failStep   string
	// saslUser is the user named in an AUTH exchange.
	saslUser string
	// saslResponses counts the client's continuation lines.
	saslResponses int
	// challenge is the variable bound to the last CRAM-MD5 challenge.
	challenge string
}

// recMsg is what the session showed of one message.
type recMsg struct {
	size     int
	hasSize  bool
	full     []byte // RETR
	top      []byte // TOP
	topLines int
}

// pop3Builder reads a recorded POP3 session.
type pop3Builder struct {
	info       sessionInfo
	steps      []string
	notes      []string
	pending    []*pop3Cmd
	greeted    bool
	usesAPOP   bool
	saslWait   bool
	multi      *pop3Cmd // a multi-line reply is being read for it
	body       [][]byte // its lines, as on the wire
	users      []string
	userSeen   map[string]bool
	loginUser  string
	loggedIn   bool
	quitOK     bool
	stopped    bool // STLS: the rest is encrypted
	msgs       map[int]*recMsg
	maxMsg     int
	deleted    map[int]bool
	lastVerb   string
	lastAnswer bool
	challenges int
	// statCount and statSize are from a STAT answered while nothing was
	// marked deleted (statCount -1: none): they size the fillers of
	// messages no LIST showed.
	statCount, statSize int
}

func newPOP3Builder(info sessionInfo) *pop3Builder {
	return &pop3Builder{info: info, userSeen: map[string]bool{}, msgs: map[int]*recMsg{}, deleted: map[int]bool{}, statCount: -1}
}

func (b *pop3Builder) msg(n int) *recMsg {
	m := b.msgs[n]
	if m == nil {
		m = &recMsg{}
		b.msgs[n] = m
	}
	if n > b.maxMsg {
		b.maxMsg = n
	}
	return m
}

func (b *pop3Builder) addUser(name string) {
	if name == "" || b.userSeen[name] {
		return
	}
	b.userSeen[name] = true
	b.users = append(b.users, name)
}

func (b *pop3Builder) build(lines []recLine) []byte {
	for _, l := range lines {
		if l.client && bytes.HasPrefix(bytes.ToUpper(l.data), []byte("APOP ")) {
			b.usesAPOP = true
		}
	}
	for _, l := range lines {
		if b.stopped {
			break
		}
		if l.client {
			b.clientLine(l.data)
		} else {
			b.serverLine(l.data)
		}
	}
	b.finish()
	return b.format()
}

func (b *pop3Builder) clientLine(data []byte) {
	if b.saslWait && len(b.pending) > 0 {
		b.saslWait = false
		b.saslResponse(b.pending[0], data)
		return
	}
	text := strings.TrimRight(string(data), "\r\n")
	f := strings.Fields(text)
	cmd := &pop3Cmd{secretStep: -1}
	if len(f) > 0 {
		cmd.verb = strings.ToUpper(f[0])
		cmd.args = f[1:]
	}
	b.pending = append(b.pending, cmd)
	b.lastVerb, b.lastAnswer = cmd.verb, false
	switch {
	case cmd.verb == "PASS":
		cmd.secretStep = len(b.steps)
		cmd.failStep = "C: " + f[0] + " " + wrongPassword
		b.steps = append(b.steps, "C: "+f[0]+" "+RecordedPassword)
	case cmd.verb == "APOP" && len(cmd.args) >= 1:
		name := cmd.args[0]
		b.addUser(name)
		cmd.saslUser = name
		cmd.secretStep = len(b.steps)
		cmd.failStep = "C: " + f[0] + " " + name + " " + strings.Repeat("0", 32)
		b.steps = append(b.steps, "C: "+f[0]+" "+name+" ${apop "+name+" ts}")
	case cmd.verb == "USER" && len(cmd.args) == 1:
		b.addUser(cmd.args[0])
		b.steps = append(b.steps, clientStep(data))
	case cmd.verb == "AUTH" && len(cmd.args) >= 2:
		// The initial response (RFC 5034) is the first SASL response.
		cmd.secretStep = len(b.steps)
		b.steps = append(b.steps, "")
		resp, fail := b.saslRedact(cmd, cmd.args[1])
		b.steps[cmd.secretStep] = "C: " + f[0] + " " + cmd.args[0] + " " + resp
		cmd.failStep = "C: " + f[0] + " " + cmd.args[0] + " " + fail
	default:
		b.steps = append(b.steps, clientStep(data))
	}
}

// saslResponse handles a client line sent in answer to a "+ " challenge.
func (b *pop3Builder) saslResponse(cmd *pop3Cmd, data []byte) {
	text := strings.TrimRight(string(data), "\r\n")
	resp, fail := b.saslRedact(cmd, text)
	cmd.secretStep = len(b.steps)
	cmd.failStep = "C: " + fail
	b.steps = append(b.steps, "C: "+resp)
}

// saslRedact replaces the secret of one SASL response: PLAIN and LOGIN
// are re-encoded with RecordedPassword (so that they replay), other
// mechanisms' responses are replaced whole. It returns the response to
// write and the one to write if the exchange failed.
func (b *pop3Builder) saslRedact(cmd *pop3Cmd, resp string) (ok, fail string) {
	cmd.saslResponses++
	if resp == "*" || resp == "=" {
		return resp, resp
	}
	enc := base64.StdEncoding.EncodeToString
	mech := ""
	if len(cmd.args) > 0 {
		mech = strings.ToUpper(cmd.args[0])
	}
	switch mech {
	case "PLAIN":
		raw, err := base64.StdEncoding.DecodeString(resp)
		parts := strings.Split(string(raw), "\x00")
		if err == nil && len(parts) == 3 {
			b.addUser(parts[1])
			cmd.saslUser = parts[1]
			return enc([]byte(parts[0] + "\x00" + parts[1] + "\x00" + RecordedPassword)),
				enc([]byte(parts[0] + "\x00" + parts[1] + "\x00" + wrongPassword))
		}
	case "CRAM-MD5":
		raw, err := base64.StdEncoding.DecodeString(resp)
		name, _, ok := strings.Cut(string(raw), " ")
		if err == nil && ok && cmd.challenge != "" {
			b.addUser(name)
			cmd.saslUser = name
			return "${cram-md5 " + name + " " + cmd.challenge + "}",
				enc([]byte(name + " " + strings.Repeat("0", 32)))
		}
	case "LOGIN":
		if cmd.saslResponses == 1 {
			if raw, err := base64.StdEncoding.DecodeString(resp); err == nil {
				b.addUser(string(raw))
				cmd.saslUser = string(raw)
				return resp, resp
			}
		} else {
			return enc([]byte(RecordedPassword)), enc([]byte(wrongPassword))
		}
	}
	b.note(fmt.Sprintf("The %s responses of AUTH were replaced; that exchange does not replay.", mech))
	return enc([]byte(RecordedPassword)), enc([]byte(wrongPassword))
}

func (b *pop3Builder) note(s string) {
	for _, n := range b.notes {
		if n == s {
			return
		}
	}
	b.notes = append(b.notes, s)
}

var apopStamp = regexp.MustCompile(`<[^<>]*>`)

func (b *pop3Builder) serverLine(data []byte) {
	if b.multi != nil {
		if string(data) == ".\r\n" {
			b.endMulti()
			return
		}
		b.body = append(b.body, data)
		return
	}
	if !b.greeted {
		b.greeted = true
		b.steps = append(b.steps, b.greeting(data))
		return
	}
	line := string(data)
	if len(b.pending) > 0 && b.pending[0].verb == "AUTH" && strings.HasPrefix(line, "+") && !strings.HasPrefix(line, "+OK") {
		b.saslWait = true
		cmd := b.pending[0]
		if len(cmd.args) > 0 && strings.EqualFold(cmd.args[0], "CRAM-MD5") && strings.HasPrefix(line, "+ ") {
			b.challenges++
			cmd.challenge = fmt.Sprintf("challenge%d", b.challenges)
			b.steps = append(b.steps, "S: + ${"+cmd.challenge+"}")
			return
		}
		b.steps = append(b.steps, "S: +${...}")
		return
	}
	ok := strings.HasPrefix(line, "+OK")
	if !ok && !strings.HasPrefix(line, "-ERR") || !strings.HasSuffix(line, "\r\n") || len(b.pending) == 0 {
		b.steps = append(b.steps, serverStep(data))
		return
	}
	cmd := b.pending[0]
	b.pending = b.pending[1:]
	if len(b.pending) == 0 {
		b.lastAnswer = true
	}
	b.status(cmd, ok, strings.TrimSuffix(line, "\r\n"))
}

// greeting writes the first server line: +OK and free text, binding the
// APOP timestamp when the session uses APOP.
func (b *pop3Builder) greeting(data []byte) string {
	line := strings.TrimSuffix(string(data), "\r\n")
	switch {
	case !strings.HasPrefix(line, "+OK"):
		return serverStep(data)
	case b.usesAPOP && apopStamp.MatchString(line):
		return "S: +OK ${...}${ts~<[^<>]*>}${...}"
	case line == "+OK":
		return "S: +OK"
	}
	return "S: +OK ${...}"
}

// statusText writes a status line: the indicator, a response code if any
// (RFC 2449 §8), and free text.
func statusText(line string) string {
	ind, rest, hasRest := strings.Cut(line, " ")
	if !hasRest {
		return "S: " + ind + "${...}"
	}
	if strings.HasPrefix(rest, "[") {
		if i := strings.IndexByte(rest, ']'); i > 0 && isPlainText([]byte(rest[:i+1])) && !strings.Contains(rest[:i+1], "${") {
			return "S: " + ind + " " + rest[:i+1] + "${...}"
		}
	}
	return "S: " + ind + " ${...}"
}

// multiLine reports whether a +OK to cmd starts a multi-line reply.
func multiLine(cmd *pop3Cmd) bool {
	switch cmd.verb {
	case "CAPA", "RETR", "TOP":
		return true
	case "LIST", "UIDL", "AUTH":
		return len(cmd.args) == 0
	}
	return false
}

// msgArg returns the message number argument of cmd, or 0.
func msgArg(cmd *pop3Cmd) int {
	if len(cmd.args) == 0 {
		return 0
	}
	n, err := strconv.Atoi(cmd.args[0])
	if err != nil || n < 1 || n > 1<<20 {
		return 0
	}
	return n
}

func (b *pop3Builder) status(cmd *pop3Cmd, ok bool, line string) {
	if cmd.secretStep >= 0 && !ok && !strings.Contains(line, "[IN-USE]") && !strings.Contains(line, "[SYS/") {
		b.steps[cmd.secretStep] = cmd.failStep
	}
	step := statusText(line)
	f := strings.Fields(line)
	n := msgArg(cmd)
	switch {
	case !ok:
	case multiLine(cmd):
		b.multi, b.body = cmd, nil
	case cmd.verb == "STAT" && len(f) >= 3:
		if count, err := strconv.Atoi(f[1]); err == nil && count >= 0 && count <= 1<<20 {
			if count > b.maxMsg {
				b.maxMsg = count
			}
			if size, err := strconv.Atoi(f[2]); err == nil && len(b.deleted) == 0 && b.statCount < 0 {
				b.statCount, b.statSize = count, size
			}
			step = "S: +OK " + f[1] + " " + f[2]
			if len(f) > 3 {
				step += "${...}"
			}
		}
	case cmd.verb == "LIST" && n > 0 && len(f) >= 3:
		if size, err := strconv.Atoi(f[2]); err == nil {
			m := b.msg(n)
			m.size, m.hasSize = size, true
			step = fmt.Sprintf("S: +OK %s ${size msg%d}", f[1], n)
		}
	case cmd.verb == "UIDL" && n > 0 && len(f) >= 3:
		b.msg(n)
		step = fmt.Sprintf("S: +OK %s ${uid%d}", f[1], n)
	case cmd.verb == "DELE" && n > 0:
		b.msg(n)
		b.deleted[n] = true
	case cmd.verb == "RSET":
		b.deleted = map[int]bool{}
	case cmd.verb == "PASS" || cmd.verb == "APOP" || cmd.verb == "AUTH":
		b.loggedIn = true
		switch {
		case cmd.verb != "PASS":
			b.loginUser = cmd.saslUser
		case len(b.users) > 0:
			b.loginUser = b.lastUser()
		}
	case cmd.verb == "QUIT":
		b.quitOK = true
	case cmd.verb == "STLS":
		b.steps = append(b.steps, step)
		b.note("The session switched to TLS (STLS): what followed was encrypted and is not recorded.")
		b.stopped = true
		return
	}
	b.steps = append(b.steps, step)
}

// lastUser is the name of the most recent USER command.
func (b *pop3Builder) lastUser() string {
	for i := len(b.steps) - 1; i >= 0; i-- {
		f := strings.Fields(strings.TrimPrefix(b.steps[i], "C: "))
		if strings.HasPrefix(b.steps[i], "C: ") && len(f) == 2 && strings.EqualFold(f[0], "USER") {
			return f[1]
		}
	}
	return b.users[len(b.users)-1]
}

// endMulti writes a complete multi-line reply.
func (b *pop3Builder) endMulti() {
	cmd, lines := b.multi, b.body
	b.multi, b.body = nil, nil
	n := msgArg(cmd)
	switch {
	case cmd.verb == "RETR" && n > 0:
		b.msg(n).full = unstuff(lines)
		b.steps = append(b.steps, fmt.Sprintf("S< msg%d dot", n))
		return
	case cmd.verb == "TOP" && n > 0 && len(cmd.args) >= 2:
		k, err := strconv.Atoi(cmd.args[1])
		if err == nil && k >= 0 {
			m := b.msg(n)
			m.top, m.topLines = unstuff(lines), k
			b.steps = append(b.steps, fmt.Sprintf("S< msg%d top %d", n, k))
			return
		}
	case cmd.verb == "LIST" || cmd.verb == "UIDL":
		for _, l := range lines {
			f := strings.Fields(string(l))
			num, err := strconv.Atoi(firstOr(f))
			if err != nil || len(f) != 2 || num < 1 || num > 1<<20 {
				b.steps = append(b.steps, serverStep(l))
				continue
			}
			m := b.msg(num)
			if cmd.verb == "UIDL" {
				b.steps = append(b.steps, fmt.Sprintf("S: %s ${uid%d}", f[0], num))
				continue
			}
			if size, err := strconv.Atoi(f[1]); err == nil {
				m.size, m.hasSize = size, true
				b.steps = append(b.steps, fmt.Sprintf("S: %s ${size msg%d}", f[0], num))
				continue
			}
			b.steps = append(b.steps, serverStep(l))
		}
		b.steps = append(b.steps, "S: .")
		return
	case cmd.verb == "CAPA":
		for _, l := range lines {
			if bytes.HasPrefix(bytes.ToUpper(l), []byte("IMPLEMENTATION ")) {
				b.steps = append(b.steps, "S: "+string(l[:len("IMPLEMENTATION")])+" ${...}")
				continue
			}
			b.steps = append(b.steps, serverStep(l))
		}
		b.steps = append(b.steps, "S: .")
		return
	}
	for _, l := range lines {
		b.steps = append(b.steps, serverStep(l))
	}
	b.steps = append(b.steps, "S: .")
}

func firstOr(f []string) string {
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// unstuff joins the wire lines of a multi-line reply, removing the dot
// that byte-stuffing added (RFC 1939 §3).
func unstuff(lines [][]byte) []byte {
	out := []byte{} // not nil: an empty message was still retrieved
	for _, l := range lines {
		if bytes.HasPrefix(l, []byte(".")) {
			l = l[1:]
		}
		out = append(out, l...)
	}
	return out
}

// finish writes how the session ended and what the mailbox holds then.
func (b *pop3Builder) finish() {
	if b.stopped {
		return
	}
	if b.multi != nil {
		b.note("The connection ended in the middle of a multi-line reply; it is left out.")
		b.multi = nil
	}
	switch {
	case b.lastVerb == "QUIT" && b.lastAnswer:
		b.steps = append(b.steps, "! expect-close")
	case b.info.clientGone:
		b.steps = append(b.steps, "! hangup")
	default:
		b.steps = append(b.steps, "! expect-close")
	}
	if b.loggedIn && b.loginUser != "" {
		var left []string
		for n := 1; n <= b.maxMsg; n++ {
			if !(b.quitOK && b.deleted[n]) {
				left = append(left, fmt.Sprintf("msg%d", n))
			}
		}
		b.steps = append(b.steps, fmt.Sprintf("! expect-mailbox %s INBOX = %s", b.loginUser, strings.Join(left, " ")))
	}
}

// fixture returns the content of message n as the session showed it: the
// retrieved message, or what TOP showed padded to the listed size, or a
// filler of the listed size.
func (b *pop3Builder) fixture(n int) (content []byte, filler bool) {
	m := b.msgs[n]
	if m == nil {
		m = &recMsg{}
	}
	if m.full != nil {
		return m.full, false
	}
	if m.top != nil {
		if !m.hasSize || len(m.top) >= m.size || bodyLines(m.top) < m.topLines {
			return m.top, false
		}
		return append(append([]byte(nil), m.top...), fillLines(m.size-len(m.top))...), true
	}
	size := 60
	if m.hasSize {
		size = m.size
	} else if s, ok := b.unlistedSize(n); ok {
		size = s
	}
	return fillerMessage(n, size), true
}

// unlistedSize shares what a STAT total leaves over the messages whose
// size the session never showed, so that STAT replays exactly.
func (b *pop3Builder) unlistedSize(n int) (int, bool) {
	if b.statCount != b.maxMsg {
		return 0, false
	}
	left, unknown := b.statSize, 0
	var last int
	for i := 1; i <= b.maxMsg; i++ {
		m := b.msgs[i]
		switch {
		case m != nil && m.hasSize:
			left -= m.size
		case m != nil && m.full != nil:
			left -= len(m.full)
		default:
			unknown++
			last = i
		}
	}
	if unknown == 0 || left < 0 {
		return 0, false
	}
	share := left / unknown
	if n == last {
		share += left % unknown
	}
	return share, true
}

// bodyLines counts the lines after the header of a CRLF message.
func bodyLines(msg []byte) int {
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	if bytes.HasPrefix(msg, []byte("\r\n")) {
		i = -2
	} else if i < 0 {
		return 0
	}
	return bytes.Count(msg[i+4:], []byte("\r\n"))
}

// fillerMessage is a stand-in for a message the session never retrieved:
// exactly size octets in CRLF form.
func fillerMessage(n, size int) []byte {
	head := fmt.Sprintf("X-Recorded: message %d was not retrieved\r\n\r\n", n)
	if size < len(head)+2 && size != len(head) {
		return fillLines(size)
	}
	return append([]byte(head), fillLines(size-len(head))...)
}

// fillLines returns CRLF lines of x totalling size octets (size 1 cannot
// be made of CRLF lines; it gives one line of 2).
func fillLines(size int) []byte {
	var out []byte
	for size > 0 {
		l := min(size, 78)
		if size-l == 1 {
			l--
		}
		l = max(l, 2)
		out = append(out, bytes.Repeat([]byte("x"), l-2)...)
		out = append(out, "\r\n"...)
		size -= l
	}
	return out
}

// format assembles the transcript file.
func (b *pop3Builder) format() []byte {
	var h strings.Builder
	fmt.Fprintf(&h, "# Recorded by popgate --trace: a POP3 session from %s, %s.\n", b.info.remote, b.info.start.UTC().Format(time.RFC3339))
	fmt.Fprintf(&h, "# Secrets are replaced: the password reads %q (the user: line sets it,\n# so the file replays), APOP digests are computed again from the greeting.\n", RecordedPassword)
	var fillers []string
	var files []txtar.File
	var mailbox []string
	for n := 1; n <= b.maxMsg; n++ {
		content, filler := b.fixture(n)
		if filler {
			fillers = append(fillers, strconv.Itoa(n))
		}
		files = append(files, fixtureFile(fmt.Sprintf("msg%d", n), content))
		mailbox = append(mailbox, fmt.Sprintf("msg%d", n))
	}
	if len(fillers) > 0 {
		fmt.Fprintf(&h, "# Not retrieved in full, so made up to the listed size: message %s.\n", strings.Join(fillers, ", "))
	}
	for _, n := range b.notes {
		fmt.Fprintf(&h, "# %s\n", n)
	}
	h.WriteString("\nproto: pop3\n")
	for _, u := range b.users {
		fmt.Fprintf(&h, "user: %s password=%s\n", u, RecordedPassword)
	}
	if b.usesAPOP {
		h.WriteString("requires: apop\n")
	}
	if b.loginUser != "" {
		fmt.Fprintf(&h, "mailbox: %s INBOX = %s\n", b.loginUser, strings.Join(mailbox, " "))
	}
	h.WriteString("\n")
	for _, s := range b.steps {
		h.WriteString(s + "\n")
	}
	if b.loginUser == "" {
		files = nil
	}
	return txtar.Format(&txtar.Archive{Comment: []byte(h.String()), Files: files})
}

// fixtureFile writes a CRLF message as a .eml fixture when that reads back
// to the same octets, else as a .bytes fixture (one Go-quoted line each).
func fixtureFile(name string, crlf []byte) txtar.File {
	lf := bytes.ReplaceAll(crlf, []byte("\r\n"), []byte("\n"))
	safe := (len(crlf) == 0 || bytes.HasSuffix(crlf, []byte("\r\n"))) &&
		!bytes.ContainsAny(lf, "\r\x00") && bytes.Equal(mailstore.ToCRLF(lf), crlf)
	if safe {
		for _, l := range bytes.Split(lf, []byte("\n")) {
			if bytes.HasPrefix(l, []byte("-- ")) && bytes.HasSuffix(l, []byte(" --")) {
				safe = false
				break
			}
		}
	}
	if safe && len(crlf) > 0 {
		return txtar.File{Name: name + ".eml", Data: lf}
	}
	var out bytes.Buffer
	if len(crlf) == 0 {
		out.WriteString("\"\"\n")
	}
	for _, l := range splitCRLF(crlf) {
		out.WriteString(strconv.Quote(string(l)))
		out.WriteByte('\n')
	}
	return txtar.File{Name: name + ".bytes", Data: out.Bytes()}
}
