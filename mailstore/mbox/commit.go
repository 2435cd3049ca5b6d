package mbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"popgate/mailstore"
)

// appendMessage appends msg to the spool at path as an MDA does.
func (s *Store) appendMessage(ctx context.Context, path string, msg []byte) error {
	l, err := s.lockSpool(ctx, path, true)
	if err != nil {
		return err
	}
	defer l.release()
	fi, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("stat spool: %w", err)
	}
	size := fi.Size()
	body := lfForm(msg)
	buf := make([]byte, 0, len(body)+len(body)/64+96)
	// The message before must end with an empty line, or this "From " line
	// would not be a separator. What is added changes nothing served.
	if size > 0 {
		var tail [3]byte
		n := min(size, 3)
		if _, err := l.f.ReadAt(tail[3-n:], size-n); err != nil {
			return fmt.Errorf("reading spool end: %w", err)
		}
		switch t := tail[:]; {
		case t[2] == '\r':
			buf = append(buf, "\r\n\n"...)
		case t[2] != '\n':
			buf = append(buf, "\n\n"...)
		case size == 1, t[1] == '\n', size == 2 && t[1] == '\r', t[0] == '\n' && t[1] == '\r':
			// already ends with an empty line
		default:
			buf = append(buf, '\n')
		}
	}
	buf = append(buf, "From MAILER-DAEMON "...)
	buf = append(buf, s.opts.Now().Format("Mon Jan _2 15:04:05 2006")...)
	buf = append(buf, '\n')
	buf = quote(buf, body, s.opts.Flavour)
	buf = append(buf, '\n')
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := l.f.WriteAt(buf, size); err != nil {
		_ = l.f.Truncate(size)
		return fmt.Errorf("appending: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		_ = l.f.Truncate(size)
		return fmt.Errorf("syncing spool: %w", err)
	}
	return nil
}

// Commit removes c.Deleted and marks c.Seen (per Options.WriteStatus),
// then releases the maildrop lock. See commit for the algorithm.
func (m *maildrop) Commit(ctx context.Context, c mailstore.Changes) error {
	if m.done {
		return mailstore.ErrSessionEnded
	}
	m.done = true
	err := m.commit(ctx, c)
	if rerr := m.release(); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		return fmt.Errorf("mbox: commit %s: %w", m.path, err)
	}
	return nil
}

// commit applies c under the delivery locks: it checks that the snapshot
// region of the spool is unchanged (ErrSpoolChanged if not: nothing is
// deleted), then truncates the spool when only trailing messages go and
// nothing else changes, or else writes kept messages and any mail appended
// since the snapshot to a temporary file and renames it over the spool.
func (m *maildrop) commit(ctx context.Context, c mailstore.Changes) error {
	msgs := m.snap.msgs
	del := make([]bool, len(msgs))
	nd := 0
	for _, uid := range c.Deleted {
		if i, ok := m.index[uid]; ok && !del[i] {
			del[i] = true
			nd++
		}
	}
	mark := make([]bool, len(msgs))
	nm := 0
	policy := m.s.opts.WriteStatus
	if policy == StatusAlways || (policy == StatusWithDeletions && nd > 0) {
		for _, uid := range c.Seen {
			if i, ok := m.index[uid]; ok && !del[i] && !mark[i] && !msgs[i].seen && msgs[i].hdrEnd >= 0 {
				mark[i] = true
				nm++
			}
		}
	}
	if nd == 0 && nm == 0 {
		return nil
	}
	l, err := m.s.lockSpool(ctx, m.path, false)
	if err != nil {
		return err
	}
	defer l.release()
	if l.f == nil {
		return fmt.Errorf("spool was removed: %w", ErrSpoolChanged)
	}
	fi, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("stat spool: %w", err)
	}
	if fi.Size() < m.snap.size {
		return fmt.Errorf("spool shrank from %d to %d octets: %w", m.snap.size, fi.Size(), ErrSpoolChanged)
	}
	if cut := truncationPoint(msgs, del, nd); nm == 0 && fi.Size() == m.snap.size && cut >= 0 {
		return m.truncate(ctx, l.f, cut)
	}
	return m.rewrite(ctx, l.f, fi, del, mark)
}

// truncationPoint is where the spool can be cut when the deleted messages
// are exactly the last ones, or -1.
func truncationPoint(msgs []msgRec, del []bool, nd int) int64 {
	k := len(msgs)
	for k > 0 && del[k-1] {
		k--
	}
	if nd == 0 || len(msgs)-k != nd {
		return -1
	}
	return msgs[k].start
}

