package pop1

import (
	"bytes"
	"strings"
	"testing"
	"testing/iotest"

	"popgate/mailstore"
	"popgate/pop1/pop1client"
)

// encode returns the mail data for msgs (CRLF forms) and checks that the
// planned size equals what writeEntry produces, feeding both one octet at
// a time so that every chunk boundary is exercised.
func encode(t testing.TB, msgs ...[]byte) []byte {
	t.Helper()
	var out bytes.Buffer
	var total int64
	for _, m := range msgs {
		sep, quoted, err := planMessage(iotest.OneByteReader(bytes.NewReader(m)))
		if err != nil {
			t.Fatal(err)
		}
		total += entrySize(sep, quoted)
		fw := &framedWriter{w: &out, left: entrySize(sep, quoted)}
		if err := writeEntry(fw, sep, iotest.OneByteReader(bytes.NewReader(m)), nil); err != nil {
			t.Fatal(err)
		}
		if fw.left != 0 {
			t.Fatalf("entry %q: planned %d octets, wrote %d fewer", m, entrySize(sep, quoted), fw.left)
		}
	}
	if int64(out.Len()) != total {
		t.Fatalf("planned %d octets, wrote %d", total, out.Len())
	}
	return out.Bytes()
}

func TestQuoting(t *testing.T) {
	msg := []byte("Subject: q\r\n\r\nFrom here\r\n>From there\r\n>>From x\r\nFrom\r\n From y\r\n>Fro\r\nxFrom z\r\n")
	got := encode(t, msg)
	want := "From MAILER-DAEMON Thu Jan  1 00:00:00 1970\r\n" +
		"Subject: q\r\n\r\n>From here\r\n>>From there\r\n>>>From x\r\nFrom\r\n From y\r\n>Fro\r\nxFrom z\r\n" +
		"\r\n"
	if string(got) != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
}

func TestQuotingFirstLineAndLongRuns(t *testing.T) {
	long := strings.Repeat(">", 1000)
	msg := []byte("From: a@b\r\n\r\n" + long + "From x\r\n" + long + "\r\nend")
	got := encode(t, mailstore.ToCRLF(msg))
	if !bytes.Contains(got, []byte("\r\n>"+long+"From x\r\n"+long+"\r\nend\r\n\r\n")) {
		t.Fatalf("long run not quoted right: %q", got)
	}
	// A message whose very first line is a From_ line (an mbox message
	// stored with its envelope) is quoted too.
	got = encode(t, []byte("From sender Mon Jan  1 00:00:00 1990\r\nSubject: x\r\n\r\nhi\r\n"))
	if !bytes.Contains(got, []byte("\r\n>From sender Mon")) {
		t.Fatalf("first line not quoted: %q", got)
	}
}

func TestSeparator(t *testing.T) {
	tests := []struct {
		header, want string
	}{
		{"From: Fred Foo <fred@isi.example>\r\nDate: Fri, 1 Feb 1985 09:00:00 -0800\r\n", "From fred@isi.example Fri Feb  1 17:00:00 1985"},
		{"Date: Fri, 1 Feb 1985 09:00:00 -0800\r\nFROM:\r\n  rover@fido.example\r\n", "From rover@fido.example Fri Feb  1 17:00:00 1985"},
		{"Subject: none\r\n", "From MAILER-DAEMON Thu Jan  1 00:00:00 1970"},
		{"From: not an address\r\nDate: yesterday\r\n", "From MAILER-DAEMON Thu Jan  1 00:00:00 1970"},
		{"From: \"a b\"@x.example, c@d.example\r\n", "From MAILER-DAEMON Thu Jan  1 00:00:00 1970"},
		{"From: a@x.example, c@d.example\r\n", "From a@x.example Thu Jan  1 00:00:00 1970"},
	}
	for _, tt := range tests {
		if got := separator([]byte(tt.header)); got != tt.want {
			t.Errorf("separator(%q) = %q, want %q", tt.header, got, tt.want)
		}
	}
	// The header ends at the first empty line: a From: in the body is not
	// the sender.
	sep, _, err := planMessage(strings.NewReader("Subject: x\r\n\r\nFrom: body@x.example\r\n"))
	if err != nil || sep != "From MAILER-DAEMON Thu Jan  1 00:00:00 1970" {
		t.Errorf("body From: used: %q, %v", sep, err)
	}
	sep, _, _ = planMessage(strings.NewReader("\r\nFrom: body@x.example\r\n"))
	if sep != "From MAILER-DAEMON Thu Jan  1 00:00:00 1970" {
		t.Errorf("empty header: %q", sep)
	}
}

func TestFramedWriterOverrun(t *testing.T) {
	var b bytes.Buffer
	fw := &framedWriter{w: &b, left: 3}
	if _, err := fw.Write([]byte("abcd")); err != errOverrun {
		t.Fatalf("err = %v, want errOverrun", err)
	}
	if b.Len() != 0 {
		t.Fatalf("wrote %q past the limit", b.Bytes())
	}
}

func TestEmptyMessage(t *testing.T) {
	got := encode(t, []byte{}, []byte("a\r\n"))
	msgs, err := pop1client.Split(got)
	if err != nil || len(msgs) != 2 || len(msgs[0].Data) != 0 || string(msgs[1].Data) != "a\r\n" {
		t.Fatalf("Split = %+v, %v", msgs, err)
	}
}

// FuzzMailData checks that the mail data of any messages split back into
// the same messages, and that the size planned is the size written.
func FuzzMailData(f *testing.F) {
	f.Add([]byte("Subject: a\n\nFrom x\n"), []byte(">From y\n>>From z"))
	f.Add([]byte(""), []byte("From \r\nFrom"))
	f.Add([]byte(">>>"), []byte("\r\r\n>"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		ma, mb := mailstore.ToCRLF(a), mailstore.ToCRLF(b)
		data := encode(t, ma, mb)
		msgs, err := pop1client.Split(data)
		if err != nil {
			t.Fatalf("Split(%q): %v", data, err)
		}
		if len(msgs) != 2 || !bytes.Equal(msgs[0].Data, ma) || !bytes.Equal(msgs[1].Data, mb) {
			t.Fatalf("round trip of %q, %q gave %+v", ma, mb, msgs)
		}
	})
}
