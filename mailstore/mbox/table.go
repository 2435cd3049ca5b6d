package mbox

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"sync"

	"popgate/mailstore"
)

// Table is an in-memory [APOPAuthenticator] with plain-text passwords: the
// default Authenticator of a [Store], for tests and the demo. It is safe for
// concurrent use.
type Table struct {
	mu    sync.Mutex
	users map[string]string
}

var (
	_ APOPAuthenticator    = (*Table)(nil)
	_ CRAMMD5Authenticator = (*Table)(nil)
)

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{users: make(map[string]string)}
}

// dummySecret is compared against for unknown users, so that they cost the
// same as a wrong password.
const dummySecret = "no such user: constant-time dummy"

// AddUser creates user with password or replaces its password.
func (t *Table) AddUser(_ context.Context, user, password string) error {
	if user == "" {
		return fmt.Errorf("mbox: empty user name")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.users[user] = password
	return nil
}

func (t *Table) secret(user string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.users[user]
	if !ok {
		return dummySecret, false
	}
	return p, true
}

// Authenticate checks user's password in constant time.
func (t *Table) Authenticate(_ context.Context, user, password string) (Identity, error) {
	want, ok := t.secret(user)
	match := subtle.ConstantTimeCompare([]byte(want), []byte(password)) == 1
	if !ok || !match {
		return Identity{}, fmt.Errorf("mbox: table: %w", mailstore.ErrAuthFailed)
	}
	return Identity{User: user}, nil
}

// AuthenticateAPOP checks an RFC 1939 APOP digest against user's password.
func (t *Table) AuthenticateAPOP(_ context.Context, user, timestamp, digest string) (Identity, error) {
	secret, ok := t.secret(user)
	sum := md5.Sum([]byte(timestamp + secret))
	want := hex.EncodeToString(sum[:])
	match := subtle.ConstantTimeCompare([]byte(want), []byte(digest)) == 1
	if !ok || !match {
		return Identity{}, fmt.Errorf("mbox: table APOP: %w", mailstore.ErrAuthFailed)
	}
	return Identity{User: user}, nil
}

// AuthenticateCRAMMD5 checks an RFC 2195 CRAM-MD5 digest against user's
// password.
func (t *Table) AuthenticateCRAMMD5(_ context.Context, user, challenge, digest string) (Identity, error) {
	secret, ok := t.secret(user)
	mac := hmac.New(md5.New, []byte(secret))
	mac.Write([]byte(challenge))
	want := hex.EncodeToString(mac.Sum(nil))
	match := subtle.ConstantTimeCompare([]byte(want), []byte(digest)) == 1
	if !ok || !match {
		return Identity{}, fmt.Errorf("mbox: table CRAM-MD5: %w", mailstore.ErrAuthFailed)
	}
	return Identity{User: user}, nil
}
