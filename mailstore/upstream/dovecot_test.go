package upstream_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"popgate/mailstore"
	"popgate/mailstore/storetest"
	"popgate/mailstore/upstream"
)

// The Dovecot tests start a private Dovecot (Debian's dovecot-imapd and
// dovecot-pop3d) on loopback ports: own config, passwd-file with PLAIN
// passwords, Maildirs and a throw-away certificate under t.TempDir(), no
// system service. They are skipped when the dovecot binary is missing;
// to run them:
//
//	apt-get install -y dovecot-imapd dovecot-pop3d
//	go test -race -run Dovecot ./mailstore/upstream/

// dovecotUp is one private Dovecot instance.
type dovecotUp struct {
	dir      string
	imaps    string
	pop3s    string
	caFile   string
	mu       sync.Mutex
	users    map[string]string
	passwdFn string
}

func dovecotBinary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("dovecot")
	if err != nil {
		for _, c := range []string{"/usr/sbin/dovecot", "/usr/local/sbin/dovecot"} {
			if _, err := os.Stat(c); err == nil {
				return c
			}
		}
		t.Skip("dovecot not installed: apt-get install -y dovecot-imapd dovecot-pop3d, then go test -run Dovecot ./mailstore/upstream/")
	}
	return p
}

// freePorts returns n distinct free loopback ports. All n listeners stay
// open until every port is chosen: closing each before asking for the
// next let the kernel hand out the same port twice, and Dovecot then
// refused its configuration ("duplicate listener").
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func startDovecot(t testing.TB) *dovecotUp {
	t.Helper()
	bin := dovecotBinary(t)
	// Login processes refuse to run as root; the Debian package creates
	// these unprivileged users.
	for _, u := range []string{"dovecot", "dovenull"} {
		if _, err := user.Lookup(u); err != nil {
			t.Skipf("dovecot is installed but user %q is missing (install Debian's dovecot-core package)", u)
		}
	}
	_, caFile := testCert(t)
	dir, err := os.MkdirTemp("", "popgate-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("dovecot log:\n%s", log)
		}
		_ = os.RemoveAll(dir)
	})
	// The login and internal users (dovenull, dovecot) must reach the
	// instance's directories.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Dir(caFile)
	d := &dovecotUp{dir: dir, caFile: caFile, users: map[string]string{}, passwdFn: filepath.Join(dir, "passwd")}
	if err := os.WriteFile(d.passwdFn, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Mail is kept as nobody (Dovecot refuses uid 0 for mail).
	mailUser, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody for the Dovecot mail processes: %v", err)
	}
	uid, _ := strconv.Atoi(mailUser.Uid)
	gid, _ := strconv.Atoi(mailUser.Gid)
	for _, sub := range []string{"mail", "home"} {
		p := filepath.Join(dir, sub)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	ports := freePorts(t, 2)
	pi, pp := ports[0], ports[1]
	d.imaps = "127.0.0.1:" + strconv.Itoa(pi)
	d.pop3s = "127.0.0.1:" + strconv.Itoa(pp)
	conf := fmt.Sprintf(`
instance_name = popgate-test-%[1]d
base_dir = %[2]s/run
state_dir = %[2]s/state
log_path = %[2]s/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = required
ssl_cert = <%[3]s/ca.pem
ssl_key = <%[3]s/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = 1
mail_location = maildir:%[2]s/mail/%%u
default_internal_user = dovecot
default_login_user = dovenull
pop3_uidl_format = %%08Xu%%08Xv
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[2]s/passwd
}
userdb {
  driver = static
  args = uid=%[6]s gid=%[7]s home=%[2]s/home/%%u
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = %[4]d
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = %[5]d
    ssl = yes
  }
}
`, os.Getpid()*1000+pi%1000, dir, certDir, pi, pp, mailUser.Uid, mailUser.Gid)
	confFn := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confFn, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-F", "-c", confFn)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dovecot: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for _, addr := range []string{d.imaps, d.pop3s} {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				_ = c.Close()
				break
			}
			select {
			case <-exited:
				log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
				t.Fatalf("dovecot exited: %s\n%s", out.String(), log)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("dovecot not listening on %s", addr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return d
}

func (d *dovecotUp) AddUser(_ context.Context, name, password string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.users[name] = password
	var b bytes.Buffer
	for u, p := range d.users {
		fmt.Fprintf(&b, "%s:{PLAIN}%s::::::\n", u, p)
	}
	tmp := d.passwdFn + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, d.passwdFn)
}

