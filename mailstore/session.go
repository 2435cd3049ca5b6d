package mailstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
)

// Session is one connection's view of an open [Maildrop]: it numbers the
// messages 1..n in snapshot order, keeps deletion marks and the "highest
// number accessed" that RFC 1081-1460 LAST reports, totals undeleted
// messages, and decides between Commit (QUIT in UPDATE, RCVD, ACKD+QUIT)
// and Close (anything else, which removes nothing).
//
// Every front end uses a Session; none keeps its own marks. A Session is
// not safe for concurrent use: one connection owns it.
type Session struct {
	md        Maildrop
	msgs      []MessageInfo
	deleted   []bool
	retrieved []bool
	hnaStart  int // highest number accessed when the session began
	hna       int
	ended     bool
}

// NewSession lists md and returns a session over it. On error md is closed.
func NewSession(ctx context.Context, md Maildrop) (*Session, error) {
	msgs, err := md.Messages(ctx)
	if err != nil {
		_ = md.Close()
		return nil, fmt.Errorf("listing maildrop: %w", err)
	}
	s := &Session{
		md:        md,
		msgs:      msgs,
		deleted:   make([]bool, len(msgs)),
		retrieved: make([]bool, len(msgs)),
	}
	for i, m := range msgs {
		if m.Seen {
			s.hnaStart = i + 1
		}
	}
	s.hna = s.hnaStart
	return s, nil
}

// Count is the number of messages in the snapshot, deleted ones included:
// the highest valid message number.
func (s *Session) Count() int { return len(s.msgs) }

// Stat returns the number and total size of the messages not marked
// deleted, as RFC 1939 STAT reports them.
func (s *Session) Stat() (count int, size int64) {
	for i, m := range s.msgs {
		if !s.deleted[i] {
			count++
			size += m.Size
		}
	}
	return count, size
}

// Message returns message n (1-based). It fails with ErrNoSuchMessage if n
// is out of range and ErrMessageDeleted if n is marked deleted.
func (s *Session) Message(n int) (MessageInfo, error) {
	if n < 1 || n > len(s.msgs) {
		return MessageInfo{}, fmt.Errorf("message %d of %d: %w", n, len(s.msgs), ErrNoSuchMessage)
	}
	if s.deleted[n-1] {
		return MessageInfo{}, fmt.Errorf("message %d: %w", n, ErrMessageDeleted)
	}
	return s.msgs[n-1], nil
}

// Numbered is a message with its session number.
type Numbered struct {
	N int
	MessageInfo
}

// All yields the messages not marked deleted, in number order, like List
// but without building a slice: a listing of 100 000 messages costs no
// allocation.
func (s *Session) All() iter.Seq[Numbered] {
	return func(yield func(Numbered) bool) {
		for i, m := range s.msgs {
			if !s.deleted[i] && !yield(Numbered{N: i + 1, MessageInfo: m}) {
				return
			}
		}
	}
}

// List returns the messages not marked deleted, in number order.
func (s *Session) List() []Numbered {
	out := make([]Numbered, 0, len(s.msgs))
	for i, m := range s.msgs {
		if !s.deleted[i] {
			out = append(out, Numbered{N: i + 1, MessageInfo: m})
		}
	}
	return out
}

// Open returns the content of message n in its CRLF form. The reader
// yields exactly the announced size or fails with ErrSizeMismatch. Open
// does not count as an access; callers that send the whole message call
// [Session.MarkRetrieved].
func (s *Session) Open(ctx context.Context, n int) (io.ReadCloser, error) {
	m, err := s.Message(n)
	if err != nil {
		return nil, err
	}
	rc, err := s.md.OpenMessage(ctx, m.UID)
	if err != nil {
		return nil, fmt.Errorf("opening message %d: %w", n, err)
	}
	return exactReadCloser{Reader: ExactReader(rc, m.Size), Closer: rc}, nil
}

type exactReadCloser struct {
	io.Reader
	io.Closer
}

// MarkRetrieved records that message n was sent whole: it raises the
// highest number accessed and is marked seen if the session commits.
func (s *Session) MarkRetrieved(n int) {
	if n < 1 || n > len(s.msgs) {
		return
	}
	s.retrieved[n-1] = true
	s.access(n)
}

func (s *Session) access(n int) {
	if n > s.hna {
		s.hna = n
	}
}

// Delete marks message n deleted. The mark takes effect only at Commit.
func (s *Session) Delete(n int) error {
	if _, err := s.Message(n); err != nil {
		return err
	}
	s.deleted[n-1] = true
	s.access(n)
	return nil
}

// Deleted reports whether message n is marked deleted.
func (s *Session) Deleted(n int) bool {
	return n >= 1 && n <= len(s.msgs) && s.deleted[n-1]
}

// DeletedCount is the number of messages marked deleted.
func (s *Session) DeletedCount() int {
	c := 0
	for _, d := range s.deleted {
		if d {
			c++
		}
	}
	return c
}

// Reset unmarks every message marked deleted (RSET, NACK of a whole
// transaction). It leaves the highest number accessed alone; see
// [Session.ResetLast].
func (s *Session) Reset() {
	for i := range s.deleted {
		s.deleted[i] = false
	}
}

// Last is the highest message number accessed (RETR or DELE) in this or any
// earlier committed session, or 0: the RFC 1081 LAST reply.
func (s *Session) Last() int { return s.hna }

// ResetLast applies the RSET rule of an era to the highest number
// accessed: RFC 1081 and 1225 restore the value the session started with;
// RFC 1460 sets it to zero.
func (s *Session) ResetLast(toZero bool) {
	if toZero {
		s.hna = 0
		return
	}
	s.hna = s.hnaStart
}

// ErrSessionEnded is returned by Commit and Close after the session ended.
var ErrSessionEnded = errors.New("mailstore: session already ended")

// Commit ends the session: it removes the messages marked deleted, marks
// the retrieved ones seen, and releases the maildrop lock. It returns the
// number of messages the commit was asked to remove.
func (s *Session) Commit(ctx context.Context) (int, error) {
	if s.ended {
		return 0, ErrSessionEnded
	}
	s.ended = true
	var c Changes
	for i, m := range s.msgs {
		switch {
		case s.deleted[i]:
			c.Deleted = append(c.Deleted, m.UID)
		case s.retrieved[i]:
			c.Seen = append(c.Seen, m.UID)
		}
	}
	if err := s.md.Commit(ctx, c); err != nil {
		return len(c.Deleted), fmt.Errorf("committing %d deletions: %w", len(c.Deleted), err)
	}
	return len(c.Deleted), nil
}

// Close ends the session without changing the maildrop and releases the
// lock: a hang-up, a timeout or a shutdown. Close after Commit is a no-op.
func (s *Session) Close() error {
	if s.ended {
		return nil
	}
	s.ended = true
	return s.md.Close()
}

// Ended reports whether Commit or Close has been called.
func (s *Session) Ended() bool { return s.ended }
