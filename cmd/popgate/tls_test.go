package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// writeCert writes a fresh self-signed pair to dir and returns the paths
// and the certificate's serial number.
func writeCert(t *testing.T, dir string) (certPath, keyPath, serial string) {
	t.Helper()
	cert, err := selfSigned("popgate.test")
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	// Write to temporary names and rename, as a certificate renewal does.
	for path, block := range map[string]*pem.Block{
		certPath: {Type: "CERTIFICATE", Bytes: cert.Certificate[0]},
		keyPath:  {Type: "PRIVATE KEY", Bytes: kder},
	} {
		if err := os.WriteFile(path+".new", pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	return certPath, keyPath, cert.Leaf.SerialNumber.String()
}

// listenerAddr finds "NAME on ADDR" in the welcome text.
func listenerAddr(t *testing.T, stdout *syncBuffer, name string) string {
	t.Helper()
	m := regexp.MustCompile(`popgate: ` + name + ` on (\S+)`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no %s listener in:\n%s", name, stdout.String())
	}
	return m[1]
}

func tlsClient(t *testing.T, addr string, cfg *tls.Config) (*client, *tls.Conn) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	tc, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	t.Cleanup(func() { tc.Close() })
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, c: tc, r: bufio.NewReader(tc)}, tc
}

func (c *client) capa() string {
	c.t.Helper()
	expectPrefix(c.t, c.cmd("CAPA"), "+OK")
	var lines []string
	for {
		l := c.line()
		if l == "." {
			return strings.Join(lines, "\n")
		}
		lines = append(lines, l)
	}
}

func TestPOP3SAndSTLSWithCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath, serial1 := writeCert(t, dir)
	_, stdout, _, _, _ := startRunOut(t, "--pop3", "127.0.0.1:0", "--pop3s", "127.0.0.1:0",
		"--tls-cert", certPath, "--tls-key", keyPath, "--plaintext", "never")
	plainAddr := listenerAddr(t, stdout, "POP3")
	tlsAddr := listenerAddr(t, stdout, "POP3S")
	insecure := &tls.Config{InsecureSkipVerify: true}

	// Implicit TLS: no STLS, logins allowed.
	c, tc := tlsClient(t, tlsAddr, insecure)
	expectPrefix(t, c.line(), "+OK")
	if st := tc.ConnectionState(); st.Version < tls.VersionTLS12 || st.PeerCertificates[0].SerialNumber.String() != serial1 {
		t.Fatalf("TLS %x, serial %v", st.Version, st.PeerCertificates[0].SerialNumber)
	}
	if capa := c.capa(); strings.Contains(capa, "STLS") || !strings.Contains(capa, "SASL PLAIN") {
		t.Errorf("CAPA over POP3S:\n%s", capa)
	}
	expectPrefix(t, c.cmd("USER demo"), "+OK")
	expectPrefix(t, c.cmd("PASS demo"), "+OK")
	expectPrefix(t, c.cmd("QUIT"), "+OK")

	// Plain listener: cleartext refused (--plaintext never), STLS works.
	p := dial(t, plainAddr)
	expectPrefix(t, p.line(), "+OK")
	expectPrefix(t, p.cmd("USER demo"), "-ERR [AUTH] cleartext login refused here: TLS is needed (use STLS or port 995)")
	if capa := p.capa(); !strings.Contains(capa, "STLS") || strings.Contains("\n"+capa+"\n", "\nUSER\n") {
		t.Errorf("CAPA before STLS:\n%s", capa)
	}
	expectPrefix(t, p.cmd("STLS"), "+OK")
	ptc := tls.Client(p.c, insecure)
	if err := ptc.Handshake(); err != nil {
		t.Fatal(err)
	}
	p = &client{t: t, c: ptc, r: bufio.NewReader(ptc)}
	expectPrefix(t, p.cmd("USER demo"), "+OK")
	expectPrefix(t, p.cmd("PASS demo"), "+OK")
	expectPrefix(t, p.cmd("QUIT"), "+OK")

	// TLS 1.0 and 1.1 are refused (RFC 8314 §4.1).
	old := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	if oc, err := tls.Dial("tcp", tlsAddr, old); err == nil {
		oc.Close()
		t.Error("TLS 1.1 accepted on --pop3s")
	}

	// SIGHUP loads a renewed certificate; new handshakes get it.
	_, _, serial2 := writeCert(t, dir)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, tc := tlsClient(t, tlsAddr, insecure)
		got := tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
		c.line()
		if got == serial2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("certificate not reloaded: serial %s, want %s", got, serial2)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTLSFlagErrors(t *testing.T) {
	dir := t.TempDir()
	certPath, _, _ := writeCert(t, dir)
	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--pop3s", "127.0.0.1:0"}, 1, "--pop3s needs --tls-cert"},
		{[]string{"--pop3", "127.0.0.1:0", "--tls-cert", certPath}, 2, "go together"},
		{[]string{"--pop3", "127.0.0.1:0", "--plaintext", "sometimes"}, 2, "--plaintext"},
		{[]string{"--pop3", "127.0.0.1:0", "--plaintext-networks", "10.0.0.0/99"}, 2, "--plaintext-networks"},
		{[]string{"--pop3s", "127.0.0.1:0", "--tls-cert", certPath, "--tls-key", filepath.Join(dir, "missing")}, 1, "loading TLS certificate"},
	} {
		var stdout, stderr syncBuffer
		if code := run(context.Background(), tt.args, &stdout, &stderr); code != tt.code || !strings.Contains(stderr.String(), tt.msg) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), tt.code, tt.msg)
		}
	}
}

func TestDemoCertificate(t *testing.T) {
	var s tlsSettings
	if err := s.validate(); err == nil {
		// validate needs the flag default "lan"; the zero value is not one.
		t.Fatal("empty --plaintext accepted")
	}
	s.plaintext = "lan"
	if err := s.validate(); err == nil {
		t.Fatal("zero login-failure thresholds accepted")
	}
	s.ipFailures, s.userFailures = 3, 10
	if err := s.validate(); err != nil {
		t.Fatal(err)
	}
	if err := s.setup("demo.test", true, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	if s.config == nil || s.config.MinVersion != tls.VersionTLS12 {
		t.Fatalf("demo TLS config %+v", s.config)
	}
	cert, err := s.config.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	if err := cert.Leaf.VerifyHostname("demo.test"); err != nil {
		t.Error(err)
	}
	var none tlsSettings
	none.plaintext = "allow"
	_ = none.validate()
	if err := none.setup("x", false, zerolog.Nop()); err != nil || none.config != nil {
		t.Errorf("no certificate and no demo: config %v, err %v", none.config, err)
	}
}
