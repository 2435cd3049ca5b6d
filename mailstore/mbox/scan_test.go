package mbox

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

// parse scans spool and returns each message's served form, checking that
// the recorded sizes equal the octets read.
func parse(t testing.TB, spool string, f Flavour) ([]string, *snapshot) {
	t.Helper()
	ra := strings.NewReader(spool)
	snap, err := scan(context.Background(), ra, int64(len(spool)), f)
	if err != nil {
		t.Fatalf("scan(%q) = %v", spool, err)
	}
	var out []string
	for _, r := range snap.msgs {
		data, err := io.ReadAll(messageReader(ra, r, f))
		if err != nil {
			t.Fatalf("reading message: %v", err)
		}
		if int64(len(data)) != r.size {
			t.Errorf("scan(%q): size %d, read %d octets (%q)", spool, r.size, len(data), data)
		}
		out = append(out, string(data))
	}
	return out, snap
}

func TestScan(t *testing.T) {
	const from = "From sender@example.org Thu Jan  1 00:00:00 1970\n"
	tests := []struct {
		name  string
		spool string
		fl    Flavour
		want  []string
	}{
		{"empty", "", MboxO, nil},
		{"only blank lines", "\n\n\r\n", MboxO, nil},
		{"one", from + "Subject: a\n\nbody\n\n", MboxO, []string{"Subject: a\r\n\r\nbody\r\n"}},
		{"two", from + "S: 1\n\none\n\n" + from + "S: 2\n\ntwo\n\n", MboxO,
			[]string{"S: 1\r\n\r\none\r\n", "S: 2\r\n\r\ntwo\r\n"}},
		{"no final newline", from + "S: 1\n\nlast", MboxO, []string{"S: 1\r\n\r\nlast\r\n"}},
		{"final newline only", from + "S: 1\n\nlast\n", MboxO, []string{"S: 1\r\n\r\nlast\r\n"}},
		{"trailing blank lines kept but one", from + "S: 1\n\nx\n\n\n\n", MboxO, []string{"S: 1\r\n\r\nx\r\n\r\n\r\n"}},
		{"crlf spool", "From a Thu Jan  1 00:00:00 1970\r\nS: 1\r\n\r\none\r\n\r\n" + "From b Thu Jan  1 00:00:00 1970\r\nS: 2\r\n\r\ntwo\r\n", MboxO,
			[]string{"S: 1\r\n\r\none\r\n", "S: 2\r\n\r\ntwo\r\n"}},
		{"8-bit and NUL", from + "S: \xe9\n\n\x00caf\xe9\x00\n\n", MboxO, []string{"S: \xe9\r\n\r\n\x00caf\xe9\x00\r\n"}},
		{"From not after blank line is content", from + "S: 1\n\nline\nFrom me to you\n\n", MboxO,
			[]string{"S: 1\r\n\r\nline\r\nFrom me to you\r\n"}},
		{"mboxo unquotes one level", from + "S: 1\n\n>From a\n>>From b\n>Fromage\n\n", MboxO,
			[]string{"S: 1\r\n\r\nFrom a\r\n>>From b\r\n>Fromage\r\n"}},
		{"mboxrd unquotes one level", from + "S: 1\n\n>From a\n>>From b\n>>>From c\n>Fromage\n\n", MboxRD,
			[]string{"S: 1\r\n\r\nFrom a\r\n>From b\r\n>>From c\r\n>Fromage\r\n"}},
		{"leading text without From line", "S: junk\n\ntext\n\n" + from + "S: 1\n\nx\n", MboxO,
			[]string{"S: junk\r\n\r\ntext\r\n", "S: 1\r\n\r\nx\r\n"}},
		{"Content-Length frames an unquoted From", from + "S: 1\nContent-Length: 23\n\nbody\n\nFrom inside\nmore\n\n" + from + "S: 2\n\ntwo\n", MboxO,
			[]string{"S: 1\r\nContent-Length: 23\r\n\r\nbody\r\n\r\nFrom inside\r\nmore\r\n", "S: 2\r\n\r\ntwo\r\n"}},
		{"Content-Length frames, From right after", from + "S: 1\nContent-Length: 5\n\nbody\n" + from + "S: 2\n\ntwo\n", MboxO,
			[]string{"S: 1\r\nContent-Length: 5\r\n\r\nbody\r\n", "S: 2\r\n\r\ntwo\r\n"}},
		{"Content-Length body ending in blank line", from + "S: 1\nContent-Length: 6\n\nbody\n\n" + from + "S: 2\n\ntwo\n", MboxO,
			[]string{"S: 1\r\nContent-Length: 6\r\n\r\nbody\r\n\r\n", "S: 2\r\n\r\ntwo\r\n"}},
		{"Content-Length too large is ignored", from + "S: 1\nContent-Length: 9999\n\nbody\n\n" + from + "S: 2\n\ntwo\n", MboxO,
			[]string{"S: 1\r\nContent-Length: 9999\r\n\r\nbody\r\n", "S: 2\r\n\r\ntwo\r\n"}},
		{"Content-Length too small is ignored", from + "S: 1\nContent-Length: 2\n\nbody\n\n" + from + "S: 2\n\ntwo\n", MboxO,
			[]string{"S: 1\r\nContent-Length: 2\r\n\r\nbody\r\n", "S: 2\r\n\r\ntwo\r\n"}},
		{"Content-Length not a number", from + "S: 1\nContent-Length: x5\n\nbody\n\n" + from + "S: 2\n\ntwo\n", MboxO,
			[]string{"S: 1\r\nContent-Length: x5\r\n\r\nbody\r\n", "S: 2\r\n\r\ntwo\r\n"}},
		{"empty message", from + "\n" + from + "S: 2\n\ntwo\n", MboxO, []string{"", "S: 2\r\n\r\ntwo\r\n"}},
		{"header only", from + "S: 1\n\n" + from + "S: 2\n", MboxO, []string{"S: 1\r\n", "S: 2\r\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := parse(t, tc.spool, tc.fl)
			if len(got) != len(tc.want) {
				t.Fatalf("scan(%q) = %d messages %q, want %d %q", tc.spool, len(got), got, len(tc.want), tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("message %d = %q, want %q", i+1, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestQuoteRoundTrip(t *testing.T) {
	body := "S: q\n\nFrom start\n>From once\n>>From twice\nFrom\nFromage\n"
	for _, tc := range []struct {
		fl   Flavour
		want string
	}{
		// mboxo cannot tell a quoted "From " from a real ">From ".
		{MboxO, "S: q\r\n\r\nFrom start\r\nFrom once\r\n>>From twice\r\nFrom\r\nFromage\r\n"},
		{MboxRD, "S: q\r\n\r\nFrom start\r\n>From once\r\n>>From twice\r\nFrom\r\nFromage\r\n"},
	} {
		spool := "From x Thu Jan  1 00:00:00 1970\n" + string(quote(nil, lfForm([]byte(body)), tc.fl)) + "\n"
		got, _ := parse(t, spool, tc.fl)
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%v: round trip of %q = %q, want %q", tc.fl, body, got, tc.want)
		}
	}
}

func TestScanMetadata(t *testing.T) {
	const from = "From s Thu Jan  1 00:00:00 1970\n"
	spool := from + "X-UIDL: qpop-1\nStatus: RO\n\na\n\n" +
		from + "X-UIDL: qpop-1\n\nb\n\n" +
		from + "X-UID: 17\nStatus: O\n\nc\n\n" +
		from + "S: d\n\nsame\n\n" +
		from + "S: d\n\nsame\n\n" +
		from + "X-UIDL: bad uid with spaces\n\ne\n"
	_, snap := parse(t, spool, MboxO)
	var uids []string
	var seen []bool
	for _, m := range snap.msgs {
		uids = append(uids, m.uid)
		seen = append(seen, m.seen)
	}
	if len(uids) != 6 {
		t.Fatalf("got %d messages, want 6", len(uids))
	}
	if uids[0] != "qpop-1" || uids[1] != "qpop-1-2" || uids[2] != "17" {
		t.Errorf("UIDs = %q, want qpop-1, qpop-1-2, 17, ...", uids)
	}
	if len(uids[3]) != 32 || uids[4] != uids[3]+"-2" || len(uids[5]) != 32 || uids[5] == uids[3] {
		t.Errorf("digest UIDs = %q, want 32 hex, the same plus -2, another", uids[3:])
	}
	if want := []bool{true, false, false, false, false, false}; !equalBools(seen, want) {
		t.Errorf("Seen = %v, want %v", seen, want)
	}
	// The digest ignores the flags mail readers rewrite.
	a, _ := parse(t, from+"S: x\n\nbody\n", MboxO)
	_, s1 := parse(t, from+"S: x\n\nbody\n", MboxO)
	_, s2 := parse(t, from+"S: x\nStatus: RO\nX-Status: A\n\nbody\n", MboxO)
	if len(a) != 1 || s1.msgs[0].uid != s2.msgs[0].uid {
		t.Errorf("UID changed when Status was added: %q vs %q", s1.msgs[0].uid, s2.msgs[0].uid)
	}
	// ... and the line ends the spool happens to use.
	_, s3 := parse(t, "From s Thu Jan  1 00:00:00 1970\r\nS: x\r\n\r\nbody\r\n", MboxO)
	if s1.msgs[0].uid != s3.msgs[0].uid {
		t.Errorf("UID depends on LF vs CRLF storage: %q vs %q", s1.msgs[0].uid, s3.msgs[0].uid)
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestScanLongLines(t *testing.T) {
	long := strings.Repeat("x", 200000)
	gts := strings.Repeat(">", 100000)
	spool := "From s Thu Jan  1 00:00:00 1970\nS: " + long + "\n\n" + gts + "From z\n" + long + "\r\n\n"
	for _, fl := range []Flavour{MboxO, MboxRD} {
		got, _ := parse(t, spool, fl)
		if len(got) != 1 {
			t.Fatalf("%v: %d messages, want 1", fl, len(got))
		}
		wantGts := gts
		if fl == MboxRD {
			wantGts = gts[1:]
		}
		want := "S: " + long + "\r\n\r\n" + wantGts + "From z\r\n" + long + "\r\n"
		if got[0] != want {
			t.Errorf("%v: long-line message differs (len %d, want %d)", fl, len(got[0]), len(want))
		}
	}
}

func FuzzScan(f *testing.F) {
	f.Add([]byte("From a b\nS: 1\n\n>From x\n\nFrom c d\nContent-Length: 3\n\nab\n"), false)
	f.Add([]byte("junk\r\n\r\nFrom \r\n\r\n>>From \n"), true)
	f.Add([]byte("From x\nContent-Length: 0\n\nFrom y\n\x00\xff"), false)
	f.Fuzz(func(t *testing.T, data []byte, rd bool) {
		fl := MboxO
		if rd {
			fl = MboxRD
		}
		_, snap := parse(t, string(data), fl)
		var prev int64
		for _, m := range snap.msgs {
			if m.start < prev || m.content < m.start || m.end < m.content || m.next < m.end || m.next > int64(len(data)) {
				t.Fatalf("bad offsets %+v", m)
			}
			prev = m.next
			if !bytes.HasPrefix(data[m.start:], []byte(fromPrefix)) && m.start != 0 {
				t.Fatalf("message at %d does not start with a From line", m.start)
			}
		}
	})
}
