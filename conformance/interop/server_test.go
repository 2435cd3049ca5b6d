package interop

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"popgate/conformance"
	"popgate/mailstore"
	"popgate/mailstore/maildir"
	"popgate/mailstore/users"
	"popgate/pop3"
)

// The account every client logs in to.
const (
	user     = "alice"
	password = "interop-Pw.7"
)

// message is a test message: its name (also in its Message-ID, which is
// how a stored copy is recognised) and the octets in the Maildir file.
type message struct {
	name string
	raw  []byte
}

// canonical is what popgate serves: the CRLF form.
func (m message) canonical() []byte { return mailstore.ToCRLF(m.raw) }

// header starts every message; the Message-ID names it.
func header(name, subject string) string {
	return "From: Sender <sender@example.org>\n" +
		"To: Alice <alice@example.org>\n" +
		"Subject: " + subject + "\n" +
		"Date: Tue, 1 Nov 1988 14:30:00 -0500\n" +
		"Message-ID: <interop-" + name + "@popgate.test>\n"
}

// messages are the awkward cases, as an MTA would leave them in a Maildir
// (LF line ends, except where the case is about line ends).
func messages() []message {
	long := func(n int) string {
		var b strings.Builder
		for b.Len() < n {
			b.WriteString("0123456789abcdefghijklmnopqrstuvwxyz")
		}
		return b.String()[:n]
	}
	var big strings.Builder
	for i := 0; big.Len() < 5<<20; i++ {
		fmt.Fprintf(&big, "%07d the quick brown fox jumps over the lazy dog; .dots and From lines\n", i)
		if i%1000 == 0 {
			big.WriteString(".\n..\n.leading dot\nFrom the middle of a big message\n")
		}
	}
	return []message{
		{"dot-line", []byte(header("dot-line", "a line that is only a dot") +
			"\nbefore\n.\nafter\n")},
		{"dot-start", []byte(header("dot-start", "lines that start with dots") +
			"\n..two dots\n.one dot\n...\n. space\n.\r\nend\n")},
		{"crlf-bare-lf", []byte(strings.ReplaceAll(header("crlf-bare-lf", "CRLF file with one bare LF"), "\n", "\r\n") +
			"\r\nCRLF line\r\nbare LF line\nCRLF again\r\n")},
		{"no-final-newline", []byte(header("no-final-newline", "no newline at the end") +
			"\nthe last line has no line end")},
		{"eight-bit", []byte(header("eight-bit", "=?UTF-8?B?R3LDvMOfZQ==?= and raw Gr\xc3\xbc\xc3\x9fe") +
			"X-Latin1: caf\xe9\nX-UTF8: \xe2\x9c\x89 \xf0\x9f\x93\xac\n\nBody with UTF-8 \xc3\xa9 and Latin-1 \xe9 octets.\n")},
		{"long-line", []byte(header("long-line", "lines of 1000 and 9000 octets") +
			"\n" + long(1000) + "\nshort\n" + long(9000) + "\nend\n")},
		{"empty-body", []byte(header("empty-body", "an empty body") + "\n")},
		{"from-line", []byte(header("from-line", "a From line in the body") +
			"\nFrom here on, mbox writers quote this line.\n>From quoted already\nend\n")},
		{"big", []byte(header("big", "five megabytes") + "\n" + big.String())},
	}
}

var messageIDRE = regexp.MustCompile(`Message-ID: <interop-([a-z0-9-]+)@popgate\.test>`)

// messageName finds the test message a stored copy is.
func messageName(stored []byte) string {
	m := messageIDRE.FindSubmatch(stored)
	if m == nil {
		return ""
	}
	return string(m[1])
}

// server is a popgate POP3 server over a Maildir holding messages().
type server struct {
	addr     string
	port     string
	maildir  string // alice's Maildir
	traceDir string // each session, recorded
	// With TLS: tlsPort is the implicit-TLS (pop3s) listener's port, the
	// plain one offers STLS, caFile is the PEM certificate of the CA
	// that signed the server's, and tlsConfig is the server's TLS
	// configuration (for the replays).
	tlsPort   string
	caFile    string
	tlsConfig *tls.Config
	caPool    *x509.CertPool
	log       *logBuffer // popgate's log, JSON lines
	// stop closes the listeners and waits for every session to end (and
	// its transcript to be written); it may be called more than once.
	stop func() error
}

// testPKI is a throw-away CA and a server certificate it signed, for
// 127.0.0.1, ::1, localhost and interop.test; made once per test binary.
var testPKI = sync.OnceValues(func() (*pki, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "popgate interop test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "interop.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &pki{
		cert:  tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: key},
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pool:  pool,
	}, nil
})

type pki struct {
	cert  tls.Certificate
	caPEM []byte
	pool  *x509.CertPool
}

// logBuffer collects popgate's log (zerolog writes one JSON object per
// Write).
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// login is one successful login, from popgate's log.
type login struct {
	method  string // USER, APOP, AUTH PLAIN, AUTH CRAM-MD5, ...
	tls     bool   // the login line carries tls=true
	tlsMode string // how TLS was established on that connection: STLS, implicit or ""
}

func (l login) String() string {
	if !l.tls {
		return l.method
	}
	return l.method + "/" + map[string]string{"STLS": "STLS", "implicit": "pop3s"}[l.tlsMode]
}

