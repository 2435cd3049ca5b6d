package conformance

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// DefaultTimeout bounds every step unless Runner.Timeout says otherwise.
const DefaultTimeout = 5 * time.Second

// maxLine bounds one server line as the runner reads it.
const maxLine = 64 * 1024

// Runner replays scripts. The zero value is ready to use.
type Runner struct {
	// Timeout bounds each step: one read, one write, one mailbox check.
	// Zero means DefaultTimeout.
	Timeout time.Duration
	// Update makes S: and S~ mismatches non-fatal: the run goes on and the
	// Result proposes the line that would have matched (see [Rewrite]).
	Update bool
	// IgnoreBanner skips the check of a banner: header (the greeting is
	// still read). Remote runs set it: a pinned greeting is one server's.
	IgnoreBanner bool
}

// Result is what a run found besides its error.
type Result struct {
	// Fixes are the S: lines to rewrite, in update mode.
	Fixes []Fix
}

// Run replays s against t with the default Runner.
func Run(ctx context.Context, s *Script, t Target) error {
	var r Runner
	_, err := r.Run(ctx, s, t)
	return err
}

// Failure is a step that did not go as written. Run returns it (wrapped
// errors from targets aside).
type Failure struct {
	File      string
	Line      int
	Conn      int
	Step      string // the line as written
	Narration string // the nearest # block before it
	Want      string // what was expected, if there is a simple form
	Got       []byte // the octets that arrived
	Err       error  // the cause, if any (a timeout, a closed connection)
}

func (f *Failure) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d: %s", f.File, f.Line, f.Step)
	if f.Conn > 1 {
		fmt.Fprintf(&b, " (connection %d)", f.Conn)
	}
	if f.Narration != "" {
		fmt.Fprintf(&b, "\n\tnarration: %s", f.Narration)
	}
	if f.Want != "" {
		fmt.Fprintf(&b, "\n\twant: %s", f.Want)
	}
	if f.Got != nil || f.Want != "" {
		fmt.Fprintf(&b, "\n\tgot:  %s", quote(f.Got))
	}
	if f.Err != nil {
		fmt.Fprintf(&b, "\n\terror: %v", f.Err)
	}
	return b.String()
}

func (f *Failure) Unwrap() error { return f.Err }

// quote shows octets as a Go string, cut at 300 octets.
func quote(b []byte) string {
	if b == nil {
		return "(nothing)"
	}
	const max = 300
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + fmt.Sprintf(" ... (%d octets in all)", len(b))
	}
	return strconv.Quote(string(b))
}

type conn struct {
	nc net.Conn
	r  *bufio.Reader
}

type run struct {
	r      *Runner
	s      *Script
	t      Target
	env    *env
	users  map[string]User // script name -> target account
	conns  map[int]*conn
	cur    int
	result *Result
}

// Run replays s against t: it checks requires:, seeds the target, then
// walks the steps. It returns nil, an error wrapping ErrSkip, a *Failure, or
// another error. Every connection is closed before it returns.
func (r *Runner) Run(ctx context.Context, s *Script, t Target) (*Result, error) {
	ru := &run{r: r, s: s, t: t, conns: map[int]*conn{}, cur: 1, result: &Result{}, users: map[string]User{}}
	defer ru.closeAll()
	if sup, ok := t.(Supporter); ok {
		for _, f := range s.Requires {
			if ok, why := sup.Supports(ctx, f); !ok {
				return ru.result, fmt.Errorf("requires %s: %s: %w", f, why, ErrSkip)
			}
		}
	}
	for _, u := range s.Users {
		if m, ok := t.(CredentialMapper); ok {
			ru.users[u.Name] = m.MapUser(u)
		} else {
			ru.users[u.Name] = u
		}
	}
	ru.env = &env{vars: map[string]string{}, script: s, secret: func(name string) (string, bool) {
		u, ok := ru.users[name]
		return u.Secret(), ok
	}, account: func(name string) (User, bool) {
		u, ok := ru.users[name]
		return u, ok
	}}
	sctx, cancel := context.WithTimeout(ctx, r.timeout())
	err := t.Seed(sctx, s)
	cancel()
	if errors.Is(err, ErrSkip) {
		return ru.result, err
	}
	if err != nil {
		return ru.result, fmt.Errorf("%s: seeding: %w", s.Name, err)
	}
	for i := range s.Steps {
		if err := ctx.Err(); err != nil {
			return ru.result, fmt.Errorf("%s: %w", s.Name, err)
		}
		if err := ru.step(ctx, &s.Steps[i]); err != nil {
			return ru.result, err
		}
	}
	return ru.result, nil
}

func (r *Runner) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return DefaultTimeout
}

func (ru *run) fail(st *Step, want string, got []byte, err error) *Failure {
	return &Failure{File: ru.s.Name, Line: st.Line, Conn: ru.cur, Step: st.Text, Narration: st.Narration, Want: want, Got: got, Err: err}
}

