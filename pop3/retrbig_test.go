package pop3

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"popgate/mailstore"
)

// wireForm is the reference form of a RETR body on the wire: the
// canonical CRLF form, dot-stuffed, with the terminator.
func wireForm(msg []byte) []byte {
	c := mailstore.ToCRLF(msg)
	var b bytes.Buffer
	b.Grow(len(c) + len(c)/32 + 3)
	for len(c) > 0 {
		i := bytes.IndexByte(c, '\n') + 1
		if c[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(c[:i])
		c = c[i:]
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// retrRaw sends RETR n and returns the reply body as it came over the
// wire: stuffed, terminator included.
func (c *client) retrRaw(n int, wantSize int) []byte {
	c.t.Helper()
	c.send("RETR " + strconv.Itoa(n))
	return c.readRetr(n, wantSize)
}

// readRetr reads the reply to RETR n, which must announce wantSize.
func (c *client) readRetr(n int, wantSize int) []byte {
	c.t.Helper()
	if got, want := c.status(), "+OK "+strconv.Itoa(wantSize)+" octets"; got != want {
		c.t.Fatalf("RETR %d: %q, want %q", n, got, want)
	}
	var b bytes.Buffer
	for {
		line, err := c.r.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			c.t.Fatalf("reading RETR %d: %v after %d octets", n, err, b.Len())
		}
		if line == ".\r\n" {
			return b.Bytes()
		}
	}
}

// bigAdversarial are messages for the large-message path: larger than the
// first 32 KiB chunk, with lines longer than every buffer, runs of
// unchanged lines longer than the write buffer, dots at every chunk edge,
// CRLF already present, bare CR, and no final line end.
func bigAdversarial() map[string]string {
	long := strings.Repeat("L", 600*1024)
	dots := strings.Repeat(".\n..\n.x\n", 40*1024)
	run := strings.Repeat("an ordinary line of a message body, nothing to change\n", 20000)
	var edges strings.Builder
	for i := 0; edges.Len() < 1<<20; i++ {
		// Line lengths that put a line start at every offset mod 4096.
		edges.WriteString(strings.Repeat("e", i%4099))
		edges.WriteString("\n.")
	}
	return map[string]string{
		"empty":                "",
		"small":                "Subject: s\n\n.x\n",
		"one long line":        long,
		"long line, LF":        long + "\n",
		"long dot line":        "." + long + "\n." + long,
		"dot lines":            dots,
		"long runs":            "Subject: run\n\n" + run + ".\n" + run,
		"CRLF present":         strings.ReplaceAll(run, "\n", "\r\n") + ".end\r\n",
		"mixed line ends":      strings.Repeat("crlf\r\nlf\n.dot\r\n\n\r\n", 30000),
		"bare CR":              strings.Repeat("a\rb\r\r.c\n\r", 40000) + "\r",
		"no final line end":    run + ".last line",
		"dot at chunk edges":   edges.String(),
		"only line ends":       strings.Repeat("\n", 300*1024),
		"only dots":            strings.Repeat(".", 300*1024),
		"terminator lookalike": strings.Repeat("x\r\n.\r\n", 60000),
	}
}

// TestRetrBigExact checks RETR byte for byte against the reference (the
// canonical CRLF form, dot-stuffed) for large adversarial messages, served
// both as a Maildir serves them (LF through mailstore.NewCRLFReader) and
// already canonical, twice on one connection (the pooled buffers are
// reused) and on connections running at once.
func TestRetrBigExact(t *testing.T) {
	msgs := bigAdversarial()
	names := make([]string, 0, len(msgs))
	for name := range msgs {
		names = append(names, name)
	}
	for _, lf := range []bool{true, false} {
		store := &fakeStore{lf: lf}
		for _, name := range names {
			raw := msgs[name]
			canon := mailstore.ToCRLF([]byte(raw))
			m := fakeMsg{uid: name, data: raw, size: int64(len(canon))}
			if !lf {
				m.data = string(canon)
			}
			store.msgs = append(store.msgs, m)
		}
		e := startServer(t, store, nil)
		// Two sessions send at the same time: each request is sent on
		// both before either reply is read.
		clients := []*client{e.login(), e.login()}
		for round := range 2 {
			for i, name := range names {
				for _, c := range clients {
					c.send("RETR " + strconv.Itoa(i+1))
				}
				canon := mailstore.ToCRLF([]byte(msgs[name]))
				want := wireForm([]byte(msgs[name]))
				for k, c := range clients {
					if got := c.readRetr(i+1, len(canon)); !bytes.Equal(got, want) {
						t.Errorf("lf=%v, %q, round %d, session %d: %d octets differ from the %d expected, first at %d",
							lf, name, round, k, len(got), len(want), firstDiff(got, want))
					}
				}
			}
		}
		for _, c := range clients {
			c.want("QUIT", "+OK ")
		}
	}
}

// TestRetrBigBlankBeforeDot: the blank line of the quirk also goes
// through the large-message buffers, before the terminator.
func TestRetrBigBlankBeforeDot(t *testing.T) {
	raw := strings.Repeat("line\n.dot\n", 50000)
	canon := mailstore.ToCRLF([]byte(raw))
	store := &fakeStore{lf: true, msgs: []fakeMsg{{uid: "b", data: raw, size: int64(len(canon))}}}
	e := startServer(t, store, func(o *Options) { o.Quirks.BlankBeforeDot = true })
	c := e.login()
	want := wireForm([]byte(raw))
	want = append(want[:len(want)-3:len(want)-3], "\r\n.\r\n"...)
	if got := c.retrRaw(1, len(canon)+2); !bytes.Equal(got, want) {
		t.Errorf("%d octets differ from the %d expected, first at %d", len(got), len(want), firstDiff(got, want))
	}
	c.want("NOOP", "+OK")
}

// TestRetrBigSizeMismatch: a large LF message whose CRLF form is longer
// or shorter than announced must not be terminated as if complete, also
// when the difference shows only after many large chunks.
func TestRetrBigSizeMismatch(t *testing.T) {
	raw := strings.Repeat("text of a large message\n", 200000)
	size := int64(len(mailstore.ToCRLF([]byte(raw))))
	for _, tt := range []struct {
		name string
		size int64
	}{
		{"shorter by one", size + 1},
		{"longer by one", size - 1},
		{"longer by a chunk", size - 300*1024},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store := &fakeStore{lf: true, msgs: []fakeMsg{{uid: "u", data: raw, size: tt.size}}}
			e := startServer(t, store, nil)
			c := e.login()
			c.send("RETR 1")
			_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			rest, _ := io.ReadAll(c.r)
			if bytes.HasSuffix(rest, []byte("\r\n.\r\n")) {
				t.Errorf("reply was terminated as if complete")
			}
			if !strings.Contains(e.logs.String(), "message size differs") {
				t.Errorf("mismatch not logged")
			}
		})
	}
}

