// Package maildir is popgate's Maildir and Maildir++ backend: the format
// Postfix, Dovecot, Courier and most MDAs write.
//
// A user's Maildir is found from a path template (--store maildir:PATH),
// for example "/var/mail/%u/Maildir". The root directory is the INBOX;
// Maildir++ subfolders ".Sent", ".Lists.Go" are the folders "Sent" and
// "Lists.Go". Passwords are checked by a [users.Authenticator], usually a
// Dovecot-style passwd-file ([users.DB]).
//
// At Open, under the folder's lock, mail waiting in new/ is moved to cur/
// (with an empty ":2," info, as Dovecot and Courier do), and the snapshot
// is the content of cur/. Sizes come from the ",W=" field of the file name
// or from a per-folder cache file, so a login does not read every message;
// messages are served through [mailstore.NewCRLFReader]. Commit unlinks
// the deleted messages, adds the S flag to the retrieved ones, and fsyncs
// cur/. See docs/maildir.md.
package maildir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"popgate/mailstore"
	"popgate/mailstore/users"
)

// UIDL formats (Options.UIDLFormat).
const (
	// UIDLBaseName makes UIDs from the Maildir base file name (the part
	// before ":2,", without the ,S= and ,W= fields), hashed when it is not
	// a legal unique-id. It is the default.
	UIDLBaseName = "basename"
	// UIDLDovecot reproduces the UIDLs of Dovecot's POP3 server with its
	// default pop3_uidl_format "%08Xu%08Xv" (lower-case hex) for
	// messages listed in the folder's dovecot-uidlist, so clients
	// migrating from Dovecot do not download their mail again. Other
	// messages get base-name UIDs.
	UIDLDovecot = "dovecot"
)

// Lock methods (Options.LockMethod).
const (
	// LockRename keeps one permanent token file per folder and takes the
	// folder by renaming it from popgate.lock.free to a name that carries
	// the holder's pid and host, under a short flock on a guard file: no
	// inode is created per session and no file descriptor is held. A
	// token whose holder is dead, or that was not refreshed for
	// StaleLockTimeout, is taken over. It is the default.
	LockRename = "rename"
	// LockDotlock creates popgate.lock for the session, a symbolic link
	// whose target names the holder (or, where symbolic links are not
	// supported, a file written aside and hard-linked into place), and
	// removes it at the end; a lock whose holder is dead, or that was not
	// refreshed for StaleLockTimeout, is broken. It needs no flock, so it
	// suits network and FUSE file systems without one.
	LockDotlock = "dotlock"
	// LockFlock keeps a permanent popgate.lock file in each folder and
	// holds an flock(2) on it for the session: the kernel releases the
	// lock when its holder dies, whatever the cause, but each session
	// holds one more file descriptor.
	LockFlock = "flock"
)

// DefaultStaleLockTimeout is how old an unrefreshed lock file must be to
// be broken when its holder cannot be checked.
const DefaultStaleLockTimeout = 10 * time.Minute

// Options configure a Store.
type Options struct {
	// Path is the Maildir of a user. It may contain %u (user name), %n
	// (the part of it before '@'), %d (the part after '@'), %h (home
	// directory from the users database) and %% (a percent sign).
	Path string
	// Users checks passwords. If it also implements
	// users.APOPAuthenticator, APOP is offered; if it implements
	// users.PasswordSetter, AddUser works.
	Users users.Authenticator
	// UIDLFormat is UIDLBaseName (the default, also "") or UIDLDovecot.
	UIDLFormat string
	// LockMethod is LockRename (the default, also ""), LockDotlock or
	// LockFlock. All popgate processes sharing a Maildir must use the
	// same method.
	LockMethod string
	// StaleLockTimeout (LockRename, LockDotlock) breaks locks older than this
	// whose holder cannot be checked. Held locks are refreshed at a
	// quarter of it. Zero means DefaultStaleLockTimeout.
	StaleLockTimeout time.Duration
	// Hostname goes into the names of delivered files. Default
	// os.Hostname(). It is also how a lock's holder is recognised as
	// local, so that a dead holder's lock can be broken at once.
	Hostname string
	// Logger receives warnings (stale locks broken, caches rebuilt). Its
	// zero value discards.
	Logger zerolog.Logger
}

