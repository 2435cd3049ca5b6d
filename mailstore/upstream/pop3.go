package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"popgate/mailstore"
	"popgate/mailstore/upstream/pop3client"
)

// inUseRetries bounds the retries of a login that the upstream refused
// with [IN-USE]: a connection this Store just dropped may still hold the
// upstream lock for a moment.
const inUseRetries = 5

// connectPOP3 dials the upstream and returns a client past the greeting,
// with TLS (implicit or STLS) unless AllowPlaintext had to be used.
func (s *Store) connectPOP3(ctx context.Context) (*pop3client.Client, error) {
	conn, err := s.dial(ctx, "pop3")
	if err != nil {
		return nil, err
	}
	stop := watch(ctx, conn)
	defer stop()
	c, err := pop3client.New(conn, s.opts.Timeout)
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("upstream: POP3 greeting from %s: %w", s.addr, err))
	}
	if s.mode == tlsImplicit {
		return c, nil
	}
	err = c.StartTLS(ctx, s.tlsConfig("pop3"))
	var pe *pop3client.Error
	switch {
	case err == nil:
		// The watch above holds the raw connection; closing it closes the
		// TLS one too.
		return c, nil
	case errors.As(err, &pe) && s.opts.AllowPlaintext:
		s.log.Warn().Str("upstream", s.addr).Msg("upstream refuses STLS: continuing in plain text (AllowPlaintext)")
		return c, nil
	default:
		_ = c.Close()
		return nil, ctxErr(ctx, fmt.Errorf("upstream: POP3 STLS with %s: %w", s.addr, err))
	}
}

// dialPOP3 connects and authenticates with cr: USER/PASS, or AUTH with
// an OAuth2 mechanism. An upstream [IN-USE] is retried briefly while
// retry says so, then reported as ErrLocked.
func (s *Store) dialPOP3(ctx context.Context, cr *credential, retry func() bool) (*pop3client.Client, error) {
	c, err := s.dialPOP3Once(ctx, cr, retry)
	return c, s.mappedErr(cr, err)
}

// pop3Auth authenticates c with cr.
func (s *Store) pop3Auth(c *pop3client.Client, cr *credential, tok string) (permanent, err error) {
	if !cr.oauth() {
		if err := c.User(cr.login); err != nil {
			return nil, err
		}
		return nil, c.Pass(cr.password)
	}
	var offered map[string]bool
	mech, err := chooseOAuth(cr, func(m string) bool {
		if offered == nil {
			offered = map[string]bool{}
			capa, _ := c.Capa() // no CAPA: nothing offered
			for _, l := range capa {
				f := strings.Fields(strings.ToUpper(l))
				if len(f) > 0 && f[0] == "SASL" {
					for _, m := range f[1:] {
						offered[m] = true
					}
				}
			}
		}
		return offered[m]
	})
	if err != nil {
		return fmt.Errorf("upstream: %s: %w", s.addr, err), nil
	}
	return nil, c.Auth(saslFor(mech, cr.login, tok, s.tlsConf.ServerName))
}

func (s *Store) dialPOP3Once(ctx context.Context, cr *credential, retry func() bool) (*pop3client.Client, error) {
	user := cr.login
	var tok string
	if cr.oauth() {
		var err error
		if tok, err = s.token(ctx, cr); err != nil {
			return nil, err
		}
	}
	delay := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		c, err := s.connectPOP3(ctx)
		if err != nil {
			return nil, err
		}
		stop := watch(ctx, c)
		perm, err := s.pop3Auth(c, cr, tok)
		stop()
		if perm != nil {
			_ = c.Close()
			return nil, perm
		}
		if err == nil {
			return c, nil
		}
		_ = c.Close()
		var pe *pop3client.Error
		if !errors.As(err, &pe) {
			return nil, ctxErr(ctx, fmt.Errorf("upstream: POP3 login %q: %w", sanitize(user), err))
		}
		switch pe.Code {
		case "IN-USE":
			if attempt >= inUseRetries || !retry() {
				return nil, fmt.Errorf("upstream: POP3 login %q: %v: %w", sanitize(user), err, mailstore.ErrLocked)
			}
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("upstream: POP3 login %q: %w", sanitize(user), ctx.Err())
			case <-t.C:
			}
			delay *= 2
			continue
		case "SYS/PERM":
			return nil, fmt.Errorf("upstream: POP3 login %q: %v: %w", sanitize(user), err, mailstore.ErrPermanent)
		case "SYS/TEMP", "LOGIN-DELAY":
			return nil, fmt.Errorf("upstream: POP3 login %q: %w", sanitize(user), err)
		}
		return nil, fmt.Errorf("upstream: POP3 login %q: %v: %w", sanitize(user), err, mailstore.ErrAuthFailed)
	}
}

