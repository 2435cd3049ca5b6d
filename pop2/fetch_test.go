package pop2

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"popgate/mailstore"
	"popgate/pop2/pop2client"
)

// testMessages is a mailbox with the shapes that break length framing:
// lone dots, 8-bit octets, bare LF, no final line end, CR alone, a NUL, and
// a message larger than every buffer on the way.
func testMessages() []string {
	big := strings.Repeat("0123456789abcdef-line of a large message\n", 5000)
	msgs := []string{
		"Subject: one\n\nhello\n",
		"Subject: dots\r\n\r\n.\r\n..\r\n.end\r\n",
		"Subject: 8bit \xe9t\xe9\n\ncaf\xc3\xa9 \xff\xfe\x80\n",
		"Subject: no final newline\n\nlast line",
		"Subject: cr\n\na\rb\x00c\n",
		"Subject: big\n\n" + big,
	}
	for i := 0; i < 24; i++ {
		msgs = append(msgs, fmt.Sprintf("Subject: filler %d\n\n%s\n", i, strings.Repeat("x", i*37)))
	}
	return msgs
}

func TestFetchAllByteIdentical(t *testing.T) {
	for _, del := range []bool{false, true} {
		for _, depth := range []int{1, 20} {
			t.Run(fmt.Sprintf("delete=%v/inflight=%d", del, depth), func(t *testing.T) {
				msgs := testMessages()
				st := newStore(t, "fred", "secret word", map[string][]string{"INBOX": msgs})
				addr := serve(t, Options{Store: st})
				c, err := pop2client.Dial(context.Background(), addr)
				if err != nil {
					t.Fatal(err)
				}
				n, err := c.Helo("fred", "secret word")
				if err != nil || n != len(msgs) {
					t.Fatalf("Helo = %d, %v; want %d", n, err, len(msgs))
				}
				got, err := c.FetchAll(n, pop2client.FetchOptions{Delete: del, InFlight: depth})
				if err != nil {
					t.Fatalf("FetchAll: %v", err)
				}
				if len(got) != len(msgs) {
					t.Fatalf("got %d messages, want %d", len(got), len(msgs))
				}
				for i, m := range got {
					want := mailstore.ToCRLF([]byte(msgs[i]))
					if m.N != i+1 || !bytes.Equal(m.Data, want) {
						t.Errorf("message %d (N=%d): %d octets differ from the %d stored", i+1, m.N, len(m.Data), len(want))
					}
				}
				if err := c.Quit(); err != nil {
					t.Fatalf("Quit: %v", err)
				}
				left := len(folderSizes(t, st, "fred", "secret word", "INBOX"))
				if want := map[bool]int{false: len(msgs), true: 0}[del]; left != want {
					t.Errorf("after QUIT %d messages left, want %d", left, want)
				}
			})
		}
	}
}

// TestClientReadCurrentAndNack walks the RFC's own style: READ without an
// argument, NACK, then ACKS through to "=0".
func TestClientReadCurrentAndNack(t *testing.T) {
	st := newStore(t, "POSTEL", "SECRET", map[string][]string{"INBOX": {"a\n", "bb\n"}})
	c, err := pop2client.Dial(context.Background(), serve(t, Options{Store: st}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Helo("POSTEL", "SECRET"); err != nil {
		t.Fatal(err)
	}
	size, err := c.ReadCurrent()
	if err != nil || size != 3 {
		t.Fatalf("READ = %d, %v; want 3", size, err)
	}
	if _, err := c.Retr(size); err != nil {
		t.Fatal(err)
	}
	if again, err := c.Nack(); err != nil || again != 3 {
		t.Fatalf("NACK = %d, %v; want 3 again", again, err)
	}
	if _, err := c.Retr(size); err != nil {
		t.Fatal(err)
	}
	if next, err := c.Acks(); err != nil || next != 4 {
		t.Fatalf("ACKS = %d, %v; want 4", next, err)
	}
	if _, err := c.Retr(4); err != nil {
		t.Fatal(err)
	}
	if next, err := c.Ackd(); err != nil || next != 0 {
		t.Fatalf("ACKD = %d, %v; want 0", next, err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if got := folderSizes(t, st, "POSTEL", "SECRET", "INBOX"); len(got) != 1 || got[0] != 3 {
		t.Errorf("left %v, want [3]", got)
	}
}

func TestQuote(t *testing.T) {
	if got := pop2client.Quote(`a b\c`); got != `a\ b\\c` {
		t.Errorf("Quote = %q", got)
	}
}
