//go:build unix

package maildir

import (
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// touchLock sets a lock's modification time to now, the lock's own for a
// symbolic link (not its target's, which does not exist).
func touchLock(path string, st os.FileInfo) error {
	if st.Mode()&fs.ModeSymlink == 0 {
		now := time.Now()
		return os.Chtimes(path, now, now)
	}
	// An explicit time, not UTIME_NOW, which some systems' x/sys/unix
	// (darwin, netbsd) do not define.
	now := unix.NsecToTimespec(time.Now().UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{now, now}, unix.AT_SYMLINK_NOFOLLOW)
}
