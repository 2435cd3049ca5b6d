package maildir

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"popgate/mailstore"
)

// account is a logged-in user.
type account struct {
	s    *Store
	user string
	root string
}

func (a *account) User() string { return a.user }

// Folders lists INBOX and the Maildir++ subfolders: every directory ".Name"
// of the root that has a cur/ directory is the folder "Name".
func (a *account) Folders(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("maildir: folders of %q: %w", a.user, err)
	}
	entries, err := os.ReadDir(a.root)
	if err != nil {
		return nil, permanent(fmt.Errorf("maildir: folders of %q: %w", a.user, err))
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if len(n) < 2 || n[0] != '.' || n == ".." {
			continue
		}
		if st, err := os.Stat(filepath.Join(a.root, n, "cur")); err == nil && st.IsDir() {
			names = append(names, n[1:])
		}
	}
	sort.Strings(names)
	return append([]string{mailstore.Inbox}, names...), nil
}

// Open locks the folder and takes its snapshot.
func (a *account) Open(ctx context.Context, folder string) (mailstore.Maildrop, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("maildir: open %q: %w", folder, err)
	}
	dir, err := folderDir(a.root, folder)
	if err != nil {
		return nil, err
	}
	if dir != a.root {
		st, err := os.Stat(filepath.Join(dir, "cur"))
		if errors.Is(err, fs.ErrNotExist) || (err == nil && !st.IsDir()) {
			return nil, fmt.Errorf("maildir: folder %q of %q: %w", folder, a.user, mailstore.ErrNoSuchFolder)
		}
		if err != nil {
			return nil, permanent(fmt.Errorf("maildir: folder %q of %q: %w", folder, a.user, err))
		}
	}
	lock, err := a.s.acquireLock(dir)
	if err != nil {
		return nil, permanent(err)
	}
	md, err := a.s.snapshot(ctx, dir)
	if err != nil {
		_ = lock.release()
		return nil, fmt.Errorf("maildir: folder %q of %q: %w", mailstore.FolderName(folder), a.user, err)
	}
	md.lock = lock
	return md, nil
}

func (a *account) Close() error { return nil }

// message is one message of a snapshot.
type message struct {
	uid  string
	fn   fileName // current file name in cur/
	size int64
	seq  uint64 // place in delivery order
}

// maildrop is one locked folder.
type maildrop struct {
	s     *Store
	dir   string
	cur   string
	lock  *folderLock
	msgs  []message
	byUID map[string]int
	cache *cache
	// cacheDirty is set when the cache must be written at the end of the
	// session (sizes corrected, messages deleted).
	cacheDirty bool
	done       bool
}

