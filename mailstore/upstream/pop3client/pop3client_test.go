package pop3client

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeServer answers each command line with the next scripted reply.
func fakeServer(t *testing.T, greeting string, replies map[string]string) *Client {
	t.Helper()
	cli, srv := net.Pipe()
	go func() {
		defer srv.Close()
		br := bufio.NewReader(srv)
		_, _ = io.WriteString(srv, greeting)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			verb := strings.Fields(line)[0]
			r, ok := replies[verb]
			if !ok {
				r = "-ERR unknown\r\n"
			}
			if _, err := io.WriteString(srv, r); err != nil {
				return
			}
		}
	}()
	c, err := New(cli, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestRetrUnstuffs checks that RETR restores the message octet for octet:
// stuffed dots removed, CRLF kept, long lines (past the buffer) intact.
func TestRetrUnstuffs(t *testing.T) {
	long := strings.Repeat("x", 3*maxLine+7)
	msg := "Subject: t\r\n\r\n.\r\n..two\r\n.leading\r\n" + long + "\r\nbare\nlf\r\nlast\r\n"
	var stuffed strings.Builder
	for _, l := range strings.SplitAfter(msg, "\n") {
		if strings.HasPrefix(l, ".") {
			stuffed.WriteString(".")
		}
		stuffed.WriteString(l)
	}
	c := fakeServer(t, "+OK hi\r\n", map[string]string{
		"RETR": "+OK 99 octets\r\n" + stuffed.String() + ".\r\n",
		"NOOP": "+OK\r\n",
	})
	r, err := c.Retr(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(); !errors.Is(err, ErrBusy) {
		t.Errorf("command during a body = %v, want ErrBusy", err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, []byte(msg)) {
		t.Errorf("RETR = %q, want %q", got, msg)
	}
	if err := c.Noop(); err != nil {
		t.Errorf("NOOP after the body = %v", err)
	}
}

// TestErrors checks response codes and that PASS never shows the password.
func TestErrors(t *testing.T) {
	c := fakeServer(t, "+OK hi\r\n", map[string]string{
		"USER": "+OK\r\n",
		"PASS": "-ERR [IN-USE] locked\r\n",
		"UIDL": "-ERR not supported\r\n",
		"LIST": "+OK\r\n1 120\r\n2 7\r\n.\r\n",
	})
	if err := c.User("alice"); err != nil {
		t.Fatal(err)
	}
	err := c.Pass("hunter2")
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != "IN-USE" || pe.Command != "PASS" || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("PASS error = %#v (%v)", pe, err)
	}
	if _, err := c.UIDL(); !errors.As(err, &pe) || pe.Code != "" {
		t.Errorf("UIDL error = %v", err)
	}
	l, err := c.List()
	if err != nil || len(l) != 2 || l[1] != (MessageSize{N: 2, Size: 7}) {
		t.Errorf("LIST = %v, %v", l, err)
	}
}

// TestTruncatedBody checks that a connection lost inside a body is an
// error, not a short message.
func TestTruncatedBody(t *testing.T) {
	cli, srv := net.Pipe()
	go func() {
		_, _ = io.WriteString(srv, "+OK hi\r\n")
		br := bufio.NewReader(srv)
		_, _ = br.ReadString('\n')
		_, _ = io.WriteString(srv, "+OK\r\nline one\r\nline t")
		_ = srv.Close()
	}()
	c, err := New(cli, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Retr(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated body = %v, want io.ErrUnexpectedEOF", err)
	}
}
