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
