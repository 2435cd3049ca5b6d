package wire

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

func TestParseNumber(t *testing.T) {
	for _, tc := range []struct {
		line string
		kind byte
		n    int64
		ok   bool
	}{
		{"#3", '#', 3, true},
		{"=120 characters in message 1", '=', 120, true},
		{"#3", '=', 0, false},
		{"#", '#', 0, false},
		{"#-1", '#', 0, false},
		{"#x", '#', 0, false},
	} {
		if n, ok := ParseNumber(tc.line, tc.kind); n != tc.n || ok != tc.ok {
			t.Errorf("ParseNumber(%q, %q) = %d, %v", tc.line, tc.kind, n, ok)
		}
	}
}

func TestClientConn(t *testing.T) {
	srv, cli := tcpPair(t)
	errBad := errors.New("bad greeting")
	go func() {
		_, _ = io.WriteString(srv, "+ hello\r\n"+strings.Repeat("x", 20)+"\r\n12345")
		_ = srv.Close()
	}()
	c := NewClientConn(cli, "testclient", 16, nil)
	if g, err := c.Greeting(errBad); g != "+ hello" || err != nil {
		t.Fatalf("Greeting = %q, %v", g, err)
	}
	if _, err := c.ReadLine(); err == nil || !strings.HasPrefix(err.Error(), "testclient: ") {
		t.Fatalf("over-long line: %v", err)
	}
	if b, err := c.ReadData("RETR", 9); string(b) != "12345" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadData = %q, %v", b, err)
	}
}

func TestDialClientClosesOnFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = io.WriteString(c, "- go away\r\n")
			_, _ = io.Copy(io.Discard, c) // returns when the client closes
			_ = c.Close()
		}
	}()
	errBad := errors.New("bad greeting")
	_, err = DialClient(context.Background(), ln.Addr().String(), "testclient", func(nc net.Conn) (*ClientConn, error) {
		c := NewClientConn(nc, "testclient", 512, nil)
		if _, err := c.Greeting(errBad); err != nil {
			return nil, err
		}
		return c, nil
	})
	if !errors.Is(err, errBad) {
		t.Fatalf("DialClient = %v, want the bad greeting", err)
	}
}
