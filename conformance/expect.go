package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"popgate/mailstore"
)

// want formats an expected line for a failure message.
func wantLine(text string) string {
	return strconv.Quote(text+"\r\n") + " (${...} are patterns)"
}

func (ru *run) expectLine(c *conn, st *Step, text string) error {
	line, err := ru.readLine(c, st)
	want := strconv.Quote(text + "\r\n")
	if strings.Contains(text, "${") {
		want = wantLine(text)
	}
	if err != nil {
		return ru.fail(st, want, line, readErr(err))
	}
	body, ok := bytes.CutSuffix(line, []byte("\r\n"))
	if !ok {
		return ru.fail(st, want, line, errors.New("the line does not end in CRLF"))
	}
	m, err := compileLine(text, ru.env)
	if err != nil {
		return ru.fail(st, want, line, err)
	}
	binds, ok := m.match(body)
	if !ok {
		if ru.r.Update && st.Kind == StepLine {
			ru.result.Fixes = append(ru.result.Fixes, Fix{Line: st.Line, Text: proposeLine(body)})
			return nil
		}
		return ru.fail(st, want, line, nil)
	}
	for k, v := range binds {
		ru.env.vars[k] = v
	}
	return nil
}

// proposeLine writes what arrived as an S: line, or as a quoted S~ line if
// it holds octets an S: line cannot say literally.
func proposeLine(body []byte) string {
	s := string(body)
	printable := utf8.ValidString(s) && !strings.Contains(s, "${")
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			printable = false
		}
	}
	if printable {
		return strings.TrimRight("S: "+s, " ")
	}
	var b strings.Builder
	for _, c := range body {
		if c < 0x20 || c >= 0x7f {
			fmt.Fprintf(&b, `\x%02x`, c)
		} else {
			b.WriteString(regexp.QuoteMeta(string(rune(c))))
		}
	}
	return "S~ " + b.String()
}

func (ru *run) expectRegexp(c *conn, st *Step) error {
	re, err := compileRegexp(st.Arg)
	if err != nil {
		return ru.fail(st, "", nil, err)
	}
	want := "a line matching " + strconv.Quote(st.Arg) + " and CRLF"
	line, err := ru.readLine(c, st)
	if err != nil {
		return ru.fail(st, want, line, readErr(err))
	}
	body, ok := bytes.CutSuffix(line, []byte("\r\n"))
	if !ok {
		return ru.fail(st, want, line, errors.New("the line does not end in CRLF"))
	}
	sub := re.FindSubmatch(body)
	if sub == nil {
		if ru.r.Update {
			ru.result.Fixes = append(ru.result.Fixes, Fix{Line: st.Line, Text: proposeLine(body)})
			return nil
		}
		return ru.fail(st, want, line, nil)
	}
	for i, name := range re.SubexpNames() {
		if name != "" {
			ru.env.vars[name] = string(sub[i])
		}
	}
	return nil
}

