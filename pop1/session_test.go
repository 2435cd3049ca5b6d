package pop1

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"popgate/mailstore"
	"popgate/pop1/pop1client"
)

var fredMsgs = []string{
	"From: Postmaster <postmaster@isi.example>\nTo: fred@isi.example\nSubject: Welcome\nDate: Mon, 1 Oct 1984 09:00:00 -0700\n\nYour mailbox is ready.\n",
	"From: Rover <rover@fido.example>\nSubject: quoting\n\nFrom the kennel:\n>From the yard\n.\nend",
}

func fredStore(t *testing.T) *memstoreWithMsgs {
	t.Helper()
	st := newStore(t, "fred", "secret", map[string][]string{"INBOX": fredMsgs})
	return &memstoreWithMsgs{st: st}
}

// memstoreWithMsgs is a store and the CRLF forms of what was delivered.
type memstoreWithMsgs struct {
	st mailstore.Store
}

func (m *memstoreWithMsgs) inbox(t *testing.T) [][]byte {
	t.Helper()
	return folder(t, m.st, "fred", "secret", "INBOX")
}

func crlf(msgs []string) [][]byte {
	var out [][]byte
	for _, m := range msgs {
		out = append(out, mailstore.ToCRLF([]byte(m)))
	}
	return out
}

func sameMessages(t *testing.T, got []pop1client.Message, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].Data, want[i]) {
			t.Errorf("message %d:\n got %q\nwant %q", i+1, got[i].Data, want[i])
		}
	}
}

