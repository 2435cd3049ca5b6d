package upstream_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"popgate/mailstore"
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

// A POP3 upstream has one folder, so storetest's Folders check (which
// delivers to "Archive") cannot pass; storetest has no switch for
// single-folder stores. TestPOP3S and TestPOP3STLS therefore run the suite
// in a child process of this test binary with that one check skipped
// (-test.skip), and check the single-folder behaviour themselves.

// TestPOP3S runs the suite through pop3s:// against popgate's own POP3
// server over implicit TLS.
func TestPOP3S(t *testing.T) {
	runChildSuite(t, "TestPOP3SuiteChild", "")
	testSingleFolder(t, false)
}

// TestPOP3STLS runs the suite through pop3:// with STLS.
func TestPOP3STLS(t *testing.T) {
	runChildSuite(t, "TestPOP3STLSSuiteChild", "")
	testSingleFolder(t, true)
}

const childEnv = "POPGATE_UPSTREAM_SUITE_CHILD"

// TestPOP3SuiteChild is TestPOP3S's child; it runs only under it.
func TestPOP3SuiteChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("run by TestPOP3S in a child process")
	}
	storetest.Run(t, harness(pop3Start(false), upstream.Options{}))
}

// TestPOP3STLSSuiteChild is TestPOP3STLS's child; it runs only under it.
func TestPOP3STLSSuiteChild(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		t.Skip("run by TestPOP3STLS in a child process")
	}
	storetest.Run(t, harness(pop3Start(true), upstream.Options{}))
}

// runChildSuite runs test name (a storetest suite) in a child process of
// this test binary, skipping the suite checks matched by skip ("Folders"
// when empty).
func runChildSuite(t *testing.T, name, skip string) {
	t.Helper()
	if skip == "" {
		skip = "Folders"
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.skip=^"+name+"$/^("+skip+")$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	passed := strings.Count(string(out), "--- PASS: "+name+"/")
	if err != nil {
		t.Fatalf("storetest suite in child %s: %v\n%s", name, err, out)
	}
	if passed < 9 {
		t.Fatalf("child %s passed only %d suite checks:\n%s", name, passed, out)
	}
	t.Logf("child %s: %d storetest checks passed (skipped: %s)", name, passed, skip)
}

func testSingleFolder(t *testing.T, stls bool) {
	up := startPOP3(t, stls)
	ctx := testCtx(t)
	if err := up.AddUser(ctx, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, upstream.Options{URL: up.url(), CAFile: up.caFile})
	acct, err := s.Login(ctx, "alice", "pw")
	if err != nil {
		t.Fatalf("Login = %v", err)
	}
	defer acct.Close()
	if f, err := acct.Folders(ctx); err != nil || len(f) != 1 || f[0] != mailstore.Inbox {
		t.Errorf("Folders() = %v, %v; want [INBOX]", f, err)
	}
	if _, err := acct.Open(ctx, "Archive"); !errors.Is(err, mailstore.ErrNoSuchFolder) {
		t.Errorf("Open(Archive) = %v, want ErrNoSuchFolder", err)
	}
}