// truncate cuts the spool at cut after checking the snapshot region.
func (m *maildrop) truncate(ctx context.Context, f *os.File, cut int64) error {
	crc := crc32.New(castagnoli)
	if _, err := io.Copy(crc, io.NewSectionReader(f, 0, m.snap.size)); err != nil {
		return fmt.Errorf("checking spool: %w", err)
	}
	if crc.Sum32() != m.snap.crc {
		return fmt.Errorf("snapshot region differs: %w", ErrSpoolChanged)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := f.Truncate(cut); err != nil {
		return fmt.Errorf("truncating spool: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing spool: %w", err)
	}
	return nil
}

const tmpInfix = ".popgate-"

// rewrite writes the new spool beside the old one and renames it over.
func (m *maildrop) rewrite(ctx context.Context, f *os.File, fi os.FileInfo, del, mark []bool) (err error) {
	dir, base := filepath.Dir(m.path), filepath.Base(m.path)
	removeLeftovers(dir, "."+base+tmpInfix)
	tmp, err := os.CreateTemp(dir, "."+base+tmpInfix+"*")
	if err != nil {
		return fmt.Errorf("creating temporary spool: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		return fmt.Errorf("setting mode of temporary spool: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		_ = tmp.Chown(int(st.Uid), int(st.Gid)) // best effort: needs privilege
	}
	crc := crc32.New(castagnoli)
	src := bufio.NewReaderSize(io.TeeReader(io.NewSectionReader(f, 0, m.snap.size), crc), 256*1024)
	w := bufio.NewWriterSize(tmp, 256*1024)
	buf := make([]byte, 64*1024)
	msgs := m.snap.msgs
	if err := copyN(w, src, msgs[0].start, buf); err != nil {
		return err
	}
	for i, r := range msgs {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case del[i]:
			err = copyN(io.Discard, src, r.next-r.start, buf)
		case mark[i]:
			err = writeSeen(w, src, r, buf)
		default:
			err = copyN(w, src, r.next-r.start, buf)
		}
		if err != nil {
			return err
		}
	}
	if crc.Sum32() != m.snap.crc {
		return fmt.Errorf("snapshot region differs: %w", ErrSpoolChanged)
	}
	// Mail delivered since the snapshot, byte for byte, up to the end.
	if _, err := io.CopyBuffer(writerOnly{w}, io.NewSectionReader(f, m.snap.size, 1<<62), buf); err != nil {
		return fmt.Errorf("copying new mail: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing temporary spool: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("syncing temporary spool: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing temporary spool: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), m.path); err != nil {
		return fmt.Errorf("replacing spool: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("spool replaced, but syncing its directory: %w", err)
	}
	return nil
}

// copyN copies exactly n octets through buf (so that copying message
// after message allocates nothing).
func copyN(w io.Writer, r io.Reader, n int64, buf []byte) error {
	got, err := io.CopyBuffer(writerOnly{w}, io.LimitReader(r, n), buf)
	if err == nil && got != n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return fmt.Errorf("copying spool: %w", err)
	}
	return nil
}

// writerOnly hides a ReadFrom method, which would bypass the buffer.
type writerOnly struct{ io.Writer }

// writeSeen copies message r with its Status header replaced by
// "Status: RO" (read, old), as mail readers write it.
func writeSeen(w *bufio.Writer, src io.Reader, r msgRec, buf []byte) error {
	if err := copyN(w, src, r.content-r.start, buf); err != nil {
		return err
	}
	hdr := bufio.NewReaderSize(io.LimitReader(src, r.hdrEnd-r.content), 4096)
	skipping, atStart := false, true
	for {
		frag, err := hdr.ReadSlice('\n')
		if len(frag) > 0 {
			if atStart && frag[0] != ' ' && frag[0] != '\t' {
				skipping = len(frag) >= 7 && strings.EqualFold(string(frag[:7]), "Status:")
			}
			if !skipping {
				w.Write(frag)
			}
			atStart = frag[len(frag)-1] == '\n'
		}
		if err == nil || errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		return fmt.Errorf("copying header: %w", err)
	}
	nl := []byte("\n")
	if r.hdrCRLF {
		nl = crlf
	}
	w.Write(bytes.Join([][]byte{[]byte("Status: RO"), nl}, nil))
	return copyN(w, src, r.next-r.hdrEnd, buf)
}

// removeLeftovers removes temporary spools left by a crash. The caller
// holds the dotlock, so no other commit of this spool is running.
func removeLeftovers(dir, prefix string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	return errors.Join(serr, cerr)
}
