package pop2

import (
	"context"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"popgate/mailstore"
	"popgate/pop3/wire/wiretest"
)

// lyingStore announces sizes off by delta: a backend bug that a
// length-framed protocol must never pass on to the client.
type lyingStore struct {
	mailstore.Store
	delta int64
}

type lyingAccount struct {
	mailstore.Account
	delta int64
}

type lyingMaildrop struct {
	mailstore.Maildrop
	delta int64
}

func (s lyingStore) Login(ctx context.Context, u, p string) (mailstore.Account, error) {
	a, err := s.Store.Login(ctx, u, p)
	if err != nil {
		return nil, err
	}
	return lyingAccount{a, s.delta}, nil
}

func (a lyingAccount) Open(ctx context.Context, folder string) (mailstore.Maildrop, error) {
	md, err := a.Account.Open(ctx, folder)
	if err != nil {
		return nil, err
	}
	return lyingMaildrop{md, a.delta}, nil
}

func (m lyingMaildrop) Messages(ctx context.Context) ([]mailstore.MessageInfo, error) {
	msgs, err := m.Maildrop.Messages(ctx)
	for i := range msgs {
		msgs[i].Size += m.delta
	}
	return msgs, err
}

func TestSizeMismatchCloses(t *testing.T) {
	for _, delta := range []int64{-5, +5} {
		t.Run("big"+strconv.FormatInt(delta, 10), func(t *testing.T) { bigMismatch(t, delta) })
		t.Run(strconv.FormatInt(delta, 10), func(t *testing.T) {
			opts, sizes := fredStore(t)
			opts.Store = lyingStore{opts.Store, delta}
			opts.Logger = zerolog.New(zerolog.NewTestWriter(t))
			r := dialRaw(t, serve(t, opts))
			r.Send("HELO fred secret", "READ 1", "RETR")
			r.Expect("#3 ")
			announced := r.Expect("=" + strconv.FormatInt(19+delta, 10) + " ")
			rest, err := io.ReadAll(r.R)
			if err != nil && !wiretest.IsReset(err) {
				t.Fatalf("after %q: %v", announced, err)
			}
			if int64(len(rest)) >= 19+delta {
				t.Errorf("server sent %d octets after announcing %d: %q", len(rest), 19+delta, rest)
			}
			if got := sizes(); len(got) != 3 {
				t.Errorf("%d messages left, want 3", len(got))
			}
		})
	}
}

func TestNewRequiresStore(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without a store succeeded")
	}
	opts, _ := fredStore(t)
	opts.Hostname = "two words"
	if _, err := New(opts); err == nil {
		t.Error("New with a two-word host name succeeded")
	}
	opts.Hostname = ""
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New with defaults: %v", err)
	}
	if g := s.Greeting(); !strings.HasPrefix(g, "+ POP2 ") || strings.Count(g, " ") < 2 {
		t.Errorf("Greeting() = %q", g)
	}
}

// bigMismatch checks a message larger than every buffer: the client must
// never see the whole announced length.
func bigMismatch(t *testing.T, delta int64) {
	body := strings.Repeat("x", 100*1024-2) + "\n" // 100 KiB in CRLF form
	st := newStore(t, "fred", "secret", map[string][]string{"INBOX": {body}})
	r := dialRaw(t, serve(t, Options{Store: lyingStore{st, delta}}))
	want := 100*1024 + delta
	r.Send("HELO fred secret", "READ 1", "RETR")
	r.Expect("#1 ")
	r.Expect("=" + strconv.FormatInt(want, 10) + " ")
	rest, err := io.ReadAll(r.R)
	if err != nil && !wiretest.IsReset(err) {
		t.Fatal(err)
	}
	if int64(len(rest)) >= want {
		t.Errorf("server sent %d octets after announcing %d", len(rest), want)
	}
}
