// Package memstore is the in-memory reference backend of [mailstore]: the
// demo's store and the one every protocol test can run against without a
// disk.
//
// It keeps users with plain-text passwords (so it implements
// [mailstore.APOPStore] and [mailstore.CRAMMD5Store]), any number of folders per user, and an exclusive
// lock per folder. Messages are stored in their canonical CRLF form; UIDs
// are a per-store counter, never reused. A Store is safe for concurrent use;
// its mutex is never held while a caller reads a message.
package memstore

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"

	"popgate/mailstore"
)

// Store is an in-memory mail store. The zero value is not usable; call New.
type Store struct {
	mu    sync.Mutex
	users map[string]*user
	next  uint64 // last UID number handed out
	// dummy is compared against when the user is unknown, so that a missing
	// user costs the same as a wrong password.
	dummy string
}

type user struct {
	password string
	folders  map[string]*folder
}

type folder struct {
	msgs   []*message
	locked bool
}

type message struct {
	uid  string
	data []byte // canonical CRLF form; never modified after delivery
	seen bool
}

var (
	_ mailstore.APOPStore    = (*Store)(nil)
	_ mailstore.CRAMMD5Store = (*Store)(nil)
	_ mailstore.Provisioner  = (*Store)(nil)
)

// New returns an empty store.
func New() *Store {
	return &Store{users: make(map[string]*user), dummy: "no such user: constant-time dummy"}
}

// AddUser creates user with password, or changes the password of an
// existing user. The user gets an empty Inbox.
func (s *Store) AddUser(_ context.Context, name, password string) error {
	if name == "" {
		return fmt.Errorf("memstore: empty user name")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.users[name]; ok {
		u.password = password
		return nil
	}
	s.users[name] = &user{password: password, folders: map[string]*folder{mailstore.Inbox: {}}}
	return nil
}

// Deliver appends msg (LF or CRLF line ends) to the user's folder, creating
// the folder if needed.
func (s *Store) Deliver(_ context.Context, name, folderName string, msg []byte) error {
	data := mailstore.ToCRLF(msg)
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[name]
	if !ok {
		return fmt.Errorf("memstore: deliver to unknown user %q", name)
	}
	fn := mailstore.FolderName(folderName)
	f, ok := u.folders[fn]
	if !ok {
		f = &folder{}
		u.folders[fn] = f
	}
	s.next++
	f.msgs = append(f.msgs, &message{uid: "mem" + strconv.FormatUint(s.next, 10), data: data})
	return nil
}

// Login checks name's password in constant time.
func (s *Store) Login(_ context.Context, name, password string) (mailstore.Account, error) {
	return s.check("login", name, password, func(secret string) string { return secret })
}

// LoginAPOP checks an RFC 1939 APOP digest against name's password.
func (s *Store) LoginAPOP(_ context.Context, name, timestamp, digest string) (mailstore.Account, error) {
	return s.check("APOP", name, digest, func(secret string) string {
		sum := md5.Sum([]byte(timestamp + secret))
		return hex.EncodeToString(sum[:])
	})
}

// LoginCRAMMD5 checks an RFC 2195 CRAM-MD5 digest (hex HMAC-MD5 of the
// challenge keyed with name's password).
func (s *Store) LoginCRAMMD5(_ context.Context, name, challenge, digest string) (mailstore.Account, error) {
	return s.check("CRAM-MD5", name, digest, func(secret string) string {
		mac := hmac.New(md5.New, []byte(secret))
		mac.Write([]byte(challenge))
		return hex.EncodeToString(mac.Sum(nil))
	})
}

// check compares got with want(password of name) in constant time. An
// unknown user is checked against a dummy secret, so that it costs what a
// wrong password costs.
func (s *Store) check(method, name, got string, want func(secret string) string) (mailstore.Account, error) {
	s.mu.Lock()
	u, ok := s.users[name]
	secret := s.dummy
	if ok {
		secret = u.password
	}
	s.mu.Unlock()
	match := subtle.ConstantTimeCompare([]byte(want(secret)), []byte(got)) == 1
	if !ok || !match {
		return nil, fmt.Errorf("memstore: %s %q: %w", method, name, mailstore.ErrAuthFailed)
	}
	return &account{s: s, name: name}, nil
}

type account struct {
	s    *Store
	name string
}

func (a *account) User() string { return a.name }

func (a *account) Folders(context.Context) ([]string, error) {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	u, ok := a.s.users[a.name]
	if !ok {
		return nil, fmt.Errorf("memstore: user %q removed: %w", a.name, mailstore.ErrPermanent)
	}
	names := make([]string, 0, len(u.folders))
	for n := range u.folders {
		if n != mailstore.Inbox {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return append([]string{mailstore.Inbox}, names...), nil
}

func (a *account) Open(_ context.Context, name string) (mailstore.Maildrop, error) {
	fn := mailstore.FolderName(name)
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	u, ok := a.s.users[a.name]
	if !ok {
		return nil, fmt.Errorf("memstore: user %q removed: %w", a.name, mailstore.ErrPermanent)
	}
	f, ok := u.folders[fn]
	if !ok {
		return nil, fmt.Errorf("memstore: folder %q of %q: %w", fn, a.name, mailstore.ErrNoSuchFolder)
	}
	if f.locked {
		return nil, fmt.Errorf("memstore: folder %q of %q: %w", fn, a.name, mailstore.ErrLocked)
	}
	f.locked = true
	snap := make([]*message, len(f.msgs))
	copy(snap, f.msgs)
	return &maildrop{s: a.s, f: f, snap: snap}, nil
}

func (a *account) Close() error { return nil }

type maildrop struct {
	s    *Store
	f    *folder
	snap []*message
	done bool
}

func (m *maildrop) Messages(context.Context) ([]mailstore.MessageInfo, error) {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	out := make([]mailstore.MessageInfo, len(m.snap))
	for i, msg := range m.snap {
		out[i] = mailstore.MessageInfo{UID: msg.uid, Size: int64(len(msg.data)), Seen: msg.seen}
	}
	return out, nil
}

func (m *maildrop) OpenMessage(_ context.Context, uid string) (io.ReadCloser, error) {
	for _, msg := range m.snap {
		if msg.uid == uid {
			// data is immutable once delivered, so it is read without the lock.
			return io.NopCloser(bytes.NewReader(msg.data)), nil
		}
	}
	return nil, fmt.Errorf("memstore: uid %q: %w", uid, mailstore.ErrNoSuchMessage)
}

func (m *maildrop) Commit(_ context.Context, c mailstore.Changes) error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if m.done {
		return mailstore.ErrSessionEnded
	}
	m.done = true
	m.f.locked = false
	del := make(map[string]bool, len(c.Deleted))
	for _, uid := range c.Deleted {
		del[uid] = true
	}
	seen := make(map[string]bool, len(c.Seen))
	for _, uid := range c.Seen {
		seen[uid] = true
	}
	kept := m.f.msgs[:0:0]
	for _, msg := range m.f.msgs {
		if del[msg.uid] {
			continue
		}
		if seen[msg.uid] {
			msg.seen = true
		}
		kept = append(kept, msg)
	}
	m.f.msgs = kept
	return nil
}

func (m *maildrop) Close() error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if !m.done {
		m.done = true
		m.f.locked = false
	}
	return nil
}
