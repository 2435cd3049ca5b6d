package mbox

import (
	"os"
	"path/filepath"
)

// mkdirs creates the spool directory of opts.
func mkdirs(opts Options) error {
	return os.MkdirAll(filepath.Dir(opts.Path), 0o755)
}