// Store is a Maildir backend. It is safe for concurrent use.
type Store struct {
	opts    Options
	log     zerolog.Logger
	pid     int
	host    string // sanitised, for file names and lock ownership
	counter atomic.Uint64
	lockSeq lockSeq
	// heldMu guards held, the folder directories this Store has locked
	// with LockFlock. It keeps two sessions of one process apart whatever
	// the file system makes of flock between them.
	heldMu sync.Mutex
	held   map[string]bool
	// sizeReads counts message files opened to compute a size; tests use
	// it to check that a cached login opens none.
	sizeReads atomic.Int64
	// listingsReused counts snapshots that reused the cache's listing of
	// cur/ instead of reading the directory; tests check it.
	listingsReused atomic.Int64
	// removeHook and renameHook, when set, replace os.Remove and os.Rename
	// for the unlinks and flag renames of Commit. They are failure
	// injection for tests (a commit failing with ENOSPC or EIO, which a
	// real file system does not produce on demand); nil in production.
	removeHook func(name string) error
	renameHook func(oldpath, newpath string) error
}

// commitRemove unlinks a message file at Commit (see Store.removeHook).
func (s *Store) commitRemove(name string) error {
	if s.removeHook != nil {
		return s.removeHook(name)
	}
	return os.Remove(name)
}

// commitRename renames a message file at Commit (see Store.renameHook).
func (s *Store) commitRename(oldpath, newpath string) error {
	if s.renameHook != nil {
		return s.renameHook(oldpath, newpath)
	}
	return os.Rename(oldpath, newpath)
}

var (
	_ mailstore.APOPStore    = (*Store)(nil)
	_ mailstore.CRAMMD5Store = (*Store)(nil)
	_ mailstore.Provisioner  = (*Store)(nil)
)

// New returns a Store for opts.
func New(opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, errors.New("maildir: Options.Path is empty")
	}
	if opts.Users == nil {
		return nil, errors.New("maildir: Options.Users is nil")
	}
	switch opts.UIDLFormat {
	case "":
		opts.UIDLFormat = UIDLBaseName
	case UIDLBaseName, UIDLDovecot:
	default:
		return nil, fmt.Errorf("maildir: unknown UIDL format %q (want %q or %q)", opts.UIDLFormat, UIDLBaseName, UIDLDovecot)
	}
	switch opts.LockMethod {
	case "":
		opts.LockMethod = LockRename
	case LockRename, LockFlock, LockDotlock:
	default:
		return nil, fmt.Errorf("maildir: unknown lock method %q (want %q, %q or %q)", opts.LockMethod, LockRename, LockDotlock, LockFlock)
	}
	if err := checkTemplate(opts.Path); err != nil {
		return nil, err
	}
	if opts.StaleLockTimeout <= 0 {
		opts.StaleLockTimeout = DefaultStaleLockTimeout
	}
	if opts.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("maildir: host name: %w", err)
		}
		opts.Hostname = h
	}
	return &Store{opts: opts, log: opts.Logger, pid: os.Getpid(), host: sanitizeHost(opts.Hostname), held: make(map[string]bool)}, nil
}

// checkTemplate rejects unknown % escapes in a path template.
func checkTemplate(p string) error {
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		if i+1 >= len(p) || !strings.ContainsRune("undh%", rune(p[i+1])) {
			return fmt.Errorf("maildir: path %q: unknown escape at offset %d (want %%u %%n %%d %%h or %%%%)", p, i)
		}
		i++
	}
	return nil
}

// userRoot expands the path template for user.
func (s *Store) userRoot(user, home string) (string, error) {
	if user == "" || user == "." || user == ".." || strings.ContainsAny(user, "/\x00") {
		return "", fmt.Errorf("maildir: user name %q cannot name a directory: %w", user, mailstore.ErrPermanent)
	}
	local, domain, _ := strings.Cut(user, "@")
	var b strings.Builder
	p := s.opts.Path
	for i := 0; i < len(p); i++ {
		if p[i] != '%' || i+1 >= len(p) {
			b.WriteByte(p[i])
			continue
		}
		i++
		switch p[i] {
		case 'u':
			b.WriteString(user)
		case 'n':
			b.WriteString(local)
		case 'd':
			b.WriteString(domain)
		case 'h':
			if home == "" {
				return "", fmt.Errorf("maildir: user %q has no home directory for %%h: %w", user, mailstore.ErrPermanent)
			}
			b.WriteString(home)
		case '%':
			b.WriteByte('%')
		}
	}
	return filepath.Clean(b.String()), nil
}