func (s *Store) loginPOP3(ctx context.Context, user string, cr *credential) (mailstore.Account, error) {
	cred := s.holder(cr)
	k := lockKey{user: cr.login, folder: mailstore.Inbox}
	a := &pop3Account{s: s, user: user, cr: cr, cred: cred}
	// The upstream would answer [IN-USE] while our own session holds its
	// lock: a password equal to that session's is accepted without asking,
	// and Open then fails with ErrLocked as for any backend.
	if _, same := s.lockState(k, cred); same {
		return a, nil
	}
	// Retry an upstream [IN-USE] only while no session of ours holds the
	// lock: then it is a connection we just dropped, or another client.
	notHeld := func() bool { held, _ := s.lockState(k, nil); return !held }
	c, err := s.dialPOP3(ctx, cr, notHeld)
	if err != nil {
		if _, same := s.lockState(k, cred); same && errors.Is(err, mailstore.ErrLocked) {
			return a, nil
		}
		return nil, err
	}
	a.idle = c
	return a, nil
}

// pop3Account is an authenticated POP3 user. Its login connection is
// already in the upstream's TRANSACTION state, so it is the snapshot of
// the first Open.
type pop3Account struct {
	s    *Store
	user string // the local login name
	cr   *credential
	cred []byte

	mu     sync.Mutex
	idle   *pop3client.Client
	closed bool
}

func (a *pop3Account) User() string { return a.user }

func (a *pop3Account) Folders(context.Context) ([]string, error) {
	return []string{mailstore.Inbox}, nil
}

func (a *pop3Account) take(ctx context.Context) (*pop3client.Client, error) {
	a.mu.Lock()
	c := a.idle
	a.idle = nil
	a.mu.Unlock()
	if c != nil {
		stop := watch(ctx, c)
		err := c.Noop()
		stop()
		if err == nil {
			return c, nil
		}
		_ = c.Close()
		a.s.log.Debug().Str("upstream", a.s.addr).Err(err).Msg("idle POP3 connection lost; dialing again")
	}
	// The caller holds our lock, so an upstream [IN-USE] is stale or
	// another client's: retry it briefly.
	return a.s.dialPOP3(ctx, a.cr, func() bool { return true })
}

func (a *pop3Account) Open(ctx context.Context, folder string) (mailstore.Maildrop, error) {
	if mailstore.FolderName(folder) != mailstore.Inbox {
		return nil, fmt.Errorf("upstream: POP3 upstream has only INBOX, not %q: %w", folder, mailstore.ErrNoSuchFolder)
	}
	k := lockKey{user: a.cr.login, folder: mailstore.Inbox}
	if err := a.s.lock(k, a.cred); err != nil {
		return nil, err
	}
	c, err := a.take(ctx)
	if err != nil {
		a.s.unlock(k)
		return nil, err
	}
	stop := watch(ctx, c)
	md := &pop3Maildrop{s: a.s, user: a.cr.login, key: k, c: c}
	if err := md.snapshot(ctx); err != nil {
		stop()
		_ = c.Close()
		a.s.unlock(k)
		return nil, err
	}
	md.stop = stop
	return md, nil
}

func (a *pop3Account) Close() error {
	a.mu.Lock()
	c := a.idle
	a.idle = nil
	a.closed = true
	a.mu.Unlock()
	if c != nil {
		// Nothing was read or marked: QUIT releases the upstream lock at
		// once and changes nothing.
		_ = c.Quit()
	}
	return nil
}

type pop3Msg struct {
	n    int
	info mailstore.MessageInfo
}

func (m pop3Msg) messageInfo() mailstore.MessageInfo { return m.info }

// pop3Maildrop is the upstream POP3 session.
type pop3Maildrop struct {
	s    *Store
	user string
	key  lockKey
	c    *pop3client.Client
	stop func() bool
	msgIndex[pop3Msg]
	read bool // a message was retrieved: Close must not QUIT
	dropState
}

func (m *pop3Maildrop) snapshot(ctx context.Context) error {
	sizes, err := m.c.List()
	if err != nil {
		return ctxErr(ctx, fmt.Errorf("upstream: POP3 LIST: %w", err))
	}
	uidOf := make(map[int]string, len(sizes))
	uidl, err := m.c.UIDL()
	var pe *pop3client.Error
	switch {
	case err == nil:
		for _, u := range uidl {
			uidOf[u.N] = u.UID
		}
	case errors.As(err, &pe):
		if err := m.digestUIDs(sizes, uidOf); err != nil {
			return ctxErr(ctx, err)
		}
	default:
		return ctxErr(ctx, fmt.Errorf("upstream: POP3 UIDL: %w", err))
	}
	if w := m.s.opts.Window; w > 0 && len(sizes) > w {
		sizes = sizes[len(sizes)-w:]
	}
	m.byUID = make(map[string]int, len(sizes))
	m.s.mu.Lock()
	seen := m.s.seen[m.user]
	for _, ms := range sizes {
		uid, ok := uidOf[ms.N]
		if !ok {
			m.s.mu.Unlock()
			return fmt.Errorf("upstream: POP3 UIDL lacks message %d", ms.N)
		}
		if !mailstore.ValidUID(uid) {
			sum := sha256.Sum256([]byte(uid))
			uid = "H" + hex.EncodeToString(sum[:20])
		}
		for base, i := uid, 2; ; i++ {
			if _, dup := m.byUID[uid]; !dup {
				break
			}
			suffix := "-" + strconv.Itoa(i)
			uid = base[:min(len(base), 70-len(suffix))] + suffix
		}
		size := ms.Size
		if n, ok := m.s.sizes[sizeKey{m.user, mailstore.Inbox, uid}]; ok {
			size = n
		}
		m.byUID[uid] = len(m.msgs)
		m.msgs = append(m.msgs, pop3Msg{n: ms.N, info: mailstore.MessageInfo{UID: uid, Size: size, Seen: seen[uid]}})
	}
	if m.s.opts.Window == 0 && seen != nil {
		for uid := range seen {
			if _, ok := m.byUID[uid]; !ok {
				delete(seen, uid)
			}
		}
	}
	m.s.mu.Unlock()
	return nil
}

