//go:build unix

package maildir

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// flockExclusive takes an exclusive flock on f without waiting. It
// returns errLockHeld if another open file holds one.
func flockExclusive(f *os.File) error { return flockFD(int(f.Fd())) }

// flockFD is flockExclusive for a bare descriptor.
func flockFD(fd int) error {
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return errLockHeld
		default:
			return err
		}
	}
}

// msgFile is a message file open for reading, as a bare descriptor.
// os.NewFile would add an fcntl call (to learn whether the descriptor is
// non-blocking), a finalizer and the poller's reference counting to every
// message a session reads (the fcntl alone was 5% of the server's time
// in a fetchall profile). The owner must Close it.
type msgFile struct {
	fd     int
	path   string
	isOpen bool
}

// open opens path read-only.
func (f *msgFile) open(path string) error {
	fd, err := openFD(path, syscall.O_RDONLY, 0)
	if err != nil {
		return err
	}
	f.fd, f.path, f.isOpen = fd, path, true
	return nil
}

// openFD is open(2) with O_CLOEXEC, retried on EINTR, for the bare
// descriptors of msgFile and guardFile.
func openFD(path string, flags int, perm uint32) (int, error) {
	for {
		fd, err := syscall.Open(path, flags|syscall.O_CLOEXEC, perm)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}

// size returns the file's size (fstat).
func (f *msgFile) size() (int64, error) {
	var st syscall.Stat_t
	for {
		err := syscall.Fstat(f.fd, &st)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 0, &fs.PathError{Op: "stat", Path: f.path, Err: err}
		}
		return st.Size, nil
	}
}

// Read reads like os.File.Read: io.EOF at the end of the file.
func (f *msgFile) Read(p []byte) (int, error) {
	if !f.isOpen {
		return 0, &fs.PathError{Op: "read", Path: f.path, Err: fs.ErrClosed}
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := syscall.Read(f.fd, p)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 0, &fs.PathError{Op: "read", Path: f.path, Err: err}
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

// Close closes the descriptor; a second Close is an error and does
// nothing.
func (f *msgFile) Close() error {
	if !f.isOpen {
		return &fs.PathError{Op: "close", Path: f.path, Err: fs.ErrClosed}
	}
	f.isOpen = false
	if err := syscall.Close(f.fd); err != nil {
		return &fs.PathError{Op: "close", Path: f.path, Err: err}
	}
	return nil
}

// renameFile is os.Rename without its Lstat of newpath (which only checks
// that newpath is not a directory): the lock renames a token file between
// names it owns, and the Lstat was 43% of each rename's time in the login
// profile.
func renameFile(oldpath, newpath string) error {
	for {
		err := syscall.Rename(oldpath, newpath)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
		}
		return nil
	}
}

// guardFile is an open lock guard file (see lockGuard), as a bare
// descriptor: it is opened and closed twice per session, and os.NewFile
// would add an fcntl call and a finalizer each time.
type guardFile struct{ fd int }

// openGuard opens (creating) the guard file at path.
func openGuard(path string) (guardFile, error) {
	fd, err := openFD(path, syscall.O_RDWR|syscall.O_CREAT, 0o600)
	return guardFile{fd: fd}, err
}

// tryLock takes an exclusive flock without waiting; errLockHeld if
// another open file holds one.
func (g guardFile) tryLock() error { return flockFD(g.fd) }

// Close closes the descriptor, which releases the flock.
func (g guardFile) Close() error { return syscall.Close(g.fd) }
