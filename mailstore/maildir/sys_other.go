//go:build !unix

package maildir

import (
	"errors"
	"os"
)

// flockExclusive fails: this system has no flock, so the dotlock method
// must be used.
func flockExclusive(*os.File) error {
	return errors.New("flock is not available on this system")
}

// msgFile is a message file open for reading.
type msgFile struct{ f *os.File }

// open opens path read-only.
func (f *msgFile) open(path string) error {
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	f.f = file
	return nil
}

// size returns the file's size.
func (f *msgFile) size() (int64, error) {
	st, err := f.f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// Read reads from the file.
func (f *msgFile) Read(p []byte) (int, error) { return f.f.Read(p) }

// Close closes the file.
func (f *msgFile) Close() error { return f.f.Close() }

// renameFile is os.Rename.
func renameFile(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

// guardFile is an open lock guard file.
type guardFile struct{ f *os.File }

// openGuard opens (creating) the guard file at path.
func openGuard(path string) (guardFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	return guardFile{f: f}, err
}

// tryLock fails: there is no flock here.
func (g guardFile) tryLock() error { return flockExclusive(g.f) }

// Close closes the file.
func (g guardFile) Close() error { return g.f.Close() }
