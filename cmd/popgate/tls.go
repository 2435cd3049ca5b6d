package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"popgate/pop3"
)

// demoPOP3SAddr is the demo's implicit-TLS POP3 listener (RFC 8314 §3:
// port 995 in production).
const demoPOP3SAddr = "127.0.0.1:1995"

// tlsSettings are the TLS and login-policy flags of the POP3 listeners,
// and what start-up makes of them.
type tlsSettings struct {
	pop3sAddrs        []string
	certFile, keyFile string
	plaintext         string
	plaintextNetworks string
	ipFailures        int
	userFailures      int

	policy   pop3.PlaintextPolicy
	networks []netip.Prefix // nil: pop3.DefaultPlaintextNetworks
	certs    *certSource    // nil: no TLS
	config   *tls.Config    // nil: no STLS, no POP3S
	limiter  *pop3.Limiter  // shared by every POP3 listener
}

// addTLSFlags registers the flags on fs.
func addTLSFlags(fs *pflag.FlagSet, t *tlsSettings) {
	fs.StringArrayVar(&t.pop3sAddrs, "pop3s", nil, "POP3 over implicit TLS (RFC 8314) listener `ADDR` (repeatable); standard port 995; needs --tls-cert; takes the --pop3 listener options (ADDR;profile=NAME;quirks=LIST)")
	fs.StringVar(&t.certFile, "tls-cert", "", "TLS certificate chain `FILE` (PEM) for STLS and --pop3s; reloaded on SIGHUP")
	fs.StringVar(&t.keyFile, "tls-key", "", "TLS private key `FILE` (PEM) for --tls-cert")
	fs.StringVar(&t.plaintext, "plaintext", "lan", "password logins without TLS: allow, lan (only from --plaintext-networks) or never")
	fs.IntVar(&t.ipFailures, "login-failures-per-ip", pop3.DefaultIPThreshold, "failed logins from one address (IPv6: one /64) before further attempts are delayed")
	fs.IntVar(&t.userFailures, "login-failures-per-user", pop3.DefaultUserThreshold, "failed logins for one user name before further attempts are delayed")
	fs.StringVar(&t.plaintextNetworks, "plaintext-networks", "", "`CIDR,...` where --plaintext lan allows logins without TLS (default: loopback, 10/8, 172.16/12, 192.168/16, fc00::/7)")
}

// validate parses the policy flags (usage errors).
func (t *tlsSettings) validate() error {
	p, err := pop3.ParsePlaintextPolicy(t.plaintext)
	if err != nil {
		return fmt.Errorf("--plaintext: %w", err)
	}
	t.policy = p
	if t.plaintextNetworks != "" {
		nets, err := pop3.ParseNetworks(t.plaintextNetworks)
		if err != nil {
			return fmt.Errorf("--plaintext-networks: %w", err)
		}
		t.networks = nets
	}
	if t.ipFailures < 1 || t.userFailures < 1 {
		return errors.New("--login-failures-per-ip and --login-failures-per-user must be at least 1")
	}
	if (t.certFile == "") != (t.keyFile == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	return nil
}

// setup loads the certificate, or makes a throw-away one for the demo
// (demo: no --tls-cert and the built-in listeners), and builds the TLS
// configuration: TLS 1.2 at least (RFC 8314 §4.1), the certificate read
// through an atomic pointer so that SIGHUP can replace it.
func (t *tlsSettings) setup(hostname string, demo bool, log zerolog.Logger) error {
	t.limiter = pop3.NewLimiter(pop3.LimiterOptions{IPThreshold: t.ipFailures, UserThreshold: t.userFailures})
	switch {
	case t.certFile != "":
		t.certs = &certSource{certFile: t.certFile, keyFile: t.keyFile}
		if err := t.certs.load(); err != nil {
			return err
		}
	case demo:
		cert, err := selfSigned(hostname)
		if err != nil {
			return fmt.Errorf("demo certificate: %w", err)
		}
		t.certs = &certSource{}
		t.certs.cur.Store(&cert)
		log.Warn().Msg("demo: serving STLS and POP3S with a throw-away self-signed certificate (clients must skip verification)")
	case len(t.pop3sAddrs) > 0:
		return errors.New("--pop3s needs --tls-cert and --tls-key")
	default:
		return nil
	}
	t.config = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: t.certs.getCertificate,
	}
	return nil
}

// apply puts the TLS and policy settings into the POP3 options.
func (t *tlsSettings) apply(o *pop3.Options) {
	o.TLSConfig = t.config
	o.Plaintext = t.policy
	o.PlaintextNetworks = t.networks
	o.Limiter = t.limiter
}

// wrap returns ln with TLS for the implicit-TLS protocol "pop3s".
func (t *tlsSettings) wrap(proto string, ln net.Listener) net.Listener {
	if proto != "pop3s" || t.config == nil {
		return ln
	}
	return tls.NewListener(ln, t.config)
}

// certSource holds the current certificate; a reload swaps it without a
// lock, and handshakes already running keep the one they took.
type certSource struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// load reads the key pair; on error the previous certificate stays.
func (c *certSource) load() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("loading TLS certificate %s: %w", c.certFile, err)
	}
	c.cur.Store(&cert)
	return nil
}

// getCertificate is tls.Config.GetCertificate.
func (c *certSource) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert := c.cur.Load()
	if cert == nil {
		return nil, errors.New("no TLS certificate loaded")
	}
	return cert, nil
}

// certReloader is the SIGHUP reloader of the certificate files, or none
// when the certificate is not from files (the demo's).
func certReloader(c *certSource) []reloader {
	if c == nil || c.certFile == "" {
		return nil
	}
	return []reloader{{
		what:   "TLS certificate",
		reload: c.load,
		detail: func(ev *zerolog.Event) { ev.Str("cert", c.certFile) },
	}}
}

// selfSigned makes a throw-away ECDSA P-256 certificate for hostname,
// localhost and the loopback addresses, valid for a week, kept in memory
// only.
func selfSigned(hostname string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating serial: %w", err)
	}
	names := []string{"localhost"}
	if hostname != "" && hostname != "localhost" {
		names = append(names, hostname)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "popgate demo"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(7 * 24 * time.Hour),
		DNSNames:     names,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("signing: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parsing: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
