package mbox

import (
	"path/filepath"
	"testing"

	"popgate/mailstore/storetest"
)

// testOptions returns options over a fresh temporary spool directory.
func testOptions(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	return Options{
		Path:      filepath.Join(dir, "spool", "%u"),
		FolderDir: filepath.Join(dir, "home", "%u", "mail"),
		Auth:      NewTable(),
	}
}

func newStore(t testing.TB, opts Options) *Store {
	t.Helper()
	if err := mkdirs(opts); err != nil {
		t.Fatal(err)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	return s
}

func TestStoretest(t *testing.T) {
	for _, fl := range []Flavour{MboxO, MboxRD} {
		t.Run(fl.String(), func(t *testing.T) {
			storetest.Run(t, storetest.Harness{
				New: func(t *testing.T) storetest.Backend {
					opts := testOptions(t)
					opts.Flavour = fl
					return newStore(t, opts)
				},
				Reopen: func(t *testing.T, b storetest.Backend) storetest.Backend {
					s, err := New(b.(*Store).opts)
					if err != nil {
						t.Fatalf("New = %v", err)
					}
					return s
				},
			})
		})
	}
}
