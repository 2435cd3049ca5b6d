package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"popgate/mailstore"
)

// logoutWait bounds the courtesy LOGOUT when a connection is released.
const logoutWait = 2 * time.Second

// connectIMAP dials the upstream and returns a client past the greeting,
// with TLS (implicit or STARTTLS) unless AllowPlaintext had to be used.
func (s *Store) connectIMAP(ctx context.Context) (*imapclient.Client, error) {
	conn, err := s.dial(ctx, "imap")
	if err != nil {
		return nil, err
	}
	// The watch covers only the connection set-up; a STARTTLS fallback
	// re-dials and replaces it, so the deferred call reads stop late.
	stop := watch(ctx, conn)
	defer func() { stop() }()
	opts := &imapclient.Options{TLSConfig: s.tlsConfig("")}
	var c *imapclient.Client
	switch {
	case s.mode == tlsImplicit:
		c = imapclient.New(conn, opts)
	case s.opts.AllowPlaintext:
		// Look at the capabilities first: fall back to plain text only
		// when STARTTLS is not offered, never when it fails.
		c = imapclient.New(conn, opts)
		if err := c.WaitGreeting(); err != nil {
			_ = c.Close()
			return nil, ctxErr(ctx, fmt.Errorf("upstream: IMAP greeting from %s: %w", s.addr, err))
		}
		if !c.Caps().Has(imap.CapStartTLS) {
			s.log.Warn().Str("upstream", s.addr).Msg("upstream offers no STARTTLS: continuing in plain text (AllowPlaintext)")
			return c, nil
		}
		_ = c.Close()
		stop()
		if conn, err = s.dial(ctx, ""); err != nil {
			return nil, err
		}
		stop = watch(ctx, conn)
		fallthrough
	default:
		c, err = imapclient.NewStartTLS(conn, opts)
		if err != nil {
			return nil, ctxErr(ctx, fmt.Errorf("upstream: IMAP STARTTLS with %s: %w", s.addr, err))
		}
	}
	if err := c.WaitGreeting(); err != nil {
		_ = c.Close()
		return nil, ctxErr(ctx, fmt.Errorf("upstream: IMAP greeting from %s: %w", s.addr, err))
	}
	return c, nil
}

// dialIMAP connects and authenticates with cr.
func (s *Store) dialIMAP(ctx context.Context, cr *credential) (*imapclient.Client, error) {
	var tok string
	if cr.oauth() {
		// Before dialing: a slow token command must not idle the upstream.
		var err error
		if tok, err = s.token(ctx, cr); err != nil {
			return nil, err
		}
	}
	c, err := s.connectIMAP(ctx)
	if err != nil {
		return nil, err
	}
	stop := watch(ctx, c)
	defer stop()
	caps := c.Caps()
	switch {
	case cr.oauth():
		var mech string
		mech, err = chooseOAuth(cr, func(m string) bool { return caps.Has(imap.AuthCap(m)) })
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("upstream: %s: %w", s.addr, err)
		}
		err = c.Authenticate(saslFor(mech, cr.login, tok, s.tlsConf.ServerName))
	case !caps.Has(imap.CapLoginDisabled):
		err = c.Login(cr.login, cr.password).Wait()
	case caps.Has(imap.AuthCap(sasl.Plain)):
		err = c.Authenticate(sasl.NewPlainClient("", cr.login, cr.password))
	default:
		_ = c.Close()
		return nil, fmt.Errorf("upstream: %s refuses LOGIN and offers no AUTH=PLAIN: %w", s.addr, mailstore.ErrPermanent)
	}
	if err != nil {
		_ = c.Close()
		return nil, s.mappedErr(cr, imapLoginErr(ctx, cr.login, err))
	}
	return c, nil
}

// imapLoginErr maps a failed LOGIN/AUTHENTICATE: a NO or BAD is a rejected
// login unless its response code says the server is in trouble.
func imapLoginErr(ctx context.Context, user string, err error) error {
	var ie *imap.Error
	if errors.As(err, &ie) {
		switch ie.Code {
		case imap.ResponseCodeUnavailable, imap.ResponseCodeServerBug, imap.ResponseCodeLimit,
			imap.ResponseCodeInUse, imap.ResponseCodeContactAdmin:
			return fmt.Errorf("upstream: login %q: %w", sanitize(user), err)
		}
		return fmt.Errorf("upstream: login %q: %v: %w", sanitize(user), err, mailstore.ErrAuthFailed)
	}
	return ctxErr(ctx, fmt.Errorf("upstream: login %q: %w", sanitize(user), err))
}

