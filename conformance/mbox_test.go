package conformance

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"popgate/mailstore/memstore"
)

// mboxServer answers every line with a fixed POP1-style mail data blob.
func mboxServer(blob string) Handler {
	return func(_ context.Context, nc net.Conn) {
		defer nc.Close()
		r := bufio.NewReader(nc)
		_, _ = nc.Write([]byte("+OK\r\n"))
		for {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			_, _ = nc.Write([]byte(blob))
		}
	}
}

func runMbox(t *testing.T, blob, src string) error {
	t.Helper()
	s, err := Parse("mbox.txtar", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	st := memstore.New()
	tgt, err := NewStoreTarget(context.Background(), st, mboxServer(blob))
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	_, err = (&Runner{Timeout: 2 * time.Second}).Run(context.Background(), s, tgt)
	return err
}

const mboxScript = `proto: pop1
S: +OK
C: RCEV
S< mbox a b
C: RCEV
S< mbox
-- a.eml --
Subject: a

From here
>From there
-- b.eml --
x
`

func TestMboxStep(t *testing.T) {
	good := "From x@y Thu Jan  1 00:00:00 1970\r\nSubject: a\r\n\r\n>From here\r\n>>From there\r\n\r\n" +
		"From MAILER-DAEMON whenever\r\nx\r\n\r\n"
	if err := runMbox(t, good, mboxScript); err != nil {
		t.Fatalf("good blob: %v", err)
	}
	for _, bad := range []string{
		strings.Replace(good, ">From here", "From here", 1), // not quoted
		strings.Replace(good, "From x@y", "Frm x@y", 1),     // no separator
		strings.Replace(good, "there\r\n\r\n", "there\r\n", 1),
	} {
		if err := runMbox(t, bad, mboxScript); err == nil {
			t.Errorf("blob %q passed", bad)
		}
	}
	s, err := Parse("x", []byte("proto: pop1\nS< mbox a nosuch\n-- a.eml --\nx\n"))
	if err == nil {
		t.Errorf("unknown fixture accepted: %+v", s)
	}
	s, err = Parse("x", []byte("proto: pop1\nS< mbox raw\n-- mbox.eml --\nx\n"))
	if err != nil || s.Steps[0].Mode != "raw" || s.Steps[0].Fixture != "mbox" {
		t.Errorf("S< mbox raw: %+v, %v", s, err)
	}
}
