// Package users reads Dovecot-style passwd-files and checks passwords for
// popgate's file-based stores (maildir, mbox).
//
// A passwd-file has one user per line:
//
//	user:{SCHEME}secret:uid:gid:gecos:home:shell:extra_fields
//
// Only the first two fields are required; trailing fields may be left out
// or empty. Lines whose first non-blank character is '#' and blank lines
// are ignored. A password without a {SCHEME} prefix is a CRYPT secret, as
// in Dovecot. The schemes are PLAIN (or CLEARTEXT), SHA512-CRYPT,
// SHA256-CRYPT, BLF-CRYPT, ARGON2ID, ARGON2I and CRYPT with a "$6$", "$5$",
// "$2?$" or "$argon2..." secret. extra_fields are space-separated
// key=value pairs ([User.Extra]); this package keeps them, and the stores
// that need them interpret them (the gateway store's mapped credentials:
// upstream_user=, upstream_pass=, upstream_token_command=).
//
// [DB] implements the [Authenticator] seam that stores take: password
// checks in constant time, a missing user costing what a wrong password
// costs, and APOP and CRAM-MD5 only for PLAIN secrets.
package users

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"popgate/mailstore"
)

// Identity is who an authenticated user is, as a store needs it.
type Identity struct {
	// User is the canonical user name.
	User string
	// Home is the home directory from the users file, or "".
	Home string
}

// Authenticator checks passwords. Stores take one so that the same users
// database can back several of them. Implementations are safe for
// concurrent use.
type Authenticator interface {
	// Authenticate checks user's password. Unknown users and wrong
	// passwords both give an error wrapping mailstore.ErrAuthFailed.
	Authenticate(ctx context.Context, user, password string) (Identity, error)
}

// APOPAuthenticator is an Authenticator that can check an RFC 1939 APOP
// digest. It returns an error wrapping mailstore.ErrUnsupported when the
// user's secret is not kept in clear text.
type APOPAuthenticator interface {
	Authenticator
	AuthenticateAPOP(ctx context.Context, user, timestamp, digest string) (Identity, error)
}

// CRAMMD5Authenticator is an Authenticator that can check an RFC 2195
// CRAM-MD5 digest. It returns an error wrapping mailstore.ErrUnsupported
// when the user's secret is not kept in clear text.
type CRAMMD5Authenticator interface {
	Authenticator
	AuthenticateCRAMMD5(ctx context.Context, user, challenge, digest string) (Identity, error)
}

// PasswordSetter is an Authenticator whose entries can be changed at run
// time (tests, provisioning).
type PasswordSetter interface {
	// SetPassword creates user or replaces its password, hashing it with
	// scheme.
	SetPassword(user, password, scheme string) error
}

// User is one parsed passwd-file entry.
type User struct {
	// Name is the user name (first field).
	Name string
	// Scheme is the canonical scheme name (PLAIN, SHA512-CRYPT, ..., CRYPT).
	Scheme string
	// Secret is the password field without its {SCHEME} prefix.
	Secret string
	// UID and GID are the third and fourth fields, as written.
	UID, GID string
	// Gecos is the fifth field.
	Gecos string
	// Home is the home directory (sixth field); stores use it for %h.
	Home string
	// Shell is the seventh field.
	Shell string
	// Extra holds the key=value pairs of the extra_fields column; a field
	// without '=' maps to "".
	Extra map[string]string
}

