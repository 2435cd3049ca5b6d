package interop

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// client is one real POP3 client and what it is known to do to mail.
type client struct {
	name string
	// need lists the programs (and for perl, "perl:Module") it needs.
	need []string
	// fetch retrieves every message into out, keeping them on the server
	// or deleting them.
	fetch func(ctx context.Context, s *server, work, out string, keep bool) error
	// expect is what the client is documented to store for a message
	// popgate served as canonical (its line-end convention, its known
	// changes to long lines).
	expect func(canonical []byte) []byte
	// undo removes what the client is documented to add (headers), from
	// a stored copy; nil if it adds nothing.
	undo func(stored []byte) ([]byte, error)
	// note says, for the table, what expect and undo account for.
	note string
	// tls is how the client is configured to protect the session: ""
	// (not at all; the server then has no certificate), "STLS" or
	// "implicit" (pop3s). The server's log must agree.
	tls string
	// login is the login method every session must use, as popgate logs
	// it (USER, APOP, AUTH CRAM-MD5, AUTH PLAIN).
	login string
}

// clients lists the clients under test.
func clients() []client {
	const (
		fetchmailNote = "LF line ends; its Received: header removed; its NUL+octet+LF after 8191 octets of a long line removed"
		mpopNote      = "LF line ends (received_header off)"
	)
	fetchmailUndo := chain(dropFirstHeader("Received:", "(fetchmail-"), fetchmailLongLines)
	return []client{
		{
			name: "fetchmail", need: []string{"fetchmail"}, fetch: fetchmail(fetchmailConfig{auth: "password"}),
			expect: toLF, undo: fetchmailUndo, note: fetchmailNote, login: "USER",
		},
		{
			name: "fetchmail-stls-cram", need: []string{"fetchmail"}, fetch: fetchmail(fetchmailConfig{auth: "cram-md5", tls: "STLS"}),
			expect: toLF, undo: fetchmailUndo, note: fetchmailNote, tls: "STLS", login: "AUTH CRAM-MD5",
		},
		{
			name: "fetchmail-pop3s-cram", need: []string{"fetchmail"}, fetch: fetchmail(fetchmailConfig{auth: "cram-md5", tls: "implicit"}),
			expect: toLF, undo: fetchmailUndo, note: fetchmailNote, tls: "implicit", login: "AUTH CRAM-MD5",
		},
		{
			name: "mpop", need: []string{"mpop"}, fetch: mpop(mpopConfig{auth: "user"}),
			expect: toLF, note: mpopNote, login: "USER",
		},
		{
			name: "mpop-stls-cram", need: []string{"mpop"}, fetch: mpop(mpopConfig{auth: "cram-md5", tls: "STLS"}),
			expect: toLF, note: mpopNote, tls: "STLS", login: "AUTH CRAM-MD5",
		},
		{
			name: "mpop-pop3s-plain", need: []string{"mpop"}, fetch: mpop(mpopConfig{auth: "plain", tls: "implicit"}),
			expect: toLF, note: mpopNote, tls: "implicit", login: "AUTH PLAIN",
		},
		{
			name: "getmail6", need: []string{"getmail"}, fetch: getmail,
			expect: toLF,
			undo:   dropFirstHeader("Return-Path:", ""),
			note:   "LF line ends; its Return-Path: header removed (delivered_to, received off)",
			login:  "USER",
		},
		{
			name: "curl", need: []string{"curl"}, fetch: curl,
			expect: same,
			note:   "exact CRLF octets",
			login:  "AUTH CRAM-MD5",
		},
		{
			name: "python-poplib", need: []string{"python3"}, fetch: python,
			expect: same,
			note:   "lines joined with CRLF by the test; poplib._MAXLINE raised",
			login:  "USER",
		},
		{
			name: "perl-Net::POP3", need: []string{"perl", "perl:Net::POP3"}, fetch: perl,
			expect: toLF,
			note:   "LF line ends (Net::Cmd)",
			login:  "USER",
		},
	}
}

func same(b []byte) []byte { return b }

