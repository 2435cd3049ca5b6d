package upstream_test

import (
	"testing"

	"github.com/emersion/go-imap/v2"

	"popgate/mailstore/storetest"
	"popgate/mailstore/upstream"
)

func imapStart(caps imap.CapSet, starttls bool) func(t *testing.T) (string, string, provisioner) {
	return func(t *testing.T) (string, string, provisioner) {
		up := startIMAP(t, caps, starttls)
		return up.url(), up.caFile, up
	}
}

func pop3Start(stls bool) func(t *testing.T) (string, string, provisioner) {
	return func(t *testing.T) (string, string, provisioner) {
		up := startPOP3(t, stls)
		return up.url(), up.caFile, up
	}
}

// TestIMAPS runs the backend suite through imaps:// against an IMAP4rev2
// server (UID EXPUNGE available).
func TestIMAPS(t *testing.T) {
	storetest.Run(t, harness(imapStart(nil, false), upstream.Options{}))
}

// TestIMAPSNoUIDPLUS runs the suite against an IMAP4rev1 server without
// UIDPLUS: commits use the guarded plain EXPUNGE.
func TestIMAPSNoUIDPLUS(t *testing.T) {
	storetest.Run(t, harness(imapStart(imap.CapSet{imap.CapIMAP4rev1: {}}, false), upstream.Options{}))
}

// TestIMAPSKeywordMode runs the suite with deletions that only hide.
func TestIMAPSKeywordMode(t *testing.T) {
	storetest.Run(t, harness(imapStart(nil, false), upstream.Options{DeleteMode: upstream.DeleteKeyword}))
}

// TestIMAPSTARTTLS runs the suite through imap:// with STARTTLS.
func TestIMAPSTARTTLS(t *testing.T) {
	storetest.Run(t, harness(imapStart(nil, true), upstream.Options{}))
}

// TestPOP3S runs the suite through pop3s:// against popgate's own POP3
// server over implicit TLS. A POP3 upstream has one folder.
func TestPOP3S(t *testing.T) {
	h := harness(pop3Start(false), upstream.Options{})
	h.SingleFolder = true
	storetest.Run(t, h)
}

// TestPOP3STLS runs the suite through pop3:// with STLS.
func TestPOP3STLS(t *testing.T) {
	h := harness(pop3Start(true), upstream.Options{})
	h.SingleFolder = true
	storetest.Run(t, h)
}