func (s *Store) loginIMAP(ctx context.Context, user string, cr *credential) (mailstore.Account, error) {
	c, err := s.dialIMAP(ctx, cr)
	if err != nil {
		return nil, err
	}
	return &imapAccount{s: s, user: user, cr: cr, idle: c}, nil
}

// logout ends c politely but without waiting long, and closes it.
func logout(c *imapclient.Client) {
	done := make(chan struct{})
	go func() {
		_ = c.Logout().Wait()
		close(done)
	}()
	t := time.NewTimer(logoutWait)
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	_ = c.Close()
	<-done
}

// imapAccount is an authenticated IMAP user. It keeps the login
// connection for the next Folders or Open.
type imapAccount struct {
	s    *Store
	user string // the local login name
	cr   *credential

	mu     sync.Mutex
	idle   *imapclient.Client
	closed bool
}

func (a *imapAccount) User() string { return a.user }

// take returns an authenticated connection: the idle one if it still
// answers, or a new one.
func (a *imapAccount) take(ctx context.Context) (*imapclient.Client, error) {
	a.mu.Lock()
	c := a.idle
	a.idle = nil
	a.mu.Unlock()
	if c != nil {
		stop := watch(ctx, c)
		err := c.Noop().Wait()
		stop()
		if err == nil {
			return c, nil
		}
		_ = c.Close()
		a.s.log.Debug().Str("upstream", a.s.addr).Err(err).Msg("idle IMAP connection lost; dialing again")
	}
	return a.s.dialIMAP(ctx, a.cr)
}

// give keeps c as the idle connection, or logs it out.
func (a *imapAccount) give(c *imapclient.Client) {
	a.mu.Lock()
	if a.idle == nil && !a.closed {
		a.idle = c
		c = nil
	}
	a.mu.Unlock()
	if c != nil {
		logout(c)
	}
}

func (a *imapAccount) Folders(ctx context.Context) ([]string, error) {
	c, err := a.take(ctx)
	if err != nil {
		return nil, err
	}
	stop := watch(ctx, c)
	list, err := c.List("", "*", nil).Collect()
	stop()
	if err != nil {
		_ = c.Close()
		return nil, ctxErr(ctx, fmt.Errorf("upstream: LIST for %q: %w", sanitize(a.user), err))
	}
	a.give(c)
	var names []string
	for _, l := range list {
		if slices.Contains(l.Attrs, imap.MailboxAttrNoSelect) || slices.Contains(l.Attrs, imap.MailboxAttrNonExistent) {
			continue
		}
		if mailstore.FolderName(l.Mailbox) == mailstore.Inbox {
			continue
		}
		names = append(names, l.Mailbox)
	}
	sort.Strings(names)
	return append([]string{mailstore.Inbox}, names...), nil
}

func (a *imapAccount) Open(ctx context.Context, folder string) (mailstore.Maildrop, error) {
	fn := mailstore.FolderName(folder)
	k := lockKey{user: a.cr.login, folder: fn}
	if err := a.s.lock(k, a.s.holder(a.cr)); err != nil {
		return nil, err
	}
	md, err := a.open(ctx, fn, k)
	if err != nil {
		a.s.unlock(k)
		return nil, err
	}
	return md, nil
}

func (a *imapAccount) open(ctx context.Context, fn string, k lockKey) (*imapMaildrop, error) {
	c, err := a.take(ctx)
	if err != nil {
		return nil, err
	}
	stop := watch(ctx, c)
	md := &imapMaildrop{s: a.s, user: a.cr.login, folder: fn, key: k, c: c}
	if err := md.snapshot(ctx); err != nil {
		stop()
		_ = c.Close()
		return nil, err
	}
	// The context of Open bounds the connection from now on.
	md.stop = stop
	return md, nil
}

