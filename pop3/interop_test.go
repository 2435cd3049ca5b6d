package pop3

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Real-client interoperability: Python's poplib, curl and openssl
// s_client against a live server (STLS on one port, implicit TLS on
// another). Each part is skipped, with a message, when its client is not
// installed.

const (
	interopUser = "carol"
	interopPass = "s3cret-Pw"
)

type interopEnv struct {
	plain, implicit *env
	certPath        string
}

func startInterop(t *testing.T) *interopEnv {
	t.Helper()
	store := newMemStore(t, msg1, msg2)
	ctx := context.Background()
	if err := store.AddUser(ctx, interopUser, interopPass); err != nil {
		t.Fatal(err)
	}
	if err := store.AddUser(ctx, "jürgen", "grüße"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{msg1, "Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\nnaïve café\r\n"} {
		if err := store.Deliver(ctx, interopUser, "", []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := serverTLS(t)
	cfg.MinVersion = tls.VersionTLS12
	mutate := func(o *Options) {
		o.TLSConfig = serverTLS(t)
		// Clients retry; keep the throttle out of the way.
		o.Limiter = NewLimiter(LimiterOptions{IPThreshold: 1000, UserThreshold: 1000})
	}
	return &interopEnv{
		plain:    startServer(t, store, mutate),
		implicit: startServerListener(t, store, mutate, func(ln net.Listener) net.Listener { return tls.NewListener(ln, cfg) }),
		certPath: certFile(t),
	}
}

func hostPort(t *testing.T, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

func need(t *testing.T, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Skipf("%s not installed; skipping this real-client check", bin)
	}
	return p
}

func runClient(t *testing.T, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	// Keep OpenSSL (openssl, curl's libssl) from a system configuration
	// that would hide what popgate itself refuses.
	cmd.Env = append(os.Environ(), "OPENSSL_CONF=/dev/null")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

const pythonScript = `
import poplib, ssl, sys
host, port, sport, cafile, user, pw = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False

p = poplib.POP3(host, int(port))
caps = p.capa()
assert 'STLS' in caps and 'USER' in caps, caps
assert 'UTF8' in caps and caps['UTF8'] == ['USER'], caps
p.stls(context=ctx)
caps = p.capa()
assert 'STLS' not in caps, caps
assert caps['SASL'] == ['PLAIN', 'LOGIN', 'CRAM-MD5'], caps
p.user(user); p.pass_(pw)
count, size = p.stat()
assert count == 2, (count, size)
assert p.uidl()[0].startswith(b'+OK')
assert p.top(1, 0)[0].startswith(b'+OK')
p.quit()

p = poplib.POP3_SSL(host, int(sport), context=ctx)
assert 'STLS' not in p.capa()
p.apop(user, pw)
resp, lines, octets = p.retr(2)
assert 'café'.encode() in b'\n'.join(lines), lines
p.quit()

p = poplib.POP3(host, int(port))
p.utf8()
p.user('jürgen'); p.pass_('grüße')
p.quit()
print('python poplib: ok')
`

func TestInteropPython(t *testing.T) {
	py := need(t, "python3")
	ie := startInterop(t)
	h, port := hostPort(t, ie.plain.addr)
	_, sport := hostPort(t, ie.implicit.addr)
	out, err := runClient(t, "", py, "-c", pythonScript, h, port, sport, ie.certPath, interopUser, interopPass)
	if err != nil || !strings.Contains(out, "python poplib: ok") {
		t.Fatalf("python3 poplib: %v\n%s", err, out)
	}
}

func TestInteropCurl(t *testing.T) {
	curl := need(t, "curl")
	ie := startInterop(t)
	cred := interopUser + ":" + interopPass
	for name, args := range map[string][]string{
		"AUTH=PLAIN":    {"--login-options", "AUTH=PLAIN", "pop3://" + ie.plain.addr + "/1"},
		"AUTH=LOGIN":    {"--login-options", "AUTH=LOGIN", "pop3://" + ie.plain.addr + "/1"},
		"AUTH=CRAM-MD5": {"--login-options", "AUTH=CRAM-MD5", "pop3://" + ie.plain.addr + "/1"},
		"APOP":          {"--login-options", "AUTH=+APOP", "pop3://" + ie.plain.addr + "/1"},
		"STLS":          {"--ssl-reqd", "-k", "pop3://" + ie.plain.addr + "/1"},
		"pop3s":         {"--cacert", ie.certPath, "pop3s://127.0.0.1:" + strings.Split(ie.implicit.addr, ":")[1] + "/1"},
		"sasl-ir":       {"--sasl-ir", "--login-options", "AUTH=PLAIN", "--ssl-reqd", "-k", "pop3://" + ie.plain.addr + "/1"},
	} {
		t.Run(name, func(t *testing.T) {
			full := append([]string{"-sS", "--max-time", "20", "-u", cred}, args...)
			out, err := runClient(t, "", curl, full...)
			if err != nil || out != msg1 {
				t.Fatalf("curl %s: %v\n%q", strings.Join(full, " "), err, out)
			}
		})
	}
	out, err := runClient(t, "", curl, "-sS", "--max-time", "20", "-u", interopUser+":wrong", "--login-options", "AUTH=CRAM-MD5", "pop3://"+ie.plain.addr+"/1")
	if err == nil {
		t.Errorf("curl with a wrong password succeeded: %q", out)
	}
}

func TestInteropOpenSSL(t *testing.T) {
	openssl := need(t, "openssl")
	ie := startInterop(t)
	input := "CAPA\nUSER " + interopUser + "\nPASS " + interopPass + "\nSTAT\nQUIT\n"
	for name, args := range map[string][]string{
		"starttls": {"s_client", "-starttls", "pop3", "-connect", ie.plain.addr, "-crlf", "-quiet", "-CAfile", ie.certPath},
		"implicit": {"s_client", "-connect", ie.implicit.addr, "-crlf", "-quiet", "-CAfile", ie.certPath},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := runClient(t, input, openssl, args...)
			if err != nil {
				t.Fatalf("openssl %v: %v\n%s", args, err, out)
			}
			for _, want := range []string{"IMPLEMENTATION popgate", "+OK 2 ", "signing off"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "\nSTLS") {
				t.Errorf("STLS advertised over TLS:\n%s", out)
			}
		})
	}
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		out, err := runClient(t, "QUIT\n", openssl, "s_client", "-connect", ie.implicit.addr, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-quiet")
		if err == nil && strings.Contains(out, "+OK") {
			t.Fatalf("TLS 1.1 session established:\n%s", out)
		}
	})
}