// fixtureBytes is what S< expects for a fixture: its CRLF form (raw), that
// form dot-stuffed and terminated (dot, as RETR sends it), or the header,
// the blank line and n body lines, dot-stuffed and terminated (top n).
func fixtureBytes(fx *Fixture, mode string, n int) []byte {
	msg := fx.CRLF
	switch mode {
	case "raw":
		return msg
	case "top":
		msg = topLines(msg, n)
	}
	var b bytes.Buffer
	for _, line := range splitCRLF(msg) {
		if bytes.HasPrefix(line, []byte(".")) {
			b.WriteByte('.')
		}
		b.Write(line)
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// splitCRLF cuts a CRLF message into lines, each keeping its CRLF.
func splitCRLF(msg []byte) [][]byte {
	var out [][]byte
	for len(msg) > 0 {
		i := bytes.Index(msg, []byte("\r\n"))
		if i < 0 {
			out = append(out, msg)
			break
		}
		out = append(out, msg[:i+2])
		msg = msg[i+2:]
	}
	return out
}

// topLines returns the header, the empty line and the first n body lines
// of msg (RFC 1939 §7 TOP); the whole message if the body is shorter.
func topLines(msg []byte, n int) []byte {
	lines := splitCRLF(msg)
	end := len(lines)
	for i, l := range lines {
		if string(l) == "\r\n" {
			if i+1+n < end {
				end = i + 1 + n
			}
			break
		}
	}
	return bytes.Join(lines[:end], nil)
}

func (ru *run) expectFixture(c *conn, st *Step) error {
	if st.Mode == "mbox" {
		return ru.expectMbox(c, st)
	}
	want := fixtureBytes(ru.s.Fixtures[st.Fixture], st.Mode, st.Lines)
	if err := c.nc.SetReadDeadline(time.Now().Add(ru.r.timeout())); err != nil {
		return ru.fail(st, "", nil, err)
	}
	got := make([]byte, len(want))
	n, err := io.ReadFull(c.r, got)
	got = got[:n]
	if i := firstDiff(want, got); i >= 0 {
		return ru.fixtureFailure(st, want, got, i, err)
	}
	if err != nil {
		return ru.fail(st, quote(want), got, readErr(err))
	}
	return nil
}

// expectMbox reads POP1 mail data: for each fixture a separator line
// starting "From " (the rest is the server's choice), the fixture's CRLF
// form with every line matching ">*From " quoted by one more ">"
// (mboxrd), and an empty line.
func (ru *run) expectMbox(c *conn, st *Step) error {
	for _, name := range st.Fixtures {
		line, err := ru.readLine(c, st)
		if err != nil || !bytes.HasPrefix(line, []byte("From ")) || !bytes.HasSuffix(line, []byte("\r\n")) {
			return ru.fail(st, `a "From " separator line before `+name, line, readErr(err))
		}
		var want []byte
		for _, l := range splitCRLF(ru.s.Fixtures[name].CRLF) {
			if bytes.HasPrefix(bytes.TrimLeft(l, ">"), []byte("From ")) {
				want = append(want, '>')
			}
			want = append(want, l...)
		}
		want = append(want, "\r\n"...)
		if err := c.nc.SetReadDeadline(time.Now().Add(ru.r.timeout())); err != nil {
			return ru.fail(st, "", nil, err)
		}
		got := make([]byte, len(want))
		n, err := io.ReadFull(c.r, got)
		got = got[:n]
		if i := firstDiff(want, got); i >= 0 {
			return ru.fixtureFailure(st, want, got, i, err)
		}
		if err != nil {
			return ru.fail(st, quote(want), got, readErr(err))
		}
	}
	return nil
}

func firstDiff(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// fixtureFailure shows the first differing octet in context: the line of
// the expected bytes around it and what arrived there.
func (ru *run) fixtureFailure(st *Step, want, got []byte, at int, err error) error {
	from := bytes.LastIndex(want[:min(at, len(want))], []byte("\n")) + 1
	wantEnd := min(len(want), at+80)
	gotEnd := min(len(got), at+80)
	detail := fmt.Errorf("octet %d of %d differs (showing from octet %d)", at, len(want), from)
	if err != nil {
		detail = fmt.Errorf("%w; then: %w", detail, readErr(err))
	}
	var gotPart []byte
	if from <= len(got) {
		gotPart = got[from:gotEnd]
	}
	if gotPart == nil {
		gotPart = []byte{}
	}
	return ru.fail(st, quote(want[from:wantEnd]), gotPart, detail)
}

func (ru *run) expectClose(c *conn, st *Step) error {
	if err := c.nc.SetReadDeadline(time.Now().Add(ru.r.timeout())); err != nil {
		return ru.fail(st, "", nil, err)
	}
	extra, err := io.ReadAll(io.LimitReader(c.r, maxLine))
	if len(extra) > 0 {
		return ru.fail(st, "the server to close the connection", extra, errors.New("more octets arrived"))
	}
	if err != nil && !isReset(err) {
		return ru.fail(st, "the server to close the connection", nil, readErr(err))
	}
	_ = c.nc.Close()
	ru.conns[ru.cur] = nil
	return nil
}

// isReset reports a connection reset: a close with unread input, which
// counts as a close.
func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

func readErr(err error) error {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("nothing more arrived before the step deadline: %w", os.ErrDeadlineExceeded)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("the server closed the connection: %w", err)
	}
	return err
}

func (ru *run) expectMailbox(ctx context.Context, st *Step) error {
	mb := st.Mailbox
	u := ru.users[mb.User]
	want := make([][]byte, len(mb.Fixtures))
	for i, f := range mb.Fixtures {
		want[i] = ru.s.Fixtures[f].CRLF
	}
	deadline := time.Now().Add(ru.r.timeout())
	for {
		mctx, cancel := context.WithDeadline(ctx, deadline)
		got, err := ru.t.Mailbox(mctx, u.Name, u.Password, mb.Folder)
		cancel()
		if errors.Is(err, ErrSkip) {
			return fmt.Errorf("line %d: %w", st.Line, err)
		}
		// The server may still be ending the session that held the lock.
		if errors.Is(err, mailstore.ErrLocked) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			return ru.fail(st, "", nil, err)
		}
		return ru.compareMailbox(st, want, got)
	}
}

func (ru *run) compareMailbox(st *Step, want, got [][]byte) error {
	names := func(msgs [][]byte) string {
		var out []string
		for _, m := range msgs {
			name := "?"
			for _, fn := range ru.s.FixtureOrder {
				if bytes.Equal(ru.s.Fixtures[fn].CRLF, m) {
					name = fn
					break
				}
			}
			out = append(out, name)
		}
		return "[" + strings.Join(out, " ") + "]"
	}
	if len(want) != len(got) {
		return ru.fail(st, "", nil, fmt.Errorf("the folder holds %d messages %s, want %d %s", len(got), names(got), len(want), names(want)))
	}
	for i := range want {
		if !bytes.Equal(want[i], got[i]) {
			return ru.fail(st, quote(want[i]), got[i], fmt.Errorf("message %d differs: the folder holds %s", i+1, names(got)))
		}
	}
	return nil
}
