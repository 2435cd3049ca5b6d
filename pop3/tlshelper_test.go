package pop3

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// testCert is a throw-away self-signed ECDSA certificate for 127.0.0.1
// and localhost, made once per test binary.
type testCert struct {
	once    sync.Once
	cert    tls.Certificate
	certPEM []byte
	keyPEM  []byte
	err     error
}

func (tc *testCert) get(t testing.TB) *testCert {
	t.Helper()
	tc.once.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tc.err = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "popgate test"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			DNSNames:     []string{"localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			tc.err = err
			return
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			tc.err = err
			return
		}
		tc.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		tc.keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
		tc.cert, tc.err = tls.X509KeyPair(tc.certPEM, tc.keyPEM)
	})
	if tc.err != nil {
		t.Fatal(tc.err)
	}
	return tc
}

var sharedCert testCert

// serverTLS returns a server config with the test certificate.
func serverTLS(t testing.TB) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{sharedCert.get(t).cert}}
}

// certFile writes the certificate to a file (for clients that verify).
func certFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(p, sharedCert.get(t).certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// clientTLS returns a client config that trusts nothing and checks
// nothing, for tests.
func clientTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}
}

// starttls sends STLS, expects +OK and upgrades the client.
func (c *client) starttls(cfg *tls.Config) *tls.ConnectionState {
	c.t.Helper()
	c.want("STLS", "+OK ")
	if c.r.Buffered() > 0 {
		c.t.Fatalf("data after the STLS reply before TLS")
	}
	tc := tls.Client(c.nc, cfg)
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake after STLS: %v", err)
	}
	_ = tc.SetDeadline(time.Time{})
	c.nc = tc
	c.r = bufio.NewReader(tc)
	st := tc.ConnectionState()
	return &st
}

// startTLSServer is startServer with a TLS listener (port 995 style).
func startTLSServer(t *testing.T, mutate func(*Options)) (*env, *tls.Config) {
	t.Helper()
	cfg := serverTLS(t)
	cfg.MinVersion = tls.VersionTLS12
	e := startServerListener(t, newMemStore(t, msg1), mutate, func(ln net.Listener) net.Listener { return tls.NewListener(ln, cfg) })
	return e, cfg
}

// dialTLS connects with implicit TLS and reads the greeting.
func (e *env) dialTLS(cfg *tls.Config) *client {
	e.t.Helper()
	nc, err := tls.Dial("tcp", e.addr, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = nc.Close() })
	c := &client{t: e.t, nc: nc, r: bufio.NewReader(nc)}
	c.greeting = c.status()
	return c
}