// digestUIDs makes unique-ids for an upstream without UIDL: the SHA-256 of
// each message's header (TOP n 0).
func (m *pop3Maildrop) digestUIDs(sizes []pop3client.MessageSize, uidOf map[int]string) error {
	for _, ms := range sizes {
		r, err := m.c.Top(ms.N, 0)
		if err != nil {
			return fmt.Errorf("upstream: POP3 upstream has neither UIDL nor TOP: %w", err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, r); err != nil {
			return fmt.Errorf("upstream: POP3 TOP %d: %w", ms.N, err)
		}
		uidOf[ms.N] = "T" + hex.EncodeToString(h.Sum(nil)[:20])
	}
	return nil
}

func (m *pop3Maildrop) OpenMessage(ctx context.Context, uid string) (io.ReadCloser, error) {
	msg, err := m.message(uid)
	if err != nil {
		return nil, err
	}
	if err := m.usable(); err != nil {
		return nil, err
	}
	stop := watch(ctx, m.c)
	m.read = true
	body, err := m.c.Retr(msg.n)
	if err != nil {
		stop()
		var pe *pop3client.Error
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("upstream: POP3 RETR %d: %v: %w", msg.n, err, mailstore.ErrNoSuchMessage)
		}
		m.broken = true
		return nil, ctxErr(ctx, fmt.Errorf("upstream: POP3 RETR %d: %w", msg.n, err))
	}
	sk := sizeKey{m.user, mailstore.Inbox, uid}
	r := newMsgReader(body, m.s.sizeCheck(sk, msg.info.Size, false), m.markBroken, func() error { return nil }, stop)
	m.reader = r
	return r, nil
}

func (m *pop3Maildrop) Commit(ctx context.Context, c mailstore.Changes) error {
	if m.done {
		return mailstore.ErrSessionEnded
	}
	if err := m.usable(); err != nil {
		m.release()
		return fmt.Errorf("upstream: nothing committed: %w", err)
	}
	m.done = true
	if m.stop != nil {
		m.stop()
	}
	defer m.s.unlock(m.key)
	stop := watch(ctx, m.c)
	defer stop()

	var errs []error
	deleted := make(map[string]bool, len(c.Deleted))
	for _, uid := range c.Deleted {
		i, ok := m.byUID[uid]
		if !ok || deleted[uid] {
			continue
		}
		if err := m.c.Dele(m.msgs[i].n); err != nil {
			var pe *pop3client.Error
			if !errors.As(err, &pe) {
				_ = m.c.Close()
				return ctxErr(ctx, fmt.Errorf("upstream: POP3 DELE: %w; nothing committed", err))
			}
			errs = append(errs, err)
			continue
		}
		deleted[uid] = true
	}
	if err := m.c.Quit(); err != nil {
		return ctxErr(ctx, fmt.Errorf("upstream: POP3 QUIT (update) for %q: %w", sanitize(m.user), errors.Join(append(errs, err)...)))
	}
	m.s.mu.Lock()
	seen := m.s.seen[m.user]
	if seen == nil {
		seen = make(map[string]bool)
		m.s.seen[m.user] = seen
	}
	for uid := range deleted {
		delete(seen, uid)
	}
	for _, uid := range c.Seen {
		if _, ok := m.byUID[uid]; ok && !deleted[uid] {
			seen[uid] = true
		}
	}
	m.s.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("upstream: POP3 commit for %q: %w", sanitize(m.user), err)
	}
	return nil
}

// release drops the connection without QUIT (no UPDATE upstream) and
// frees the lock.
func (m *pop3Maildrop) release() {
	m.done = true
	if m.stop != nil {
		m.stop()
	}
	m.dropReader()
	_ = m.c.Close()
	m.s.unlock(m.key)
}

func (m *pop3Maildrop) Close() error {
	if m.done {
		return nil
	}
	if !m.read && !m.broken {
		// Nothing read: QUIT releases the upstream lock at once, and with
		// nothing marked the UPDATE changes nothing.
		m.done = true
		if m.stop != nil {
			m.stop()
		}
		_ = m.c.Quit()
		m.s.unlock(m.key)
		return nil
	}
	m.release()
	return nil
}
