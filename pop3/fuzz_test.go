package pop3

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"popgate/mailstore/memstore"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		in   string
		verb string
		args []string
		rest string
		err  error
	}{
		{"stat", "STAT", nil, "", nil},
		{"List 1", "LIST", []string{"1"}, "1", nil},
		{"TOP  1   2 ", "TOP", []string{"1", "2"}, " 1   2 ", nil},
		{"PASS  two  spaces ", "PASS", []string{"two", "spaces"}, " two  spaces ", nil},
		{"pass ünïcode", "PASS", []string{"ünïcode"}, "ünïcode", nil},
		{"", "", nil, "", errEmptyCommand},
		{" STAT", "", nil, "", errSyntax},
		{"STAT\x00", "", nil, "", errBadOctets},
		{"US\tER x", "", nil, "", errBadOctets},
		{"RETR 1\r", "", nil, "", errBadOctets},
		{"DEL\x7f", "", nil, "", errBadOctets},
	}
	for _, tt := range tests {
		got, err := parseCommand([]byte(tt.in))
		if err != tt.err {
			t.Errorf("parseCommand(%q) error = %v, want %v", tt.in, err, tt.err)
			continue
		}
		if err != nil {
			continue
		}
		if got.verb != tt.verb || got.rest != tt.rest || strings.Join(got.args, "|") != strings.Join(tt.args, "|") {
			t.Errorf("parseCommand(%q) = %+v, want verb %q args %q rest %q", tt.in, got, tt.verb, tt.args, tt.rest)
		}
	}
}

