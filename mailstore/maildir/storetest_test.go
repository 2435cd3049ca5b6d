package maildir

import (
	"path/filepath"
	"testing"
	"time"

	"popgate/mailstore/storetest"
	"popgate/mailstore/users"
)

// testEnv is a store over a temporary directory with an in-memory users
// table.
type testEnv struct {
	dir  string
	db   *users.DB
	opts Options
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	dir := t.TempDir()
	db := users.NewMemory()
	return &testEnv{dir: dir, db: db, opts: Options{
		Path:             filepath.Join(dir, "%u", "Maildir"),
		Users:            db,
		Hostname:         "test.example",
		StaleLockTimeout: time.Minute,
	}}
}

func (e *testEnv) store(t testing.TB) *Store {
	t.Helper()
	s, err := New(e.opts)
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	return s
}

func TestStoretest(t *testing.T) {
	envs := make(map[storetest.Backend]*testEnv)
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) storetest.Backend {
			e := newEnv(t)
			s := e.store(t)
			envs[s] = e
			return s
		},
		Reopen: func(t *testing.T, b storetest.Backend) storetest.Backend {
			e := envs[b]
			s := e.store(t)
			envs[s] = e
			return s
		},
	})
}

func TestStoretestDovecotUIDL(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) storetest.Backend {
			e := newEnv(t)
			e.opts.UIDLFormat = UIDLDovecot
			return e.store(t)
		},
	})
}
