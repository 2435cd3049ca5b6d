// Package mbox is the Unix mbox spool backend of [mailstore]: one file per
// folder, messages separated by "From " lines, as /var/mail/USER is written
// by Postfix local(8), procmail, Exim and mail(1).
//
// It provides:
//
//   - [Store], created by [New] from [Options]: a [mailstore.Store],
//     [mailstore.APOPStore], [mailstore.CRAMMD5Store] and [mailstore.Provisioner];
//   - [Flavour] ([MboxO], the default, and [MboxRD]): how "From " lines
//     inside bodies are quoted;
//   - [Authenticator] and [APOPAuthenticator]: the small interfaces the
//     store checks passwords through, and [Table], an in-memory one for
//     tests and the demo;
//   - the sentinels [ErrSpoolChanged] and [ErrSpoolBusy].
//
// # Implementation notes
//
// A spool is never read whole into memory. [mailstore.Account.Open] scans
// it once under the delivery locks (dotlock and fcntl, as MDAs take them),
// records each message's offsets, CRLF size and UID, and keeps the file
// open; messages are then served from that descriptor through a streaming
// unquoting and CRLF converter. The maildrop lock is a separate flock(2)
// lock file that MDAs do not know about, so delivery goes on during a POP
// session. Commit rewrites the spool to a temporary file and renames it
// over the original, or truncates it when only trailing messages go, after
// checking under the delivery locks that the snapshot region is unchanged.
// The format, locking and commit algorithm are described in docs/mbox.md.
package mbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"popgate/mailstore"
	"popgate/mailstore/users"
)

// Errors specific to mbox spools. Both are temporary failures: nothing was
// changed and the client may try again later.
var (
	// ErrSpoolChanged means another program rewrote the spool during the
	// POP session (a mail reader expunged or reordered it), so the session's
	// snapshot no longer matches the file. Commit then deletes nothing.
	ErrSpoolChanged = errors.New("mbox: spool was changed by another program since the session began")
	// ErrSpoolBusy means the spool's delivery locks stayed held by another
	// program for longer than Options.LockTimeout.
	ErrSpoolBusy = errors.New("mbox: spool is locked by another program")
)

// Default values of the zero [Options] fields.
const (
	DefaultLockTimeout  = 30 * time.Second
	DefaultStaleLockAge = 5 * time.Minute
)

// Identity is an authenticated user as the store needs it: the canonical
// user name ("" means the name that was given) and the home directory for
// %h in Options.FolderDir ("" means look it up with Options.Home). It is
// the users package's type, so a passwd-file serves mbox and Maildir alike.
type Identity = users.Identity

// Authenticator checks passwords for a [Store]; see [users.Authenticator].
type Authenticator = users.Authenticator

// APOPAuthenticator is an [Authenticator] that can check an RFC 1939 APOP
// digest; see [users.APOPAuthenticator].
type APOPAuthenticator = users.APOPAuthenticator

// CRAMMD5Authenticator is an [Authenticator] that can check an RFC 2195
// CRAM-MD5 digest; see [users.CRAMMD5Authenticator].
type CRAMMD5Authenticator = users.CRAMMD5Authenticator

// userAdder is an Authenticator that can create users ([Table] is one); the
// Store's AddUser delegates to it.
type userAdder interface {
	AddUser(ctx context.Context, user, password string) error
}

// Options configures a [Store]. The zero value of every field but Path
// means the documented default.
type Options struct {
	// Path is the Inbox spool of each user. "%u" is replaced by the user
	// name and "%%" by "%". A Path without "%u" is a directory holding one
	// spool per user, so "/var/mail" means "/var/mail/%u".
	Path string
	// FolderDir is the directory of the user's other folders (POP2 FOLD,
	// POP1 mailbox names), one mbox file each, for example "~/mail" or
	// "%h/mail". "%u" is the user name, "%h" and a leading "~" the home
	// directory. Empty means the account has only INBOX.
	FolderDir string
	// Home returns a user's home directory when the Authenticator did not
	// give one. Nil means the system's user database (os/user).
	Home func(user string) (string, error)
	// Auth checks passwords. Nil means a new empty [Table], filled with
	// [Store.AddUser].
	Auth Authenticator
	// Flavour is how "From " lines in bodies are quoted: [MboxO] (the zero
	// value, what Debian's Postfix and procmail write) or [MboxRD].
	Flavour Flavour
	// WriteStatus controls whether messages retrieved in a committed session
	// get a "Status: RO" header (which rewrites the spool). The zero value
	// StatusAlways does; StatusWithDeletions only when the commit rewrites
	// the spool anyway; StatusNever never.
	WriteStatus StatusPolicy
	// LockTimeout bounds the wait for the delivery locks (dotlock and
	// fcntl). Zero means DefaultLockTimeout.
	LockTimeout time.Duration
	// StaleLockAge is the age after which a dotlock is considered left by
	// a crashed program and removed, as liblockfile does. Zero means
	// DefaultStaleLockAge.
	StaleLockAge time.Duration
	// Now is the clock for the "From " lines Deliver writes. Nil means
	// time.Now.
	Now func() time.Time
}