func TestLooksLikePOP3(t *testing.T) {
	for line, want := range map[string]bool{
		"XTND BBOARDS":   true,
		"AUTH PLAIN":     true,
		"GET / HTTP/1.1": false,
		"POST /x":        false,
		"FOO bar HTTP/1": false,
		"HELO x":         false,
		"X":              false,
		"ABCDE":          false,
		"A1B2":           false,
	} {
		req, err := parseCommand([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		if got := looksLikePOP3(req); got != want {
			t.Errorf("looksLikePOP3(%q) = %v, want %v", line, got, want)
		}
	}
}

func FuzzCommand(f *testing.F) {
	for _, s := range []string{"STAT", "list 1", "TOP 1 10", "PASS a b  c ", "APOP mrose c4c9334bac560ecc979e58001b3e22fb",
		"RETR 4294967296", "RETR -1", " x", "", "\x00", "GET / HTTP/1.1", "UIDL 99999999999999999999", "\xff\xfe"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := parseCommand(line)
		if err != nil {
			if _, ok := err.(*protocolError); !ok {
				t.Fatalf("parseCommand(%q) error %v is not a protocol error", line, err)
			}
			if out := replyFor(err); !strings.HasPrefix(out.reply, "-ERR ") {
				t.Fatalf("parse error reply %q", out.reply)
			}
			return
		}
		if req.verb == "" || strings.ContainsAny(req.verb, " abcdefghijklmnopqrstuvwxyz") {
			t.Fatalf("parseCommand(%q): verb %q", line, req.verb)
		}
		if strings.ContainsAny(req.rest, "\r\n\x00") {
			t.Fatalf("parseCommand(%q): rest %q has control characters", line, req.rest)
		}
		for _, a := range req.args {
			if a == "" || strings.Contains(a, " ") {
				t.Fatalf("parseCommand(%q): argument %q", line, a)
			}
			if n, err := parseMsgNumber(a); err == nil && n < 0 {
				t.Fatalf("parseMsgNumber(%q) = %d", a, n)
			}
			if k, err := parseLineCount(a); err == nil && k < 0 {
				t.Fatalf("parseLineCount(%q) = %d", a, k)
			}
		}
		_ = looksLikePOP3(req)
	})
}

// FuzzSession feeds arbitrary bytes to a live session over TCP loopback
// and checks that the server neither panics nor hangs, and that what it
// sends ends on a line boundary. The client half-closes after its input,
// so every command in it is processed and the session ends as a hang-up.
func FuzzSession(f *testing.F) {
	login := "USER " + testUser + "\r\nPASS " + testPass + "\r\n"
	for _, s := range []string{
		"CAPA\r\nQUIT\r\n",
		login + "STAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\nRSET\r\nQUIT\r\n",
		login + "TOP 2 0\r\nTOP 1 99999\r\nUIDL\r\nDELE 2\r\nRETR 2\r\nQUIT\r\n",
		login + "RETR 4294967296\r\nLIST -1\r\n\x00\x01\r\nNOOP\r\n",
		login + "RETR 2\r\nRETR 3\r\nUIDL 2\r\nLIST 3\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		strings.Repeat("A", 300) + "\r\n",
		"USER a\nPASS b\n\n\n",
		"NOOP",
		"CAPA\r\nAUTH\r\nAUTH PLAIN\r\nAGFsaWNlAG9wZW4gc2VzYW1lIA==\r\nCAPA\r\nSTAT\r\n",
		"AUTH LOGIN YWxpY2U=\r\nb3BlbiBzZXNhbWUg\r\nAUTH PLAIN =\r\n",
		"AUTH CRAM-MD5\r\n*\r\nAUTH PLAIN\r\n=AAA\r\nAUTH FOO bar baz\r\n",
		"UTF8\r\nLANG\r\nLANG en-US\r\nLANG *\r\nSTLS\r\n",
		"STLS\r\nCAPA\r\n\x16\x03\x01\x00\x05hello",
		login + "LAST\r\nRETR 1\r\nLAST\r\nRSET\r\nXTND XLST Message-Id\r\n",
		"USER " + testUser + "\r\nRPOP " + testUser + "\r\nXTND XMIT\r\n",
	} {
		f.Add([]byte(s))
	}
	fuzzSession(f, nil, "+OK fuzz POP3 server ready <")
}

// FuzzLegacySession is FuzzSession against the RFC 1081 profile with
// RPOP, XTND XLST and every byte-changing quirk on.
func FuzzLegacySession(f *testing.F) {
	login := "USER " + testUser + "\r\nPASS " + testPass + "\r\n"
	for _, s := range []string{
		login + "STAT\r\nLAST\r\nRETR 2\r\nLAST\r\nDELE 1\r\nRSET\r\nLAST\r\nQUIT\r\n",
		login + "XTND XLST Message-Id\r\nXTND XLST Subject 2\r\nXTND BBOARDS\r\nXTND\r\nLIST\r\nTOP 1 0\r\n",
		"USER " + testUser + "\r\nRPOP " + testUser + "\r\nSTAT\r\nLAST\r\n",
		"RPOP x\r\nUSER a@b\r\nRPOP a\r\nAUTH\r\nXSENDER 1\r\nCAPA\r\n",
		login + "RETR 3\r\nTOP 3 1\r\nXTND XMIT\r\nTo: x@y\r\n\r\n.\r\n",
	} {
		f.Add([]byte(s))
	}
	fuzzSession(f, func(o *Options) {
		o.Profile = ProfileRFC1081
		o.Store = trustedMem{o.Store.(*memstore.Store)}
		o.RPOP = &RPOPOptions{Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
		o.XTND.XLST = true
		o.Quirks = Quirks{BlankBeforeDot: true, StatusHeader: true, ReplaceNUL: true, AddEndOfHeaders: true,
			StripUserDomain: true, AnswerProbes: true, WrapLines: 16, SizeCap: 256}
	}, "+OK fuzz POP3 server ready\r\n")
}

// fuzzSession runs the session fuzzer; mutate changes the server options
// and greeting is the prefix every output must start with.
func fuzzSession(f *testing.F, mutate func(*Options), greeting string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	logs := &syncBuffer{}
	tlsCfg := serverTLS(f)
	f.Fuzz(func(t *testing.T, input []byte) {
		store := newMemStore(t, msg1, "Subject: d\r\n\r\n.\r\n..x\r\n", "")
		opts := Options{
			Store: store, Hostname: "fuzz", Logger: zerolog.New(logs).Level(zerolog.ErrorLevel),
			TLSConfig:   tlsCfg,
			AuthTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second,
			LineTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		}
		if mutate != nil {
			mutate(&opts)
		}
		srv, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		cc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cc.Close() }()
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeConn(context.Background(), sc)
		}()
		go func() {
			_, _ = cc.Write(input)
			_ = cc.(*net.TCPConn).CloseWrite()
		}()
		_ = cc.SetReadDeadline(time.Now().Add(10 * time.Second))
		out, err := io.ReadAll(cc)
		if err != nil && !isReset(err) {
			t.Fatalf("reading replies: %v (server hung?)", err)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("ServeConn did not return")
		}
		if strings.Contains(logs.String(), `"panic"`) {
			t.Fatalf("panic:\n%s", logs.String())
		}
		if !bytes.HasPrefix(out, []byte(greeting)) {
			t.Fatalf("greeting: %q", out)
		}
		if !bytes.HasSuffix(out, []byte("\r\n")) && !isReset(err) {
			t.Fatalf("output does not end in CRLF: %q", out[max(0, len(out)-40):])
		}
	})
}
