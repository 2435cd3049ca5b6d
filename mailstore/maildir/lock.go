package maildir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"popgate/mailstore"
)

// lockName is the maildrop lock file in each folder directory. It holds
// "<pid> <host>\n" of the session that owns (or, with LockFlock, last
// owned) the folder.
const lockName = "popgate.lock"

// lockTmpPrefix names the temporary files a lock is built in before it is
// linked into place, so that the lock never exists without its content.
const lockTmpPrefix = "popgate.lock.tmp."

// folderLock is a held maildrop lock: the folder's token under our held
// name (LockRename) or a lock file of our own (LockDotlock), either of
// which a timer, not a goroutine, refreshes, so that an idle session costs
// no goroutine stack for its lock; or an flock on an open lock file
// (LockFlock).
type folderLock struct {
	path   string
	rename bool // LockRename: release renames the token back

	// LockFlock.
	s   *Store
	dir string
	f   *os.File

	// LockDotlock and LockRename.
	info  os.FileInfo // LockDotlock: of the lock file we created, to recognise it
	every time.Duration
	once  sync.Once

	mu       sync.Mutex // serialises refreshes with release
	timer    *time.Timer
	released bool
}

// lockSeq numbers the temporary dotlock files and the rename lock's held
// token names, so that each is unique within a process.
type lockSeq struct{ n atomic.Uint64 }

// acquireLock takes dir's maildrop lock with the configured method, or
// fails at once with ErrLocked.
func (s *Store) acquireLock(dir string) (*folderLock, error) {
	switch s.opts.LockMethod {
	case LockDotlock:
		return s.acquireDotlock(dir)
	case LockFlock:
		return s.acquireFlock(dir)
	}
	return s.acquireRename(dir)
}

// acquireFlock opens (creating it the first time) dir's lock file and
// takes an exclusive flock on it without waiting. The holder's pid and
// host are written into it for the error message of whoever finds it
// held. The file is never removed: removing a lock file that another
// process has open would let two holders lock two different files.
func (s *Store) acquireFlock(dir string) (*folderLock, error) {
	path := filepath.Join(dir, lockName)
	s.heldMu.Lock()
	if s.held[dir] {
		s.heldMu.Unlock()
		return nil, fmt.Errorf("maildir: %s held by another session of this process (pid %d): %w", dir, s.pid, mailstore.ErrLocked)
	}
	s.held[dir] = true
	s.heldMu.Unlock()
	unheld := func() {
		s.heldMu.Lock()
		delete(s.held, dir)
		s.heldMu.Unlock()
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		unheld()
		return nil, fmt.Errorf("maildir: opening lock %s: %w", path, err)
	}
	if err := flockExclusive(f); err != nil {
		var holder string
		if errors.Is(err, errLockHeld) {
			buf := make([]byte, 128)
			n, _ := f.ReadAt(buf, 0)
			holder = strings.TrimSpace(string(buf[:n]))
		}
		_ = f.Close()
		unheld()
		if errors.Is(err, errLockHeld) {
			if holder == "" {
				holder = "another process"
			}
			return nil, fmt.Errorf("maildir: %s held by %s: %w", dir, holder, mailstore.ErrLocked)
		}
		return nil, fmt.Errorf("maildir: locking %s (file systems without flock need the dotlock method): %w", path, err)
	}
	content := strconv.Itoa(s.pid) + " " + s.host + "\n"
	if _, err := f.WriteAt([]byte(content), 0); err == nil {
		_ = f.Truncate(int64(len(content)))
	}
	return &folderLock{path: path, s: s, dir: dir, f: f}, nil
}

// errLockHeld is what flockExclusive returns when another holder has the
// lock.
var errLockHeld = errors.New("lock held")

// acquireDotlock takes dir's maildrop lock file or fails at once with
// ErrLocked. A lock whose holder is dead (same host, no such pid) or whose
// file has not been refreshed for stale is broken. The returned lock
// refreshes its modification time every stale/4 until released.
func (s *Store) acquireDotlock(dir string) (*folderLock, error) {
	path := filepath.Join(dir, lockName)
	content := []byte(strconv.Itoa(s.pid) + " " + s.host + "\n")
	for attempt := 0; attempt < 3; attempt++ {
		info, err := s.createLock(dir, path, content)
		if err == nil {
			l := &folderLock{path: path, info: info, every: s.opts.StaleLockTimeout / 4}
			l.startRefresh()
			return l, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("maildir: creating lock %s: %w", path, err)
		}
		stale, holder, st := s.lockIsStale(path)
		if st == nil {
			continue // vanished meanwhile: try again
		}
		if !stale {
			return nil, fmt.Errorf("maildir: %s held by %s: %w", dir, holder, mailstore.ErrLocked)
		}
		s.log.Warn().Str("lock", path).Str("holder", holder).Msg("breaking stale maildrop lock")
		if err := breakLock(path, st, s.pid, s.lockSeq.n.Add(1)); err != nil {
			return nil, fmt.Errorf("maildir: breaking stale lock %s: %w", path, err)
		}
	}
	return nil, fmt.Errorf("maildir: %s: lock contended: %w", dir, mailstore.ErrLocked)
}