// login logs in as name, waiting for Dovecot to notice a passwd-file
// change (it checks the file's modification time).
func (d *dovecotUp) login(name string) (*imapclient.Client, error) {
	d.mu.Lock()
	pass := d.users[name]
	d.mu.Unlock()
	pem, err := os.ReadFile(d.caFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{ServerName: "127.0.0.1", RootCAs: certPool(pem)}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := imapclient.DialTLS(d.imaps, &imapclient.Options{TLSConfig: cfg})
		if err != nil {
			return nil, err
		}
		err = c.Login(name, pass).Wait()
		if err == nil {
			return c, nil
		}
		_ = c.Close()
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Deliver APPENDs msg (in CRLF form, as IMAP requires) as the user.
func (d *dovecotUp) Deliver(ctx context.Context, name, folder string, msg []byte) error {
	c, err := d.login(name)
	if err != nil {
		return err
	}
	defer c.Close()
	fn := mailstore.FolderName(folder)
	if fn != mailstore.Inbox {
		_ = c.Create(fn, nil).Wait()
	}
	data := mailstore.ToCRLF(msg)
	cmd := c.Append(fn, int64(len(data)), nil)
	if _, err := cmd.Write(data); err != nil {
		return err
	}
	if err := cmd.Close(); err != nil {
		return err
	}
	if _, err := cmd.Wait(); err != nil {
		return err
	}
	return c.Logout().Wait()
}

func dovecotStart(pop3 bool) func(t *testing.T) (string, string, provisioner) {
	return func(t *testing.T) (string, string, provisioner) {
		d := startDovecot(t)
		if pop3 {
			return "pop3s://" + d.pop3s, d.caFile, d
		}
		return "imaps://" + d.imaps, d.caFile, d
	}
}

// TestDovecot runs storetest through imaps:// and pop3s:// against a
// private Dovecot, checks that both paths give Dovecot's own POP3 UIDLs,
// and measures a 50 MB message streamed from Dovecot's IMAP.
func TestDovecot(t *testing.T) {
	dovecotBinary(t)
	// Dovecot serves a NUL octet as 0x80 (IMAP literals may not hold NUL),
	// so storetest's SizesAndCRLF, whose corpus has a NUL, is skipped; a
	// POP3 upstream also has a single folder.
	nul := map[string]string{"SizesAndCRLF": "Dovecot serves a NUL octet as 0x80 (IMAP literals may not hold NUL)"}
	t.Run("imaps", func(t *testing.T) {
		h := harness(dovecotStart(false), upstream.Options{})
		h.Skip = nul
		storetest.Run(t, h)
	})
	t.Run("pop3s", func(t *testing.T) {
		h := harness(dovecotStart(true), upstream.Options{})
		h.Skip, h.SingleFolder = nul, true
		storetest.Run(t, h)
	})
	t.Run("SameUIDLs", func(t *testing.T) {
		d := startDovecot(t)
		ctx := testCtx(t)
		_ = d.AddUser(ctx, "alice", "pw")
		for i := 0; i < 3; i++ {
			if err := d.Deliver(ctx, "alice", "", []byte(fmt.Sprintf("Subject: %d\n\nx\n", i))); err != nil {
				t.Fatal(err)
			}
		}
		si := newStore(t, upstream.Options{URL: "imaps://" + d.imaps, CAFile: d.caFile})
		mi, msgsI := openInbox(t, si)
		_ = mi.Close()
		sp := newStore(t, upstream.Options{URL: "pop3s://" + d.pop3s, CAFile: d.caFile})
		mp, msgsP := openInbox(t, sp)
		_ = mp.Close()
		if fmt.Sprint(msgsI) != fmt.Sprint(msgsP) {
			t.Errorf("imaps gives %v, Dovecot's POP3 gives %v", msgsI, msgsP)
		}
	})
	t.Run("StreamingMemory", func(t *testing.T) {
		if testing.Short() {
			t.Skip("50 MB transfer skipped in -short mode")
		}
		d := startDovecot(t)
		ctx := testCtx(t)
		_ = d.AddUser(ctx, "alice", "pw")
		msg := bigMessage(50 << 20)
		if err := d.Deliver(ctx, "alice", "", msg); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(msg)
		n := len(msg)
		msg = nil
		s := newStore(t, upstream.Options{URL: "imaps://" + d.imaps, CAFile: d.caFile})
		measureRetr(t, s, sum, n)
	})
}

func certPool(pem []byte) *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(pem)
	return p
}
