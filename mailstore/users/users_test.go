package users

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"popgate/mailstore"
)

// Vectors generated at test-writing time with glibc/libxcrypt crypt(3)
// (python3 crypt), openssl passwd -5/-6, mkpasswd and the argon2 CLI.
var vectors = []struct {
	scheme, password, secret string
}{
	{SHA256Crypt, "Hello world!", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"},
	{SHA512Crypt, "Hello world!", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
	{SHA512Crypt, "", "$6$emptypw$TWmzQ8/uLn1BFSZ5Lkfum8lAba5vixF9Nl3Aiof.Praatq9nh0kkPuTdoVrIL6du0L6LAoadbPq.q.D7keveg/"},
	{SHA512Crypt, "This is just a test", "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
	{SHA512Crypt, strings.Repeat("x", 200), "$6$rounds=1000$s$2qopGRjighl7WEgWKqKKddB/g9zLJIEPceDYk5JvVKNf4EYmYcTtqAngEiidbnKUfiec5GH1kiw0wwUrBiR9i."},
	{SHA256Crypt, "we have a short salt string but not a short password", "$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/"},
	{SHA512Crypt, "hunter2", "$6$saltsalt12345678$Gqfc6Flny7R88JOLptH3fH0w/bFHV7ih4pAUi0tktkDJ74cgFESF9snVccaTpsGeQtUZ4gT0SAnMhuaqRVrhE0"},
	{SHA256Crypt, "hunter2", "$5$abc$aw8kcfRnzkuA1XFRzd1AgTNuyzM2RdMYKc3X22kKYc0"},
	{SHA512Crypt, "pässwörd with spaces", "$6$saltsalt12345678$VnpkEB3sru3GWCQU0NoZd1l7WZCjB5zvptY3IMwR51m6u0tTHOM2Gf5vmm26L.VJNdQfhzN3b2i6LYe4g7ol30"},
	{SHA256Crypt, "pässwörd with spaces", "$5$abc$OgwXTgGB.t3pOP88Shzh7uVTlBPL97FTffy/FOlZPZ5"},
	{SHA512Crypt, "secret", "$6$rounds=10000$roundsSALT$CLLuk1CKSWNSlvPLPzak.Jq65p5FutoY8yE8mEGZTVQdOEsr5mhWIEtz.AC9AQrJ2fpMwtdTMxklRb0.ipuyr."},
	{SHA256Crypt, "a very long password that is longer than the sixty four octet sha block for sure yes", "$5$rounds=1000$shortsalt$lDRXZfvdt2WWNIU28BYA/0Iqc0vkmhBsvPqd3X9QEB5"},
	{BlfCrypt, "secret", "$2b$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a"},
	{BlfCrypt, "secret", "$2y$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a"},
	{Argon2ID, "secret", "$argon2id$v=19$m=64,t=2,p=1$c29tZXNhbHRzYWx0$opnsAelDoZJIcKPBdWgT/ceq3m9uy/CUdoTwGSsvdhw"},
	{Argon2I, "secret", "$argon2i$v=19$m=32,t=3,p=2$c29tZXNhbHRzYWx0$Hn5h+bf0GLDPFVZQzEuC0q9o9e1+aF98OoDSTNflqyc"},
	{Plain, "plain pw", "plain pw"},
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		for _, scheme := range []string{v.scheme, Crypt} {
			if scheme == Crypt && v.scheme == Plain {
				continue
			}
			if err := checkSecret(scheme, v.secret); err != nil {
				t.Errorf("checkSecret(%s, %s) = %v", scheme, v.secret, err)
				continue
			}
			ok, err := verify(scheme, v.secret, v.password)
			if err != nil || !ok {
				t.Errorf("verify(%s, %s, %q) = %v, %v; want true", scheme, v.secret, v.password, ok, err)
			}
			ok, err = verify(scheme, v.secret, v.password+"x")
			if err != nil || ok {
				t.Errorf("verify(%s, %s, wrong) = %v, %v; want false", scheme, v.secret, ok, err)
			}
		}
	}
}

func TestShaCryptExact(t *testing.T) {
	// The computed string must equal the stored one byte for byte.
	for _, v := range vectors {
		if v.scheme != SHA256Crypt && v.scheme != SHA512Crypt {
			continue
		}
		p, err := parseShaCrypt(v.secret)
		if err != nil {
			t.Fatal(err)
		}
		if got := shaCrypt(p, []byte(v.password)); got != v.secret {
			t.Errorf("shaCrypt(%q) = %s, want %s", v.password, got, v.secret)
		}
	}
}

func TestHashRoundTrip(t *testing.T) {
	for _, sc := range []string{Plain, Cleartext, SHA512Crypt, SHA256Crypt, BlfCrypt, Argon2ID, Argon2I} {
		if testing.Short() && strings.HasPrefix(sc, "ARGON") {
			continue
		}
		line, err := Entry("bob", "pw 1", sc)
		if err != nil {
			t.Fatalf("Entry(%s) = %v", sc, err)
		}
		u, ok, err := ParseLine(line)
		if err != nil || !ok {
			t.Fatalf("ParseLine(%q) = %v, %v", line, ok, err)
		}
		if good, err := verify(u.Scheme, u.Secret, "pw 1"); err != nil || !good {
			t.Errorf("%s: verify(right) = %v, %v", sc, good, err)
		}
		if good, err := verify(u.Scheme, u.Secret, "pw 2"); err != nil || good {
			t.Errorf("%s: verify(wrong) = %v, %v", sc, good, err)
		}
		if sc == Argon2ID && !strings.HasPrefix(u.Secret, "$argon2id$v=19$m=65536,t=3,p=1$") {
			t.Errorf("argon2id secret %q not in Dovecot's format", u.Secret)
		}
	}
	if _, err := Entry("bob", "a:b", Plain); err == nil {
		t.Error("Entry with ':' in a PLAIN password succeeded")
	}
	if _, err := Entry("bo:b", "x", Plain); err == nil {
		t.Error("Entry with ':' in the user name succeeded")
	}
	if _, err := Entry("bob", "x", "MD5"); !IsUnknownScheme(err) {
		t.Errorf("Entry(MD5) = %v, want unknown scheme", err)
	}
}

func TestParse(t *testing.T) {
	file := `# users
   # indented comment

alice:{PLAIN}alice pw:1000:1000:Alice A:/home/alice:/bin/sh:userdb_quota=1G flag
bob:{SHA512-CRYPT}$6$saltsalt12345678$Gqfc6Flny7R88JOLptH3fH0w/bFHV7ih4pAUi0tktkDJ74cgFESF9snVccaTpsGeQtUZ4gT0SAnMhuaqRVrhE0
carol:$5$abc$aw8kcfRnzkuA1XFRzd1AgTNuyzM2RdMYKc3X22kKYc0::::/home/carol
dave:{cleartext}d
`
	list, err := Parse(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 4 {
		t.Fatalf("Parse gave %d users, want 4", len(list))
	}
	a := list[0]
	if a.Name != "alice" || a.Scheme != Plain || a.Secret != "alice pw" || a.UID != "1000" || a.Gecos != "Alice A" ||
		a.Home != "/home/alice" || a.Shell != "/bin/sh" || a.Extra["userdb_quota"] != "1G" {
		t.Errorf("alice = %+v", a)
	}
	if _, ok := a.Extra["flag"]; !ok {
		t.Errorf("alice extra = %v, want flag", a.Extra)
	}
	if list[2].Scheme != Crypt || list[2].Home != "/home/carol" {
		t.Errorf("carol = %+v", list[2])
	}
	if list[3].Scheme != Plain {
		t.Errorf("dave scheme = %s", list[3].Scheme)
	}
	for _, bad := range []string{
		"nopassword\n",
		"x:{MD5}abc\n",
		"x:{PLAIN\n",
		":{PLAIN}a\n",
		"x:{SHA512-CRYPT}$5$abc$aw8kcfRnzkuA1XFRzd1AgTNuyzM2RdMYKc3X22kKYc0\n",
		"x:{BLF-CRYPT}nonsense\n",
		"x:{ARGON2ID}$argon2id$v=16$m=64,t=2,p=1$c29tZXNhbHRzYWx0$opnsAelDoZJIcKPBdWgT/ceq3m9uy/CUdoTwGSsvdhw\n",
		"x:{PLAIN}a\nx:{PLAIN}b\n",
		"x:$1$md5$crypt\n",
	} {
		if _, err := Parse(strings.NewReader(bad)); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

func TestDBAuthenticate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	content := "alice:{PLAIN}apw:::::: \n" +
		"bob:{SHA256-CRYPT}$5$abc$aw8kcfRnzkuA1XFRzd1AgTNuyzM2RdMYKc3X22kKYc0::::/home/bob\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if id, err := db.Authenticate(ctx, "alice", "apw"); err != nil || id.User != "alice" {
		t.Errorf("alice = %v, %v", id, err)
	}
	if id, err := db.Authenticate(ctx, "bob", "hunter2"); err != nil || id.Home != "/home/bob" {
		t.Errorf("bob = %v, %v", id, err)
	}
	for _, c := range [][2]string{{"alice", "x"}, {"bob", "x"}, {"nobody", "hunter2"}, {"nobody", ""}} {
		if _, err := db.Authenticate(ctx, c[0], c[1]); !errors.Is(err, mailstore.ErrAuthFailed) {
			t.Errorf("Authenticate(%q, %q) = %v, want ErrAuthFailed", c[0], c[1], err)
		}
	}
	// APOP: PLAIN only.
	ts := "<1.2@host>"
	sum := md5.Sum([]byte(ts + "apw"))
	if _, err := db.AuthenticateAPOP(ctx, "alice", ts, hex.EncodeToString(sum[:])); err != nil {
		t.Errorf("APOP alice = %v", err)
	}
	if _, err := db.AuthenticateAPOP(ctx, "alice", ts, strings.Repeat("0", 32)); !errors.Is(err, mailstore.ErrAuthFailed) {
		t.Errorf("APOP alice wrong = %v", err)
	}
	if _, err := db.AuthenticateAPOP(ctx, "bob", ts, hex.EncodeToString(sum[:])); !errors.Is(err, mailstore.ErrUnsupported) {
		t.Errorf("APOP bob = %v, want ErrUnsupported", err)
	}
	// Cancelled context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := db.Authenticate(cctx, "alice", "apw"); !errors.Is(err, context.Canceled) {
		t.Errorf("Authenticate(cancelled) = %v", err)
	}

	// Reload: a broken file keeps the old table; a good one replaces it.
	if err := os.WriteFile(path, []byte("broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := db.Reload(); err == nil {
		t.Error("Reload of a broken file succeeded")
	}
	if _, err := db.Authenticate(ctx, "alice", "apw"); err != nil {
		t.Errorf("after failed reload: %v", err)
	}
	if err := os.WriteFile(path, []byte("carol:{PLAIN}c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := db.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Authenticate(ctx, "alice", "apw"); !errors.Is(err, mailstore.ErrAuthFailed) {
		t.Errorf("alice after reload = %v", err)
	}
	if _, err := db.Authenticate(ctx, "carol", "c"); err != nil {
		t.Errorf("carol after reload = %v", err)
	}
}

func TestMissingUserUsesSameScheme(t *testing.T) {
	db := NewMemory()
	for _, u := range []string{"a", "b"} {
		if err := db.Add(User{Name: u, Scheme: SHA512Crypt, Secret: vectors[10].secret}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.SetPassword("c", "pw", Plain); err != nil {
		t.Fatal(err)
	}
	sc, sec, err := db.dummy()
	if err != nil {
		t.Fatal(err)
	}
	if sc != SHA512Crypt || !strings.HasPrefix(sec, "$6$rounds=10000$") || sec == vectors[10].secret {
		t.Errorf("dummy = %s %s, want a fresh SHA512-CRYPT secret with rounds=10000", sc, sec)
	}
	// A missing user in a database of hashed secrets answers APOP like a
	// real user: unsupported.
	if _, err := db.AuthenticateAPOP(context.Background(), "nobody", "<x>", "00"); !errors.Is(err, mailstore.ErrUnsupported) {
		t.Errorf("APOP nobody = %v, want ErrUnsupported", err)
	}
	for _, v := range vectors {
		if v.scheme == Plain {
			continue
		}
		sc, sec, err := hashLike(v.scheme, v.secret)
		if err != nil {
			t.Fatalf("hashLike(%s) = %v", v.secret, err)
		}
		if err := checkSecret(sc, sec); err != nil {
			t.Errorf("hashLike(%s) = %s, invalid: %v", v.secret, sec, err)
		}
	}
}

func TestConcurrentReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	if err := os.WriteFile(path, []byte("alice:{PLAIN}a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				if i%2 == 0 {
					if err := db.Reload(); err != nil {
						t.Error(err)
						return
					}
				} else if _, err := db.Authenticate(context.Background(), "alice", "a"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"alice:{PLAIN}pw:1:2:g:/h:/s:k=v",
		"# comment",
		"",
		"bob:$6$rounds=1000$s$2qopGRjighl7WEgWKqKKddB/g9zLJIEPceDYk5JvVKNf4EYmYcTtqAngEiidbnKUfiec5GH1kiw0wwUrBiR9i.",
		"x:{ARGON2I}$argon2i$v=19$m=32,t=3,p=2$c29tZXNhbHRzYWx0$Hn5h+bf0GLDPFVZQzEuC0q9o9e1+aF98OoDSTNflqyc",
		"x:{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a:::::::",
		"x:{",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		u, ok, err := ParseLine(line)
		if err != nil {
			return
		}
		if !ok {
			if u.Name != "" {
				t.Fatalf("skipped line returned user %q", u.Name)
			}
			return
		}
		if u.Name == "" || strings.Contains(u.Name, ":") {
			t.Fatalf("bad user name %q from %q", u.Name, line)
		}
		if _, err := canonicalScheme(u.Scheme); err != nil {
			t.Fatalf("scheme %q accepted: %v", u.Scheme, err)
		}
		if err := checkSecret(u.Scheme, u.Secret); err != nil {
			t.Fatalf("accepted secret fails its check: %v", err)
		}
	})
}

// TestChangedFileIsReloadedAtLookup rewrites the passwd-file under a live
// DB: the next lookup sees the new entries without Reload, and a broken
// rewrite leaves the last good table in force.
func TestChangedFileIsReloadedAtLookup(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "passwd")
	write := func(content string) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("alice:{PLAIN}one::::::\n")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Authenticate(ctx, "bob", "two"); !errors.Is(err, mailstore.ErrAuthFailed) {
		t.Fatalf("bob before he exists = %v, want ErrAuthFailed", err)
	}
	write("alice:{PLAIN}one::::::\nbob:{PLAIN}two::::::\n")
	if _, err := db.Authenticate(ctx, "bob", "two"); err != nil {
		t.Fatalf("bob after the file gained him = %v, want success", err)
	}
	write("alice:{NOSUCHSCHEME}x::::::\n")
	if _, err := db.Authenticate(ctx, "bob", "two"); err != nil {
		t.Fatalf("a broken rewrite replaced the table: bob = %v", err)
	}
}
