package pop3

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"popgate/mailstore"
	"popgate/mailstore/memstore"
)

func TestProfileCommandSets(t *testing.T) {
	base1081 := []string{"USER", "PASS", "QUIT", "STAT", "LIST", "RETR", "DELE", "NOOP", "LAST", "RSET", "TOP"}
	base1725 := []string{"USER", "PASS", "APOP", "QUIT", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL"}
	want := map[Profile][]string{
		ProfileRFC1081: base1081,
		ProfileRFC1225: base1081,
		ProfileRFC1460: append(slices.Clone(base1081), "APOP"),
		ProfileRFC1725: base1725,
		ProfileRFC1939: base1725,
		ProfileModern:  append(slices.Clone(base1725), "CAPA", "AUTH", "UTF8", "LANG"),
	}
	for p, verbs := range want {
		srv, err := New(Options{Store: memstore.New(), Profile: p, Hostname: "h", TLSConfig: serverTLS(t)})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for v := range srv.commands {
			got = append(got, v)
		}
		if p == ProfileModern {
			verbs = append(slices.Clone(verbs), "STLS")
		}
		slices.Sort(got)
		w := slices.Sorted(slices.Values(verbs))
		if !slices.Equal(got, w) {
			t.Errorf("%s: commands %v, want %v", p, got, w)
		}
	}
}

func TestParseProfileAndQuirks(t *testing.T) {
	for _, n := range []string{"modern", "RFC1081", "rfc1225", "rfc1460", "rfc1725", "rfc1939"} {
		p, err := ParseProfile(n)
		if err != nil || !strings.EqualFold(p.String(), n) {
			t.Errorf("ParseProfile(%q) = %v, %v", n, p, err)
		}
	}
	if _, err := ParseProfile("rfc918"); err == nil {
		t.Error("ParseProfile(rfc918) accepted")
	}
	q, err := ParseQuirks("blank-before-dot, status-header,replace-nul,add-eoh,strip-user-domain,answer-probes,hide-capa,greeting-short,greeting-no-timestamp,wrap=72,size-cap=4096")
	if err != nil {
		t.Fatal(err)
	}
	if q.String() != "blank-before-dot,status-header,replace-nul,add-eoh,strip-user-domain,answer-probes,hide-capa,greeting-short,greeting-no-timestamp,wrap=72,size-cap=4096" {
		t.Errorf("round trip: %s", q)
	}
	for _, bad := range []string{"nope", "wrap", "wrap=8", "size-cap=10", "hide-capa=1", "size-cap=x"} {
		if _, err := ParseQuirks(bad); err == nil {
			t.Errorf("ParseQuirks(%q) accepted", bad)
		}
	}
}

// rfc1081Client is a client that knows only the RFC 1081 minimal
// commands it uses: USER, PASS, STAT, LAST, RETR, DELE, QUIT.
type rfc1081Client struct{ c *client }

func dial1081(t *testing.T, e *env) rfc1081Client {
	t.Helper()
	// The previous session releases the lock just after its last reply.
	for i := 0; i < 100; i++ {
		c := e.dial()
		c.want("USER "+testUser, "+OK")
		if got := c.cmd("PASS " + testPass); strings.HasPrefix(got, "+OK") {
			return rfc1081Client{c}
		} else if !strings.Contains(got, "locked") {
			t.Fatalf("PASS: %s", got)
		}
		c.send("QUIT")
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("maildrop stays locked")
	return rfc1081Client{}
}

func (r rfc1081Client) last() int {
	r.c.t.Helper()
	got := r.c.want("LAST", "+OK ")
	n, err := strconv.Atoi(strings.TrimPrefix(got, "+OK "))
	if err != nil {
		r.c.t.Fatalf("LAST reply %q", got)
	}
	return n
}

func (r rfc1081Client) retr(n int) string {
	r.c.t.Helper()
	r.c.want("RETR "+strconv.Itoa(n), "+OK ")
	return r.c.body()
}

func TestRFC1081ClientLastAcrossReconnect(t *testing.T) {
	e := startServer(t, newMemStore(t, msg1, msg2, msg1, msg2), func(o *Options) { o.Profile = ProfileRFC1081 })
	c := dial1081(t, e)
	if strings.Contains(c.c.greeting, "<") {
		t.Errorf("RFC 1081 greeting has an APOP timestamp: %q", c.c.greeting)
	}
	c.c.want("STAT", "+OK 4 ")
	if n := c.last(); n != 0 {
		t.Fatalf("LAST on a fresh maildrop = %d", n)
	}
	if got := c.retr(2); got != msg2 {
		t.Fatalf("RETR 2 = %q", got)
	}
	if n := c.last(); n != 2 {
		t.Fatalf("LAST after RETR 2 = %d", n)
	}
	c.c.want("QUIT", "+OK")

	// A new connection: the highest number accessed is in the store.
	c = dial1081(t, e)
	if n := c.last(); n != 2 {
		t.Fatalf("LAST after reconnect = %d, want 2", n)
	}
	c.retr(3)
	c.c.want("DELE 1", "+OK")
	if n := c.last(); n != 3 {
		t.Fatalf("LAST after RETR 3, DELE 1 = %d", n)
	}
	c.c.want("RSET", "+OK")
	if n := c.last(); n != 2 {
		t.Fatalf("RFC 1081 RSET: LAST = %d, want the session-start 2", n)
	}
	c.c.want("QUIT", "+OK")

	// RETR 3 was committed by QUIT (RSET unmarks deletions only); a
	// hang-up commits nothing.
	c = dial1081(t, e)
	if n := c.last(); n != 3 {
		t.Fatalf("LAST = %d, want 3", n)
	}
	c.retr(4)
	_ = c.c.nc.Close()
	c = dial1081(t, e)
	if n := c.last(); n != 3 {
		t.Fatalf("LAST after a hang-up = %d, want 3 (nothing committed)", n)
	}
	c.c.want("QUIT", "+OK")
}

func TestRFC1460RsetZeroesLast(t *testing.T) {
	e := startServer(t, newMemStore(t, msg1, msg2), func(o *Options) { o.Profile = ProfileRFC1460 })
	c := e.login()
	if !strings.Contains(c.greeting, "<") {
		t.Errorf("RFC 1460 greeting without APOP timestamp: %q", c.greeting)
	}
	c.want("RETR 2", "+OK")
	c.body()
	c.want("LAST", "+OK 2")
	c.want("RSET", "+OK")
	c.want("LAST", "+OK 0")
}

func TestLegacyProfilesRefuseLaterCommands(t *testing.T) {
	e := startServer(t, newMemStore(t, msg1), func(o *Options) { o.Profile = ProfileRFC1081; o.MaxErrors = 100 })
	c := e.dial()
	for _, cmd := range []string{"CAPA", "AUTH PLAIN", "AUTH", "STLS", "UTF8", "LANG", "APOP alice 0123456789abcdef0123456789abcdef"} {
		c.want(cmd, "-ERR unknown command")
	}
	c.want("USER "+testUser, "+OK")
	// No RFC 2449 response code before CAPA existed.
	c.want("PASS wrong", "-ERR invalid user name or password")
	c = e.login()
	c.want("UIDL", "-ERR unknown command")
	c.want("XTND XLST Message-Id", "-ERR unknown command")
	c.want("TOP 1", "-ERR wrong number of arguments") // RFC 1081's own example, a typo
	c.want("LAST", "+OK 0")
}

func TestRFC1939ProfileHasNoExtensions(t *testing.T) {
	e := startServer(t, newMemStore(t, msg1), func(o *Options) { o.Profile = ProfileRFC1939; o.TLSConfig = serverTLS(t) })
	c := e.login()
	for _, cmd := range []string{"CAPA", "LAST", "LANG"} {
		c.want(cmd, "-ERR unknown command")
	}
	c.want("UIDL 1", "+OK 1 ")
}

// quirkMessages exercise every transform.
var quirkMessages = []string{
	msg1,
	"Subject: nul\x00here\r\nStatus: O\r\n X-continued\r\n\r\nbody\x00\r\n",
	"no header line at all\r\nsecond\r\n",
	"Subject: " + strings.Repeat("word ", 60) + "\r\nX-Long: " + strings.Repeat("x", 300) + "\r\n\r\n" + strings.Repeat("b", 500) + "\r\n.dot line\r\n",
	"Subject: big\r\n\r\n" + strings.Repeat("line of text\r\n", 3000),
	"Subject: only a header\r\n",
}

func TestQuirkSizesMatchBytes(t *testing.T) {
	configs := map[string]Quirks{
		"blank-before-dot": {BlankBeforeDot: true},
		"status-header":    {StatusHeader: true},
		"replace-nul":      {ReplaceNUL: true},
		"add-eoh":          {AddEndOfHeaders: true},
		"wrap":             {WrapLines: 40},
		"size-cap":         {SizeCap: 300},
		"all": {BlankBeforeDot: true, StatusHeader: true, ReplaceNUL: true, AddEndOfHeaders: true,
			WrapLines: 40, SizeCap: 300},
	}
	for name, q := range configs {
		t.Run(name, func(t *testing.T) {
			e := startServer(t, newMemStore(t, quirkMessages...), func(o *Options) { o.Quirks = q })
			c := e.login()
			c.want("LIST", "+OK")
			var total int64
			sizes := map[int]int64{}
			for _, l := range c.lines() {
				f := strings.Fields(l)
				n, _ := strconv.Atoi(f[0])
				s, _ := strconv.ParseInt(f[1], 10, 64)
				sizes[n] = s
				total += s
			}
			c.want("STAT", "+OK "+strconv.Itoa(len(quirkMessages))+" "+strconv.FormatInt(total, 10))
			for n := 1; n <= len(quirkMessages); n++ {
				c.want("LIST "+strconv.Itoa(n), "+OK "+strconv.Itoa(n)+" "+strconv.FormatInt(sizes[n], 10))
				c.want("RETR "+strconv.Itoa(n), "+OK "+strconv.FormatInt(sizes[n], 10)+" octets")
				body := c.body()
				if int64(len(body)) != sizes[n] {
					t.Fatalf("message %d: LIST %d, RETR sent %d: %q", n, sizes[n], len(body), body)
				}
				checkQuirk(t, q, n, body)
				c.want("TOP "+strconv.Itoa(n)+" 1", "+OK")
				top := c.body()
				if q.BlankBeforeDot && !strings.HasSuffix(top, "\r\n\r\n") {
					t.Errorf("TOP %d without the blank line: %q", n, top)
				}
			}
		})
	}
}

func checkQuirk(t *testing.T, q Quirks, n int, body string) {
	t.Helper()
	if q.ReplaceNUL && strings.Contains(body, "\x00") {
		t.Errorf("message %d: NUL sent", n)
	}
	if q.StatusHeader {
		if !strings.HasPrefix(body, "Status: U\r\n") {
			t.Errorf("message %d: no Status header first: %q", n, body[:min(len(body), 40)])
		}
		if strings.Count(body, "Status: ") != 1 || strings.Contains(body, "X-continued") {
			t.Errorf("message %d: old Status header kept: %q", n, body)
		}
	}
	if q.AddEndOfHeaders && !q.StatusHeader && n == 3 && !strings.HasPrefix(body, "\r\n") {
		t.Errorf("message 3: no end of header added: %q", body)
	}
	if q.AddEndOfHeaders && n == 6 && !strings.Contains(body, "header\r\n\r\n") {
		t.Errorf("message 6: no end of header added: %q", body)
	}
	if w := q.WrapLines; w > 0 {
		for _, l := range strings.Split(body, "\r\n") {
			if len(l) > w && !strings.HasPrefix(l, "[popgate") {
				t.Errorf("message %d: line of %d octets: %q", n, len(l), l)
			}
		}
	}
	if c := q.SizeCap; c > 0 {
		if int64(len(body)) > c {
			t.Errorf("message %d: %d octets over the cap", n, len(body))
		}
		if n == 5 && !strings.Contains(body, "[popgate: message truncated") {
			t.Errorf("message 5: no truncation notice")
		}
	}
	if q.BlankBeforeDot && !strings.HasSuffix(body, "\r\n\r\n") {
		t.Errorf("message %d: no blank line before the dot", n)
	}
}

func TestQuirkStatusSeen(t *testing.T) {
	e := startServer(t, newMemStore(t, msg1), func(o *Options) { o.Quirks = Quirks{StatusHeader: true} })
	c := e.login()
	c.want("RETR 1", "+OK")
	if b := c.body(); !strings.HasPrefix(b, "Status: U\r\n") {
		t.Fatalf("first RETR: %q", b)
	}
	c.want("QUIT", "+OK")
	inbox(t, e.store, testUser, testPass)
	c = e.login()
	c.want("RETR 1", "+OK")
	if b := c.body(); !strings.HasPrefix(b, "Status: RO\r\n") {
		t.Fatalf("RETR after a committed one: %q", b)
	}
}

func TestQuirkSwitchesOnTheWire(t *testing.T) {
	e := startServer(t, newMemStore(t, msg1), func(o *Options) {
		o.Quirks = Quirks{StripUserDomain: true, AnswerProbes: true, HideCAPA: true, ShortGreeting: true, NoTimestamp: true}
		o.Profile = ProfileRFC1725
	})
	c := e.dial()
	if c.greeting != "+OK POP3 server ready" {
		t.Errorf("greeting %q", c.greeting)
	}
	c.want("AUTH", "+OK")
	if l := c.lines(); len(l) != 0 {
		t.Errorf("bare AUTH listed %v", l)
	}
	c.want("CAPA", "-ERR unknown command")
	c.want("XSENDER 1", "-ERR no sender information")
	c.want("USER "+testUser+"@example.test", "+OK")
	c.want("PASS "+testPass, "+OK")
	c.want("XSENDER 1", "-ERR")
}

func TestXTNDXLST(t *testing.T) {
	msgs := []string{
		"Message-ID: <one@example.test>\r\nSubject: a\r\n\r\nx\r\n",
		"Subject: no id\r\n\r\nMessage-ID: <body@example.test>\r\n",
		"Subject: c\r\nmessage-id:\r\n  <three@example.test>\r\n\r\n",
	}
	e := startServer(t, newMemStore(t, msgs...), func(o *Options) { o.Profile = ProfileRFC1081; o.XTND.XLST = true })
	c := e.login()
	c.want("XTND XLST Message-Id", "+OK")
	got := c.lines()
	want := []string{"1 Message-ID: <one@example.test>", "3 message-id:  <three@example.test>"}
	if !slices.Equal(got, want) {
		t.Fatalf("XLST = %q, want %q", got, want)
	}
	c.want("DELE 1", "+OK")
	c.want("xtnd xlst message-id", "+OK")
	if got := c.lines(); len(got) != 1 || !strings.HasPrefix(got[0], "3 ") {
		t.Fatalf("after DELE 1: %q", got)
	}
	c.want("XTND XLST Message-Id 3", "+OK")
	if got := c.lines(); len(got) != 1 {
		t.Fatalf("one message: %q", got)
	}
	c.want("XTND XLST Message-Id 1", "-ERR")
	c.want("XTND XLST Bad:Name", "-ERR invalid header name")
	c.want("XTND BBOARDS", "-ERR unknown XTND subcommand")
	c.want("XTND XMIT", "-ERR unknown XTND subcommand")
}

// smtpSink is a minimal SMTP server on loopback that records one message.
type smtpSink struct {
	addr string
	got  chan sunk
}

type sunk struct {
	from  string
	rcpts []string
	data  string
}

func startSMTPSink(t *testing.T) *smtpSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	s := &smtpSink{addr: ln.Addr().String(), got: make(chan sunk, 4)}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(nc)
		}
	}()
	return s
}

