//go:build !unix

package maildir

import (
	"os"
	"time"
)

// touchLock sets a lock's modification time to now. Systems without
// unix.UtimesNanoAt get lock files, not symbolic links (see createLock),
// whose times os.Chtimes sets.
func touchLock(path string, _ os.FileInfo) error {
	now := time.Now()
	return os.Chtimes(path, now, now)
}
