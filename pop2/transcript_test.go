package pop2

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"popgate/conformance"
	"popgate/mailstore/memstore"
)

// TestTranscripts replays conformance/testdata/pop2 against this package
// over memstore, so the transcripts are checked here as well as in the
// conformance matrix.
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("../conformance/testdata/pop2/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no pop2 transcripts found")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			s, err := conformance.Parse(file, data)
			if err != nil {
				t.Fatal(err)
			}
			st := memstore.New()
			srv, err := New(Options{Store: st, Hostname: "pop2.test", AuthTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			tgt, err := conformance.NewStoreTarget(ctx, st, srv.ServeConn)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := tgt.Close(); err != nil {
					t.Error(err)
				}
			}()
			r := conformance.Runner{Timeout: 5 * time.Second}
			if _, err := r.Run(ctx, s, tgt); err != nil {
				if errors.Is(err, conformance.ErrSkip) {
					t.Skip(err)
				}
				t.Fatal(err)
			}
		})
	}
}