// createLock creates the lock with its content in one atomic step. The
// lock is a symbolic link whose target is the content ("<pid> <host>"):
// symlink(2) fails if the lock exists, needs no file descriptor and no
// data block, and costs one system call. Where symbolic links are not
// supported, the content goes to a temporary file that is then
// hard-linked to the lock name, and where hard links are not supported
// either, O_CREAT|O_EXCL is used.
func (s *Store) createLock(dir, path string, content []byte) (os.FileInfo, error) {
	err := os.Symlink(strings.TrimSpace(string(content)), path)
	if err == nil {
		return os.Lstat(path)
	}
	if errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return s.createLockFile(dir, path, content)
}

// createLockFile is createLock for file systems without symbolic links.
func (s *Store) createLockFile(dir, path string, content []byte) (os.FileInfo, error) {
	tmp := filepath.Join(dir, lockTmpPrefix+strconv.Itoa(s.pid)+"."+strconv.FormatUint(s.lockSeq.n.Add(1), 10))
	// The content needs no fsync: after a system crash every holder is
	// dead, and a lock without content is broken by age.
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		_ = os.Remove(tmp)
		return nil, err
	}
	defer os.Remove(tmp)
	err := os.Link(tmp, path)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		f, err2 := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err2 != nil {
			return nil, err2
		}
		_, werr := f.Write(content)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			_ = os.Remove(path)
			return nil, werr
		}
	} else if err != nil {
		return nil, err
	}
	return os.Lstat(path)
}

// readLock returns the holder written in a lock: a symbolic link's target,
// or a lock file's content.
func readLock(path string, st os.FileInfo) (string, error) {
	if st.Mode()&fs.ModeSymlink != 0 {
		return os.Readlink(path)
	}
	data, err := os.ReadFile(path)
	return string(data), err
}

// lockIsStale reads an existing lock. It returns st == nil if the lock
// vanished.
func (s *Store) lockIsStale(path string) (stale bool, holder string, st os.FileInfo) {
	st, err := os.Lstat(path)
	if err != nil {
		return false, "", nil
	}
	data, err := readLock(path, st)
	if err != nil {
		return false, "unreadable lock", st
	}
	holder = strings.TrimSpace(data)
	if time.Since(st.ModTime()) > s.opts.StaleLockTimeout {
		return true, holder, st
	}
	pidStr, host, _ := strings.Cut(holder, " ")
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		// A lock we cannot read is only broken by age.
		return false, holder, st
	}
	if host == s.host && pid != s.pid && !processAlive(pid) {
		return true, holder, st
	}
	return false, holder, st
}

// breakLock removes a stale lock without ever removing a fresh one: the
// lock is first renamed aside (only one breaker can win), and the file
// renamed is deleted only if it is the one judged stale; otherwise it is
// put back.
func breakLock(path string, judged os.FileInfo, pid int, n uint64) error {
	aside := path + ".stale." + strconv.Itoa(pid) + "." + strconv.FormatUint(n, 10)
	if err := os.Rename(path, aside); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // someone else broke it
		}
		return err
	}
	got, err := os.Lstat(aside)
	if err == nil && os.SameFile(got, judged) {
		return os.Remove(aside)
	}
	// We moved a fresh lock: restore it unless a newer one exists.
	if err := os.Link(aside, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Remove(aside)
}

// startRefresh arms the timer that keeps the lock's modification time
// recent, so that a long session's lock is not taken for stale.
func (l *folderLock) startRefresh() {
	if l.every <= 0 {
		l.every = time.Minute
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = time.AfterFunc(l.every, l.refresh)
}

// refresh touches the lock file if it is still ours and re-arms the timer.
func (l *folderLock) refresh() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return
	}
	switch {
	case l.rename:
		// The held name is unique: if it exists, it is our token.
		now := time.Now()
		_ = os.Chtimes(l.path, now, now)
	default:
		if st, err := os.Lstat(l.path); err == nil && os.SameFile(st, l.info) {
			_ = touchLock(l.path, st)
		}
	}
	l.timer.Reset(l.every)
}

// release gives the lock up. It is idempotent. A dotlock is removed if it
// is still ours; a refresh running at the same time finishes first, and
// none runs after.
func (l *folderLock) release() error {
	var err error
	if l.f != nil {
		l.once.Do(func() {
			// Closing the file drops the flock.
			if cerr := l.f.Close(); cerr != nil {
				err = fmt.Errorf("maildir: releasing lock %s: %w", l.path, cerr)
			}
			l.s.heldMu.Lock()
			delete(l.s.held, l.dir)
			l.s.heldMu.Unlock()
		})
		return err
	}
	l.once.Do(func() {
		l.mu.Lock()
		l.released = true
		l.timer.Stop()
		l.mu.Unlock()
		if l.rename {
			err = l.releaseRename()
			return
		}
		st, serr := os.Lstat(l.path)
		if serr != nil || !os.SameFile(st, l.info) {
			return // broken by someone else: not ours to remove
		}
		if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = fmt.Errorf("maildir: removing lock %s: %w", l.path, rerr)
		}
	})
	return err
}

// removeLockTemps deletes temporary lock files whose creator is dead.
func (s *Store) removeLockTemps(dir string, entries []os.DirEntry) {
	for _, e := range entries {
		name := e.Name()
		rest, ok := strings.CutPrefix(name, lockTmpPrefix)
		if !ok {
			rest, ok = strings.CutPrefix(name, lockName+".stale.")
		}
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, ".")
		if pid, err := strconv.Atoi(pidStr); err == nil && pid != s.pid && !processAlive(pid) {
			_ = os.Remove(filepath.Join(dir, name))
		}
	}
}