func (a *imapAccount) Close() error {
	a.mu.Lock()
	c := a.idle
	a.idle = nil
	a.closed = true
	a.mu.Unlock()
	if c != nil {
		logout(c)
	}
	return nil
}

type imapMsg struct {
	uid  imap.UID
	info mailstore.MessageInfo
}

func (m imapMsg) messageInfo() mailstore.MessageInfo { return m.info }

// imapMaildrop is one SELECTed folder.
type imapMaildrop struct {
	s        *Store
	user     string
	folder   string
	key      lockKey
	c        *imapclient.Client
	stop     func() bool
	validity uint32
	msgIndex[imapMsg]
	dropState
}

func (m *imapMaildrop) snapshot(ctx context.Context) error {
	sel, err := m.c.Select(m.folder, nil).Wait()
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo {
			return fmt.Errorf("upstream: SELECT %q: %v: %w", m.folder, err, mailstore.ErrNoSuchFolder)
		}
		return ctxErr(ctx, fmt.Errorf("upstream: SELECT %q: %w", m.folder, err))
	}
	m.validity = sel.UIDValidity
	kw := imap.Flag(m.s.opts.Keyword)
	if m.s.opts.DeleteMode == DeleteKeyword && !flagIn(sel.PermanentFlags, imap.FlagWildcard) && !flagIn(sel.PermanentFlags, kw) {
		return fmt.Errorf("upstream: folder %q cannot keep the keyword %s (PERMANENTFLAGS): %w", m.folder, kw, mailstore.ErrPermanent)
	}
	m.byUID = make(map[string]int)
	if sel.NumMessages == 0 {
		return nil
	}
	crit := &imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagDeleted}}
	if m.s.opts.DeleteMode == DeleteKeyword {
		crit.NotFlag = append(crit.NotFlag, kw)
	}
	data, err := m.c.UIDSearch(crit, nil).Wait()
	if err != nil {
		return ctxErr(ctx, fmt.Errorf("upstream: UID SEARCH in %q: %w", m.folder, err))
	}
	uids := data.AllUIDs()
	slices.Sort(uids)
	if w := m.s.opts.Window; w > 0 && len(uids) > w {
		uids = uids[len(uids)-w:]
	}
	if len(uids) == 0 {
		return nil
	}
	bufs, err := m.c.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, RFC822Size: true, Flags: true}).Collect()
	if err != nil {
		return ctxErr(ctx, fmt.Errorf("upstream: UID FETCH sizes in %q: %w", m.folder, err))
	}
	sort.Slice(bufs, func(i, j int) bool { return bufs[i].UID < bufs[j].UID })
	// Learn which messages lack a final line end, for those not checked
	// in an earlier session of this process. The range checked grows to
	// span this snapshot; a message hidden from it (by Window, or by
	// \Deleted later cleared) that reappears inside the range is left to
	// the message reader's size check.
	checked := m.s.checkedEnds(m.key)
	var unknown []tailCheck
	span := endsChecked{validity: m.validity}
	for _, b := range bufs {
		if b.UID == 0 || b.RFC822Size <= 0 {
			continue
		}
		u := uint32(b.UID)
		if span.lo == 0 || u < span.lo {
			span.lo = u
		}
		span.hi = max(span.hi, u)
		if !checked.covers(m.validity, u) {
			unknown = append(unknown, tailCheck{uid: b.UID, size: b.RFC822Size})
		}
	}
	short, err := m.unterminated(unknown)
	if err != nil {
		return ctxErr(ctx, fmt.Errorf("upstream: UID FETCH message ends in %q: %w", m.folder, err))
	}
	if span.hi != 0 {
		if checked.validity == m.validity && checked.hi != 0 {
			span.lo, span.hi = min(span.lo, checked.lo), max(span.hi, checked.hi)
		}
		m.s.setCheckedEnds(m.key, span)
	}
	for _, b := range bufs {
		if b.UID == 0 {
			continue
		}
		uid := fmt.Sprintf("%08x%08x", uint32(b.UID), m.validity) // what Dovecot 2.3 prints for %08Xu%08Xv
		if _, dup := m.byUID[uid]; dup {
			continue
		}
		size := b.RFC822Size
		if n, ok := m.s.knownSize(sizeKey{m.user, m.folder, uid}); ok {
			size = n
		} else if short[b.UID] {
			// mailstore.ToCRLF adds the final CRLF the upstream's
			// RFC822.SIZE does not count.
			size += 2
			m.s.setSize(sizeKey{m.user, m.folder, uid}, size)
		}
		m.byUID[uid] = len(m.msgs)
		m.msgs = append(m.msgs, imapMsg{uid: b.UID, info: mailstore.MessageInfo{
			UID:  uid,
			Size: size,
			Seen: flagIn(b.Flags, imap.FlagSeen),
		}})
	}
	return nil
}