// snapshot moves new/ to cur/, reconciles cur/ with the cache and returns
// the maildrop. The caller holds dir's lock.
func (s *Store) snapshot(ctx context.Context, dir string) (*maildrop, error) {
	cur, newDir := filepath.Join(dir, "cur"), filepath.Join(dir, "new")
	mtimeOf := func(d string) (int64, error) {
		st, err := os.Stat(d)
		if err != nil {
			return 0, permanent(fmt.Errorf("reading %s: %w", d, err))
		}
		return st.ModTime().UnixNano(), nil
	}
	// A folder directory without its subdirectories (a new user's empty
	// Maildir) gets cur/, new/ and tmp/ here, where a login finds one
	// missing, instead of three failing mkdir calls at every login.
	mtimeOrMake := func(d string) (int64, error) {
		t, err := mtimeOf(d)
		if errors.Is(err, fs.ErrNotExist) {
			if err := makeSubdirs(dir); err != nil {
				return 0, err
			}
			t, err = mtimeOf(d)
		}
		return t, err
	}
	newMtime, err := mtimeOrMake(newDir)
	if err != nil {
		return nil, err
	}
	curMtime, err := mtimeOrMake(cur)
	if err != nil {
		return nil, err
	}
	c, cerr := readCache(dir)
	if cerr != nil {
		s.log.Warn().Err(cerr).Str("dir", dir).Msg("rebuilding maildir cache")
	}
	if cerr == nil && c.entries == nil && c.stamp.reusable(curMtime, newMtime) {
		// Neither cur/ nor new/ has changed since a listing made when
		// they had been quiet for a while, and new/ had nothing to move
		// then: the cache's names are cur/'s, and no mail is waiting.
		s.listingsReused.Add(1)
		return s.reuseListing(dir, cur, c), nil
	}
	moved, err := s.moveNew(ctx, dir, cur)
	if err != nil {
		return nil, err
	}
	if moved > 0 {
		// The renames changed both directories: this listing cannot be
		// reused, and the next login lists new/ again.
		newMtime = 0
		if curMtime, err = mtimeOf(cur); err != nil {
			return nil, err
		}
	}
	// Temporary files left by a crash are removed whenever cur/ is
	// listed, which any change to the folder brings about.
	top, err := os.ReadDir(dir)
	if err != nil {
		return nil, permanent(fmt.Errorf("reading %s: %w", dir, err))
	}
	removeCacheTemps(dir, top)
	s.removeLockTemps(dir, top)
	listed := time.Now().UnixNano()
	entries, err := readDirUnsorted(cur)
	if err != nil {
		return nil, permanent(fmt.Errorf("reading %s: %w", cur, err))
	}
	idx := c.index()
	var dove map[string]dovecotEntry
	if s.opts.UIDLFormat == UIDLDovecot {
		if dove, err = dovecotUIDLs(dir); err != nil {
			s.log.Warn().Err(err).Str("dir", dir).Msg("ignoring dovecot-uidlist")
		}
	}

	present := make(map[string]fileName, len(entries))
	var fresh []fileName
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || e.IsDir() {
			continue
		}
		fn := parseName(name)
		if _, dup := present[fn.base]; dup {
			s.log.Warn().Str("dir", cur).Str("file", name).Msg("skipping second file with the same base name")
			continue
		}
		present[fn.base] = fn
		if _, ok := idx[fn.base]; !ok {
			fresh = append(fresh, fn)
		}
	}
	changed := cerr != nil
	// used (the UIDs taken) is needed only to name fresh messages.
	var used map[string]bool
	if len(fresh) > 0 {
		used = make(map[string]bool, len(idx)+len(fresh))
	}
	for base, e := range idx {
		fn, ok := present[base]
		if !ok {
			delete(idx, base)
			changed = true
			continue
		}
		if e.name != fn.name {
			e.name = fn.name // flags changed, or a version 1 entry
			idx[base] = e
			changed = true
		}
		if used != nil {
			used[e.uid] = true
		}
	}

	// Messages new to the cache are numbered in delivery order: Dovecot's
	// UID where it has one, else the time at the start of the name.
	sortFresh(fresh, dove)
	for k, fn := range fresh {
		if k%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("listing %s: %w", cur, err)
			}
		}
		size := fn.vsize
		if size < 0 {
			size, err = s.countSize(filepath.Join(cur, fn.name))
			if errors.Is(err, fs.ErrNotExist) {
				delete(present, fn.base) // removed by someone else meanwhile
				continue
			}
			if err != nil {
				return nil, err
			}
		}
		uid := ""
		if e, ok := dove[fn.base]; ok {
			uid = e.uidl
		}
		if uid == "" {
			uid = baseUID(fn.base)
		}
		if used[uid] {
			uid = hashedUID(fn.base)
		}
		if used[uid] {
			uid = hashedUID(fn.base + "\x00" + strconv.FormatUint(c.next, 10))
		}
		used[uid] = true
		idx[fn.base] = cacheEntry{seq: c.next, size: size, uid: uid, name: fn.name, base: fn.base}
		c.next++
		changed = true
	}
	// Record this listing; it is worth a write of its own only once it
	// can be reused.
	stamp := listStamp{curMtime: curMtime, newMtime: newMtime, listed: listed}
	if stamp != c.stamp {
		changed = changed || stamp.reusable(curMtime, newMtime)
		c.stamp = stamp
	}
	if changed {
		if err := c.write(dir, s.pid); err != nil {
			s.log.Warn().Err(err).Str("dir", dir).Msg("cannot save maildir cache")
		}
	}

	md := &maildrop{s: s, dir: dir, cur: cur, cache: c, msgs: make([]message, 0, len(present))}
	for base, fn := range present {
		e := idx[base]
		md.msgs = append(md.msgs, message{uid: e.uid, fn: fn, size: e.size, seq: e.seq})
	}
	slices.SortFunc(md.msgs, func(a, b message) int { return cmp.Compare(a.seq, b.seq) })
	md.byUID = make(map[string]int, len(md.msgs))
	for i, m := range md.msgs {
		md.byUID[m.uid] = i
	}
	return md, nil
}

