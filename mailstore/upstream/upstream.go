// Package upstream is a gateway mailstore: it serves, through popgate's
// POP1, POP2 and POP3 front ends, the mail of a modern IMAP or POP3 server
// reached over TLS. An old client on a plain-text LAN fetches mail that
// lives behind TLS; see docs/gateway.md for the recipe.
//
// # Credentials
//
// By default credentials pass through: the local USER/PASS are the
// upstream account's. [Store.Login] dials the upstream, authenticates, and
// keeps the connection for the first [mailstore.Account.Open]. A rejected
// login is [mailstore.ErrAuthFailed]; network and TLS failures are plain
// wrapped errors, which the front ends report as SYS/TEMP.
//
// With Options.Users, credentials are mapped. The local password is
// checked against the users database first (a failure is ErrAuthFailed
// and the upstream is not contacted), then the entry's extra fields say
// how to log in upstream:
//
//	oldmac:{SHA512-CRYPT}$6$...::::::upstream_user=alice@example.com upstream_pass=APP-PASSWORD
//	amiga:{SHA512-CRYPT}$6$...::::::upstream_user=bob@example.com upstream_token_command=/usr/local/bin/get-token
//
// upstream_pass is sent with LOGIN (AUTH=PLAIN when LOGIN is disabled) or
// USER/PASS. upstream_token_command is run without a shell, with the
// upstream login as its argument and POPGATE_USER / POPGATE_UPSTREAM_USER
// in its environment, under Options.TokenTimeout; its standard output (at
// most 16 KiB, one token) is an OAuth2 access token, sent with
// OAUTHBEARER (RFC 7628) or XOAUTH2, whichever the upstream offers
// (OAUTHBEARER first), or the one upstream_auth= names. The command's
// standard error is discarded and its output is never logged; it runs at
// every upstream login, so it should cache and refresh the token itself.
// An upstream that rejects a mapped credential gives
// [mailstore.ErrPermanent] (the administrator must fix the users file)
// and a warning in the log; a failing token command a temporary error.
// Maildrop locks, remembered sizes and POP3 seen-state belong to the
// upstream account, so two local users mapped to one account share them.
//
// # IMAP upstreams (imaps://, imap:// with STARTTLS)
//
//   - INBOX is the default folder; every other selectable mailbox that
//     LIST returns is a folder (POP2 FOLD, POP1 mailbox names).
//   - A maildrop is one SELECTed connection. Its snapshot is a UID SEARCH
//     for messages without \Deleted (and without the hiding keyword in
//     keyword mode), optionally cut to the newest Options.Window, then a
//     UID FETCH of UID, RFC822.SIZE and FLAGS.
//   - The POP unique-id is Dovecot's default pop3_uidl_format %08Xu%08Xv:
//     the IMAP UID then UIDVALIDITY, eight hex digits each, in lower case
//     as Dovecot 2.3 actually prints them (checked by TestDovecot). A
//     client that used Dovecot's POP3 server on the same mailbox keeps its
//     "leave mail on server" state. Seen is the \Seen flag.
//   - Messages are streamed with UID FETCH BODY.PEEK[] (which does not set
//     \Seen), never buffered whole, through [mailstore.NewCRLFReader].
//   - Sizes: RFC822.SIZE is, by RFC 3501 §2.3.4, the size of the message
//     in RFC 5322 (CRLF) form, which is the canonical form. An upstream
//     that stores bare LFs and reports their raw size is detected while a
//     message is read: the true CRLF size is then remembered by the Store
//     (per account, folder and unique-id) and announced from the next
//     session on, and the session that found the difference gets
//     [mailstore.ErrSizeMismatch] (POP3 closes; nothing is committed).
//   - A message without a final line end is two octets longer in CRLF
//     form than its RFC822.SIZE. The snapshot reads the last two octets
//     of each message not checked before (BODY.PEEK[]<size-2.2>, pipelined)
//     so that the CRLF size is announced from the first session on; the
//     Store remembers the UID range it checked per folder.
//   - Commit, delete mode "expunge" (the default): STORE +FLAGS.SILENT
//     (\Deleted), then UID EXPUNGE (UIDPLUS or IMAP4rev2). Without UIDPLUS
//     a plain EXPUNGE would also remove messages another client flagged
//     \Deleted, so it is sent only when a UID SEARCH DELETED finds no such
//     message; otherwise our messages stay flagged \Deleted (hidden from
//     POP, since snapshots skip \Deleted) until a later safe expunge. A
//     client that flags a message between that SEARCH and the EXPUNGE can
//     still lose it: prefer an upstream with UIDPLUS.
//   - Commit, delete mode "keyword": the message only gets a keyword
//     (Options.Keyword, default "$POP3Deleted", the name Dovecot's
//     pop3_deleted_flag documentation uses) that hides it from POP; IMAP
//     clients still see it, as with Gmail's POP settings.
//   - Commit marks retrieved messages \Seen. LOGOUT (never CLOSE, which
//     expunges) ends the connection.
//
// # POP3 upstreams (pop3s://, pop3:// with STLS)
//
// One folder, INBOX. The upstream POP3 session, opened at Login, is the
// snapshot. Unique-ids are the upstream's UIDL (hashed if not legal RFC
// 1939 unique-ids); an upstream without UIDL gets a SHA-256 digest of
// "TOP n 0" (the header), made unique within the listing. Sizes come
// from LIST, checked while reading as for IMAP. RETR is streamed with the
// byte-stuffing removed. Commit sends DELE for the deleted messages and
// QUIT; Close drops the connection without QUIT once anything was read,
// so the upstream does not enter UPDATE. POP3 keeps no flags, so Seen is
// remembered by the Store in memory (lost at restart).
//
// # Locks and connections
//
// The maildrop lock is an in-process exclusive lock per (account, folder)
// held by the Store; it fails fast with [mailstore.ErrLocked]. All front
// ends of one process must share one Store. Locking across processes (or
// against other IMAP clients) is impossible through IMAP; a POP3 upstream
// has its own lock, and an upstream [IN-USE] is reported as ErrLocked.
//
// Each maildrop owns its upstream connection. The context given to
// [mailstore.Account.Open] bounds it: cancelling it (hang-up, shutdown)
// closes the connection. A connection that fails mid-message makes the
// reader fail; the maildrop is then broken and Commit removes nothing.
//
// A reader closed before its end (POP3 TOP) is drained to keep the
// upstream protocol in step: TOP costs the transfer of the whole message.
package upstream

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"popgate/mailstore"
)

