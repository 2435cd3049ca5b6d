package pop3

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// capa sends CAPA and returns the lines.
func (c *client) capa() []string {
	c.t.Helper()
	c.want("CAPA", "+OK ")
	return c.lines()
}

func TestCapaListenerStates(t *testing.T) {
	base := []string{"TOP", "USER", "SASL PLAIN LOGIN CRAM-MD5", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "UIDL"}
	tail := []string{"UTF8 USER", "LANG", "IMPLEMENTATION popgate"}
	join := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	t.Run("STLS offered before TLS, gone after", func(t *testing.T) {
		e := startServer(t, newMemStore(t), func(o *Options) { o.TLSConfig = serverTLS(t) })
		c := e.dial()
		if diff := cmp.Diff(join(base, []string{"STLS"}, tail), c.capa()); diff != "" {
			t.Errorf("before STLS (-want +got):\n%s", diff)
		}
		c.starttls(clientTLS())
		if diff := cmp.Diff(join(base, tail), c.capa()); diff != "" {
			t.Errorf("after STLS (-want +got):\n%s", diff)
		}
		c.want("USER "+testUser, "+OK ")
		c.want("PASS "+testPass, "+OK ")
		if diff := cmp.Diff(join(base, tail), c.capa()); diff != "" {
			t.Errorf("after login (-want +got):\n%s", diff)
		}
	})
	t.Run("no STLS in TRANSACTION", func(t *testing.T) {
		e := startServer(t, newMemStore(t), func(o *Options) { o.TLSConfig = serverTLS(t) })
		c := e.login()
		if diff := cmp.Diff(join(base, tail), c.capa()); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		c.want("STLS", "-ERR command not valid in this state")
	})
	t.Run("never: no USER or SASL before TLS", func(t *testing.T) {
		e := startServer(t, newMemStore(t), func(o *Options) {
			o.TLSConfig = serverTLS(t)
			o.Plaintext = PlaintextNever
		})
		c := e.dial()
		// APOP works after STLS, so the greeting keeps its timestamp.
		if !strings.Contains(c.greeting, "<") {
			t.Errorf("greeting without APOP timestamp: %q", c.greeting)
		}
		want := []string{"TOP", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "UIDL", "STLS", "UTF8 USER", "LANG", "IMPLEMENTATION popgate"}
		if diff := cmp.Diff(want, c.capa()); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		c.starttls(clientTLS())
		if diff := cmp.Diff(join(base, tail), c.capa()); diff != "" {
			t.Errorf("after STLS (-want +got):\n%s", diff)
		}
	})
	t.Run("implicit TLS", func(t *testing.T) {
		e, _ := startTLSServer(t, func(o *Options) { o.TLSConfig = serverTLS(t) })
		c := e.dialTLS(clientTLS())
		if diff := cmp.Diff(join(base, tail), c.capa()); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		c.want("STLS", "-ERR Command not permitted when TLS active")
	})
	t.Run("options", func(t *testing.T) {
		e := startServer(t, newMemStore(t), func(o *Options) {
			o.LoginDelay = 90 * time.Second
			o.Expire = "never"
			o.SASLMechanisms = []string{"cram-md5", "PLAIN"}
		})
		c := e.dial()
		want := []string{"TOP", "USER", "SASL CRAM-MD5 PLAIN", "RESP-CODES", "AUTH-RESP-CODE", "LOGIN-DELAY 90", "PIPELINING", "EXPIRE NEVER", "UIDL"}
		if diff := cmp.Diff(join(want, tail), c.capa()); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		c.want("AUTH LOGIN", "-ERR Unrecognized authentication type")
	})
}

func TestNewChecksOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"expire":       {Expire: "soon"},
		"mechanism":    {SASLMechanisms: []string{"SCRAM-SHA-256"}},
		"twice":        {SASLMechanisms: []string{"PLAIN", "plain"}},
		"cram store":   {Store: &fakeStore{}, SASLMechanisms: []string{"CRAM-MD5"}},
		"policy":       {Plaintext: 9},
		"login delay":  {LoginDelay: -time.Second},
		"expire digit": {Expire: "-1"},
	} {
		if o.Store == nil {
			o.Store = newMemStore(t)
		}
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
	if _, err := New(Options{Store: newMemStore(t), Expire: "0"}); err != nil {
		t.Errorf("EXPIRE 0: %v", err)
	}
	s, err := New(Options{Store: &fakeStore{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.mechs) != 2 {
		t.Errorf("store without CRAM-MD5 offers %d mechanisms", len(s.mechs))
	}
}

func TestAuthPlain(t *testing.T) {
	e := startServer(t, newMemStore(t, msg1), nil)
	cred := b64("\x00" + testUser + "\x00" + testPass)
	t.Run("initial response", func(t *testing.T) {
		c := e.dial()
		c.want("AUTH PLAIN "+cred, "+OK maildrop has 1 message")
		c.want("AUTH PLAIN "+cred, "-ERR command not valid in this state")
		c.want("QUIT", "+OK")
	})
	t.Run("empty challenge", func(t *testing.T) {
		c := e.dial()
		c.send("auth plain")
		if got, _ := c.raw(); got != "+ \r\n" {
			t.Fatalf("challenge %q, want %q", got, "+ \r\n")
		}
		c.want(cred, "+OK ")
		c.want("QUIT", "+OK")
	})
	t.Run("authzid", func(t *testing.T) {
		c := e.dial()
		c.want("AUTH PLAIN "+b64(testUser+"\x00"+testUser+"\x00"+testPass), "+OK ")
		c.want("QUIT", "+OK")
		c = e.dial()
		c.want("AUTH PLAIN "+b64("bob\x00"+testUser+"\x00"+testPass), "-ERR [AUTH] ")
	})
	t.Run("failures", func(t *testing.T) {
		c := e.dial()
		c.want("AUTH PLAIN =", "-ERR malformed")
		c.want("AUTH PLAIN "+b64("\x00"+testUser+"\x00wrong"), "-ERR [AUTH] ")
		c.want("AUTH PLAIN "+b64("no nuls"), "-ERR malformed")
		for _, bad := range []string{"=AAA", "AAA=BBBB", "dGVzd!==", "dGVzdA", "dGVzdA===", "dGVzdB=="} {
			c.want("AUTH PLAIN "+bad, "-ERR invalid base64")
		}
		c.want("NOOP", "-ERR command not valid in this state")
		if got := c.status(); !strings.HasPrefix(got, "-ERR too many errors") {
			t.Errorf("tenth error: %q", got)
		}
		c.closed()
		c = e.dial()
		c.send("AUTH PLAIN")
		c.raw()
		c.want("*", "-ERR authentication cancelled")
		c.send("AUTH PLAIN")
		c.raw()
		c.want("not base64!", "-ERR invalid base64")
		c.want("AUTH FOOBAR", "-ERR Unrecognized authentication type")
		c.want("AUTH PLAIN a b", "-ERR wrong number of arguments")
	})
}

func TestAuthBareProbe(t *testing.T) {
	e := startServer(t, newMemStore(t), nil)
	c := e.dial()
	c.want("AUTH", "+OK")
	if diff := cmp.Diff([]string{"PLAIN", "LOGIN", "CRAM-MD5"}, c.lines()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestAuthLogin(t *testing.T) {
	e := startServer(t, newMemStore(t), nil)
	c := e.dial()
	c.send("AUTH LOGIN")
	if got, _ := c.raw(); got != "+ VXNlcm5hbWU6\r\n" {
		t.Fatalf("challenge %q", got)
	}
	c.send(b64(testUser))
	if got, _ := c.raw(); got != "+ UGFzc3dvcmQ6\r\n" {
		t.Fatalf("challenge %q", got)
	}
	c.want(b64(testPass), "+OK ")
	c.want("QUIT", "+OK")

	c = e.dial()
	c.send("AUTH LOGIN " + b64(testUser))
	if got, _ := c.raw(); got != "+ UGFzc3dvcmQ6\r\n" {
		t.Fatalf("challenge after initial response %q", got)
	}
	c.want(b64("bad"), "-ERR [AUTH] ")
}

func cramDigest(secret, challenge string) string {
	m := hmac.New(md5.New, []byte(secret))
	m.Write([]byte(challenge))
	return hex.EncodeToString(m.Sum(nil))
}

func TestAuthCRAMMD5(t *testing.T) {
	e := startServer(t, newMemStore(t), nil)
	run := func(secret string) string {
		c := e.dial()
		c.send("AUTH CRAM-MD5")
		line, _ := c.raw()
		if !strings.HasPrefix(line, "+ ") {
			t.Fatalf("challenge %q", line)
		}
		ch, err := base64.StdEncoding.DecodeString(strings.TrimSpace(line[2:]))
		if err != nil || !strings.HasPrefix(string(ch), "<") || !strings.HasSuffix(string(ch), "@pop.example.test>") {
			t.Fatalf("challenge %q (%v)", ch, err)
		}
		return c.cmd(b64(testUser + " " + cramDigest(secret, string(ch))))
	}
	if got := run(testPass); !strings.HasPrefix(got, "+OK ") {
		t.Errorf("right secret: %q", got)
	}
	if got := run("wrong"); !strings.HasPrefix(got, "-ERR [AUTH] ") {
		t.Errorf("wrong secret: %q", got)
	}
	c := e.dial()
	c.want("AUTH CRAM-MD5 "+b64("x"), "-ERR this mechanism takes no initial response")
	c.send("AUTH CRAM-MD5")
	c.raw()
	c.want(b64("nodigest"), "-ERR malformed")
}

func TestSTLS(t *testing.T) {
	e := startServer(t, newMemStore(t, msg1), func(o *Options) { o.TLSConfig = serverTLS(t) })
	t.Run("session", func(t *testing.T) {
		c := e.dial()
		st := c.starttls(clientTLS())
		if st.Version < tls.VersionTLS12 {
			t.Errorf("TLS version %x", st.Version)
		}
		c.want("STLS", "-ERR Command not permitted when TLS active")
		c.want("AUTH PLAIN "+b64("\x00"+testUser+"\x00"+testPass), "+OK ")
		c.want("RETR 1", "+OK")
		if got := c.body(); got != msg1 {
			t.Errorf("RETR over TLS: %q", got)
		}
		c.want("QUIT", "+OK")
		c.closed()
	})
	t.Run("USER forgotten", func(t *testing.T) {
		c := e.dial()
		c.want("USER "+testUser, "+OK")
		c.starttls(clientTLS())
		c.want("PASS "+testPass, "-ERR PASS must immediately follow")
	})
	t.Run("pipelined plaintext discarded", func(t *testing.T) {
		c := e.dial()
		c.send("STLS\r\nUSER " + testUser)
		if got := c.status(); !strings.HasPrefix(got, "+OK") {
			t.Fatalf("STLS: %q", got)
		}
		tc := tls.Client(c.nc, clientTLS())
		if err := tc.Handshake(); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		c.nc = tc
		c.r.Reset(tc)
		c.want("PASS "+testPass, "-ERR PASS must immediately follow")
		if !strings.Contains(e.logs.String(), "discarded plaintext") {
			t.Errorf("discard not logged")
		}
	})
	t.Run("old TLS refused", func(t *testing.T) {
		c := e.dial()
		c.want("STLS", "+OK")
		cfg := clientTLS()
		cfg.MaxVersion = tls.VersionTLS11
		cfg.MinVersion = tls.VersionTLS10
		tc := tls.Client(c.nc, cfg)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err == nil {
			t.Fatal("TLS 1.1 handshake succeeded")
		}
	})
	t.Run("after UTF8", func(t *testing.T) {
		c := e.dial()
		c.want("UTF8", "+OK")
		if capa := c.capa(); strings.Contains(strings.Join(capa, "\n"), "STLS") {
			t.Errorf("STLS announced after UTF8: %q", capa)
		}
		c.want("STLS", "-ERR STLS is not allowed after UTF8")
	})
}

func TestSTLSNotConfigured(t *testing.T) {
	e := startServer(t, newMemStore(t), nil)
	c := e.dial()
	c.want("STLS", "-ERR unknown command")
}

func TestImplicitTLS(t *testing.T) {
	e, _ := startTLSServer(t, func(o *Options) { o.Plaintext = PlaintextNever })
	c := e.dialTLS(clientTLS())
	c.want("USER "+testUser, "+OK")
	c.want("PASS "+testPass, "+OK ")
	c.want("QUIT", "+OK")
	c.closed()

	cfg := clientTLS()
	cfg.MaxVersion = tls.VersionTLS11
	cfg.MinVersion = tls.VersionTLS10
	if nc, err := tls.Dial("tcp", e.addr, cfg); err == nil {
		_ = nc.Close()
		t.Fatal("TLS 1.1 accepted on the implicit-TLS listener")
	}
	if !strings.Contains(e.logs.String(), `"mode":"implicit"`) || !strings.Contains(e.logs.String(), `"version":"TLS 1.3"`) {
		t.Errorf("TLS parameters not logged:\n%s", e.logs.String())
	}
}

func TestPlaintextRefused(t *testing.T) {
	public := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	for name, mutate := range map[string]func(*Options){
		"never":            func(o *Options) { o.Plaintext = PlaintextNever },
		"lan, not listed":  func(o *Options) { o.PlaintextNetworks = public },
		"never, with STLS": func(o *Options) { o.Plaintext = PlaintextNever; o.TLSConfig = serverTLS(t) },
	} {
		t.Run(name, func(t *testing.T) {
			e := startServer(t, newMemStore(t), mutate)
			c := e.dial()
			hint := "(use port 995)"
			if strings.Contains(name, "STLS") {
				hint = "(use STLS or port 995)"
			}
			for _, cmd := range []string{"USER " + testUser, "APOP alice 0123456789abcdef0123456789abcdef", "AUTH PLAIN " + b64("\x00a\x00b"), "AUTH CRAM-MD5"} {
				got := c.cmd(cmd)
				if cmd[:4] == "APOP" && got == "-ERR APOP not available" {
					continue
				}
				if !strings.HasPrefix(got, "-ERR [AUTH] ") || !strings.HasSuffix(got, "TLS is needed "+hint) {
					t.Errorf("%s: %q", cmd, got)
				}
			}
			c.want("AUTH", "+OK")
			if l := c.lines(); len(l) != 0 {
				t.Errorf("bare AUTH lists %q", l)
			}
			if n := strings.Count(e.logs.String(), "cleartext login refused"); n != 1 {
				t.Errorf("refusal logged %d times, want once", n)
			}
		})
	}
	t.Run("allow", func(t *testing.T) {
		e := startServer(t, newMemStore(t), func(o *Options) { o.Plaintext = PlaintextAllow; o.PlaintextNetworks = public })
		e.login()
		if !strings.Contains(e.logs.String(), `"cleartext":true`) {
			t.Errorf("cleartext login not logged:\n%s", e.logs.String())
		}
	})
}

func TestParsePlaintext(t *testing.T) {
	for _, s := range []string{"allow", "LAN", "never"} {
		p, err := ParsePlaintextPolicy(s)
		if err != nil || !strings.EqualFold(p.String(), s) {
			t.Errorf("%s: %v %v", s, p, err)
		}
	}
	if _, err := ParsePlaintextPolicy("sometimes"); err == nil {
		t.Error("bad policy accepted")
	}
	got, err := ParseNetworks("10.1.2.3, 192.168.0.0/16,::1,fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	want := "[10.1.2.3/32 192.168.0.0/16 ::1/128 fd00::/8]"
	if s := strings.Join(strings.Fields(strings.Trim(strings.ReplaceAll(cmpString(got), ",", " "), "[]")), " "); "["+s+"]" != want {
		t.Errorf("ParseNetworks = %v", got)
	}
	if _, err := ParseNetworks("10.0.0.0/33"); err == nil {
		t.Error("bad prefix accepted")
	}
}

func cmpString(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return "[" + strings.Join(s, " ") + "]"
}

func TestLoginThrottleOnTheWire(t *testing.T) {
	e := startServer(t, newMemStore(t), nil)
	c := e.dial()
	for i := 0; i < DefaultIPThreshold; i++ {
		c.want("USER "+testUser, "+OK")
		c.want("PASS wrong", "-ERR [AUTH] ")
	}
	c.want("USER "+testUser, "+OK")
	c.want("PASS "+testPass, "-ERR [LOGIN-DELAY] too many failed logins, try again in 2 seconds")
	c.want("AUTH PLAIN "+b64("\x00"+testUser+"\x00"+testPass), "-ERR [LOGIN-DELAY] ")
	// Another connection from the same address is delayed too.
	c2 := e.dial()
	c2.want("USER bob", "+OK")
	c2.want("PASS bobpw", "-ERR [LOGIN-DELAY] ")
}

func TestLoginDelay(t *testing.T) {
	e := startServer(t, newMemStore(t), func(o *Options) { o.LoginDelay = time.Hour })
	c := e.login()
	c.want("QUIT", "+OK")
	c = e.dial()
	c.want("USER "+testUser, "+OK")
	c.want("PASS "+testPass, "-ERR [LOGIN-DELAY] logged in too recently")
	c.want("USER bob", "+OK")
	c.want("PASS bobpw", "+OK")
}

func TestUTF8AndLang(t *testing.T) {
	store := newMemStore(t)
	if err := store.AddUser(t.Context(), "jürgen", "grüße"); err != nil {
		t.Fatal(err)
	}
	e := startServer(t, store, nil)
	c := e.dial()
	c.want("LANG", "+OK")
	if diff := cmp.Diff([]string{"en English"}, c.lines()); diff != "" {
		t.Errorf("LANG listing (-want +got):\n%s", diff)
	}
	c.want("LANG MUL", "-ERR unsupported language")
	c.want("LANG en-US", "+OK en ")
	c.want("LANG *", "+OK en ")
	c.want("UTF8", "+OK")
	c.want("USER j\xfcrgen", "-ERR user name or password is not valid UTF-8")
	c.want("USER jürgen", "+OK")
	c.want("PASS gr\xfc\xdfe", "-ERR user name or password is not valid UTF-8")
	c.want("USER jürgen", "+OK")
	c.want("PASS grüße", "+OK ")
	c.want("UTF8", "-ERR command not valid in this state")
	c.want("LANG en", "+OK en ")
	c.want("QUIT", "+OK")
	// Before UTF8 the octets pass unchanged (and UTF-8 works, "UTF8 USER").
	c = e.dial()
	c.want("AUTH PLAIN "+b64("\x00jürgen\x00grüße"), "+OK ")
}

func TestLookupLanguage(t *testing.T) {
	for r, want := range map[string]string{"en": "en", "EN": "en", "en-GB": "en", "en-a-bbb": "en", "*": "en", "de": "", "e": ""} {
		got, ok := lookupLanguage(r)
		if got != want || ok != (want != "") {
			t.Errorf("lookupLanguage(%q) = %q %v", r, got, ok)
		}
	}
}
