package maildir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"popgate/mailstore"
)

// The rename lock (LockRename). Each folder directory holds one token
// file, which exists under one of two kinds of name:
//
//	popgate.lock.free                    nobody holds the folder
//	popgate.lock.held.<pid>.<host>.<n>   a session of process pid on host holds it
//
// A session takes the folder by renaming the token from its free name to
// its own held name and gives it back by renaming it again. rename(2) is
// atomic, so exactly one of two racing sessions can succeed, and it
// creates no inode and needs no file descriptor while the session lasts.
// Creating and removing a lock file per session (LockDotlock) costs two
// inode allocations' worth of journal work, which on a busy ext4 took
// about 190 us per login.
//
// Every rename of the token, and the slow path that creates the token or
// takes it from a dead holder, runs under a short flock(2) on a permanent
// guard file, popgate.lock.guard, held for a few system calls. Under the
// guard a directory listing sees the token under a stable name, so a
// token that is merely being renamed is never taken for a missing one,
// and two tokens never exist.
const (
	lockFreeName   = "popgate.lock.free"
	lockHeldPrefix = "popgate.lock.held."
	lockGuardName  = "popgate.lock.guard"
)

// guardWait bounds the wait for another session's guard, which is held
// only for a few system calls.
const guardWait = 5 * time.Second

// lockGuard takes dir's guard: an flock on the permanent guard file. The
// caller closes the file to release it.
func lockGuard(dir string) (guardFile, error) {
	path := filepath.Join(dir, lockGuardName)
	g, err := openGuard(path)
	if err != nil {
		return g, fmt.Errorf("opening lock guard %s: %w", path, err)
	}
	deadline := time.Now().Add(guardWait)
	for pause := 50 * time.Microsecond; ; pause = min(2*pause, 10*time.Millisecond) {
		err := g.tryLock()
		if err == nil {
			return g, nil
		}
		if !errors.Is(err, errLockHeld) {
			_ = g.Close()
			return g, fmt.Errorf("locking guard %s (file systems without flock need the dotlock method): %w", path, err)
		}
		if time.Now().After(deadline) {
			_ = g.Close()
			return g, fmt.Errorf("lock guard %s held for over %v: %w", path, guardWait, mailstore.ErrLocked)
		}
		time.Sleep(pause)
	}
}

// heldHolder parses a held token's name into the holder's pid and host.
func heldHolder(name string) (pid int, host string, ok bool) {
	rest, ok := strings.CutPrefix(name, lockHeldPrefix)
	if !ok {
		return 0, "", false
	}
	pidStr, rest, ok1 := strings.Cut(rest, ".")
	i := strings.LastIndexByte(rest, '.')
	pid, err := strconv.Atoi(pidStr)
	if !ok1 || i <= 0 || err != nil || pid <= 0 {
		return 0, "", false
	}
	return pid, rest[:i], true
}

// acquireRename takes dir's token or fails at once with ErrLocked.
func (s *Store) acquireRename(dir string) (*folderLock, error) {
	guard, err := lockGuard(dir)
	if err != nil {
		return nil, fmt.Errorf("maildir: %w", err)
	}
	defer func() { _ = guard.Close() }()
	free := filepath.Join(dir, lockFreeName)
	mine := filepath.Join(dir, lockHeldPrefix+strconv.Itoa(s.pid)+"."+s.host+"."+strconv.FormatUint(s.lockSeq.n.Add(1), 10))
	// A held name is unique (pid, host, sequence number), so it names our
	// token for as long as it exists: no identity check is needed later.
	// rename(2) keeps the token's modification time, which may be old:
	// it is set now, or the token would look stale to the next comer.
	took := func() (*folderLock, error) {
		now := time.Now()
		if err := os.Chtimes(mine, now, now); err != nil {
			_ = renameFile(mine, free)
			return nil, fmt.Errorf("maildir: lock %s: %w", mine, err)
		}
		l := &folderLock{path: mine, rename: true, dir: dir, every: s.opts.StaleLockTimeout / 4}
		l.startRefresh()
		return l, nil
	}
	err = renameFile(free, mine)
	if err == nil {
		return took()
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("maildir: taking lock %s: %w", free, err)
	}
	// The token is held, or was never made. Under the guard nobody
	// renames it, so the listing is exact.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("maildir: looking for the lock in %s: %w", dir, err)
	}
	for _, e := range entries {
		pid, host, ok := heldHolder(e.Name())
		if !ok {
			continue
		}
		held := filepath.Join(dir, e.Name())
		holder := strconv.Itoa(pid) + " " + host
		st, err := os.Lstat(held)
		if err != nil {
			return nil, fmt.Errorf("maildir: lock %s: %w", held, err)
		}
		dead := host == s.host && pid != s.pid && !processAlive(pid)
		if !dead && time.Since(st.ModTime()) <= s.opts.StaleLockTimeout {
			return nil, fmt.Errorf("maildir: %s held by %s: %w", dir, holder, mailstore.ErrLocked)
		}
		s.log.Warn().Str("lock", held).Str("holder", holder).Msg("breaking stale maildrop lock")
		if err := renameFile(held, mine); err != nil {
			return nil, fmt.Errorf("maildir: breaking stale lock %s: %w", held, err)
		}
		return took()
	}
	// No token at all: this folder was never locked. Make one.
	f, err := os.OpenFile(free, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("maildir: creating lock %s: %w", free, err)
	}
	_ = f.Close()
	if err := renameFile(free, mine); err != nil {
		return nil, fmt.Errorf("maildir: taking lock %s: %w", free, err)
	}
	return took()
}

// releaseRename gives the token back, if it is still ours: a session on
// another host may have taken it over as stale, renaming it away from our
// held name.
func (l *folderLock) releaseRename() error {
	guard, err := lockGuard(l.dir)
	if err != nil {
		return fmt.Errorf("maildir: releasing lock %s: %w", l.path, err)
	}
	defer func() { _ = guard.Close() }()
	err = renameFile(l.path, filepath.Join(l.dir, lockFreeName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("maildir: releasing lock %s: %w", l.path, err)
	}
	return nil
}