// FuzzRetr compares RETR on the wire with the reference for a message
// made of the input repeated until it passes the first chunk, so that
// the large-message path runs too.
func FuzzRetr(f *testing.F) {
	for _, s := range []string{"", "a", ".", "\n", "\r", ".\n", "x\r\n.\r\n", "a\rb\n.c", strings.Repeat("x", 5000) + "\n."} {
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(40))
	}
	f.Fuzz(func(t *testing.T, unit []byte, reps uint8) {
		raw := bytes.Repeat(unit, int(reps))
		if len(unit) > 0 && len(raw) < 40*1024 && reps > 16 {
			raw = bytes.Repeat(unit, 40*1024/len(unit)+1)
		}
		canon := mailstore.ToCRLF(raw)
		for _, lf := range []bool{true, false} {
			m := fakeMsg{uid: "f", data: string(raw), size: int64(len(canon))}
			if !lf {
				m.data = string(canon)
			}
			e := startServer(t, &fakeStore{lf: lf, msgs: []fakeMsg{m}}, nil)
			c := e.login()
			if got, want := c.retrRaw(1, len(canon)), wireForm(raw); !bytes.Equal(got, want) {
				t.Fatalf("lf=%v: %d octets differ from the %d expected, first at %d", lf, len(got), len(want), firstDiff(got, want))
			}
			c.want("QUIT", "+OK ")
		}
	})
}

// firstDiff is the first offset where a and b differ.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