// ParseLine parses one passwd-file line. It returns ok == false, with no
// error, for blank lines and comments.
func ParseLine(line string) (u User, ok bool, err error) {
	line = strings.TrimRight(line, "\r\n")
	trimmed := strings.TrimLeft(line, " \t")
	if trimmed == "" || trimmed[0] == '#' {
		return User{}, false, nil
	}
	f := strings.SplitN(line, ":", 8)
	if len(f) < 2 {
		return User{}, false, fmt.Errorf("passwd-file line has no password field")
	}
	if f[0] == "" || strings.ContainsAny(f[0], " \t\x00") {
		return User{}, false, fmt.Errorf("passwd-file user name %q is empty or has blanks", f[0])
	}
	u.Name = f[0]
	pw := f[1]
	u.Scheme = Crypt
	if strings.HasPrefix(pw, "{") {
		end := strings.IndexByte(pw, '}')
		if end < 0 {
			return User{}, false, fmt.Errorf("user %q: unterminated {SCHEME}", u.Name)
		}
		sc, err := canonicalScheme(pw[1:end])
		if err != nil {
			return User{}, false, fmt.Errorf("user %q: %w", u.Name, err)
		}
		u.Scheme = sc
		pw = pw[end+1:]
	}
	u.Secret = pw
	if u.Scheme != Plain && pw == "" {
		return User{}, false, fmt.Errorf("user %q: empty %s secret", u.Name, u.Scheme)
	}
	if err := checkSecret(u.Scheme, u.Secret); err != nil {
		return User{}, false, fmt.Errorf("user %q: %w", u.Name, err)
	}
	field := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	u.UID, u.GID, u.Gecos, u.Home, u.Shell = field(2), field(3), field(4), field(5), field(6)
	if extra := field(7); extra != "" {
		u.Extra = make(map[string]string)
		for _, kv := range strings.Fields(extra) {
			k, v, _ := strings.Cut(kv, "=")
			u.Extra[k] = v
		}
	}
	return u, true, nil
}

// Parse reads a whole passwd-file. Errors name the line. A user listed
// twice is an error.
func Parse(r io.Reader) ([]User, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var out []User
	seen := make(map[string]int)
	for n := 1; sc.Scan(); n++ {
		u, ok, err := ParseLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if !ok {
			continue
		}
		if prev, dup := seen[u.Name]; dup {
			return nil, fmt.Errorf("line %d: user %q already defined on line %d", n, u.Name, prev)
		}
		seen[u.Name] = n
		out = append(out, u)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading passwd-file: %w", err)
	}
	return out, nil
}

// Entry returns the passwd-file line (without newline) for user with
// password hashed under scheme: "user:{SCHEME}secret::::::".
func Entry(user, password, scheme string) (string, error) {
	if user == "" || strings.ContainsAny(user, ": \t\r\n\x00#") {
		return "", fmt.Errorf("users: user name %q is empty or has ':', '#' or blanks", user)
	}
	sc, err := canonicalScheme(scheme)
	if err != nil {
		return "", fmt.Errorf("users: %w", err)
	}
	if sc == Crypt {
		sc = SHA512Crypt
	}
	secret, err := Hash(password, sc)
	if err != nil {
		return "", fmt.Errorf("users: hashing password for %q: %w", user, err)
	}
	return user + ":{" + sc + "}" + secret + "::::::", nil
}

// DB is a users database: a passwd-file (see [Open]) or an in-memory table
// (see [NewMemory]). It is safe for concurrent use; [DB.Reload] swaps the
// table atomically.
type DB struct {
	path string // "" for an in-memory table

	// reloadMu serialises reloads; stamp identifies the file version
	// loaded, so a lookup reloads a file that changed (as Dovecot's
	// passwd-file does) without waiting for SIGHUP.
	reloadMu sync.Mutex
	stamp    fileStamp

	mu    sync.RWMutex
	users map[string]User
	order []string // names in file order
	// dummyScheme and dummySecret are what a missing user is checked
	// against: a secret of the scheme most users have, with the cost
	// parameters of the first of them. Built lazily under dummyMu.
	dummyMu     sync.Mutex
	dummyFor    string // the representative secret the dummy was made for
	dummyScheme string
	dummySecret string
}

var (
	_ APOPAuthenticator    = (*DB)(nil)
	_ CRAMMD5Authenticator = (*DB)(nil)
	_ PasswordSetter       = (*DB)(nil)
)

// Open loads the passwd-file at path.
func Open(path string) (*DB, error) {
	db := &DB{path: path}
	if err := db.Reload(); err != nil {
		return nil, err
	}
	return db, nil
}

// NewMemory returns an empty in-memory database, filled with
// [DB.SetPassword] or [DB.Add].
func NewMemory() *DB {
	return &DB{users: make(map[string]User)}
}