// homeOf looks up a user's home directory when the authenticator can.
func (s *Store) homeOf(user string) string {
	if l, ok := s.opts.Users.(interface {
		Lookup(string) (users.User, bool)
	}); ok {
		if u, ok := l.Lookup(user); ok {
			return u.Home
		}
	}
	return ""
}

// Login checks the password and returns the account. If the user's
// Maildir does not exist it is created empty when its parent directory
// exists (as Dovecot does); otherwise Login fails with ErrPermanent.
func (s *Store) Login(ctx context.Context, user, password string) (mailstore.Account, error) {
	id, err := s.opts.Users.Authenticate(ctx, user, password)
	if err != nil {
		return nil, fmt.Errorf("maildir: login: %w", err)
	}
	return s.account(ctx, id)
}

// LoginAPOP checks an APOP digest through the users database. It fails
// with ErrUnsupported if the database cannot check APOP or the user's
// secret is not PLAIN.
func (s *Store) LoginAPOP(ctx context.Context, user, timestamp, digest string) (mailstore.Account, error) {
	a, ok := s.opts.Users.(users.APOPAuthenticator)
	if !ok {
		return nil, fmt.Errorf("maildir: APOP for %q: %w", user, mailstore.ErrUnsupported)
	}
	id, err := a.AuthenticateAPOP(ctx, user, timestamp, digest)
	if err != nil {
		return nil, fmt.Errorf("maildir: APOP: %w", err)
	}
	return s.account(ctx, id)
}

// LoginCRAMMD5 checks an RFC 2195 CRAM-MD5 digest through the users
// database, with the same ErrUnsupported rules as [Store.LoginAPOP].
func (s *Store) LoginCRAMMD5(ctx context.Context, user, challenge, digest string) (mailstore.Account, error) {
	a, ok := s.opts.Users.(users.CRAMMD5Authenticator)
	if !ok {
		return nil, fmt.Errorf("maildir: CRAM-MD5 for %q: %w", user, mailstore.ErrUnsupported)
	}
	id, err := a.AuthenticateCRAMMD5(ctx, user, challenge, digest)
	if err != nil {
		return nil, fmt.Errorf("maildir: CRAM-MD5: %w", err)
	}
	return s.account(ctx, id)
}

func (s *Store) account(ctx context.Context, id users.Identity) (mailstore.Account, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("maildir: login %q: %w", id.User, err)
	}
	root, err := s.userRoot(id.User, id.Home)
	if err != nil {
		return nil, err
	}
	if err := ensureRoot(root); err != nil {
		return nil, fmt.Errorf("maildir: user %q: %w", id.User, err)
	}
	return &account{s: s, user: id.User, root: root}, nil
}

// ensureRoot makes sure root is a directory: it creates root, with cur/,
// new/ and tmp/, when its parent exists. The subdirectories of a root that
// exists are made when a folder is opened and finds them missing
// (snapshot), which spares every login three mkdir calls that fail.
func ensureRoot(root string) error {
	st, err := os.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		parent := filepath.Dir(root)
		pst, perr := os.Stat(parent)
		if perr != nil || !pst.IsDir() {
			return fmt.Errorf("maildir %s missing and its parent %s is not a directory: %w", root, parent, mailstore.ErrPermanent)
		}
		if err := os.Mkdir(root, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return permanent(fmt.Errorf("creating maildir %s: %w", root, err))
		}
	case err != nil:
		return permanent(fmt.Errorf("maildir %s: %w", root, err))
	case !st.IsDir():
		return fmt.Errorf("maildir %s is not a directory: %w", root, mailstore.ErrPermanent)
	default:
		return nil
	}
	return makeSubdirs(root)
}

// makeSubdirs creates dir's cur/, new/ and tmp/ where missing.
func makeSubdirs(dir string) error {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return permanent(fmt.Errorf("creating %s/%s: %w", dir, sub, err))
		}
	}
	return nil
}

// permanent marks file-system failures that retrying will not fix
// (permissions, a file where a directory should be) as ErrPermanent.
func permanent(err error) error {
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("%w: %w", err, mailstore.ErrPermanent)
	}
	return err
}

// AddUser sets user's password (PLAIN, so that APOP works) in the users
// database, which must implement users.PasswordSetter, and creates the
// user's Maildir with its parent directories.
func (s *Store) AddUser(ctx context.Context, user, password string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("maildir: add user %q: %w", user, err)
	}
	setter, ok := s.opts.Users.(users.PasswordSetter)
	if !ok {
		return fmt.Errorf("maildir: add user %q: users database is read-only: %w", user, mailstore.ErrUnsupported)
	}
	if err := setter.SetPassword(user, password, users.Plain); err != nil {
		return fmt.Errorf("maildir: add user %q: %w", user, err)
	}
	root, err := s.userRoot(user, s.homeOf(user))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("maildir: add user %q: %w", user, err)
	}
	return makeSubdirs(root)
}

