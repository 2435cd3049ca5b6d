//go:build unix

package maildir

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// flockExclusive takes an exclusive flock on f without waiting. It
// returns errLockHeld if another open file holds one.
func flockExclusive(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
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

// openMessageFile opens a message file for reading. os.Open would try to
// register a regular file with the network poller (three fcntl and
// epoll_ctl calls that fail or undo each other on Linux); a RETR-heavy
// session opens one file per message, so the raw open saves them.
func openMessageFile(path string) (*os.File, error) {
	return openRaw(path, syscall.O_RDONLY, 0)
}

// openRaw is os.OpenFile without the poller round trip, for regular
// files.
func openRaw(path string, flag int, perm uint32) (*os.File, error) {
	for {
		fd, err := syscall.Open(path, flag|syscall.O_CLOEXEC, perm)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}
