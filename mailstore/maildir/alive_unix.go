//go:build unix

package maildir

import (
	"errors"
	"syscall"
)

// processAlive reports whether a process with that pid exists on this
// host. A process of another user (EPERM) counts as alive.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