// tailCheck is a message whose CRLF size is not known yet: its UID and
// the upstream's RFC822.SIZE.
type tailCheck struct {
	uid  imap.UID
	size int64
}

// tailWindow bounds the tail FETCH commands in flight at once.
const tailWindow = 32

// unterminated returns the messages of msgs that do not end in a line
// end, whose CRLF form (mailstore.ToCRLF) is two octets longer than the
// upstream's RFC822.SIZE. It fetches each message's last two octets
// (BODY.PEEK[]<size-2.2>; the one octet of a one-octet message), one
// UID FETCH per message, with up to tailWindow commands pipelined. A
// message that ends in a bare LF is left alone: servers count a CRLF
// for it, and the reader's sizeCheck corrects any other difference. A
// message that vanished or answers nothing is left alone as well.
//
// Each command is drained by its own goroutine. Dovecot answers a
// pipelined batch with all the untagged FETCH data first and the tagged
// completions after, and the client library hands a literal to its
// command synchronously; draining the commands one after another in
// order would wait for a completion that sits behind a literal no one
// is reading.
func (m *imapMaildrop) unterminated(msgs []tailCheck) (map[imap.UID]bool, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	var (
		mu       sync.Mutex
		short    = make(map[imap.UID]bool)
		firstErr error
		wg       sync.WaitGroup
	)
	slots := make(chan struct{}, tailWindow)
	for _, t := range msgs {
		slots <- struct{}{}
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			<-slots
			break // connection lost: the remaining commands would fail too
		}
		part := &imap.SectionPartial{Offset: t.size - 2, Size: 2}
		if t.size < 2 {
			part = &imap.SectionPartial{Offset: 0, Size: t.size}
		}
		cmd := m.c.Fetch(imap.UIDSetNum(t.uid), &imap.FetchOptions{
			UID:         true,
			BodySection: []*imap.FetchItemBodySection{{Peek: true, Partial: part}},
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			bufs, err := cmd.Collect()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				var ie *imap.Error
				if !errors.As(err, &ie) && firstErr == nil {
					firstErr = err
				}
			}
			for _, b := range bufs {
				for _, sec := range b.BodySection {
					if n := len(sec.Bytes); n > 0 && sec.Bytes[n-1] != '\n' {
						short[b.UID] = true
					}
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return short, nil
}

func flagIn(flags []imap.Flag, f imap.Flag) bool {
	for _, g := range flags {
		if strings.EqualFold(string(g), string(f)) {
			return true
		}
	}
	return false
}

func (m *imapMaildrop) OpenMessage(ctx context.Context, uid string) (io.ReadCloser, error) {
	msg, err := m.message(uid)
	if err != nil {
		return nil, err
	}
	if err := m.usable(); err != nil {
		return nil, err
	}
	stop := watch(ctx, m.c)
	cmd := m.c.Fetch(imap.UIDSetNum(msg.uid), &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	})
	data := cmd.Next()
	if data == nil {
		err := cmd.Close()
		stop()
		var ie *imap.Error
		if err == nil || errors.As(err, &ie) {
			// Expunged by another client since the snapshot.
			return nil, fmt.Errorf("upstream: uid %q vanished upstream: %w", uid, mailstore.ErrNoSuchMessage)
		}
		m.broken = true
		return nil, ctxErr(ctx, fmt.Errorf("upstream: UID FETCH %d: %w", msg.uid, err))
	}
	var lit imap.LiteralReader
	for item := data.Next(); item != nil; item = data.Next() {
		if b, ok := item.(imapclient.FetchItemDataBodySection); ok {
			lit = b.Literal
			break
		}
	}
	end := func() error {
		for data.Next() != nil {
		}
		if err := cmd.Close(); err != nil {
			return ctxErr(ctx, fmt.Errorf("upstream: UID FETCH %d: %w", msg.uid, err))
		}
		return nil
	}
	if lit == nil {
		err := end()
		stop()
		if err != nil {
			m.broken = true
			return nil, err
		}
		return nil, fmt.Errorf("upstream: UID FETCH %d returned no body: %w", msg.uid, mailstore.ErrNoSuchMessage)
	}
	sk := sizeKey{m.user, m.folder, uid}
	r := newMsgReader(lit, m.s.sizeCheck(sk, msg.info.Size, true), m.markBroken, end, stop)
	m.reader = r
	return r, nil
}

func (m *imapMaildrop) Commit(ctx context.Context, c mailstore.Changes) error {
	if m.done {
		return mailstore.ErrSessionEnded
	}
	if err := m.usable(); err != nil {
		m.release(false)
		return fmt.Errorf("upstream: nothing committed: %w", err)
	}
	m.done = true
	defer m.release(true)
	stop := watch(ctx, m.c)
	defer stop()

	var del, seen imap.UIDSet
	deleted := make(map[string]bool, len(c.Deleted))
	for _, uid := range c.Deleted {
		if i, ok := m.byUID[uid]; ok {
			del.AddNum(m.msgs[i].uid)
			deleted[uid] = true
		}
	}
	for _, uid := range c.Seen {
		if i, ok := m.byUID[uid]; ok && !deleted[uid] {
			seen.AddNum(m.msgs[i].uid)
		}
	}
	var errs []error
	if len(seen) > 0 {
		if err := m.addFlags(seen, imap.FlagSeen); err != nil {
			errs = append(errs, fmt.Errorf("marking seen: %w", err))
		}
	}
	if len(del) > 0 {
		if err := m.remove(del); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return ctxErr(ctx, fmt.Errorf("upstream: commit in %q of %q: %w", m.folder, sanitize(m.user), err))
	}
	return nil
}

func (m *imapMaildrop) addFlags(set imap.UIDSet, flags ...imap.Flag) error {
	return m.c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: flags}, nil).Close()
}