// toLF is the CRLF form with LF line ends: what Unix clients store.
func toLF(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")) }

// fetchmailLongLines undoes what fetchmail 6.4.37 does to a line longer
// than its 8192-octet read buffer: after the first 8191 octets of such a
// line it writes a NUL, one octet of whatever was in its buffer, and a
// line break (an LF). Exactly those three octets are removed, and only
// there.
func fetchmailLongLines(b []byte) ([]byte, error) {
	const chunk = 8191
	var out []byte
	run := 0 // octets since the last LF
	for i := 0; i < len(b); i++ {
		if run == chunk && b[i] == 0 && i+2 < len(b) && b[i+2] == '\n' {
			i += 2
			run = 0
			continue
		}
		out = append(out, b[i])
		run++
		if b[i] == '\n' {
			run = 0
		}
	}
	return out, nil
}

// chain applies undo functions in order.
func chain(fs ...func([]byte) ([]byte, error)) func([]byte) ([]byte, error) {
	return func(b []byte) ([]byte, error) {
		var err error
		for _, f := range fs {
			if b, err = f(b); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
}

// dropFirstHeader returns an undo function that removes the first header
// field of a message if it has the given name (and contains mark),
// folded continuation lines included. Its absence is an error: the
// client is documented to add it.
func dropFirstHeader(name, mark string) func([]byte) ([]byte, error) {
	return func(b []byte) ([]byte, error) {
		if !bytes.HasPrefix(b, []byte(name)) {
			return nil, fmt.Errorf("the stored copy does not start with the %s header the client adds: %q", name, b[:min(len(b), 80)])
		}
		end := 0
		for {
			i := bytes.IndexByte(b[end:], '\n')
			if i < 0 {
				return nil, fmt.Errorf("unterminated %s header", name)
			}
			end += i + 1
			if end >= len(b) || (b[end] != ' ' && b[end] != '\t') {
				break
			}
		}
		if mark != "" && !bytes.Contains(b[:end], []byte(mark)) {
			return nil, fmt.Errorf("the first header is not the client's: %q", b[:end])
		}
		return b[end:], nil
	}
}

// run runs a client program, with its output in the error.
func run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// fetchmailConfig is how fetchmail is told to log in and protect the
// session.
type fetchmailConfig struct {
	auth string // fetchmail's auth keyword: password, cram-md5
	tls  string // "", "STLS" or "implicit"
}

func fetchmail(cfg fetchmailConfig) func(ctx context.Context, s *server, work, out string, keep bool) error {
	return func(ctx context.Context, s *server, work, out string, keep bool) error {
		me, err := osuser.Current()
		if err != nil {
			return fmt.Errorf("current user: %w", err)
		}
		mda := filepath.Join(work, "mda.sh")
		script := "#!/bin/sh\nexec cat > \"$(mktemp " + out + "/msg.XXXXXX)\"\n"
		if err := os.WriteFile(mda, []byte(script), 0o700); err != nil {
			return err
		}
		keepOpt := "nokeep"
		if keep {
			keepOpt = "keep"
		}
		// sslproto '' turns TLS off (no opportunistic STLS); a version
		// with sslcertck makes STLS mandatory, ssl makes it pop3s, and
		// the certificate is checked against the test CA alone.
		// fetchmail matches only DNS names, never an IP address, against
		// the certificate, so it is told the name (sslcommonname) that
		// the certificate has besides 127.0.0.1.
		port, tlsOpts := s.port, "sslproto ''"
		tlsCheck := fmt.Sprintf("sslproto 'tls1.2+' sslcertck sslcertfile %q sslcommonname interop.test", s.caFile)
		switch cfg.tls {
		case "STLS":
			tlsOpts = tlsCheck
		case "implicit":
			port = s.tlsPort
			tlsOpts = "ssl " + tlsCheck
		}
		rc := fmt.Sprintf("set no syslog\n"+
			"poll 127.0.0.1 protocol POP3 port %s auth %s timeout 60\n"+
			"  user %q there with password %q is %q here\n"+
			"  %s fetchall norewrite %s\n"+
			"  mda %q\n", port, cfg.auth, user, password, me.Username, keepOpt, tlsOpts, mda)
		rcFile := filepath.Join(work, "fetchmailrc")
		if err := os.WriteFile(rcFile, []byte(rc), 0o600); err != nil {
			return err
		}
		return run(ctx, work, []string{"HOME=" + work, "FETCHMAILHOME=" + work}, "fetchmail",
			"--fetchmailrc", rcFile, "--pidfile", filepath.Join(work, "pid"), "--nodetach", "--nosyslog")
	}
}

// mpopConfig is how mpop is told to log in and protect the session.
type mpopConfig struct {
	auth string // mpop's auth keyword: user, cram-md5, plain
	tls  string // "", "STLS" or "implicit"
}

func mpop(cfg mpopConfig) func(ctx context.Context, s *server, work, out string, keep bool) error {
	return func(ctx context.Context, s *server, work, out string, keep bool) error {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(out, sub), 0o700); err != nil {
				return err
			}
		}
		port, tlsOpts := s.port, "tls off\n"
		switch cfg.tls {
		case "STLS":
			tlsOpts = "tls on\ntls_starttls on\ntls_trust_file " + s.caFile + "\n"
		case "implicit":
			port = s.tlsPort
			tlsOpts = "tls on\ntls_starttls off\ntls_trust_file " + s.caFile + "\n"
		}
		onOff := map[bool]string{true: "on", false: "off"}
		rc := fmt.Sprintf("defaults\naccount interop\nhost 127.0.0.1\nport %s\n%sauth %s\nuser %s\npassword %s\n"+
			"delivery maildir %s\nkeep %s\nonly_new off\nreceived_header off\nuidls_file %s\naccount default : interop\n",
			port, tlsOpts, cfg.auth, user, password, out, onOff[keep], filepath.Join(work, "uidls"))
		rcFile := filepath.Join(work, "mpoprc")
		if err := os.WriteFile(rcFile, []byte(rc), 0o600); err != nil {
			return err
		}
		return run(ctx, work, []string{"HOME=" + work}, "mpop", "--file="+rcFile, "--quiet", "interop")
	}
}

func getmail(ctx context.Context, s *server, work, out string, keep bool) (err error) {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(out, sub), 0o700); err != nil {
			return err
		}
	}
	// getmail refuses to deliver as root; it then needs a user to
	// deliver as (nobody), who must be able to reach and write the
	// Maildir: one in a folder of its own, copied to out afterwards.
	asUser, dest := "", out
	if os.Geteuid() == 0 {
		tmp, err := os.MkdirTemp("", "interop-getmail-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dest = filepath.Join(tmp, "Maildir")
		for _, d := range []string{tmp, dest, filepath.Join(dest, "cur"), filepath.Join(dest, "new"), filepath.Join(dest, "tmp")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(d, 0o777); err != nil {
				return err
			}
		}
		asUser = "user = nobody\n"
		defer func() {
			if err == nil {
				err = copyFiles(filepath.Join(dest, "new"), filepath.Join(out, "new"))
			}
		}()
	}
	rc := fmt.Sprintf("[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\nport = %s\nusername = %s\npassword = %s\n\n"+
		"[destination]\ntype = Maildir\npath = %s/\n%s\n"+
		"[options]\nread_all = true\ndelete = %t\ndelivered_to = false\nreceived = false\nverbose = 0\n",
		s.port, user, password, dest, asUser, !keep)
	rcFile := filepath.Join(work, "getmailrc")
	if err := os.WriteFile(rcFile, []byte(rc), 0o600); err != nil {
		return err
	}
	return run(ctx, work, []string{"HOME=" + work}, "getmail", "--rcfile="+rcFile, "--getmaildir="+work)
}