// reuseListing builds the maildrop from the cache alone, without reading
// cur/: the cache's entries, in delivery order, are cur/'s files.
func (s *Store) reuseListing(dir, cur string, c *cache) *maildrop {
	md := &maildrop{s: s, dir: dir, cur: cur, cache: c, msgs: make([]message, len(c.list)), byUID: c.byUID}
	for i, e := range c.list {
		md.msgs[i] = message{uid: e.uid, fn: parseName(e.name), size: e.size, seq: e.seq}
	}
	return md
}

// readDirUnsorted lists dir in directory order: os.ReadDir would sort by
// name, which the snapshot does not need (it orders by delivery).
func readDirUnsorted(dir string) ([]os.DirEntry, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	return entries, nil
}

// moveNew moves every file of new/ to cur/, adding an empty ":2," info,
// and returns how many it moved.
func (s *Store) moveNew(ctx context.Context, dir, cur string) (int, error) {
	newDir := filepath.Join(dir, "new")
	entries, err := os.ReadDir(newDir)
	if err != nil {
		return 0, permanent(fmt.Errorf("reading %s: %w", newDir, err))
	}
	moved := 0
	for k, e := range entries {
		if k%256 == 0 {
			if err := ctx.Err(); err != nil {
				return moved, fmt.Errorf("moving new mail: %w", err)
			}
		}
		name := e.Name()
		if strings.HasPrefix(name, ".") || e.IsDir() {
			continue
		}
		err := os.Rename(filepath.Join(newDir, name), filepath.Join(cur, curName(name)))
		if errors.Is(err, fs.ErrNotExist) {
			continue // moved or removed by another program
		}
		if err != nil {
			return moved, permanent(fmt.Errorf("moving %s to cur/: %w", name, err))
		}
		moved++
	}
	if moved > 0 {
		if err := syncDir(cur); err != nil {
			return moved, err
		}
		if err := syncDir(newDir); err != nil {
			return moved, err
		}
	}
	return moved, nil
}

// countSize reads a message once to find the size of its CRLF form.
func (s *Store) countSize(path string) (int64, error) {
	s.sizeReads.Add(1)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, err
		}
		return 0, permanent(fmt.Errorf("sizing %s: %w", path, err))
	}
	defer f.Close()
	n, err := mailstore.CRLFSize(f)
	if err != nil {
		return 0, permanent(fmt.Errorf("sizing %s: %w", path, err))
	}
	return n, nil
}

func (m *maildrop) Messages(ctx context.Context) ([]mailstore.MessageInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("maildir: listing: %w", err)
	}
	out := make([]mailstore.MessageInfo, len(m.msgs))
	for i, msg := range m.msgs {
		out[i] = mailstore.MessageInfo{UID: msg.uid, Size: msg.size, Seen: msg.fn.seen()}
	}
	return out, nil
}

// locate finds the current name of message i when its file was renamed
// (flags changed by another program). It reports false if the message is
// gone.
func (m *maildrop) locate(i int, names map[string]string) (string, bool) {
	name, ok := names[m.msgs[i].fn.base]
	if ok {
		m.msgs[i].fn = parseName(name)
	}
	return name, ok
}

