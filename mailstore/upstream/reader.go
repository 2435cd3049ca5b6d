package upstream

import (
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
