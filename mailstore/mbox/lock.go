package mbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"popgate/mailstore"
)

// Two kinds of lock guard a spool (see docs/mbox.md):
//
//   - The delivery locks, which MDAs and mail readers take too: the dotlock
//     PATH.lock (made with link(2), which fails if it exists; removed when older than StaleLockAge,
//     as liblockfile does) and then an fcntl(2) write lock on the spool.
//     They are held only while scanning, appending and committing.
//   - The maildrop lock, which only POP servers take: flock(2) on
//     DIR/.NAME.pop.lock, held for the whole session, never waited for.
//
// fcntl locks belong to the process and vanish when any descriptor of the
// file is closed, so the store also serialises its own lockers of a spool
// with a per-path semaphore, and closes spool descriptors only while
// holding it.

// sem returns the in-process semaphore of path.
func (s *Store) sem(path string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.sems[path]
	if !ok {
		c = make(chan struct{}, 1)
		s.sems[path] = c
	}
	return c
}

// closeSpoolFile closes a descriptor of path without dropping another
// goroutine's fcntl lock on it.
func (s *Store) closeSpoolFile(path string, f *os.File) error {
	c := s.sem(path)
	c <- struct{}{}
	defer func() { <-c }()
	return f.Close()
}

// spoolLock is a held set of delivery locks.
type spoolLock struct {
	sem  chan struct{}
	dot  string   // the dotlock file
	f    *os.File // the spool, fcntl-locked; nil if it does not exist
	done bool
}

// lockSpool takes the delivery locks of path and opens it read-write. If
// the spool does not exist it is created when create is set, and otherwise
// the locks are returned with f == nil.
func (s *Store) lockSpool(ctx context.Context, path string, create bool) (*spoolLock, error) {
	deadline := time.Now().Add(s.opts.LockTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	sem := s.sem(path)
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for spool %s: %w", path, ctx.Err())
	}
	l := &spoolLock{sem: sem}
	dot, err := s.dotlock(ctx, path, deadline)
	if err != nil {
		<-sem
		return nil, err
	}
	l.dot = dot
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		if !create && errors.Is(err, fs.ErrNotExist) {
			return l, nil
		}
		l.release()
		return nil, fmt.Errorf("opening spool: %w", err)
	}
	l.f = f
	if err := fcntlLock(ctx, f, deadline); err != nil {
		l.release()
		return nil, fmt.Errorf("spool %s: %w", path, err)
	}
	return l, nil
}

// release drops the locks and closes the spool.
func (l *spoolLock) release() error {
	f := l.detach()
	if f != nil {
		return f.Close()
	}
	return nil
}

// detach drops the locks but keeps the spool descriptor open and returns
// it. The caller must close it with Store.closeSpoolFile.
func (l *spoolLock) detach() *os.File {
	if l.done {
		return nil
	}
	l.done = true
	f := l.f
	if f != nil {
		lk := syscall.Flock_t{Type: syscall.F_UNLCK, Whence: 0}
		_ = syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk)
	}
	if l.dot != "" {
		_ = os.Remove(l.dot)
	}
	<-l.sem
	return f
}

// dotlock creates path.lock, waiting until deadline for another holder.
func (s *Store) dotlock(ctx context.Context, path string, deadline time.Time) (string, error) {
	lp := path + ".lock"
	// The lock is made by linking a file that already holds our pid, as
	// liblockfile does, so it is never seen empty (a crash between create
	// and write would otherwise leave an unexplained lock for minutes).
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".dotlock-*")
	if err != nil {
		return "", fmt.Errorf("creating dotlock: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	cerr := tmp.Close()
	if werr != nil || cerr != nil {
		return "", fmt.Errorf("writing dotlock: %w", errors.Join(werr, cerr))
	}
	_ = os.Chmod(tmp.Name(), 0o644)
	wait := 5 * time.Millisecond
	for {
		err := os.Link(tmp.Name(), lp)
		if err == nil {
			return lp, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("creating dotlock %s: %w", lp, err)
		}
		if staleDotlock(lp, s.opts.StaleLockAge) {
			_ = os.Remove(lp)
			continue
		}
		if err := sleep(ctx, deadline, wait); err != nil {
			return "", fmt.Errorf("dotlock %s: %w", lp, err)
		}
		wait = min(wait*2, 200*time.Millisecond)
	}
}

// staleDotlock reports whether the dotlock lp was left by a crashed
// program: it is older than maxAge (liblockfile's rule), or it names a
// process id of this host that no longer exists.
func staleDotlock(lp string, maxAge time.Duration) bool {
	fi, err := os.Stat(lp)
	if err != nil {
		return false
	}
	if time.Since(fi.ModTime()) > maxAge {
		return true
	}
	data, err := os.ReadFile(lp)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// fcntlLock takes a write lock on the whole of f, waiting until deadline.
func fcntlLock(ctx context.Context, f *os.File, deadline time.Time) error {
	wait := 5 * time.Millisecond
	for {
		lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0}
		err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EACCES) && !errors.Is(err, syscall.EINTR) {
			return fmt.Errorf("fcntl lock: %w", err)
		}
		if err := sleep(ctx, deadline, wait); err != nil {
			return fmt.Errorf("fcntl lock: %w", err)
		}
		wait = min(wait*2, 200*time.Millisecond)
	}
}

// sleep waits d, or fails with ErrSpoolBusy past deadline or ctx's error.
func sleep(ctx context.Context, deadline time.Time, d time.Duration) error {
	left := time.Until(deadline)
	if left <= 0 {
		return ErrSpoolBusy
	}
	t := time.NewTimer(min(d, left))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// popLockPath is the maildrop lock file of a spool.
func popLockPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".pop.lock")
}

// popLock takes the maildrop lock of path without waiting. The lock file
// is left in place on release (removing it would race with the next
// locker); it holds the pid of the last holder.
func popLock(path string) (*os.File, error) {
	lp := popLockPath(path)
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening maildrop lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("maildrop lock %s: %w", lp, mailstore.ErrLocked)
		}
		return nil, fmt.Errorf("maildrop lock %s: %w", lp, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