// DeleteMode says what a committed POP deletion does upstream.
type DeleteMode string

// Delete modes.
const (
	// DeleteExpunge flags the message \Deleted and expunges it (IMAP), or
	// sends DELE (POP3). The default.
	DeleteExpunge DeleteMode = "expunge"
	// DeleteKeyword only sets Options.Keyword on the message, which hides
	// it from later POP sessions; IMAP clients still see it. IMAP only.
	DeleteKeyword DeleteMode = "keyword"
)

// DefaultKeyword is the keyword of DeleteKeyword mode.
const DefaultKeyword = "$POP3Deleted"

// DefaultTimeout bounds dialing, the TLS handshake and each upstream
// command when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Options configure a Store.
type Options struct {
	// URL names the upstream: "imaps://host[:993]", "imap://host[:143]"
	// (STARTTLS), "pop3s://host[:995]" or "pop3://host[:110]" (STLS).
	// User information, a path and a query are rejected.
	URL string
	// CAFile, if set, is a PEM file of the certificate authorities that
	// may sign the upstream's certificate, instead of the system roots.
	CAFile string
	// Insecure accepts any upstream certificate. It defeats TLS against an
	// active attacker; New logs a warning.
	Insecure bool
	// AllowPlaintext lets imap:// and pop3:// continue without TLS when
	// the upstream does not offer STARTTLS/STLS (passwords then cross the
	// network in clear; each such connection logs a warning). Without it,
	// TLS is required.
	AllowPlaintext bool
	// Timeout bounds dialing, the TLS handshake and each command. Zero
	// means DefaultTimeout.
	Timeout time.Duration
	// Logger receives the store's logs; the zero value discards them.
	// Passwords are never logged.
	Logger zerolog.Logger
	// DeleteMode is DeleteExpunge (also when empty) or DeleteKeyword.
	DeleteMode DeleteMode
	// Keyword is the IMAP keyword of DeleteKeyword mode. Default
	// DefaultKeyword.
	Keyword string
	// Window, if positive, limits every maildrop to the newest Window
	// messages (by UID for IMAP, by number for POP3).
	Window int
	// Probe makes New connect once (TLS included) to check the upstream,
	// so that a wrong host or an untrusted certificate fails at start-up.
	Probe bool
	// Users, if set, selects mapped credentials: the local USER/PASS are
	// checked against Users (never sent upstream), and the entry's extra
	// fields (KeyUser, KeyPass, KeyTokenCommand, KeyAuth) say how to log
	// in upstream. Nil passes credentials through.
	Users Users
	// TokenTimeout bounds a token command. Zero means
	// DefaultTokenTimeout.
	TokenTimeout time.Duration
}

type protocol int

const (
	protoIMAP protocol = iota
	protoPOP3
)

type tlsMode int

const (
	tlsImplicit tlsMode = iota
	tlsStart
)