// remove applies the delete mode to set.
func (m *imapMaildrop) remove(set imap.UIDSet) error {
	if m.s.opts.DeleteMode == DeleteKeyword {
		if err := m.addFlags(set, imap.Flag(m.s.opts.Keyword)); err != nil {
			return fmt.Errorf("setting %s: %w", m.s.opts.Keyword, err)
		}
		return nil
	}
	if err := m.addFlags(set, imap.FlagDeleted); err != nil {
		return fmt.Errorf("flagging \\Deleted: %w", err)
	}
	if m.c.Caps().Has(imap.CapUIDPlus) {
		if err := m.c.UIDExpunge(set).Close(); err != nil {
			return fmt.Errorf("UID EXPUNGE: %w", err)
		}
		return nil
	}
	// Without UIDPLUS, EXPUNGE removes every \Deleted message: send it only
	// if ours are the only ones.
	data, err := m.c.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
	if err != nil {
		return fmt.Errorf("UID SEARCH DELETED: %w", err)
	}
	for _, u := range data.AllUIDs() {
		if !set.Contains(u) {
			m.s.log.Warn().Str("upstream", m.s.addr).Str("folder", m.folder).
				Msg("upstream lacks UIDPLUS and other messages are flagged \\Deleted: not expunging; ours stay flagged and hidden from POP")
			return nil
		}
	}
	if err := m.c.Expunge().Close(); err != nil {
		return fmt.Errorf("EXPUNGE: %w", err)
	}
	return nil
}

// release ends the connection and frees the lock. polite sends LOGOUT;
// otherwise (a message half read, a failed connection) it just closes.
func (m *imapMaildrop) release(polite bool) {
	m.done = true
	if m.stop != nil {
		m.stop()
	}
	if m.dropReader() {
		polite = false
	}
	if polite && !m.broken {
		logout(m.c)
	} else {
		_ = m.c.Close()
	}
	m.s.unlock(m.key)
}

func (m *imapMaildrop) Close() error {
	if m.done {
		return nil
	}
	m.release(true)
	return nil
}
