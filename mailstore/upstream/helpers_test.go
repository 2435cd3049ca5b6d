package upstream_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"popgate/mailstore"
	"popgate/mailstore/memstore"
	"popgate/mailstore/storetest"
	"popgate/mailstore/upstream"
	"popgate/pop3"
	"popgate/pop3/wire/wiretest"
)

// testCert makes a throw-away self-signed certificate for 127.0.0.1 and
// localhost. It returns the server's TLS config and a CA file trusting it.
func testCert(t testing.TB) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "popgate test upstream"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, caFile
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// imapUpstream is an in-process IMAP server (go-imap's imapmemserver).
type imapUpstream struct {
	mem    *imapmemserver.Server
	addr   string
	caFile string
	scheme string

	mu    sync.Mutex
	users map[string]*imapmemserver.User
}

// startIMAP serves imapmemserver on loopback, over implicit TLS or (with
// starttls) STARTTLS. caps nil means IMAP4rev2 (UIDPLUS included).
func startIMAP(t testing.TB, caps imap.CapSet, starttls bool) *imapUpstream {
	t.Helper()
	if caps == nil {
		caps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}}
	}
	srvTLS, caFile := testCert(t)
	up := &imapUpstream{mem: imapmemserver.New(), caFile: caFile, scheme: "imaps", users: map[string]*imapmemserver.User{}}
	opts := &imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return up.mem.NewSession(), nil, nil
		},
		Caps:   caps,
		Logger: log.New(io.Discard, "", 0),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if starttls {
		opts.TLSConfig = srvTLS
		up.scheme = "imap"
	} else {
		opts.InsecureAuth = true // the listener is TLS already
		ln = tls.NewListener(ln, srvTLS)
	}
	srv := imapserver.New(opts)
	up.addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return up
}

func (up *imapUpstream) url() string { return up.scheme + "://" + up.addr }

func (up *imapUpstream) AddUser(_ context.Context, name, password string) error {
	up.mu.Lock()
	defer up.mu.Unlock()
	if _, ok := up.users[name]; ok {
		return fmt.Errorf("imap test upstream: user %q exists", name)
	}
	u := imapmemserver.NewUser(name, password)
	if err := u.Create(mailstore.Inbox, nil); err != nil {
		return err
	}
	up.users[name] = u
	up.mem.AddUser(u)
	return nil
}

// Deliver appends the CRLF form of msg, as an MTA in front of an IMAP
// server stores it.
func (up *imapUpstream) Deliver(_ context.Context, name, folder string, msg []byte) error {
	return up.appendRaw(name, folder, mailstore.ToCRLF(msg), nil)
}

// appendRaw appends data as it is (a non-canonical upstream if it holds
// bare LFs).
func (up *imapUpstream) appendRaw(name, folder string, data []byte, flags []imap.Flag) error {
	up.mu.Lock()
	u, ok := up.users[name]
	up.mu.Unlock()
	if !ok {
		return fmt.Errorf("imap test upstream: no user %q", name)
	}
	fn := mailstore.FolderName(folder)
	if err := u.Create(fn, nil); err != nil {
		var ie *imap.Error
		if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeAlreadyExists {
			return err
		}
	}
	_, err := u.Append(fn, bytes.NewReader(data), &imap.AppendOptions{Flags: flags})
	return err
}

// backend joins a gateway Store with the upstream's provisioning, for
// storetest.
type backend struct {
	*upstream.Store
	opts upstream.Options
	prov provisioner
}

func (b *backend) AddUser(ctx context.Context, user, password string) error {
	return b.prov.AddUser(ctx, user, password)
}

func (b *backend) Deliver(ctx context.Context, user, folder string, msg []byte) error {
	return b.prov.Deliver(ctx, user, folder, msg)
}

func newStore(t testing.TB, opts upstream.Options) *upstream.Store {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = 20 * time.Second
	}
	s, err := upstream.New(testCtx(t), opts)
	if err != nil {
		t.Fatalf("upstream.New(%s) = %v", opts.URL, err)
	}
	return s
}

