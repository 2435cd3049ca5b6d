package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"popgate/mailstore"
)

// ErrSkip marks a script that cannot run against a target (fixtures that
// cannot be placed, a missing feature). Run returns errors wrapping it;
// callers report the script as skipped, with [SkipReason] as the reason.
var ErrSkip = errors.New("skipped")

// SkipReason returns the reason carried by an error wrapping ErrSkip: its
// text without the final ": skipped".
func SkipReason(err error) string {
	return strings.TrimSuffix(err.Error(), ": "+ErrSkip.Error())
}

// Target is where a script runs.
type Target interface {
	// Dial opens a new client connection to the server.
	Dial(ctx context.Context) (net.Conn, error)
	// Seed creates the script's users and delivers its mailbox: fixtures.
	// It returns an error wrapping ErrSkip if it cannot.
	Seed(ctx context.Context, s *Script) error
	// Mailbox returns the CRLF contents of a folder, in order, for
	// ! expect-mailbox. It returns an error wrapping ErrSkip if it cannot
	// look, and one wrapping mailstore.ErrLocked while a session still
	// holds the folder (the runner retries until the step deadline).
	Mailbox(ctx context.Context, user, password, folder string) ([][]byte, error)
}

// Supporter is implemented by targets that know which requires: features
// they have. Targets that do not implement it are assumed to have them all.
type Supporter interface {
	// Supports reports whether the target has the feature, and if not,
	// why, for the skip message.
	Supports(ctx context.Context, feature string) (bool, string)
}

// CredentialMapper is implemented by targets whose accounts differ from the
// script's (a remote server with --user and --password). The runner then
// replaces the script user's name and password where they stand as whole
// words in C: lines, and computes ${apop ...} with the mapped secret.
type CredentialMapper interface {
	MapUser(u User) User
}

// Handler serves one connection until it ends, then closes it: the shape
// of every front end's ServeConn.
type Handler func(ctx context.Context, conn net.Conn)

// StoreTarget is an in-process target: a handler serving a store behind a
// loopback TCP listener. Create one per script, so every script starts
// from a fresh store; Close it when done.
type StoreTarget struct {
	store    mailstore.Store
	ln       net.Listener
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]bool
	acceptCh chan struct{}
	noSeen   string // why the store keeps no seen marks; "" if it does
}

// NewStoreTarget starts serving h on a loopback port. store is what
// fixtures are placed in and what ! expect-mailbox inspects; it must be the
// store h serves. Seeding needs store to implement mailstore.Provisioner.
func NewStoreTarget(ctx context.Context, store mailstore.Store, h Handler) (*StoreTarget, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("conformance: listening on loopback: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	t := &StoreTarget{store: store, ln: ln, cancel: cancel, conns: map[net.Conn]bool{}, acceptCh: make(chan struct{})}
	go t.accept(ctx, h)
	return t, nil
}

func (t *StoreTarget) accept(ctx context.Context, h Handler) {
	defer close(t.acceptCh)
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		t.mu.Lock()
		t.conns[c] = true
		t.wg.Add(1)
		t.mu.Unlock()
		go func() {
			defer t.wg.Done()
			defer func() {
				t.mu.Lock()
				delete(t.conns, c)
				t.mu.Unlock()
			}()
			h(ctx, c)
		}()
	}
}

// Addr is the listener's address.
func (t *StoreTarget) Addr() string { return t.ln.Addr().String() }

// Dial connects to the listener.
func (t *StoreTarget) Dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", t.Addr())
	if err != nil {
		return nil, fmt.Errorf("conformance: dialling %s: %w", t.Addr(), err)
	}
	return c, nil
}