// currentNames maps base names to the file names now in cur/.
func (m *maildrop) currentNames() (map[string]string, error) {
	entries, err := os.ReadDir(m.cur)
	if err != nil {
		return nil, permanent(fmt.Errorf("reading %s: %w", m.cur, err))
	}
	out := make(map[string]string, len(entries))
	for _, e := range entries {
		fn := parseName(e.Name())
		if _, dup := out[fn.base]; !dup {
			out[fn.base] = e.Name()
		}
	}
	return out, nil
}

func (m *maildrop) OpenMessage(ctx context.Context, uid string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("maildir: opening %q: %w", uid, err)
	}
	i, ok := m.byUID[uid]
	if !ok {
		return nil, fmt.Errorf("maildir: uid %q: %w", uid, mailstore.ErrNoSuchMessage)
	}
	r := &msgReader{ctx: ctx, md: m, i: i}
	err := r.file.open(filepath.Join(m.cur, m.msgs[i].fn.name))
	if errors.Is(err, fs.ErrNotExist) {
		names, nerr := m.currentNames()
		if nerr != nil {
			return nil, fmt.Errorf("maildir: opening %q: %w", uid, nerr)
		}
		name, ok := m.locate(i, names)
		if !ok {
			return nil, fmt.Errorf("maildir: uid %q was removed by another program: %w", uid, mailstore.ErrNoSuchMessage)
		}
		err = r.file.open(filepath.Join(m.cur, name))
	}
	if err != nil {
		return nil, permanent(fmt.Errorf("maildir: opening %q: %w", uid, err))
	}
	r.src = sizedFile{f: &r.file, left: m.msgs[i].fn.size}
	r.r = mailstore.NewCRLFReaderSize(&r.src, m.msgs[i].size)
	return r, nil
}

// sizedFile reads a message file whose length is known from its ,S= field
// (left < 0 if not). A regular file returns fewer octets than asked for
// only at its end, so a read that had room for more and brings the octets
// read to exactly ,S= has reached the end: it reports io.EOF with its
// data, which spares the read that would only return 0. A file longer
// than its ,S= field fills the room and is read to its real end.
type sizedFile struct {
	f    *msgFile
	left int64
}

func (s *sizedFile) Read(p []byte) (int, error) {
	n, err := s.f.Read(p)
	if s.left < 0 {
		return n, err
	}
	if err == nil && n > 0 && int64(n) == s.left && n < len(p) {
		s.left = 0
		return n, io.EOF
	}
	s.left -= int64(n)
	if s.left < 0 || err != nil {
		s.left = -1
	}
	return n, err
}

// msgReader streams a message's CRLF form and notices when the announced
// size (from a ,W= field) was wrong, so the cache can be corrected for the
// next session.
type msgReader struct {
	ctx  context.Context
	file msgFile
	src  sizedFile
	r    io.Reader
	md   *maildrop
	i    int
	n    int64
}

func (r *msgReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, fmt.Errorf("maildir: reading message: %w", err)
	}
	n, err := r.r.Read(p)
	r.n += int64(n)
	if errors.Is(err, io.EOF) {
		r.md.correct(r.i, r.n)
	}
	return n, err
}

func (r *msgReader) Close() error { return r.file.Close() }

// correct records the real CRLF size of message i when it differs from
// the one announced.
func (m *maildrop) correct(i int, size int64) {
	msg := m.msgs[i]
	if msg.size == size || m.done {
		return
	}
	m.s.log.Warn().Str("dir", m.cur).Str("file", msg.fn.name).Int64("announced", msg.size).Int64("actual", size).
		Msg("message size differs from its ,W= field; cache corrected")
	idx := m.cache.index()
	if e, ok := idx[msg.fn.base]; ok {
		e.size = size
		idx[msg.fn.base] = e
		m.cacheDirty = true
	}
}