// Reload re-reads the passwd-file. On error the previous table stays in
// use. Entries added with SetPassword or Add are dropped. Reload of an
// in-memory database does nothing.
func (db *DB) Reload() error {
	if db.path == "" {
		return nil
	}
	db.reloadMu.Lock()
	defer db.reloadMu.Unlock()
	return db.reloadLocked()
}

// fileStamp is what tells one version of the passwd-file from another.
type fileStamp struct {
	mtime time.Time
	size  int64
	ino   uint64
}

func stampOf(fi os.FileInfo) fileStamp {
	st := fileStamp{mtime: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = uint64(sys.Ino)
	}
	return st
}

// refresh reloads the file if it changed since it was loaded. A file that
// vanished or no longer parses leaves the loaded table in force, as
// Reload does; SIGHUP's Reload reports the error.
func (db *DB) refresh() {
	if db.path == "" {
		return
	}
	fi, err := os.Stat(db.path)
	if err != nil {
		return
	}
	db.reloadMu.Lock()
	defer db.reloadMu.Unlock()
	if stampOf(fi) == db.stamp {
		return
	}
	_ = db.reloadLocked()
}

func (db *DB) reloadLocked() error {
	fi, err := os.Stat(db.path)
	if err != nil {
		return fmt.Errorf("users: %w", err)
	}
	stamp := stampOf(fi)
	data, err := os.ReadFile(db.path)
	if err != nil {
		return fmt.Errorf("users: reading %s: %w", db.path, err)
	}
	list, err := Parse(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("users: %s: %w", db.path, err)
	}
	m := make(map[string]User, len(list))
	order := make([]string, 0, len(list))
	for _, u := range list {
		m[u.Name] = u
		order = append(order, u.Name)
	}
	db.mu.Lock()
	db.users, db.order = m, order
	db.mu.Unlock()
	db.stamp = stamp
	return nil
}

