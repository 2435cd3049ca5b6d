package pop3

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"popgate/mailstore"
)

// fakeStore is a single-user store whose content and failures the test
// chooses: raw message bytes that need not be canonical, sizes that need
// not match, and errors at each step. It does not implement APOP.
type fakeStore struct {
	mu        sync.Mutex
	msgs      []fakeMsg
	openErr   error // Account.Open
	readErr   error // OpenMessage
	commitErr error
	panicMsg  string // Login panics with it if set
	committed *mailstore.Changes
	closed    int
	lf        bool // messages are served through mailstore.NewCRLFReaderSize, as a Maildir does
}

type fakeMsg struct {
	uid  string
	data string
	size int64 // announced size; -1 means len(data)
}

func (s *fakeStore) Login(_ context.Context, user, pass string) (mailstore.Account, error) {
	if s.panicMsg != "" {
		panic(s.panicMsg)
	}
	if user != testUser || pass != testPass {
		return nil, fmt.Errorf("fake: %w", mailstore.ErrAuthFailed)
	}
	return fakeAccount{s}, nil
}

type fakeAccount struct{ s *fakeStore }

func (a fakeAccount) User() string { return testUser }
func (a fakeAccount) Folders(context.Context) ([]string, error) {
	return []string{mailstore.Inbox}, nil
}
func (a fakeAccount) Close() error { return nil }
func (a fakeAccount) Open(context.Context, string) (mailstore.Maildrop, error) {
	if a.s.openErr != nil {
		return nil, fmt.Errorf("fake open: %w", a.s.openErr)
	}
	return fakeMaildrop(a), nil
}

type fakeMaildrop struct{ s *fakeStore }

func (m fakeMaildrop) Messages(context.Context) ([]mailstore.MessageInfo, error) {
	out := make([]mailstore.MessageInfo, len(m.s.msgs))
	for i, msg := range m.s.msgs {
		size := msg.size
		if size < 0 {
			size = int64(len(msg.data))
		}
		out[i] = mailstore.MessageInfo{UID: msg.uid, Size: size}
	}
	return out, nil
}

func (m fakeMaildrop) OpenMessage(_ context.Context, uid string) (io.ReadCloser, error) {
	if m.s.readErr != nil {
		return nil, fmt.Errorf("fake read: %w", m.s.readErr)
	}
	for _, msg := range m.s.msgs {
		if msg.uid == uid {
			if m.s.lf {
				size := msg.size
				if size < 0 {
					size = int64(len(msg.data))
				}
				return io.NopCloser(mailstore.NewCRLFReaderSize(strings.NewReader(msg.data), size)), nil
			}
			return io.NopCloser(strings.NewReader(msg.data)), nil
		}
	}
	return nil, mailstore.ErrNoSuchMessage
}

func (m fakeMaildrop) Commit(_ context.Context, c mailstore.Changes) error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	m.s.committed = &c
	return m.s.commitErr
}

func (m fakeMaildrop) Close() error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	m.s.closed++
	return nil
}

func (s *fakeStore) result() (*mailstore.Changes, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committed, s.closed
}