// logins reads the successful logins from the server's log.
func (s *server) logins() ([]login, error) {
	s.log.mu.Lock()
	data := append([]byte(nil), s.log.b.Bytes()...)
	s.log.mu.Unlock()
	modes := map[float64]string{} // connection id: TLS mode
	var out []login
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var ev struct {
			Message string  `json:"message"`
			Conn    float64 `json:"conn"`
			Method  string  `json:"method"`
			TLS     bool    `json:"tls"`
			Mode    string  `json:"mode"`
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			return nil, fmt.Errorf("a log line is not JSON: %q: %w", line, err)
		}
		switch ev.Message {
		case "TLS established":
			modes[ev.Conn] = ev.Mode
		case "login":
			out = append(out, login{method: ev.Method, tls: ev.TLS, tlsMode: modes[ev.Conn]})
		}
	}
	return out, nil
}

// startServer starts popgate over a fresh Maildir and users file; with
// withTLS the POP3 listener offers STLS and a second listener speaks
// implicit TLS (pop3s).
func startServer(t *testing.T, msgs []message, withTLS bool) *server {
	t.Helper()
	dir := t.TempDir()
	entry, err := users.Entry(user, password, users.Plain)
	if err != nil {
		t.Fatal(err)
	}
	passwd := filepath.Join(dir, "passwd")
	if err := os.WriteFile(passwd, []byte(entry+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := users.Open(passwd)
	if err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(dir, "mail", user, "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range msgs {
		name := fmt.Sprintf("%d.M%06dP1.interop", 1700000000+i, i)
		if err := os.WriteFile(filepath.Join(md, "new", name), m.raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st, err := maildir.New(maildir.Options{Path: filepath.Join(dir, "mail", "%u", "Maildir"), Users: db, Hostname: "interop.test"})
	if err != nil {
		t.Fatal(err)
	}
	srvr := &server{maildir: md, traceDir: filepath.Join(dir, "trace"), log: &logBuffer{}}
	opts := pop3.Options{Store: st, Hostname: "interop.test", Logger: zerolog.New(srvr.log)}
	if withTLS {
		p, err := testPKI()
		if err != nil {
			t.Fatal(err)
		}
		srvr.tlsConfig = &tls.Config{Certificates: []tls.Certificate{p.cert}, MinVersion: tls.VersionTLS12}
		srvr.caPool = p.pool
		srvr.caFile = filepath.Join(dir, "ca.pem")
		if err := os.WriteFile(srvr.caFile, p.caPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		opts.TLSConfig = srvr.tlsConfig
	}
	srv, err := pop3.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := conformance.NewRecorder(srvr.traceDir)
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := conformance.NewStoreTarget(context.Background(), st, func(ctx context.Context, c net.Conn) {
		srv.ServeConn(ctx, rec.Wrap(c, "pop3"))
	})
	if err != nil {
		t.Fatal(err)
	}
	srvr.addr = tgt.Addr()
	_, srvr.port, _ = net.SplitHostPort(tgt.Addr())
	closers := []func() error{tgt.Close}
	if withTLS {
		// pop3s: the recorder sits inside TLS, so the session is recorded
		// in clear; popgate sees the *tls.Conn through it (NetConn).
		tlsTgt, err := conformance.NewStoreTarget(context.Background(), st, func(ctx context.Context, c net.Conn) {
			srv.ServeConn(ctx, rec.Wrap(tls.Server(c, srvr.tlsConfig), "pop3"))
		})
		if err != nil {
			_ = tgt.Close()
			t.Fatal(err)
		}
		_, srvr.tlsPort, _ = net.SplitHostPort(tlsTgt.Addr())
		closers = append(closers, tlsTgt.Close)
	}
	srvr.stop = sync.OnceValue(func() error {
		var errs []error
		for _, c := range closers {
			if err := c(); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
	t.Cleanup(func() {
		if err := srvr.stop(); err != nil {
			t.Error(err)
		}
	})
	return srvr
}

// mailFiles returns the contents of the files under dir (recursively),
// skipping the Maildir's tmp/ and dot files.
func mailFiles(dir string) ([][]byte, []string, error) {
	var out [][]byte
	var names []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "tmp" {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out = append(out, data)
		names = append(names, path)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	return out, names, nil
}

// serverMessages returns the messages left in the server's Maildir
// (cur/ and new/; popgate's own files are not messages).
func (s *server) serverMessages() ([][]byte, error) {
	var out [][]byte
	for _, sub := range []string{"cur", "new"} {
		files, _, err := mailFiles(filepath.Join(s.maildir, sub))
		if err != nil {
			return nil, err
		}
		out = append(out, files...)
	}
	return out, nil
}

// firstDiff describes where two byte strings part.
func firstDiff(want, got []byte) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	from := max(0, i-40)
	w := want[from:min(len(want), i+40)]
	g := got[from:min(len(got), i+40)]
	return fmt.Sprintf("%d octets wanted, %d stored; first difference at octet %d: want %q, stored %q", len(want), len(got), i, w, g)
}

// sameBytes is bytes.Equal, named for the reader.
func sameBytes(a, b []byte) bool { return bytes.Equal(a, b) }