// StatusPolicy says when a commit records retrieved messages in a
// "Status:" header.
type StatusPolicy int

// Status policies; see Options.WriteStatus.
const (
	StatusAlways StatusPolicy = iota
	StatusWithDeletions
	StatusNever
)

// Store is an mbox backend. It is safe for concurrent use.
type Store struct {
	opts Options
	auth Authenticator

	mu   sync.Mutex
	sems map[string]chan struct{} // per spool path: serialises our own lockers
}

var (
	_ mailstore.APOPStore    = (*Store)(nil)
	_ mailstore.CRAMMD5Store = (*Store)(nil)
	_ mailstore.Provisioner  = (*Store)(nil)
)

// New returns a store over the spools opts describes.
func New(opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, errors.New("mbox: Options.Path is empty")
	}
	if !strings.Contains(opts.Path, "%u") {
		opts.Path = filepath.Join(opts.Path, "%u")
	}
	switch opts.Flavour {
	case MboxO, MboxRD:
	default:
		return nil, fmt.Errorf("mbox: unknown flavour %d", opts.Flavour)
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.StaleLockAge <= 0 {
		opts.StaleLockAge = DefaultStaleLockAge
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Home == nil {
		opts.Home = systemHome
	}
	s := &Store{opts: opts, auth: opts.Auth, sems: make(map[string]chan struct{})}
	if s.auth == nil {
		s.auth = NewTable()
	}
	return s, nil
}

func systemHome(name string) (string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return "", fmt.Errorf("mbox: looking up home of %q: %w", name, err)
	}
	return u.HomeDir, nil
}

// validUser reports whether name can be put into a path: no separators, no
// leading dot, no control characters.
func validUser(name string) bool {
	if name == "" || len(name) > 255 || name[0] == '.' || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == '/' || c == '\\' || c < 0x21 || c == 0x7f || c == '%' {
			return false
		}
	}
	return true
}

// validFolder reports whether name (not Inbox) is a legal folder file name.
func validFolder(name string) bool {
	if !validUser(name) || strings.HasSuffix(name, ".lock") {
		return false
	}
	return true
}

// Login checks user's password and returns the account.
func (s *Store) Login(ctx context.Context, name, password string) (mailstore.Account, error) {
	if !validUser(name) {
		return nil, fmt.Errorf("mbox: login %q: %w", name, mailstore.ErrAuthFailed)
	}
	id, err := s.auth.Authenticate(ctx, name, password)
	if err != nil {
		return nil, fmt.Errorf("mbox: login %q: %w", name, err)
	}
	return s.account(name, id)
}

// LoginAPOP checks an RFC 1939 APOP digest. It returns an error wrapping
// [mailstore.ErrUnsupported] when the Authenticator cannot check digests.
func (s *Store) LoginAPOP(ctx context.Context, name, timestamp, digest string) (mailstore.Account, error) {
	a, ok := s.auth.(APOPAuthenticator)
	if !ok {
		return nil, fmt.Errorf("mbox: APOP for %q: %w", name, mailstore.ErrUnsupported)
	}
	if !validUser(name) {
		return nil, fmt.Errorf("mbox: APOP %q: %w", name, mailstore.ErrAuthFailed)
	}
	id, err := a.AuthenticateAPOP(ctx, name, timestamp, digest)
	if err != nil {
		return nil, fmt.Errorf("mbox: APOP %q: %w", name, err)
	}
	return s.account(name, id)
}

// LoginCRAMMD5 checks an RFC 2195 CRAM-MD5 digest. It returns an error
// wrapping [mailstore.ErrUnsupported] when the Authenticator cannot check
// digests.
func (s *Store) LoginCRAMMD5(ctx context.Context, name, challenge, digest string) (mailstore.Account, error) {
	a, ok := s.auth.(CRAMMD5Authenticator)
	if !ok {
		return nil, fmt.Errorf("mbox: CRAM-MD5 for %q: %w", name, mailstore.ErrUnsupported)
	}
	if !validUser(name) {
		return nil, fmt.Errorf("mbox: CRAM-MD5 %q: %w", name, mailstore.ErrAuthFailed)
	}
	id, err := a.AuthenticateCRAMMD5(ctx, name, challenge, digest)
	if err != nil {
		return nil, fmt.Errorf("mbox: CRAM-MD5 %q: %w", name, err)
	}
	return s.account(name, id)
}