func (ru *run) closeAll() {
	for _, c := range ru.conns {
		if c != nil {
			_ = c.nc.Close()
		}
	}
}

// conn returns the current connection, dialling it (and reading a banner:
// greeting) on first use.
func (ru *run) conn(ctx context.Context, st *Step) (*conn, error) {
	if c, ok := ru.conns[ru.cur]; ok {
		if c == nil {
			return nil, ru.fail(st, "", nil, fmt.Errorf("connection %d was hung up", ru.cur))
		}
		return c, nil
	}
	dctx, cancel := context.WithTimeout(ctx, ru.r.timeout())
	nc, err := ru.t.Dial(dctx)
	cancel()
	if err != nil {
		return nil, ru.fail(st, "", nil, err)
	}
	c := &conn{nc: nc, r: bufio.NewReaderSize(nc, 4096)}
	ru.conns[ru.cur] = c
	if ru.s.Banner != "" {
		bst := &Step{Line: ru.s.BannerLine, Text: "banner: " + ru.s.Banner}
		if ru.r.IgnoreBanner {
			if _, err := ru.readLine(c, bst); err != nil {
				return nil, err
			}
		} else if err := ru.expectLine(c, bst, ru.s.Banner); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (ru *run) step(ctx context.Context, st *Step) error {
	switch st.Kind {
	case StepConn:
		ru.cur = st.Conn
		return nil
	case StepSleep:
		select {
		case <-time.After(st.Sleep):
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%s:%d: %w", ru.s.Name, st.Line, ctx.Err())
		}
	case StepExpectMail:
		return ru.expectMailbox(ctx, st)
	}
	c, err := ru.conn(ctx, st)
	if err != nil {
		return err
	}
	switch st.Kind {
	case StepSend:
		text, err := ru.env.expand(ru.mapCredentials(st.Arg))
		if err != nil {
			return ru.fail(st, "", nil, err)
		}
		return ru.send(c, st, []byte(text+"\r\n"))
	case StepSendBytes:
		return ru.send(c, st, []byte(st.Arg))
	case StepLine:
		return ru.expectLine(c, st, st.Arg)
	case StepRegexp:
		return ru.expectRegexp(c, st)
	case StepFixture:
		return ru.expectFixture(c, st)
	case StepHangup:
		_ = c.nc.Close()
		ru.conns[ru.cur] = nil
		return nil
	case StepExpectClose:
		return ru.expectClose(c, st)
	case StepStartTLS:
		return ru.startTLS(c, st)
	}
	return ru.fail(st, "", nil, fmt.Errorf("unknown step kind %d", st.Kind))
}

// mapCredentials replaces, in a C: line, words equal to a script user's
// name or password with the target's account (a no-op unless the target
// maps credentials). The first word, the command, and placeholders are
// kept.
func (ru *run) mapCredentials(text string) string {
	if _, ok := ru.t.(CredentialMapper); !ok {
		return text
	}
	var b strings.Builder
	first := true
	for text != "" {
		if strings.HasPrefix(text, "${") {
			body, rest, err := cutPlaceholder(text[2:])
			if err != nil {
				b.WriteString(text)
				break
			}
			b.WriteString("${" + body + "}")
			text = rest
			first = false
			continue
		}
		if text[0] == ' ' {
			b.WriteByte(' ')
			text = text[1:]
			continue
		}
		end := len(text)
		if i := strings.IndexAny(text, " $"); i > 0 {
			end = i
		}
		word := text[:end]
		text = text[end:]
		if !first {
			word = ru.mapWord(word)
		}
		first = false
		b.WriteString(word)
	}
	return b.String()
}

func (ru *run) mapWord(w string) string {
	for _, su := range ru.s.Users {
		tu := ru.users[su.Name]
		switch w {
		case su.Name:
			return tu.Name
		case su.Password:
			return tu.Password
		}
	}
	return w
}

func (ru *run) send(c *conn, st *Step, b []byte) error {
	if err := c.nc.SetWriteDeadline(time.Now().Add(ru.r.timeout())); err != nil {
		return ru.fail(st, "", nil, err)
	}
	if _, err := c.nc.Write(b); err != nil {
		return ru.fail(st, "", nil, fmt.Errorf("sending %s: %w", quote(b), err))
	}
	return nil
}

// readLine reads one server line, CRLF included, under the step deadline.
func (ru *run) readLine(c *conn, st *Step) ([]byte, error) {
	if err := c.nc.SetReadDeadline(time.Now().Add(ru.r.timeout())); err != nil {
		return nil, ru.fail(st, "", nil, err)
	}
	var line []byte
	for {
		chunk, err := c.r.ReadSlice('\n')
		line = append(line, chunk...)
		if err == nil {
			return line, nil
		}
		if errors.Is(err, bufio.ErrBufferFull) && len(line) < maxLine {
			continue
		}
		return line, err
	}
}