// Store is a gateway mailstore over one upstream server. It is safe for
// concurrent use. It implements [mailstore.Store].
type Store struct {
	opts    Options
	proto   protocol
	mode    tlsMode
	addr    string // host:port
	tlsConf *tls.Config
	log     zerolog.Logger
	credKey []byte // HMAC key for comparing passwords of lock holders

	mu    sync.Mutex
	locks map[lockKey][]byte         // held locks → HMAC of the holder's password
	sizes map[sizeKey]int64          // CRLF sizes that differ from the upstream's
	ends  map[lockKey]endsChecked    // IMAP folders: UIDs whose message ends were checked
	seen  map[string]map[string]bool // POP3 upstreams: user → retrieved UIDs
}

type lockKey struct{ user, folder string }

type sizeKey struct{ user, folder, uid string }

var _ mailstore.Store = (*Store)(nil)

// New checks opts and returns a Store. It connects to the upstream only
// if opts.Probe is set, under ctx.
func New(ctx context.Context, opts Options) (*Store, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("upstream: parsing URL: %w", err)
	}
	s := &Store{
		opts:  opts,
		log:   opts.Logger,
		locks: make(map[lockKey][]byte),
		sizes: make(map[sizeKey]int64),
		ends:  make(map[lockKey]endsChecked),
		seen:  make(map[string]map[string]bool),
	}
	var port string
	switch strings.ToLower(u.Scheme) {
	case "imaps":
		s.proto, s.mode, port = protoIMAP, tlsImplicit, "993"
	case "imap":
		s.proto, s.mode, port = protoIMAP, tlsStart, "143"
	case "pop3s":
		s.proto, s.mode, port = protoPOP3, tlsImplicit, "995"
	case "pop3":
		s.proto, s.mode, port = protoPOP3, tlsStart, "110"
	default:
		return nil, fmt.Errorf("upstream: URL scheme %q: want imaps, imap, pop3s or pop3", u.Scheme)
	}
	if u.User != nil {
		return nil, errors.New("upstream: the URL must not carry credentials: local USER/PASS are passed through, or mapped by Options.Users")
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("upstream: URL %q: only scheme://host[:port] is supported", u.Redacted())
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("upstream: URL %q has no host", u.Redacted())
	}
	if p := u.Port(); p != "" {
		port = p
	}
	s.addr = net.JoinHostPort(host, port)

	switch s.opts.DeleteMode {
	case "":
		s.opts.DeleteMode = DeleteExpunge
	case DeleteExpunge, DeleteKeyword:
	default:
		return nil, fmt.Errorf("upstream: delete mode %q: want %q or %q", s.opts.DeleteMode, DeleteExpunge, DeleteKeyword)
	}
	if s.opts.DeleteMode == DeleteKeyword && s.proto == protoPOP3 {
		return nil, errors.New("upstream: keyword delete mode needs an IMAP upstream")
	}
	if s.opts.Keyword == "" {
		s.opts.Keyword = DefaultKeyword
	}
	if !validKeyword(s.opts.Keyword) {
		return nil, fmt.Errorf("upstream: keyword %q is not an IMAP atom", s.opts.Keyword)
	}
	if s.opts.Window < 0 {
		return nil, fmt.Errorf("upstream: window %d is negative", s.opts.Window)
	}
	if s.opts.Timeout <= 0 {
		s.opts.Timeout = DefaultTimeout
	}
	if s.opts.TokenTimeout <= 0 {
		s.opts.TokenTimeout = DefaultTokenTimeout
	}

	s.tlsConf = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream: reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream: CA file %s holds no PEM certificate", opts.CAFile)
		}
		s.tlsConf.RootCAs = pool
	}
	if opts.Insecure {
		s.tlsConf.InsecureSkipVerify = true
		s.log.Warn().Str("upstream", s.addr).Msg("upstream certificate verification is disabled: anyone on the path can read the passwords")
	}
	s.credKey = make([]byte, 32)
	if _, err := rand.Read(s.credKey); err != nil {
		return nil, fmt.Errorf("upstream: making a credential key: %w", err)
	}
	if opts.Probe {
		if err := s.probe(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// validKeyword reports whether k is an IMAP atom usable as a keyword.
func validKeyword(k string) bool {
	if k == "" || k[0] == '\\' {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// Addr is the upstream's host:port.
func (s *Store) Addr() string { return s.addr }

// Login authenticates user with password and returns the account. With
// pass-through credentials the upstream checks them; in mapped mode
// (Options.Users) they are checked locally first, and the upstream is
// contacted only with the mapped account. A rejected login is
// [mailstore.ErrAuthFailed].
func (s *Store) Login(ctx context.Context, user, password string) (mailstore.Account, error) {
	if user == "" || password == "" || strings.ContainsAny(user, "\r\n\x00") || strings.ContainsAny(password, "\r\n\x00") {
		return nil, fmt.Errorf("upstream: login %q: %w", sanitize(user), mailstore.ErrAuthFailed)
	}
	cr := &credential{login: user, password: password}
	if s.opts.Users != nil {
		var err error
		if cr, err = s.mappedLogin(ctx, user, password); err != nil {
			return nil, err
		}
	}
	if s.proto == protoPOP3 {
		return s.loginPOP3(ctx, user, cr)
	}
	return s.loginIMAP(ctx, user, cr)
}

// holder is what identifies the holder of a maildrop lock: the HMAC of
// the password with pass-through credentials; in mapped mode every
// session of the upstream account is the same holder (the local password
// was checked already).
func (s *Store) holder(c *credential) []byte {
	if c.mapped {
		return s.cred("\x00mapped")
	}
	return s.cred(c.password)
}

func (s *Store) probe(ctx context.Context) error {
	if s.proto == protoPOP3 {
		c, err := s.connectPOP3(ctx)
		if err != nil {
			return fmt.Errorf("upstream: probe: %w", err)
		}
		return c.Quit()
	}
	c, err := s.connectIMAP(ctx)
	if err != nil {
		return fmt.Errorf("upstream: probe: %w", err)
	}
	logout(c)
	return nil
}

// dial connects to the upstream, with the TLS handshake for implicit TLS.
func (s *Store) dial(ctx context.Context, alpn string) (net.Conn, error) {
	d := net.Dialer{Timeout: s.opts.Timeout}
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("upstream: dialing %s: %w", s.addr, err)
	}
	if s.mode != tlsImplicit {
		return conn, nil
	}
	tc := tls.Client(conn, s.tlsConfig(alpn))
	hctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("upstream: TLS handshake with %s: %w", s.addr, err)
	}
	return tc, nil
}

func (s *Store) tlsConfig(alpn string) *tls.Config {
	c := s.tlsConf.Clone()
	if alpn != "" {
		c.NextProtos = []string{alpn}
	}
	return c
}

func (s *Store) cred(password string) []byte {
	m := hmac.New(sha256.New, s.credKey)
	m.Write([]byte(password))
	return m.Sum(nil)
}

// lock takes the in-process maildrop lock of k, failing fast.
func (s *Store) lock(k lockKey, cred []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, held := s.locks[k]; held {
		return fmt.Errorf("upstream: folder %q of %q: %w", k.folder, sanitize(k.user), mailstore.ErrLocked)
	}
	s.locks[k] = cred
	return nil
}

func (s *Store) unlock(k lockKey) {
	s.mu.Lock()
	delete(s.locks, k)
	s.mu.Unlock()
}

// lockState reports whether k is held, and whether by the holder of cred.
func (s *Store) lockState(k lockKey, cred []byte) (held, same bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hc, held := s.locks[k]
	return held, held && subtle.ConstantTimeCompare(hc, cred) == 1
}

// knownSize returns the CRLF size found by an earlier read, if it differed
// from what the upstream announces.
func (s *Store) knownSize(k sizeKey) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.sizes[k]
	return n, ok
}

// endsChecked records, for one IMAP folder, the UID range [lo, hi]
// under UIDVALIDITY validity whose messages' last octets were checked:
// any of them that lacks a final line end has its CRLF size in
// Store.sizes. IMAP gives new messages ascending UIDs and never changes
// a message, so a range is all a folder needs, however large.
type endsChecked struct {
	validity uint32
	lo, hi   uint32
}

// covers reports whether uid under validity lies in the checked range.
func (e endsChecked) covers(validity, uid uint32) bool {
	return e.validity == validity && e.hi != 0 && e.lo <= uid && uid <= e.hi
}

// checkedEnds returns the checked range of k's folder.
func (s *Store) checkedEnds(k lockKey) endsChecked {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ends[k]
}

// setCheckedEnds replaces the checked range of k's folder.
func (s *Store) setCheckedEnds(k lockKey, e endsChecked) {
	s.mu.Lock()
	s.ends[k] = e
	s.mu.Unlock()
}

func (s *Store) setSize(k sizeKey, n int64) {
	s.mu.Lock()
	s.sizes[k] = n
	s.mu.Unlock()
}

// sanitize makes a user name safe for logs and errors.
func sanitize(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// watch closes c when ctx is cancelled, until the returned stop is called.
func watch(ctx context.Context, c interface{ Close() error }) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = c.Close() })
}

// ctxErr prefers the context's error when ctx ended: the connection was
// closed because of it.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%w)", cerr, err)
	}
	return err
}