func (s *Store) account(name string, id Identity) (mailstore.Account, error) {
	if id.User != "" {
		if !validUser(id.User) {
			return nil, fmt.Errorf("mbox: authenticator returned unusable user name %q: %w", id.User, mailstore.ErrPermanent)
		}
		name = id.User
	}
	return &account{s: s, name: name, home: id.Home}, nil
}

// AddUser creates user with password in the Authenticator, when it can
// create users ([Table] can); otherwise it returns an error wrapping
// [mailstore.ErrUnsupported]. The user's spool is not created: a missing
// spool is an empty Inbox.
func (s *Store) AddUser(ctx context.Context, name, password string) error {
	if !validUser(name) {
		return fmt.Errorf("mbox: user name %q cannot be used in a spool path", name)
	}
	a, ok := s.auth.(userAdder)
	if !ok {
		return fmt.Errorf("mbox: adding user %q: %w", name, mailstore.ErrUnsupported)
	}
	if err := a.AddUser(ctx, name, password); err != nil {
		return fmt.Errorf("mbox: adding user %q: %w", name, err)
	}
	return nil
}

// Deliver appends msg to the user's folder ("" is Inbox) as an MDA does:
// under the dotlock and an fcntl lock, with a "From " line, "From " lines
// of the body quoted per the flavour, and a blank line after it. A folder
// file (and the folder directory) is created if needed.
func (s *Store) Deliver(ctx context.Context, name, folder string, msg []byte) error {
	if !validUser(name) {
		return fmt.Errorf("mbox: deliver to %q: unusable user name", name)
	}
	path, err := s.folderPath(name, "", mailstore.FolderName(folder))
	if err != nil {
		return fmt.Errorf("mbox: deliver to %q: %w", name, err)
	}
	if mailstore.FolderName(folder) != mailstore.Inbox {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return fmt.Errorf("mbox: deliver to %q: creating folder directory: %w", name, err)
		}
	}
	if err := s.appendMessage(ctx, path, msg); err != nil {
		return fmt.Errorf("mbox: deliver to %q folder %q: %w", name, mailstore.FolderName(folder), err)
	}
	return nil
}

// spoolPath is the Inbox spool of user.
func (s *Store) spoolPath(name string) string {
	return expand(s.opts.Path, map[byte]string{'u': name})
}

// folderPath is the file of folder (canonical name) for user; home may be
// "" to look it up.
func (s *Store) folderPath(name, home, folder string) (string, error) {
	if folder == mailstore.Inbox {
		return s.spoolPath(name), nil
	}
	dir, err := s.folderDir(name, home)
	if err != nil {
		return "", err
	}
	if !validFolder(folder) {
		return "", fmt.Errorf("folder %q: %w", folder, mailstore.ErrNoSuchFolder)
	}
	return filepath.Join(dir, folder), nil
}

// folderDir expands Options.FolderDir for user; "" when folders are off.
func (s *Store) folderDir(name, home string) (string, error) {
	tmpl := s.opts.FolderDir
	if tmpl == "" {
		return "", fmt.Errorf("no folder directory configured: %w", mailstore.ErrNoSuchFolder)
	}
	needHome := strings.Contains(tmpl, "%h") || strings.HasPrefix(tmpl, "~")
	if needHome && home == "" {
		h, err := s.opts.Home(name)
		if err != nil {
			return "", err
		}
		if h == "" {
			return "", fmt.Errorf("user %q has no home directory: %w", name, mailstore.ErrPermanent)
		}
		home = h
	}
	if strings.HasPrefix(tmpl, "~") {
		tmpl = "%h" + tmpl[1:]
	}
	return expand(tmpl, map[byte]string{'u': name, 'h': home}), nil
}

// expand replaces %X by vars[X] and %% by %.
func expand(tmpl string, vars map[byte]string) string {
	var b strings.Builder
	for i := 0; i < len(tmpl); i++ {
		c := tmpl[i]
		if c == '%' && i+1 < len(tmpl) {
			if v, ok := vars[tmpl[i+1]]; ok {
				b.WriteString(v)
				i++
				continue
			}
			if tmpl[i+1] == '%' {
				b.WriteByte('%')
				i++
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}
