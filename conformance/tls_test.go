package conformance_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"popgate/conformance"
	"popgate/mailstore"
	"popgate/pop3"
)

// featureCleartextRefused is a requires: feature of the matrix: the POP3
// front end refuses password logins until STLS (pop3.PlaintextNever), as
// RFC 5034 §4 wants by default. Other targets do not have it, so such
// files are skipped there.
const featureCleartextRefused = "popgate-cleartext-refused"

// Features every POP3 script of the matrix has: "stls" (the front end
// offers STLS) and "popgate-throttle" (a fresh server, so the login
// throttle starts from zero; a long-running server shared by many
// scripts would have counted their failures already).
const (
	featureSTLS     = "stls"
	featureThrottle = "popgate-throttle"
)

// matrixTLS is a throw-away self-signed certificate for STLS in the
// matrix, made once per test binary.
type matrixTLS struct {
	once sync.Once
	cfg  *tls.Config
	err  error
}

func (m *matrixTLS) config() (*tls.Config, error) {
	m.once.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			m.err = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "popgate.test"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			DNSNames:     []string{"popgate.test"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			m.err = err
			return
		}
		m.cfg = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	})
	return m.cfg, m.err
}

var matrixCert matrixTLS

// pop3FrontEnd builds the POP3 front end of the matrix: STLS on, and the
// options mutate sets.
func pop3FrontEnd(mutate func(*pop3.Options)) frontEnd {
	return func(st mailstore.Store, log zerolog.Logger) (conformance.Handler, error) {
		cfg, err := matrixCert.config()
		if err != nil {
			return nil, err
		}
		opts := pop3.Options{Store: st, Hostname: "popgate.test", Logger: log, TLSConfig: cfg}
		if mutate != nil {
			mutate(&opts)
		}
		srv, err := pop3.New(opts)
		if err != nil {
			return nil, err
		}
		return srv.ServeConn, nil
	}
}

// frontEndFor returns the front end a script needs: the cleartext-refusing
// POP3 server for scripts that require it.
func frontEndFor(s *conformance.Script, proto string, fe frontEnd) (frontEnd, bool) {
	if proto == "pop3" && slices.Contains(s.Requires, featureCleartextRefused) {
		return pop3FrontEnd(func(o *pop3.Options) { o.Plaintext = pop3.PlaintextNever }), true
	}
	return fe, false
}

// featureTarget adds matrix features to a StoreTarget.
type featureTarget struct {
	*conformance.StoreTarget
	proto            string
	cleartextRefused bool
}

// Supports implements conformance.Supporter.
func (t featureTarget) Supports(ctx context.Context, feature string) (bool, string) {
	switch feature {
	case featureCleartextRefused:
		if t.cleartextRefused {
			return true, ""
		}
		return false, "the front end allows cleartext logins"
	case featureSTLS, featureThrottle:
		if t.proto == "pop3" {
			return true, ""
		}
		return false, "only the POP3 front end has " + feature
	}
	return t.StoreTarget.Supports(ctx, feature)
}

func TestFrontEndFor(t *testing.T) {
	s := &conformance.Script{Requires: []string{featureCleartextRefused}}
	if _, ok := frontEndFor(s, "pop3", nil); !ok {
		t.Error("cleartext-refusing front end not chosen")
	}
	if _, ok := frontEndFor(&conformance.Script{}, "pop3", nil); ok {
		t.Error("cleartext-refusing front end chosen without requires:")
	}
}