// copyFiles copies the files of folder from into folder to.
func copyFiles(from, to string) error {
	ents, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func curl(ctx context.Context, s *server, work, out string, keep bool) error {
	base := "pop3://127.0.0.1:" + s.port + "/"
	auth := user + ":" + password
	cmd := exec.CommandContext(ctx, "curl", "--silent", "--show-error", "--user", auth, base)
	list, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("curl LIST: %w", err)
	}
	var nums []string
	for _, line := range strings.Split(strings.TrimSpace(string(list)), "\n") {
		n := strings.Fields(line)
		if len(n) != 2 {
			return fmt.Errorf("curl LIST line %q", line)
		}
		if _, err := strconv.Atoi(n[0]); err != nil {
			return fmt.Errorf("curl LIST line %q", line)
		}
		nums = append(nums, n[0])
		if err := run(ctx, work, nil, "curl", "--silent", "--show-error", "--user", auth, "--output", filepath.Join(out, n[0]), base+n[0]); err != nil {
			return err
		}
	}
	if keep {
		return nil
	}
	// Each curl is a session of its own, committed at QUIT, after which
	// the messages are numbered anew: delete from the last one down.
	for i := len(nums) - 1; i >= 0; i-- {
		if err := run(ctx, work, nil, "curl", "--silent", "--show-error", "--user", auth, "--request", "DELE", "--head", base+nums[i]); err != nil {
			return err
		}
	}
	return nil
}

const pythonScript = `import os, poplib, sys
poplib._MAXLINE = 1 << 20  # the default, 2048, refuses long lines
host, port, user, pw, out, mode = sys.argv[1:]
p = poplib.POP3(host, int(port), timeout=60)
p.user(user)
p.pass_(pw)
count, _ = p.stat()
for i in range(1, count + 1):
    _, lines, _ = p.retr(i)
    with open(os.path.join(out, str(i)), "wb") as f:
        f.write(b"".join(l + b"\r\n" for l in lines))
    if mode == "delete":
        p.dele(i)
p.quit()
`

func python(ctx context.Context, s *server, work, out string, keep bool) error {
	mode := map[bool]string{true: "keep", false: "delete"}[keep]
	return run(ctx, work, nil, "python3", "-c", pythonScript, "127.0.0.1", s.port, user, password, out, mode)
}

const perlScript = `use strict; use warnings; use Net::POP3;
my ($host, $port, $user, $pw, $out, $mode) = @ARGV;
my $pop = Net::POP3->new($host, Port => $port, Timeout => 60) or die "connect: $@";
defined($pop->login($user, $pw)) or die "login failed: " . $pop->message;
my $list = $pop->list or die "LIST failed";
for my $n (sort { $a <=> $b } keys %$list) {
    my $lines = $pop->get($n) or die "RETR $n failed";
    open(my $fh, '>:raw', "$out/$n") or die "$out/$n: $!";
    print $fh @$lines;
    close($fh) or die;
    if ($mode eq 'delete') { $pop->delete($n) or die "DELE $n failed"; }
}
$pop->quit or die "QUIT failed";
`

func perl(ctx context.Context, s *server, work, out string, keep bool) error {
	mode := map[bool]string{true: "keep", false: "delete"}[keep]
	return run(ctx, work, nil, "perl", "-e", perlScript, "127.0.0.1", s.port, user, password, out, mode)
}
