package pop3

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

// TestNoSecretsInLogs runs every login method at debug level, right and
// wrong, and checks that no password, base64 response or digest reaches
// the log.
func TestNoSecretsInLogs(t *testing.T) {
	const secret = "Zq9-unGuessable-Pw"
	store := newMemStore(t)
	if err := store.AddUser(t.Context(), "carol", secret); err != nil {
		t.Fatal(err)
	}
	e := startServer(t, store, func(o *Options) {
		o.TLSConfig = serverTLS(t)
		o.Limiter = NewLimiter(LimiterOptions{IPThreshold: 1000, UserThreshold: 1000})
	})
	var leaks []string // strings that must not appear in the log
	add := func(s ...string) { leaks = append(leaks, s...) }
	add(secret, b64(secret), "wrong-"+secret, b64("wrong-"+secret))

	// USER/PASS, wrong then right, over STLS for good measure.
	c := e.dial()
	c.starttls(clientTLS())
	c.want("USER carol", "+OK")
	c.want("PASS wrong-"+secret, "-ERR [AUTH]")
	c.want("USER carol", "+OK")
	c.want("PASS "+secret, "+OK")
	c.want("QUIT", "+OK")

	// APOP.
	c = e.dial()
	ts := c.greeting[strings.Index(c.greeting, "<"):]
	sum := md5.Sum([]byte(ts + secret))
	digest := hex.EncodeToString(sum[:])
	add(digest)
	c.want("APOP carol "+digest, "+OK")
	c.want("QUIT", "+OK")

	// AUTH PLAIN with and without an initial response.
	plain := b64("\x00carol\x00" + secret)
	add(plain)
	c = e.dial()
	c.want("AUTH PLAIN "+plain, "+OK")
	c.want("QUIT", "+OK")
	c = e.dial()
	c.send("AUTH PLAIN")
	c.raw()
	c.want(plain, "+OK")
	c.want("QUIT", "+OK")

	// AUTH LOGIN.
	c = e.dial()
	c.send("AUTH LOGIN " + b64("carol"))
	c.raw()
	c.want(b64(secret), "+OK")
	c.want("QUIT", "+OK")

	// AUTH CRAM-MD5, wrong then right.
	for _, key := range []string{"wrong-" + secret, secret} {
		c = e.dial()
		c.send("AUTH CRAM-MD5")
		line, _ := c.raw()
		ch, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(line[2:]))
		d := cramDigest(key, string(ch))
		resp := b64("carol " + d)
		add(d, resp)
		c.cmd(resp)
		c.want("QUIT", "+OK")
	}

	logs := e.logs.String()
	if !strings.Contains(logs, `"cmd":"AUTH"`) || !strings.Contains(logs, `"method":"AUTH CRAM-MD5"`) {
		t.Fatalf("debug log incomplete:\n%s", logs)
	}
	for _, s := range leaks {
		if strings.Contains(logs, s) {
			t.Errorf("log contains secret %q", s)
		}
	}
}