// Seed creates every user and delivers every mailbox: fixture.
func (t *StoreTarget) Seed(ctx context.Context, s *Script) error {
	p, ok := t.store.(mailstore.Provisioner)
	if !ok {
		return fmt.Errorf("store %T cannot create users or deliver mail: %w", t.store, ErrSkip)
	}
	for _, u := range s.Users {
		if u.APOP != "" && u.APOP != u.Password {
			return fmt.Errorf("user %s: an APOP secret apart from the password cannot be placed in a mailstore.Provisioner: %w", u.Name, ErrSkip)
		}
		if err := p.AddUser(ctx, u.Name, u.Password); err != nil {
			return fmt.Errorf("conformance: adding user %s: %w", u.Name, err)
		}
	}
	for _, mb := range s.Mailboxes {
		if len(mb.Fixtures) == 0 && mb.Folder != mailstore.Inbox {
			return fmt.Errorf("an empty folder %s cannot be created through mailstore.Provisioner: %w", mb.Folder, ErrSkip)
		}
		for _, name := range mb.Fixtures {
			err := p.Deliver(ctx, mb.User, mb.Folder, s.Fixtures[name].Raw)
			if errors.Is(err, mailstore.ErrNoSuchFolder) {
				// The store cannot have a folder of that name (a path where
				// it wants a plain name, say): the script does not apply.
				return fmt.Errorf("store %T cannot hold folder %q (%w): %w", t.store, mb.Folder, err, ErrSkip)
			}
			if err != nil {
				return fmt.Errorf("conformance: delivering %s to %s %s: %w", name, mb.User, mb.Folder, err)
			}
		}
	}
	return nil
}

// Supports reports apop if the store implements mailstore.APOPStore,
// seen unless [StoreTarget.LacksSeen] was called, and popgate always (the
// handler is popgate's own front end).
func (t *StoreTarget) Supports(_ context.Context, feature string) (bool, string) {
	switch feature {
	case "popgate":
		return true, ""
	case "seen":
		if t.noSeen != "" {
			return false, t.noSeen
		}
		return true, ""
	case "apop":
		if _, ok := t.store.(mailstore.APOPStore); ok {
			return true, ""
		}
		return false, fmt.Sprintf("store %T does not implement APOP", t.store)
	}
	return false, fmt.Sprintf("unknown feature %q", feature)
}

// LacksSeen declares that the store does not keep retrieved messages'
// seen marks across sessions without changing their bytes (an mbox that
// writes no Status: header), for the reason given. Transcripts that say
// "requires: seen" (LAST across sessions, Status: synthesised from seen
// marks) are then skipped.
func (t *StoreTarget) LacksSeen(reason string) { t.noSeen = reason }

// Mailbox reads a folder through the mailstore API: Login, Open, Messages
// and OpenMessage, then Close (which changes nothing).
func (t *StoreTarget) Mailbox(ctx context.Context, user, password, folder string) ([][]byte, error) {
	return ReadMailbox(ctx, t.store, user, password, folder)
}

// ReadMailbox returns the CRLF contents of a folder of st, in order,
// without changing it.
func ReadMailbox(ctx context.Context, st mailstore.Store, user, password, folder string) ([][]byte, error) {
	acct, err := st.Login(ctx, user, password)
	if err != nil {
		return nil, fmt.Errorf("conformance: login %s: %w", user, err)
	}
	defer acct.Close()
	md, err := acct.Open(ctx, folder)
	if err != nil {
		return nil, fmt.Errorf("conformance: opening %s of %s: %w", folder, user, err)
	}
	defer md.Close()
	infos, err := md.Messages(ctx)
	if err != nil {
		return nil, fmt.Errorf("conformance: listing %s of %s: %w", folder, user, err)
	}
	out := make([][]byte, 0, len(infos))
	for _, mi := range infos {
		rc, err := md.OpenMessage(ctx, mi.UID)
		if err != nil {
			return nil, fmt.Errorf("conformance: opening message %s: %w", mi.UID, err)
		}
		var buf bytes.Buffer
		_, err = io.Copy(&buf, rc)
		_ = rc.Close()
		if err != nil {
			return nil, fmt.Errorf("conformance: reading message %s: %w", mi.UID, err)
		}
		out = append(out, buf.Bytes())
	}
	return out, nil
}

// Close stops the listener, cancels the handlers' context, closes any
// connection still open and waits (up to 5 s) for the handlers to return.
func (t *StoreTarget) Close() error {
	err := t.ln.Close()
	<-t.acceptCh
	t.cancel()
	t.mu.Lock()
	for c := range t.conns {
		_ = c.Close()
	}
	t.mu.Unlock()
	done := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		return errors.New("conformance: a connection handler did not return within 5s of Close")
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("conformance: closing listener: %w", err)
	}
	return nil
}