func (s *smtpSink) serve(nc net.Conn) {
	defer func() { _ = nc.Close() }()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(nc)
	w := func(l string) { _, _ = nc.Write([]byte(l + "\r\n")) }
	var m sunk
	w("220 sink ready")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch {
		case verb == "EHLO" || verb == "HELO":
			w("250 sink")
		case strings.HasPrefix(strings.ToUpper(line), "MAIL FROM:"):
			m.from = strings.Trim(line[len("MAIL FROM:"):], "<>")
			w("250 ok")
		case strings.HasPrefix(strings.ToUpper(line), "RCPT TO:"):
			m.rcpts = append(m.rcpts, strings.Trim(line[len("RCPT TO:"):], "<>"))
			w("250 ok")
		case verb == "DATA":
			w("354 go ahead")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, "."))
			}
			m.data = b.String()
			w("250 queued")
			s.got <- m
		case verb == "QUIT":
			w("221 bye")
			return
		default:
			w("500 what")
		}
	}
}

func TestXTNDXMIT(t *testing.T) {
	sink := startSMTPSink(t)
	e := startServer(t, newMemStore(t), func(o *Options) {
		o.Profile = ProfileRFC1225
		o.XTND.XMIT = &XMITOptions{Relay: sink.addr}
	})
	c := e.login()
	c.want("XTND XMIT", "+OK")
	for _, l := range []string{"From: alice@pop.example.test", "To: Bob <bob@example.test>", "Bcc: carol@example.test",
		"Subject: hi", "", "..a dot line", "bye"} {
		c.send(l)
	}
	c.want(".", "+OK message sent")
	select {
	case m := <-sink.got:
		if m.from != testUser+"@pop.example.test" {
			t.Errorf("envelope sender %q", m.from)
		}
		if !slices.Equal(m.rcpts, []string{"bob@example.test", "carol@example.test"}) {
			t.Errorf("recipients %q", m.rcpts)
		}
		want := "From: alice@pop.example.test\r\nTo: Bob <bob@example.test>\r\nSubject: hi\r\n\r\n.a dot line\r\nbye\r\n"
		if m.data != want {
			t.Errorf("data %q, want %q", m.data, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the relay got nothing")
	}
	c.want("XTND XMIT", "+OK")
	c.send("Subject: nobody")
	c.send("")
	c.want(".", "-ERR message has no To")
	c.want("NOOP", "+OK")
}

func TestXTNDXMITRelayDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	e := startServer(t, newMemStore(t), func(o *Options) { o.XTND.XMIT = &XMITOptions{Relay: addr, Timeout: 2 * time.Second} })
	c := e.login()
	c.want("XTND XMIT", "+OK")
	c.send("To: bob@example.test")
	c.send("")
	c.want(".", "-ERR message not sent")
	c.want("NOOP", "+OK")
}

// trustedMem is a memstore that logs users in for RPOP.
type trustedMem struct{ *memstore.Store }

func (s trustedMem) LoginTrusted(ctx context.Context, user string) (mailstore.Account, error) {
	return s.Login(ctx, user, testPass)
}

// portConn is a pipe end with a chosen TCP peer address.
type portConn struct {
	net.Conn
	peer *net.TCPAddr
}

func (c portConn) RemoteAddr() net.Addr { return c.peer }

func TestRPOP(t *testing.T) {
	nets := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for _, tt := range []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1023}, true},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1024}, false},
		{&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 513}, false},
		{nil, false},
	} {
		if got := rpopAllowed(tt.addr, nets); got != tt.want {
			t.Errorf("rpopAllowed(%v) = %v", tt.addr, got)
		}
	}
	store := trustedMem{newMemStore(t, msg1)}
	if _, err := New(Options{Store: store, RPOP: &RPOPOptions{Networks: nets}}); err == nil {
		t.Error("RPOP accepted in the modern profile")
	}
	if _, err := New(Options{Store: store, Profile: ProfileRFC1081, RPOP: &RPOPOptions{}}); err == nil {
		t.Error("RPOP accepted without networks")
	}
	if _, err := New(Options{Store: memstore.New(), Profile: ProfileRFC1081, RPOP: &RPOPOptions{Networks: nets}}); err == nil {
		t.Error("RPOP accepted over a store without trusted logins")
	}
	srv, err := New(Options{Store: store, Hostname: "h", Profile: ProfileRFC1081, RPOP: &RPOPOptions{Networks: nets}})
	if err != nil {
		t.Fatal(err)
	}
	for port, want := range map[int]string{1023: "+OK maildrop has 1 message", 4000: "-ERR permission denied"} {
		sc, cc := net.Pipe()
		go srv.ServeConn(context.Background(), portConn{sc, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}})
		c := &client{t: t, nc: cc, r: bufio.NewReader(cc)}
		c.status()
		c.want("RPOP "+testUser, "-ERR RPOP must immediately follow")
		c.want("USER "+testUser, "+OK")
		c.want("RPOP "+testUser, want)
		_ = cc.Close()
	}
}