// harness runs storetest against a fresh upstream made by start, through
// gateway stores made with opts (URL and CAFile filled in).
func harness(start func(t *testing.T) (url, caFile string, prov provisioner), opts upstream.Options) storetest.Harness {
	return storetest.Harness{
		New: func(t *testing.T) storetest.Backend {
			url, ca, prov := start(t)
			o := opts
			o.URL, o.CAFile = url, ca
			return &backend{Store: newStore(t, o), opts: o, prov: prov}
		},
		Reopen: func(t *testing.T, b storetest.Backend) storetest.Backend {
			old := b.(*backend)
			return &backend{Store: newStore(t, old.opts), opts: old.opts, prov: old.prov}
		},
	}
}

// provisioner is the test upstream's side of storetest.Backend.
type provisioner interface {
	AddUser(ctx context.Context, user, password string) error
	Deliver(ctx context.Context, user, folder string, msg []byte) error
}

// pop3Upstream is popgate's own POP3 server over a memstore, on loopback
// behind TLS: implicit (pop3s) or STLS through stlsFront.
type pop3Upstream struct {
	mem    *memstore.Store
	addr   string
	caFile string
	scheme string
}

func startPOP3(t testing.TB, stls bool) *pop3Upstream {
	t.Helper()
	srvTLS, caFile := testCert(t)
	mem := memstore.New()
	srv, err := pop3.New(pop3.Options{Store: mem, Hostname: "upstream.test"})
	if err != nil {
		t.Fatal(err)
	}
	addr := wiretest.Serve(t, func(ctx context.Context, conn net.Conn) {
		if !stls {
			srv.ServeConn(ctx, tls.Server(conn, srvTLS))
			return
		}
		tc, err := stlsFront(conn, srvTLS)
		if err != nil {
			_ = conn.Close()
			return
		}
		srv.ServeConn(ctx, tc)
	})
	up := &pop3Upstream{mem: mem, addr: addr, caFile: caFile, scheme: "pop3s"}
	if stls {
		up.scheme = "pop3"
	}
	return up
}

func (up *pop3Upstream) url() string { return up.scheme + "://" + up.addr }

func (up *pop3Upstream) AddUser(ctx context.Context, name, password string) error {
	return up.mem.AddUser(ctx, name, password)
}

func (up *pop3Upstream) Deliver(ctx context.Context, name, folder string, msg []byte) error {
	return up.mem.Deliver(ctx, name, folder, msg)
}

// stlsFront plays the plain-text part of an RFC 2595 STLS exchange, then
// hands the TLS connection to a POP3 server whose second greeting it
// swallows (the client expects none after STLS).
func stlsFront(conn net.Conn, cfg *tls.Config) (net.Conn, error) {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	if _, err := io.WriteString(conn, "+OK stls front ready\r\n"); err != nil {
		return nil, err
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		switch strings.ToUpper(strings.TrimSpace(line)) {
		case "CAPA":
			_, err = io.WriteString(conn, "+OK\r\nSTLS\r\nUSER\r\n.\r\n")
		case "STLS":
			if _, err := io.WriteString(conn, "+OK begin TLS\r\n"); err != nil {
				return nil, err
			}
			_ = conn.SetDeadline(time.Time{})
			tc := tls.Server(conn, cfg)
			return &skipGreeting{Conn: tc}, nil
		default:
			_, err = io.WriteString(conn, "-ERR say STLS first\r\n")
		}
		if err != nil {
			return nil, err
		}
	}
}

// skipGreeting drops the first line the server writes.
type skipGreeting struct {
	net.Conn
	mu      sync.Mutex
	skipped bool
}

func (s *skipGreeting) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.skipped {
		return s.Conn.Write(p)
	}
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		return len(p), nil
	}
	s.skipped = true
	if _, err := s.Conn.Write(p[i+1:]); err != nil {
		return 0, err
	}
	return len(p), nil
}

func contextWithCancel(t testing.TB) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, cancel
}
