package pop3

import (
	"bytes"
	"context"
	"encoding/base64"
	"testing"

	"github.com/rs/zerolog"
)

func TestDecodeSASL(t *testing.T) {
	for in, want := range map[string]string{"": "", "dGVzdA==": "test", "dGVzdAB0ZXN0AHRlc3Q=": "test\x00test\x00test", "YWJj": "abc"} {
		got, err := decodeSASL(in, false)
		if err != nil || string(got) != want {
			t.Errorf("decodeSASL(%q) = %q, %v", in, got, err)
		}
	}
	if got, err := decodeSASL("=", true); err != nil || got == nil || len(got) != 0 {
		t.Errorf("initial \"=\": %q %v", got, err)
	}
	for _, bad := range []string{"=", "=AAA", "AAA=BBBB", "AA=A", "A===", "dGVzdA", "dGV zdA=", "dGVzdA\r\n", "dGVzdB==", "YW Jj"} {
		if _, err := decodeSASL(bad, false); err == nil {
			t.Errorf("decodeSASL(%q) accepted", bad)
		}
	}
}

// FuzzDecodeSASL checks that whatever decodeSASL accepts is canonical
// base64: it encodes back to the same text.
func FuzzDecodeSASL(f *testing.F) {
	for _, s := range []string{"", "=", "dGVzdA==", "=AAA", "AAA=BBBB", "YWJj", "YW\nJj", "dGVzdB=="} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, initial bool) {
		out, err := decodeSASL(s, initial)
		if err != nil {
			return
		}
		if initial && s == "=" {
			if len(out) != 0 {
				t.Fatalf("= decoded to %q", out)
			}
			return
		}
		if enc := base64.StdEncoding.EncodeToString(out); enc != s {
			t.Fatalf("decodeSASL(%q) accepted non-canonical input (re-encodes as %q)", s, enc)
		}
	})
}

// FuzzSASLExchange drives every mechanism with arbitrary client
// responses (lines of the input, already decoded) and checks that it
// never panics, never asks for more than a few rounds, and logs in only
// as a user whose secret the input really proves.
func FuzzSASLExchange(f *testing.F) {
	for _, s := range []string{
		"PLAIN\n\x00alice\x00open sesame ",
		"PLAIN\nalice\x00alice\x00open sesame ",
		"PLAIN\n\x00\x00",
		"LOGIN\nalice\nopen sesame ",
		"LOGIN\n\n\n",
		"CRAM-MD5\nalice 0123456789abcdef0123456789abcdef",
		"CRAM-MD5\nalice",
		"CRAM-MD5\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		srv, err := New(Options{Store: newMemStore(t), Logger: zerolog.Nop(), Limiter: NewLimiter(LimiterOptions{IPThreshold: 1 << 30, UserThreshold: 1 << 30})})
		if err != nil {
			t.Fatal(err)
		}
		lines := bytes.Split(input, []byte("\n"))
		mech := srv.findMechanism(string(lines[0]))
		if mech == nil {
			return
		}
		c := &conn{srv: srv, ctx: context.Background(), log: zerolog.Nop(), plainOK: true, state: Authorization}
		res := &saslResult{}
		m := mech.start(c, res)
		var resp []byte
		for i, l := range append(lines[1:], nil) {
			if i > 4 {
				t.Fatalf("%s asked for more than 4 rounds", mech.name)
			}
			_, done, err := m.Next(resp)
			if res.ran || err != nil || done {
				break
			}
			resp = l
		}
		if res.acct != nil {
			defer res.acct.Close()
			if res.err != nil {
				t.Fatalf("account and error both set: %v", res.err)
			}
			// Only PLAIN and LOGIN can prove the password within the
			// input; CRAM-MD5's challenge is random.
			if mech.name == MechCRAMMD5 || !bytes.Contains(input, []byte(testPass)) && !bytes.Contains(input, []byte("bobpw")) {
				t.Fatalf("%s logged in as %s without the password: %q", mech.name, res.acct.User(), input)
			}
		}
	})
}