func dialClient(t *testing.T, addr string) *pop1client.Client {
	t.Helper()
	c, err := pop1client.Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestNormalScenario is RFC 918's Normal Scenario (p.2), its placeholders
// filled in: RDEL, RCEV, RCVD delete the mail.
func TestNormalScenario(t *testing.T) {
	m := fredStore(t)
	addr := serve(t, Options{Store: m.st})
	r := dialRaw(t, addr)
	r.Send("USER fred")
	r.Expect("+OK")
	r.Send("PASS secret")
	r.Expect("+OK")
	r.Send("RDEL fred")
	line := r.Expect("#")
	size, err := strconv.ParseInt(strings.Fields(line[1:])[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	r.Send("RCEV")
	data := r.Data(size)
	msgs, err := pop1client.Split(data)
	if err != nil {
		t.Fatal(err)
	}
	sameMessages(t, msgs, crlf(fredMsgs))
	if msgs[0].Separator != "From postmaster@isi.example Mon Oct  1 16:00:00 1984" {
		t.Errorf("separator %q", msgs[0].Separator)
	}
	r.Send("RCVD")
	r.Expect("+OK")
	if got := m.inbox(t); len(got) != 0 {
		t.Errorf("RDEL+RCVD left %d messages", len(got))
	}
	r.Send("QUIT")
	r.Expect("+OK")
	r.ExpectClose()
}

func TestRetrKeepsThenReconnect(t *testing.T) {
	m := fredStore(t)
	addr := serve(t, Options{Store: m.st})
	for i := 0; i < 2; i++ {
		c := dialClient(t, addr)
		if err := c.Login("fred", "secret"); err != nil {
			t.Fatal(err)
		}
		msgs, err := c.Fetch("", false)
		if err != nil {
			t.Fatal(err)
		}
		sameMessages(t, msgs, crlf(fredMsgs))
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.inbox(t); len(got) != 2 {
		t.Fatalf("RETR left %d messages, want 2", len(got))
	}
}

func TestSeveralTransactionsAndFolders(t *testing.T) {
	st := newStore(t, "fred", "secret", map[string][]string{"INBOX": fredMsgs[:1], "Archive": fredMsgs[1:]})
	c := dialClient(t, serve(t, Options{Store: st}))
	if err := c.Login("fred", "secret"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "INBOX", "inbox", "FRED"} {
		msgs, err := c.Fetch(name, false)
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		sameMessages(t, msgs, crlf(fredMsgs[:1]))
	}
	msgs, err := c.Fetch("Archive", true)
	if err != nil {
		t.Fatal(err)
	}
	sameMessages(t, msgs, crlf(fredMsgs[1:]))
	var re *pop1client.ReplyError
	if _, err := c.Retr("archive"); !errors.As(err, &re) || !strings.HasPrefix(re.Line, "-ERR No such mailbox") {
		t.Fatalf("unknown folder: %v", err)
	}
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if got := folder(t, st, "fred", "secret", "Archive"); len(got) != 0 {
		t.Errorf("Archive holds %d messages after RDEL", len(got))
	}
	if got := folder(t, st, "fred", "secret", "INBOX"); len(got) != 1 {
		t.Errorf("INBOX holds %d messages", len(got))
	}
}

func TestHangupBetweenRcevAndRcvdKeepsMail(t *testing.T) {
	m := fredStore(t)
	c := dialClient(t, serve(t, Options{Store: m.st}))
	if err := c.Login("fred", "secret"); err != nil {
		t.Fatal(err)
	}
	size, err := c.Rdel("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rcev(size); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if got := m.inbox(t); len(got) != 2 {
		t.Fatalf("hang-up before RCVD left %d messages, want 2", len(got))
	}
}

func TestRsetAbortsAndUnlocks(t *testing.T) {
	m := fredStore(t)
	addr := serve(t, Options{Store: m.st})
	c := dialClient(t, addr)
	if err := c.Login("fred", "secret"); err != nil {
		t.Fatal(err)
	}
	size, err := c.Rdel("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rcev(size); err != nil {
		t.Fatal(err)
	}
	if err := c.Rset(); err != nil {
		t.Fatal(err)
	}
	// Unlocked: a second session can take the mailbox while the first is
	// still connected.
	c2 := dialClient(t, addr)
	if err := c2.Login("fred", "secret"); err != nil {
		t.Fatal(err)
	}
	msgs, err := c2.Fetch("", false)
	if err != nil {
		t.Fatal(err)
	}
	sameMessages(t, msgs, crlf(fredMsgs))
	// RSET right after #xxx, too.
	if _, err := c.Retr(""); err != nil {
		t.Fatal(err)
	}
	if err := c.Rset(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if got := m.inbox(t); len(got) != 2 {
		t.Fatalf("RSET left %d messages, want 2", len(got))
	}
}

func TestLockedMailbox(t *testing.T) {
	m := fredStore(t)
	addr := serve(t, Options{Store: m.st})
	c := dialClient(t, addr)
	if err := c.Login("fred", "secret"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rdel(""); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, addr)
	r.Send("USER fred", "PASS secret", "RETR", "NOOP")
	r.Expect("+OK")
	r.Expect("+OK")
	r.ExpectLine("-ERR [IN-USE] Mailbox is in use by another session")
	r.Expect("+OK")
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if got := m.inbox(t); len(got) != 2 {
		t.Fatalf("QUIT inside an RDEL transaction left %d messages, want 2", len(got))
	}
	// The lock is gone after the QUIT: the second session gets the mail.
	r.Send("RETR")
	r.Expect("#")
}

func TestEmptyMailbox(t *testing.T) {
	st := newStore(t, "fred", "secret", nil)
	r := dialRaw(t, serve(t, Options{Store: st}))
	r.Send("USER fred", "PASS secret", "RDEL", "RCEV", "RCVD", "QUIT")
	r.Expect("+OK")
	r.Expect("+OK")
	r.ExpectLine("#0 characters in INBOX (0 messages)")
	r.Expect("+OK 0 messages deleted")
	r.Expect("+OK")
	r.ExpectClose()
}

func TestOutOfSequence(t *testing.T) {
	m := fredStore(t)
	r := dialRaw(t, serve(t, Options{Store: m.st, MaxErrors: 100}))
	r.Send("PASS secret", "RETR", "NOOP", "RSET", "RCEV", "RCVD", "STAT")
	r.ExpectLine("-ERR Send USER first")
	for i := 0; i < 5; i++ {
		r.ExpectLine("-ERR Log in first with USER and PASS")
	}
	r.ExpectLine("-ERR Unknown command (this server speaks POP1, RFC 918)")
	r.Send("user fred", "pass wrong", "PASS secret")
	r.Expect("+OK")
	r.ExpectLine("-ERR Invalid user name or password")
	r.ExpectLine("-ERR Send USER first")
	r.Send("USER fred", "USER fred", "PASS secret", "RCEV", "RCVD", "USER x")
	r.Expect("+OK")
	r.Expect("+OK")
	r.Expect("+OK")
	r.ExpectLine("-ERR RCEV not valid now: start a transaction with RETR or RDEL")
	r.ExpectLine("-ERR RCVD not valid now: start a transaction with RETR or RDEL")
	r.ExpectLine("-ERR USER not valid now: start a transaction with RETR or RDEL")
	r.Send("retr", "RCVD", "RDEL", "recv")
	r.Expect("#")
	r.ExpectLine("-ERR RCVD not valid now: send RCEV or RSET")
	r.ExpectLine("-ERR RDEL not valid now: send RCEV or RSET")
	// RECV, the Diagram's spelling, sends the data.
	r.Expect("From ")
}

func TestMaxErrors(t *testing.T) {
	m := fredStore(t)
	r := dialRaw(t, serve(t, Options{Store: m.st, MaxErrors: 2}))
	r.Send("STAT", "LIST")
	r.Expect("-ERR")
	r.Expect("-ERR")
	r.ExpectClose()
}

func TestLongLine(t *testing.T) {
	m := fredStore(t)
	r := dialRaw(t, serve(t, Options{Store: m.st}))
	r.Send("USER " + strings.Repeat("x", 600))
	r.ExpectLine("-ERR Command line too long")
	r.ExpectClose()
}

func TestAutologout(t *testing.T) {
	m := fredStore(t)
	r := dialRaw(t, serve(t, Options{Store: m.st, AuthTimeout: 100 * time.Millisecond}))
	r.ExpectLine("-ERR Autologout; idle for too long")
	r.ExpectClose()
}

// TestPipelined sends a whole session in one write: the replies come in
// order and the mail data sit between "#xxx" and RCVD's "+OK".
func TestPipelined(t *testing.T) {
	m := fredStore(t)
	r := dialRaw(t, serve(t, Options{Store: m.st}))
	r.Send("USER fred", "PASS secret", "RETR INBOX", "RCEV", "RCVD", "NOOP", "RDEL", "RCEV", "RCVD", "QUIT")
	r.Expect("+OK")
	r.Expect("+OK")
	for i := 0; i < 2; i++ {
		line := r.Expect("#")
		size, _ := strconv.ParseInt(strings.Fields(line[1:])[0], 10, 64)
		msgs, err := pop1client.Split(r.Data(size))
		if err != nil {
			t.Fatal(err)
		}
		sameMessages(t, msgs, crlf(fredMsgs))
		r.Expect("+OK")
		if i == 0 {
			r.Expect("+OK")
		}
	}
	r.Expect("+OK")
	r.ExpectClose()
	if got := m.inbox(t); len(got) != 0 {
		t.Fatalf("left %d messages", len(got))
	}
}

// TestMailArrivingDuringTransaction: mail delivered after "#xxx" is
// neither sent nor deleted.
func TestMailArrivingDuringTransaction(t *testing.T) {
	st := newStore(t, "fred", "secret", map[string][]string{"INBOX": fredMsgs})
	c := dialClient(t, serve(t, Options{Store: st}))
	if err := c.Login("fred", "secret"); err != nil {
		t.Fatal(err)
	}
	size, err := c.Rdel("")
	if err != nil {
		t.Fatal(err)
	}
	late := "Subject: late\n\narrived during the transaction\n"
	if err := st.Deliver(context.Background(), "fred", "", []byte(late)); err != nil {
		t.Fatal(err)
	}
	data, err := c.Rcev(size)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := pop1client.Split(data)
	if err != nil {
		t.Fatal(err)
	}
	sameMessages(t, msgs, crlf(fredMsgs))
	if err := c.Rcvd(); err != nil {
		t.Fatal(err)
	}
	got := folder(t, st, "fred", "secret", "INBOX")
	if len(got) != 1 || string(got[0]) != string(mailstore.ToCRLF([]byte(late))) {
		t.Fatalf("after RCVD the folder holds %q, want only the late message", got)
	}
}

func TestReplyStyles(t *testing.T) {
	m := fredStore(t)
	addr := serve(t, Options{Store: m.st, Greeting: "+OK", ErrorWord: "-Error", BareReplies: true, OKBeforeData: true})
	r := dialRaw(t, addr) // checks "+OK" (here the whole greeting)
	r.Send("USER fred", "PASS nope", "USER fred", "PASS secret", "RETR")
	r.ExpectLine("+OK")
	r.ExpectLine("-Error")
	r.ExpectLine("+OK")
	r.ExpectLine("+OK")
	line := r.Expect("#")
	if strings.Contains(line, " ") {
		t.Fatalf("bare #xxx reply %q", line)
	}
	c, err := pop1client.Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Greeting != "+OK" {
		t.Errorf("greeting %q", c.Greeting)
	}
	r.Send("QUIT")
	r.ExpectLine("+OK")
	c.OKBeforeData = true
	if err := c.Login("fred", "secret"); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch("", false)
	if err != nil {
		t.Fatal(err)
	}
	sameMessages(t, msgs, crlf(fredMsgs))
}

func TestNewRejectsBadOptions(t *testing.T) {
	st := newStore(t, "fred", "secret", nil)
	for _, o := range []Options{
		{},
		{Store: st, Hostname: "two words"},
		{Store: st, Greeting: "OK ready"},
		{Store: st, Greeting: "+OK\r\nX"},
		{Store: st, ErrorWord: "ERR"},
		{Store: st, ErrorWord: "-ERR x"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
	s, err := New(Options{Store: st, Hostname: "h.example"})
	if err != nil || s.Greeting() != "+OK h.example popgate POP1 server ready" {
		t.Fatalf("default greeting %q, %v", s.Greeting(), err)
	}
}

// TestPasswordNeverLogged logs at debug level through a whole session,
// with a failed and a good login.
func TestPasswordNeverLogged(t *testing.T) {
	m := fredStore(t)
	var buf syncBuffer
	addr := serve(t, Options{Store: m.st, Logger: zerolog.New(&buf).Level(zerolog.DebugLevel)})
	r := dialRaw(t, addr)
	r.Send("USER fred", "PASS hunter2-wrong", "USER fred", "PASS secret", "QUIT")
	for i := 0; i < 5; i++ {
		r.Expect("")
	}
	r.ExpectClose()
	time.Sleep(50 * time.Millisecond)
	logs := buf.String()
	if !strings.Contains(logs, `"proto":"pop1"`) || !strings.Contains(logs, "logged in") {
		t.Fatalf("log lacks the session: %s", logs)
	}
	for _, secret := range []string{"hunter2-wrong", "secret"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("log holds the password %q:\n%s", secret, logs)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// panicStore panics in Login.
type panicStore struct{ mailstore.Store }

func (panicStore) Login(context.Context, string, string) (mailstore.Account, error) {
	panic("store exploded")
}

func TestPanicRecovered(t *testing.T) {
	r := dialRaw(t, serve(t, Options{Store: panicStore{}}))
	r.Send("USER fred")
	r.Expect("+OK")
	r.Send("PASS x")
	r.ExpectClose()
}

// flipStore serves every message with "From " lines disguised as "Xrom "
// the first time it is read (when "#xxx" is computed) and as stored
// afterwards: same size, one more quoted line, so RCEV would overrun.
type flipStore struct {
	mailstore.Store
	mu   sync.Mutex
	seen map[string]bool
}

func (f *flipStore) Login(ctx context.Context, u, p string) (mailstore.Account, error) {
	a, err := f.Store.Login(ctx, u, p)
	if err != nil {
		return nil, err
	}
	return flipAccount{a, f}, nil
}

type flipAccount struct {
	mailstore.Account
	f *flipStore
}

func (a flipAccount) Open(ctx context.Context, name string) (mailstore.Maildrop, error) {
	md, err := a.Account.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	return flipMaildrop{md, a.f}, nil
}

type flipMaildrop struct {
	mailstore.Maildrop
	f *flipStore
}

func (m flipMaildrop) OpenMessage(ctx context.Context, uid string) (io.ReadCloser, error) {
	rc, err := m.Maildrop.OpenMessage(ctx, uid)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil {
		return nil, err
	}
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	if m.f.seen == nil {
		m.f.seen = map[string]bool{}
	}
	if !m.f.seen[uid] {
		m.f.seen[uid] = true
		b = bytes.ReplaceAll(b, []byte("\nFrom "), []byte("\nXrom "))
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func TestChangedMessageClosesConnection(t *testing.T) {
	base := newStore(t, "fred", "secret", map[string][]string{"INBOX": {"Subject: x\n\nFrom a body line that is quoted the first time\n"}})
	st := &flipStore{Store: base}
	r := dialRaw(t, serve(t, Options{Store: st}))
	r.Send("USER fred", "PASS secret", "RDEL")
	r.Expect("+OK")
	r.Expect("+OK")
	line := r.Expect("#")
	size, _ := strconv.ParseInt(strings.Fields(line[1:])[0], 10, 64)
	r.Send("RCEV")
	_ = r.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, size+100)
	n, _ := readAll(r, got)
	if int64(n) > size {
		t.Fatalf("sent %d octets after announcing %d", n, size)
	}
	if n == int(size) {
		t.Fatalf("a changed message was sent whole")
	}
	if msgs := folder(t, base, "fred", "secret", "INBOX"); len(msgs) != 1 {
		t.Fatalf("left %d messages", len(msgs))
	}
}

func readAll(r *raw, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.R.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
