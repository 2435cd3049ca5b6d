package mbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"

	"popgate/mailstore"
)

type account struct {
	s    *Store
	name string
	home string
}

func (a *account) User() string { return a.name }

func (a *account) Close() error { return nil }

// Folders lists INBOX and the mbox files of the folder directory (not
// hidden files, not lock files).
func (a *account) Folders(ctx context.Context) ([]string, error) {
	out := []string{mailstore.Inbox}
	if a.s.opts.FolderDir == "" {
		return out, nil
	}
	dir, err := a.s.folderDir(a.name, a.home)
	if err != nil {
		return nil, fmt.Errorf("mbox: folders of %q: %w", a.name, err)
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mbox: folders of %q: %w", a.name, err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !validFolder(n) || strings.EqualFold(n, mailstore.Inbox) {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return append(out, names...), ctx.Err()
}

// Open takes the maildrop lock and scans the folder under the delivery
// locks.
func (a *account) Open(ctx context.Context, folder string) (mailstore.Maildrop, error) {
	fn := mailstore.FolderName(folder)
	path, err := a.s.folderPath(a.name, a.home, fn)
	if err != nil {
		return nil, fmt.Errorf("mbox: open %q of %q: %w", fn, a.name, err)
	}
	if fn != mailstore.Inbox {
		if _, err := os.Stat(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("mbox: open %q of %q: %w", fn, a.name, mailstore.ErrNoSuchFolder)
			}
			return nil, fmt.Errorf("mbox: open %q of %q: %w", fn, a.name, err)
		}
	}
	pl, err := popLock(path)
	if err != nil {
		return nil, fmt.Errorf("mbox: open %q of %q: %w", fn, a.name, err)
	}
	md := &maildrop{s: a.s, path: path, pop: pl}
	if err := md.load(ctx); err != nil {
		_ = pl.Close()
		return nil, fmt.Errorf("mbox: open %q of %q: %w", fn, a.name, err)
	}
	return md, nil
}

// maildrop is one locked folder and its snapshot.
type maildrop struct {
	s     *Store
	path  string
	pop   *os.File // the maildrop lock
	f     *os.File // the spool as it was at Open; nil if it did not exist
	snap  *snapshot
	index map[string]int
	done  bool
}

// load scans the spool under the delivery locks and keeps the descriptor.
func (m *maildrop) load(ctx context.Context) error {
	l, err := m.s.lockSpool(ctx, m.path, false)
	if err != nil {
		return err
	}
	if l.f == nil {
		l.release()
		m.snap = &snapshot{crc: 0}
		m.index = map[string]int{}
		return nil
	}
	fi, err := l.f.Stat()
	if err == nil {
		m.snap, err = scan(ctx, l.f, fi.Size(), m.s.opts.Flavour)
	}
	f := l.detach()
	if err != nil {
		_ = m.s.closeSpoolFile(m.path, f)
		return err
	}
	m.f = f
	m.index = make(map[string]int, len(m.snap.msgs))
	for i, r := range m.snap.msgs {
		m.index[r.uid] = i
	}
	return nil
}

func (m *maildrop) Messages(ctx context.Context) ([]mailstore.MessageInfo, error) {
	if m.done {
		return nil, mailstore.ErrSessionEnded
	}
	out := make([]mailstore.MessageInfo, len(m.snap.msgs))
	for i, r := range m.snap.msgs {
		out[i] = mailstore.MessageInfo{UID: r.uid, Size: r.size, Seen: r.seen}
	}
	return out, ctx.Err()
}

// OpenMessage streams the message from the snapshot descriptor through the
// unquoting and CRLF converters.
func (m *maildrop) OpenMessage(ctx context.Context, uid string) (io.ReadCloser, error) {
	if m.done {
		return nil, mailstore.ErrSessionEnded
	}
	i, ok := m.index[uid]
	if !ok {
		return nil, fmt.Errorf("mbox: uid %q: %w", uid, mailstore.ErrNoSuchMessage)
	}
	r := m.snap.msgs[i]
	return io.NopCloser(&ctxReader{ctx: ctx, r: messageReader(m.f, r, m.s.opts.Flavour)}), nil
}

// messageReader returns the served form of message r of the spool ra.
func messageReader(ra io.ReaderAt, r msgRec, f Flavour) io.Reader {
	sec := io.NewSectionReader(ra, r.content, r.end-r.content)
	return mailstore.NewCRLFReader(newUnquoteReader(sec, f))
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (m *maildrop) Close() error {
	if m.done {
		return nil
	}
	m.done = true
	return m.release()
}

// release closes the snapshot descriptor and drops the maildrop lock.
func (m *maildrop) release() error {
	var errs []error
	if m.f != nil {
		errs = append(errs, m.s.closeSpoolFile(m.path, m.f))
		m.f = nil
	}
	errs = append(errs, m.pop.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("mbox: releasing %s: %w", m.path, err)
	}
	return nil
}
