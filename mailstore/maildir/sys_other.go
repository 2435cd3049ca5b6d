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

// openMessageFile opens a message file for reading.
func openMessageFile(path string) (*os.File, error) { return os.Open(path) }

// openRaw is os.OpenFile.
func openRaw(path string, flag int, perm uint32) (*os.File, error) {
	return os.OpenFile(path, flag, os.FileMode(perm))
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

// Read reads from the file.
func (f *msgFile) Read(p []byte) (int, error) { return f.f.Read(p) }

// Close closes the file.
func (f *msgFile) Close() error { return f.f.Close() }
