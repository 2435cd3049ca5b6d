package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"regexp"
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

// pop3Addrs returns the addresses of the "POP3 on ADDR" lines of the
// welcome text, in flag order.
func pop3Addrs(t *testing.T, stdout *syncBuffer, n int) []string {
	t.Helper()
	var out []string
	for _, m := range regexp.MustCompile(`popgate: POP3 on (\S+)`).FindAllStringSubmatch(stdout.String(), -1) {
		out = append(out, m[1])
	}
	if len(out) != n {
		t.Fatalf("%d POP3 listeners printed, want %d:\n%s", len(out), n, stdout.String())
	}
	return out
}

func TestPOP3ProfilePerListener(t *testing.T) {
	_, stdout, _, _, _ := startRunOut(t, "--hostname", "gate.test",
		"--pop3", "127.0.0.1:0",
		"--pop3", "127.0.0.1:0;profile=rfc1081;quirks=replace-nul,wrap=72")
	addrs := pop3Addrs(t, stdout, 2)
	if !strings.Contains(stdout.String(), "(profile rfc1081, quirks replace-nul,wrap=72)") {
		t.Errorf("welcome text does not name the listener's options:\n%s", stdout.String())
	}

	// The legacy listener: no CAPA, LAST answered.
	old := dial(t, addrs[1])
	expectPrefix(t, old.line(), "+OK")
	expectPrefix(t, old.cmd("CAPA"), "-ERR")
	expectPrefix(t, old.cmd("USER demo"), "+OK")
	expectPrefix(t, old.cmd("PASS demo"), "+OK")
	expectPrefix(t, old.cmd("LAST"), "+OK 0")
	expectPrefix(t, old.cmd("UIDL"), "-ERR")
	expectPrefix(t, old.cmd("QUIT"), "+OK")

	// The modern listener of the same process: CAPA, no LAST.
	c := dial(t, addrs[0])
	expectPrefix(t, c.line(), "+OK")
	if capa := c.capa(); !strings.Contains(capa, "UIDL") {
		t.Errorf("CAPA of the modern listener:\n%s", capa)
	}
	expectPrefix(t, c.cmd("USER demo"), "+OK")
	expectPrefix(t, c.cmd("PASS demo"), "+OK")
	expectPrefix(t, c.cmd("LAST"), "-ERR")
	expectPrefix(t, c.cmd("QUIT"), "+OK")
}

// TestPOP3ListenerOptionsInherit: an option a listener leaves out is the
// process-wide flag's; "quirks=" turns the quirks off.
func TestPOP3ListenerOptionsInherit(t *testing.T) {
	_, stdout, _, _, _ := startRunOut(t, "--hostname", "gate.test",
		"--pop3-profile", "rfc1081", "--pop3-quirks", "greeting-short",
		"--pop3", "127.0.0.1:0",
		"--pop3", "127.0.0.1:0;profile=modern",
		"--pop3", "127.0.0.1:0;quirks=")
	addrs := pop3Addrs(t, stdout, 3)
	for i, tt := range []struct {
		greeting string
		capa     string
	}{
		{"+OK POP3 server ready", "-ERR"}, // the flags
		{"+OK POP3 server ready", "+OK"},  // modern, greeting-short kept
		{"+OK gate.test", "-ERR"},         // rfc1081, no quirk
	} {
		c := dial(t, addrs[i])
		if g := c.line(); !strings.HasPrefix(g, tt.greeting) {
			t.Errorf("listener %d: greeting %q, want %q...", i, g, tt.greeting)
		}
		if got := c.cmd("CAPA"); !strings.HasPrefix(got, tt.capa) {
			t.Errorf("listener %d: CAPA %q, want %s", i, got, tt.capa)
		}
	}
}

func TestPOP3SListenerOptions(t *testing.T) {
	certPath, keyPath, _ := writeCert(t, t.TempDir())
	plain, stdout, _, _, _ := startRunOut(t, "--pop3", "127.0.0.1:0", "--pop3s", "127.0.0.1:0;profile=rfc1725",
		"--tls-cert", certPath, "--tls-key", keyPath)
	p := dial(t, plain)
	expectPrefix(t, p.line(), "+OK")
	expectPrefix(t, p.cmd("CAPA"), "+OK")
	c, _ := tlsClient(t, listenerAddr(t, stdout, "POP3S"), &tls.Config{InsecureSkipVerify: true})
	expectPrefix(t, c.line(), "+OK")
	expectPrefix(t, c.cmd("CAPA"), "-ERR")
	expectPrefix(t, c.cmd("USER demo"), "+OK")
	expectPrefix(t, c.cmd("PASS demo"), "+OK")
	expectPrefix(t, c.cmd("UIDL 1"), "+OK 1 ")
	expectPrefix(t, c.cmd("QUIT"), "+OK")
}

func TestParseListener(t *testing.T) {
	e := eraSettings{profile: "rfc1460", quirks: "hide-capa"}
	if err := e.validate(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		spec, addr, era string
	}{
		{"[::1]:110", "[::1]:110", "profile rfc1460, quirks hide-capa"},
		{"[::1]:110;profile=RFC1081", "[::1]:110", "profile rfc1081, quirks hide-capa"},
		{"127.0.0.1:110; quirks=wrap=72,replace-nul ;profile=modern", "127.0.0.1:110", "profile modern, quirks replace-nul,wrap=72"},
		{":110;quirks=", ":110", "profile rfc1460"},
	} {
		l, err := e.parseListener(tt.spec)
		if err != nil || l.addr != tt.addr || l.era.String() != tt.era {
			t.Errorf("%q: %q, %q, %v; want %q, %q", tt.spec, l.addr, l.era, err, tt.addr, tt.era)
		}
	}
}

func TestPOP3ListenerOptionErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--pop3", "127.0.0.1:0;profile=rfc918"}, `--pop3 "127.0.0.1:0;profile=rfc918": pop3: profile "rfc918"`},
		{[]string{"--pop3", "127.0.0.1:0;quirks=nope"}, `unknown quirk "nope"`},
		{[]string{"--pop3", "127.0.0.1:0;quirks=wrap=3"}, `quirk "wrap=3"`},
		{[]string{"--pop3", "127.0.0.1:0;colour=blue"}, `unknown listener option "colour"`},
		{[]string{"--pop3", "127.0.0.1:0;rfc1081"}, `listener option "rfc1081"`},
		{[]string{"--pop3", "127.0.0.1:0;profile=rfc1081;profile=modern"}, "given twice"},
		{[]string{"--pop3", ";profile=rfc1081"}, "no address"},
		{[]string{"--pop3s", "127.0.0.1:0;profile=x"}, `--pop3s "127.0.0.1:0;profile=x"`},
		{[]string{"--pop2", "127.0.0.1:0;profile=rfc1081"}, "for --pop3 and --pop3s only"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tt.args, &stdout, &stderr)
		msg := stderr.String()
		if code != 2 || !strings.Contains(msg, tt.msg) || strings.Count(msg, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q", tt.args, code, msg)
		}
	}
}