// folderDir returns the directory of folder under root: root for INBOX,
// root/.Name for the Maildir++ folder Name.
func folderDir(root, folder string) (string, error) {
	fn := mailstore.FolderName(folder)
	if fn == mailstore.Inbox {
		return root, nil
	}
	if fn == "." || fn == ".." || strings.HasPrefix(fn, ".") || strings.ContainsAny(fn, "/\x00") {
		return "", fmt.Errorf("maildir: folder name %q: %w", folder, mailstore.ErrNoSuchFolder)
	}
	return filepath.Join(root, "."+fn), nil
}

// Deliver stores msg in user's folder the way an MDA does: written and
// fsynced in tmp/, then linked into new/ under a unique name
// "<secs>.M<usecs>P<pid>_<n>.<host>,S=<size>,W=<crlf size>". A message
// that does not end in a newline gets one (its CRLF form is unchanged).
// The folder is created if needed.
func (s *Store) Deliver(ctx context.Context, user, folder string, msg []byte) error {
	if len(msg) > 0 && msg[len(msg)-1] != '\n' {
		msg = append(msg[:len(msg):len(msg)], '\n')
	}
	w, _ := mailstore.CRLFSize(strings.NewReader(string(msg)))
	_, err := s.deliver(ctx, user, folder, msg, ",S="+strconv.Itoa(len(msg))+",W="+strconv.FormatInt(w, 10))
	return err
}

// DeliverPlain stores msg byte for byte, like Deliver but under a name
// without ,S= and ,W= fields (as simpler MDAs write), so that its size
// must be counted. It returns the file name in new/.
func (s *Store) DeliverPlain(ctx context.Context, user, folder string, msg []byte) (string, error) {
	return s.deliver(ctx, user, folder, msg, "")
}

func (s *Store) deliver(ctx context.Context, user, folder string, msg []byte, suffix string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("maildir: deliver to %q: %w", user, err)
	}
	root, err := s.userRoot(user, s.homeOf(user))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", fmt.Errorf("maildir: deliver to %q: %w", user, err)
	}
	if err := makeSubdirs(root); err != nil {
		return "", fmt.Errorf("maildir: deliver to %q: %w", user, err)
	}
	dir, err := folderDir(root, folder)
	if err != nil {
		return "", err
	}
	if dir != root {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("maildir: creating folder %q: %w", folder, err)
		}
		if err := makeSubdirs(dir); err != nil {
			return "", fmt.Errorf("maildir: creating folder %q: %w", folder, err)
		}
		// Maildir++ marks subfolders with an empty maildirfolder file.
		mf := filepath.Join(dir, "maildirfolder")
		if f, err := os.OpenFile(mf, os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			_ = f.Close()
		}
	}
	for range 100 {
		now := time.Now()
		name := fmt.Sprintf("%d.M%dP%d_%d.%s%s", now.Unix(), now.Nanosecond()/1000, s.pid, s.counter.Add(1), s.host, suffix)
		tmp := filepath.Join(dir, "tmp", name)
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("maildir: deliver: %w", err)
		}
		_, werr := f.Write(msg)
		if werr == nil {
			werr = f.Sync()
		}
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			_ = os.Remove(tmp)
			return "", fmt.Errorf("maildir: deliver: writing %s: %w", tmp, werr)
		}
		dst := filepath.Join(dir, "new", name)
		lerr := os.Link(tmp, dst)
		if errors.Is(lerr, fs.ErrExist) {
			_ = os.Remove(tmp)
			continue
		}
		if lerr != nil {
			// No hard links here: rename (the name is unique anyway).
			if rerr := os.Rename(tmp, dst); rerr != nil {
				_ = os.Remove(tmp)
				return "", fmt.Errorf("maildir: deliver: %w", rerr)
			}
		} else {
			_ = os.Remove(tmp)
		}
		if err := syncDir(filepath.Join(dir, "new")); err != nil {
			return "", fmt.Errorf("maildir: deliver: %w", err)
		}
		return name, nil
	}
	return "", fmt.Errorf("maildir: deliver: could not find a unique file name in %s", dir)
}