// Add inserts or replaces an entry in memory.
func (db *DB) Add(u User) error {
	if u.Name == "" {
		return fmt.Errorf("users: empty user name")
	}
	sc, err := canonicalScheme(u.Scheme)
	if err != nil {
		return fmt.Errorf("users: %s: %w", u.Name, err)
	}
	u.Scheme = sc
	if err := checkSecret(u.Scheme, u.Secret); err != nil {
		return fmt.Errorf("users: %s: %w", u.Name, err)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if _, ok := db.users[u.Name]; !ok {
		db.order = append(db.order, u.Name)
	}
	db.users[u.Name] = u
	return nil
}

// SetPassword inserts or replaces user in memory with password hashed
// under scheme.
func (db *DB) SetPassword(user, password, scheme string) error {
	sc, err := canonicalScheme(scheme)
	if err != nil {
		return fmt.Errorf("users: %w", err)
	}
	if sc == Crypt {
		sc = SHA512Crypt
	}
	secret, err := Hash(password, sc)
	if err != nil {
		return fmt.Errorf("users: %s: %w", user, err)
	}
	db.mu.RLock()
	u, ok := db.users[user]
	db.mu.RUnlock()
	if !ok {
		u = User{Name: user}
	}
	u.Scheme, u.Secret = sc, secret
	return db.Add(u)
}

// Lookup returns user's entry.
func (db *DB) Lookup(user string) (User, bool) {
	db.refresh()
	db.mu.RLock()
	defer db.mu.RUnlock()
	u, ok := db.users[user]
	return u, ok
}

// Len is the number of users.
func (db *DB) Len() int {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return len(db.users)
}

// representative returns the scheme most users have and the secret of the
// first of them, or PLAIN and "" for an empty database. Callers hold mu.
func (db *DB) representative() (scheme, secret string) {
	counts := make(map[string]int)
	best := ""
	for _, name := range db.order {
		sc := db.users[name].Scheme
		counts[sc]++
		if best == "" || counts[sc] > counts[best] {
			best = sc
		}
	}
	if best == "" {
		return Plain, ""
	}
	for _, name := range db.order {
		if u := db.users[name]; u.Scheme == best {
			return u.Scheme, u.Secret
		}
	}
	return Plain, ""
}

// dummy returns the secret a missing user's password is checked against.
func (db *DB) dummy() (scheme, secret string, err error) {
	db.mu.RLock()
	repScheme, repSecret := db.representative()
	db.mu.RUnlock()
	db.dummyMu.Lock()
	defer db.dummyMu.Unlock()
	key := repScheme + "\x00" + repSecret
	if db.dummyScheme != "" && db.dummyFor == key {
		return db.dummyScheme, db.dummySecret, nil
	}
	if repSecret == "" {
		repSecret = "dummy-plain"
	}
	sc, sec, err := hashLike(repScheme, repSecret)
	if err != nil {
		return "", "", fmt.Errorf("users: making dummy secret: %w", err)
	}
	db.dummyFor, db.dummyScheme, db.dummySecret = key, sc, sec
	return sc, sec, nil
}

// Authenticate checks user's password in constant time. A missing user is
// checked against a dummy secret of the prevailing scheme and cost, so it
// takes as long as a wrong password.
func (db *DB) Authenticate(ctx context.Context, user, password string) (Identity, error) {
	if err := ctx.Err(); err != nil {
		return Identity{}, fmt.Errorf("users: login %q: %w", user, err)
	}
	u, ok := db.Lookup(user)
	scheme, secret := u.Scheme, u.Secret
	if !ok {
		var err error
		if scheme, secret, err = db.dummy(); err != nil {
			return Identity{}, err
		}
	}
	match, err := verify(scheme, secret, password)
	if err != nil {
		return Identity{}, fmt.Errorf("users: login %q: %w", user, err)
	}
	if !ok || !match {
		return Identity{}, fmt.Errorf("users: login %q: %w", user, mailstore.ErrAuthFailed)
	}
	return Identity{User: u.Name, Home: u.Home}, nil
}

// AuthenticateAPOP checks an RFC 1939 APOP digest (lower-case hex MD5 of
// timestamp followed by the secret). Only PLAIN secrets allow it; other
// users get ErrUnsupported. A missing user gets what a user of the
// prevailing scheme would get, so the reply does not reveal which users
// exist.
func (db *DB) AuthenticateAPOP(ctx context.Context, user, timestamp, digest string) (Identity, error) {
	return db.authenticateDigest(ctx, "APOP", user, digest, func(secret string) string {
		sum := md5.Sum([]byte(timestamp + secret))
		return hex.EncodeToString(sum[:])
	})
}

// AuthenticateCRAMMD5 checks an RFC 2195 CRAM-MD5 digest (lower-case hex
// HMAC-MD5 of challenge keyed with the secret), with the same rules as
// [DB.AuthenticateAPOP]: PLAIN secrets only, missing users hidden.
func (db *DB) AuthenticateCRAMMD5(ctx context.Context, user, challenge, digest string) (Identity, error) {
	return db.authenticateDigest(ctx, "CRAM-MD5", user, digest, func(secret string) string {
		mac := hmac.New(md5.New, []byte(secret))
		mac.Write([]byte(challenge))
		return hex.EncodeToString(mac.Sum(nil))
	})
}

// authenticateDigest compares digest with want(secret) for a PLAIN user.
func (db *DB) authenticateDigest(ctx context.Context, method, user, digest string, want func(secret string) string) (Identity, error) {
	if err := ctx.Err(); err != nil {
		return Identity{}, fmt.Errorf("users: %s %q: %w", method, user, err)
	}
	u, ok := db.Lookup(user)
	scheme, secret := u.Scheme, u.Secret
	if !ok {
		var err error
		if scheme, secret, err = db.dummy(); err != nil {
			return Identity{}, err
		}
	}
	if scheme != Plain {
		return Identity{}, fmt.Errorf("users: %s %q: secret is not PLAIN: %w", method, user, mailstore.ErrUnsupported)
	}
	match := subtle.ConstantTimeCompare([]byte(want(secret)), []byte(strings.ToLower(digest))) == 1
	if !ok || !match {
		return Identity{}, fmt.Errorf("users: %s %q: %w", method, user, mailstore.ErrAuthFailed)
	}
	return Identity{User: u.Name, Home: u.Home}, nil
}

// IsUnknownScheme reports whether err is about a password scheme popgate
// does not support.
func IsUnknownScheme(err error) bool { return errors.Is(err, errUnknownScheme) }