// Commit unlinks the deleted messages, adds the S flag to the seen ones,
// fsyncs cur/ and releases the lock. A file that vanished meanwhile is
// skipped; other failures do not stop the remaining changes.
func (m *maildrop) Commit(ctx context.Context, c mailstore.Changes) error {
	if m.done {
		return mailstore.ErrSessionEnded
	}
	m.done = true
	var errs []error
	var names map[string]string // current cur/ names, read on the first miss
	lookup := func(i int) (string, bool) {
		if names == nil {
			var err error
			if names, err = m.currentNames(); err != nil {
				errs = append(errs, err)
				names = map[string]string{}
			}
		}
		return m.locate(i, names)
	}
	deleted := make(map[int]bool, len(c.Deleted))
	changed := false
	for _, uid := range c.Deleted {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("maildir: commit interrupted: %w", err))
			break
		}
		i, ok := m.byUID[uid]
		if !ok {
			continue // not in this snapshot: nothing of it to remove
		}
		deleted[i] = true
		err := m.s.commitRemove(filepath.Join(m.cur, m.msgs[i].fn.name))
		if errors.Is(err, fs.ErrNotExist) {
			if name, ok := lookup(i); ok {
				err = m.s.commitRemove(filepath.Join(m.cur, name))
			} else {
				err = nil
			}
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("maildir: deleting %s: %w", m.msgs[i].fn.name, err))
			continue
		}
		delete(m.cache.index(), m.msgs[i].fn.base)
		m.cacheDirty = true
		changed = true
	}
	for _, uid := range c.Seen {
		if ctx.Err() != nil {
			break
		}
		i, ok := m.byUID[uid]
		if !ok || deleted[i] || m.msgs[i].fn.seen() {
			continue
		}
		fn := m.msgs[i].fn
		err := m.s.commitRename(filepath.Join(m.cur, fn.name), filepath.Join(m.cur, fn.withFlag('S')))
		if errors.Is(err, fs.ErrNotExist) {
			if name, ok := lookup(i); ok {
				fn = parseName(name)
				err = m.s.commitRename(filepath.Join(m.cur, fn.name), filepath.Join(m.cur, fn.withFlag('S')))
			} else {
				err = nil
			}
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("maildir: marking %s seen: %w", fn.name, err))
			continue
		}
		changed = true
	}
	if changed {
		if err := syncDir(m.cur); err != nil {
			errs = append(errs, fmt.Errorf("maildir: commit: %w", err))
		}
	}
	m.saveCache()
	if err := m.lock.release(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// saveCache writes the cache if the session changed it. The cache only
// saves work, so a failure is logged, not returned.
func (m *maildrop) saveCache() {
	if !m.cacheDirty {
		return
	}
	m.cacheDirty = false
	if err := m.cache.write(m.dir, m.s.pid); err != nil {
		m.s.log.Warn().Err(err).Str("dir", m.dir).Msg("cannot save maildir cache")
	}
}

// Close releases the lock and changes no message.
func (m *maildrop) Close() error {
	if m.done {
		return nil
	}
	m.done = true
	m.saveCache()
	return m.lock.release()
}

// sortFresh puts files new to the cache in delivery order: those with a
// Dovecot UID first, by that UID; then by the seconds and microseconds at
// the start of the name; then by base name, which is unique, so the order
// is total. Each file's key is computed once: parsing the names inside
// the comparison took 42% of a cold 100 000-message login.
func sortFresh(fresh []fileName, dove map[string]dovecotEntry) {
	type key struct {
		hasDove     bool
		imapUID     uint32
		secs, usecs int64
		fn          fileName
	}
	keys := make([]key, len(fresh))
	for i, fn := range fresh {
		k := key{fn: fn}
		if d, ok := dove[fn.base]; ok {
			k.hasDove, k.imapUID = true, d.imapUID
		}
		k.secs, k.usecs = deliveryOrder(fn.base)
		keys[i] = k
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.hasDove != b.hasDove {
			if a.hasDove {
				return -1
			}
			return 1
		}
		if a.hasDove && a.imapUID != b.imapUID {
			return cmp.Compare(a.imapUID, b.imapUID)
		}
		if c := cmp.Compare(a.secs, b.secs); c != 0 {
			return c
		}
		if c := cmp.Compare(a.usecs, b.usecs); c != 0 {
			return c
		}
		return strings.Compare(a.fn.base, b.fn.base)
	})
	for i := range keys {
		fresh[i] = keys[i].fn
	}
}
