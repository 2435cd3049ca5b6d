package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"

	"popgate/mailstore"
)

// msgReader streams one upstream message in its canonical CRLF form and
// counts it, so that a size the upstream announced wrongly is noticed.
type msgReader struct {
	r       io.Reader // src through mailstore.NewCRLFReader
	n       int64
	eof     bool
	closed  bool
	aborted bool

	// sized is called once, at the end of the message, with its CRLF size.
	sized func(n int64)
	// fail is called when the upstream stream breaks: the maildrop is
	// then unusable.
	fail func()
	// end finishes the upstream command after the body was read.
	end func() error
	// stop ends the watch that closes the connection when the reader's
	// context is cancelled.
	stop func() bool
}

func newMsgReader(src io.Reader, sized func(int64), fail func(), end func() error, stop func() bool) *msgReader {
	return &msgReader{r: mailstore.NewCRLFReader(src), sized: sized, fail: fail, end: end, stop: stop}
}

// errReaderClosed is returned by Read after Close.
var errReaderClosed = errors.New("upstream: message reader already closed")

func (m *msgReader) Read(p []byte) (int, error) {
	if m.closed {
		return 0, errReaderClosed
	}
	if m.eof {
		return 0, io.EOF
	}
	n, err := m.r.Read(p)
	m.n += int64(n)
	switch {
	case errors.Is(err, io.EOF):
		m.eof = true
		m.sized(m.n)
		return n, io.EOF
	case err != nil:
		m.fail()
		return n, fmt.Errorf("upstream: reading message: %w", err)
	}
	return n, nil
}

// Close reads what is left of the message (the upstream protocol cannot
// skip it) and finishes the upstream command.
func (m *msgReader) Close() error {
	if m.closed {
		return nil
	}
	var err error
	if !m.eof && !m.aborted {
		if _, derr := io.Copy(io.Discard, m); derr != nil {
			err = fmt.Errorf("upstream: skipping the rest of a message: %w", derr)
		}
	}
	m.closed = true
	defer m.stop()
	if m.aborted {
		return err
	}
	if eerr := m.end(); eerr != nil {
		m.fail()
		err = errors.Join(err, eerr)
	}
	return err
}

// abort marks the reader closed without touching the connection, which
// the caller is about to close.
func (m *msgReader) abort() {
	if !m.closed {
		m.stop()
	}
	m.aborted = true
	m.closed = true
}

// errBroken says the upstream connection failed during the session.
var errBroken = errors.New("upstream: the upstream connection failed during this session")

// dropState is the session state both upstream maildrops keep: the
// message reader in use, and whether the connection broke or the session
// ended.
type dropState struct {
	reader *msgReader
	broken bool // the upstream connection failed during the session
	done   bool // Commit or Close ended the session
}

// usable reports whether another upstream command may be sent. It first
// finishes the open message reader, if any: the upstream protocol cannot
// start a command before the last one's data were read.
func (d *dropState) usable() error {
	if d.done {
		return mailstore.ErrSessionEnded
	}
	if d.broken {
		return errBroken
	}
	if d.reader != nil {
		r := d.reader
		d.reader = nil
		if err := r.Close(); err != nil {
			return err
		}
		if d.broken {
			return errBroken
		}
	}
	return nil
}

// dropReader abandons the open message reader, if any, without touching
// the connection, which the caller is about to close. It reports whether
// there was one.
func (d *dropState) dropReader() bool {
	if d.reader == nil {
		return false
	}
	d.reader.abort()
	d.reader = nil
	return true
}

// markBroken records that the upstream connection failed.
func (d *dropState) markBroken() { d.broken = true }

// sizeCheck returns a message reader's sized callback for message k,
// announced as announced octets: a different CRLF size is remembered for
// the next sessions and logged (with the folder if withFolder).
func (s *Store) sizeCheck(k sizeKey, announced int64, withFolder bool) func(int64) {
	return func(n int64) {
		if n == announced {
			return
		}
		s.setSize(k, n)
		ev := s.log.Warn().Str("upstream", s.addr)
		if withFolder {
			ev = ev.Str("folder", k.folder)
		}
		ev.Str("uid", k.uid).Int64("announced", announced).Int64("crlf", n).
			Msg("upstream size differs from the CRLF size; the right size is announced from the next session on")
	}
}

// indexedMsg is an upstream message as a maildrop lists it.
type indexedMsg interface{ messageInfo() mailstore.MessageInfo }

// msgIndex is a maildrop's message list, taken when the session began,
// and its index by UID.
type msgIndex[M indexedMsg] struct {
	msgs  []M
	byUID map[string]int
}

// Messages lists the messages of the snapshot (mailstore.Maildrop).
func (x *msgIndex[M]) Messages(context.Context) ([]mailstore.MessageInfo, error) {
	out := make([]mailstore.MessageInfo, len(x.msgs))
	for i, msg := range x.msgs {
		out[i] = msg.messageInfo()
	}
	return out, nil
}

// message returns the message with uid, or an error that wraps
// mailstore.ErrNoSuchMessage.
func (x *msgIndex[M]) message(uid string) (M, error) {
	i, ok := x.byUID[uid]
	if !ok {
		var zero M
		return zero, fmt.Errorf("upstream: uid %q: %w", uid, mailstore.ErrNoSuchMessage)
	}
	return x.msgs[i], nil
}
