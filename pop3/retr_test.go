package pop3

import (
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const topMsg = "From: t@example.test\r\nSubject: top\r\n\r\nbody 1\r\n.body 2\r\nbody 3\r\n"

func TestTop(t *testing.T) {
	e := startServer(t, newMemStore(t, topMsg), nil)
	c := e.login()
	headers := "From: t@example.test\r\nSubject: top\r\n\r\n"
	for _, tt := range []struct {
		k    string
		want string
	}{
		{"0", headers},
		{"1", headers + "body 1\r\n"},
		{"2", headers + "body 1\r\n.body 2\r\n"},
		{"3", topMsg},
		{"4", topMsg},
		{"99999999999999999999999", topMsg},
	} {
		c.want("TOP 1 "+tt.k, "+OK ")
		if got := c.body(); got != tt.want {
			t.Errorf("TOP 1 %s: got %q, want %q", tt.k, got, tt.want)
		}
	}
	c.want("QUIT", "+OK ")
	c.closed()
	// TOP is not a retrieval: the message is not marked seen.
	if msgs := inbox(t, e.store, testUser, testPass); msgs[0].Seen {
		t.Error("TOP marked the message seen")
	}
}

func TestRetrDotStuffingOnTheWire(t *testing.T) {
	msg := "Subject: dots\r\n\r\n.\r\n..\r\n.hidden\r\nnormal\r\n"
	e := startServer(t, newMemStore(t, msg), nil)
	c := e.login()
	c.want("RETR 1", "+OK "+strconv.Itoa(len(msg))+" octets")
	var raw []string
	for {
		line, err := c.raw()
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, line)
		if line == ".\r\n" {
			break
		}
	}
	want := []string{"Subject: dots\r\n", "\r\n", "..\r\n", "...\r\n", "..hidden\r\n", "normal\r\n", ".\r\n"}
	if diff := cmp.Diff(want, raw); diff != "" {
		t.Errorf("RETR wire form (-want +got):\n%s", diff)
	}
	c.want("NOOP", "+OK")
}

// TestStoredBareLF delivers LF-only and unterminated messages through the
// memstore: the store serves CRLF and LIST counts the CRLF form.
func TestStoredBareLF(t *testing.T) {
	e := startServer(t, newMemStore(t, "Subject: lf\n\nline\n.\n", "Subject: nonl\n\nlast line"), nil)
	c := e.login()
	for n, want := range []string{"Subject: lf\r\n\r\nline\r\n.\r\n", "Subject: nonl\r\n\r\nlast line\r\n"} {
		num := strconv.Itoa(n + 1)
		if got := c.cmd("LIST " + num); got != "+OK "+num+" "+strconv.Itoa(len(want)) {
			t.Errorf("LIST %s: %q, want size %d", num, got, len(want))
		}
		c.want("RETR "+num, "+OK ")
		if got := c.body(); got != want {
			t.Errorf("RETR %s: %q, want %q", num, got, want)
		}
	}
}

// TestNonCanonicalStore serves raw bytes that break the CRLF invariant:
// the dot-stuffer still frames them safely.
func TestNonCanonicalStore(t *testing.T) {
	store := &fakeStore{msgs: []fakeMsg{
		{"lf", "Subject: x\n\n.\nbody\n", -1},
		{"nofinal", "Subject: y\r\n\r\nno newline", -1},
		{"empty", "", -1},
	}}
	e := startServer(t, store, nil)
	c := e.login()
	for _, tt := range []struct{ n, want string }{
		{"1", "Subject: x\r\n\r\n.\r\nbody\r\n"},
		{"2", "Subject: y\r\n\r\nno newline\r\n"},
		{"3", ""},
	} {
		c.want("RETR "+tt.n, "+OK ")
		if got := c.body(); got != tt.want {
			t.Errorf("RETR %s: got %q, want %q", tt.n, got, tt.want)
		}
	}
	c.want("TOP 2 0", "+OK ")
	if got := c.body(); got != "Subject: y\r\n\r\n" {
		t.Errorf("TOP 2 0: %q", got)
	}
}

// TestLargeMessage streams a message much bigger than every buffer.
func TestLargeMessage(t *testing.T) {
	var b strings.Builder
	b.WriteString("Subject: big\r\n\r\n")
	for i := 0; b.Len() < 3<<20; i++ {
		b.WriteString(".line " + strconv.Itoa(i) + "\r\n")
	}
	msg := b.String()
	store := newMemStore(t, msg)
	e := startServer(t, store, nil)
	c := e.login()
	c.want("RETR 1", "+OK "+strconv.Itoa(len(msg))+" octets")
	if got := c.body(); got != msg {
		t.Fatalf("large message differs (%d vs %d octets)", len(got), len(msg))
	}
	c.want("TOP 1 2", "+OK ")
	if got := c.body(); got != "Subject: big\r\n\r\n.line 0\r\n.line 1\r\n" {
		t.Errorf("TOP 1 2 of large message: %q", got)
	}
	c.want("QUIT", "+OK ")
}

// TestSizeMismatchCloses: content that differs from the announced size
// breaks the framing, so the server must hang up.
func TestSizeMismatchCloses(t *testing.T) {
	big := strings.Repeat("x", 100*1024) + "\r\n"
	for _, tt := range []struct {
		name string
		msg  fakeMsg
	}{
		{"shorter", fakeMsg{"u", "a\r\n", 10}},
		{"longer", fakeMsg{"u", "abcdef\r\n", 3}},
		{"shorter after first chunk", fakeMsg{"u", big, int64(len(big) + 50)}},
		{"longer after first chunk", fakeMsg{"u", big, int64(len(big) - 50)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store := &fakeStore{msgs: []fakeMsg{tt.msg}}
			e := startServer(t, store, nil)
			c := e.login()
			c.send("RETR 1")
			_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			rest, _ := io.ReadAll(c.r)
			if strings.HasSuffix(string(rest), "\r\n.\r\n") {
				t.Errorf("reply was terminated as if complete: ...%q", rest[max(0, len(rest)-20):])
			}
			if changes, closed := store.result(); changes != nil || closed != 1 {
				t.Errorf("after mismatch: commit %v, closes %d", changes, closed)
			}
			if !strings.Contains(e.logs.String(), "message size differs") {
				t.Errorf("mismatch not logged")
			}
		})
	}
}
