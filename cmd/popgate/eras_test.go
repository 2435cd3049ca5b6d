package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestPOP3ProfileFlag(t *testing.T) {
	addr, _, _, _ := startRun(t, "--pop3", "127.0.0.1:0", "--pop3-profile", "rfc1081",
		"--pop3-quirks", "greeting-short,strip-user-domain", "--pop3-xtnd", "xlst")
	c := dial(t, addr)
	if g := c.line(); g != "+OK POP3 server ready" {
		t.Fatalf("greeting %q", g)
	}
	expectPrefix(t, c.cmd("CAPA"), "-ERR")
	expectPrefix(t, c.cmd("USER demo@example.test"), "+OK")
	expectPrefix(t, c.cmd("PASS demo"), "+OK")
	expectPrefix(t, c.cmd("LAST"), "+OK 0")
	expectPrefix(t, c.cmd("UIDL"), "-ERR")
	expectPrefix(t, c.cmd("XTND XLST Message-Id"), "+OK")
	for l := c.line(); l != "."; l = c.line() {
	}
	expectPrefix(t, c.cmd("QUIT"), "+OK")
}

func TestPOP3EraFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--pop3-profile", "rfc918"}, "--pop3-profile"},
		{[]string{"--pop3-quirks", "nope"}, "--pop3-quirks"},
		{[]string{"--pop3-xtnd", "bboards"}, "--pop3-xtnd"},
		{[]string{"--pop3-xtnd", "xmit"}, "needs --pop3-xmit-relay"},
		{[]string{"--pop3-xmit-relay", "127.0.0.1:25"}, "without --pop3-xtnd xmit"},
	} {
		var stdout, stderr bytes.Buffer
		args := append([]string{"--pop3", "127.0.0.1:0"}, tt.args...)
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tt.msg) {
			t.Errorf("%v: exit %d, stderr %q", tt.args, code, stderr.String())
		}
	}
}
