package conformance_test

import (
	"context"
	"errors"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"popgate/conformance"
	"popgate/mailstore"
	"popgate/mailstore/maildir"
	"popgate/mailstore/mbox"
	"popgate/mailstore/memstore"
	"popgate/mailstore/users"
	"popgate/pop1"
	"popgate/pop1/port109"
	"popgate/pop2"
)

var (
	update  = flag.Bool("update", false, "rewrite the S: and S~ lines that do not match with what the server sent")
	logConn = flag.Bool("conformance.log", false, "log the servers' connection logs through t.Log")
)

// frontEnd builds a connection handler for one protocol over a store.
type frontEnd func(st mailstore.Store, log zerolog.Logger) (conformance.Handler, error)

// frontEnds maps a protocol, which is also its directory under testdata,
// to its front end. Adding a protocol is one entry here.
func frontEnds() map[string]frontEnd {
	m := map[string]frontEnd{
		// STLS is on, so that ! starttls transcripts run (tls_test.go).
		"pop3": pop3FrontEnd(nil),
		"pop2": func(st mailstore.Store, log zerolog.Logger) (conformance.Handler, error) {
			srv, err := pop2.New(pop2.Options{Store: st, Hostname: "popgate.test", Logger: log})
			if err != nil {
				return nil, err
			}
			return srv.ServeConn, nil
		},
		"pop1": func(st mailstore.Store, log zerolog.Logger) (conformance.Handler, error) {
			srv, err := pop1.New(pop1.Options{Store: st, Hostname: "popgate.test", Logger: log})
			if err != nil {
				return nil, err
			}
			return srv.ServeConn, nil
		},
		// pop109 is one port 109 listener: POP1 and POP2 behind one greeting.
		"pop109": func(st mailstore.Store, log zerolog.Logger) (conformance.Handler, error) {
			p1, err := pop1.New(pop1.Options{Store: st, Hostname: "popgate.test", Logger: log})
			if err != nil {
				return nil, err
			}
			p2, err := pop2.New(pop2.Options{Store: st, Hostname: "popgate.test", Logger: log})
			if err != nil {
				return nil, err
			}
			d, err := port109.New(port109.Options{POP1: p1, POP2: p2, Logger: log})
			if err != nil {
				return nil, err
			}
			return d.ServeConn, nil
		},
	}
	maps.Copy(m, eraFrontEnds()) // eras_test.go: POP3 profiles and quirks
	return m
}

// backend is a store every transcript runs against. new returns a fresh,
// empty store that also implements mailstore.Provisioner.
type backend struct {
	name string
	new  func(t *testing.T) mailstore.Store
	// noSeen, if set, says why the store keeps no seen marks; files that
	// require "seen" are skipped for it.
	noSeen string
}

// backends lists the stores of the matrix. Adding one is one entry here.
func backends() []backend {
	return []backend{
		{"memstore", func(*testing.T) mailstore.Store { return memstore.New() }, ""},
		{"maildir", func(t *testing.T) mailstore.Store {
			st, err := maildir.New(maildir.Options{
				Path:     filepath.Join(t.TempDir(), "%u", "Maildir"),
				Users:    users.NewMemory(),
				Hostname: "popgate.test",
			})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}, ""},
		{"mbox", func(t *testing.T) mailstore.Store {
			// The spool directory exists, as /var/mail does; spools and
			// folders appear at the first delivery.
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "spool"), 0o755); err != nil {
				t.Fatal(err)
			}
			st, err := mbox.New(mbox.Options{
				Path:      filepath.Join(dir, "spool", "%u"),
				FolderDir: filepath.Join(dir, "folders", "%u"),
				// Transcripts compare stored bytes; a Status: header
				// written for retrieved mail would be a difference.
				WriteStatus: mbox.StatusNever,
				// mboxrd keeps a body's ">From " lines as they are;
				// mboxo (the Debian default) cannot (docs/mbox.md).
				Flavour: mbox.MboxRD,
			})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}, "mbox with WriteStatus never keeps no seen marks (a Status: header would change the stored bytes the transcripts compare)"},
	}
}

// TestMatrix runs every transcript under testdata/PROTO against every
// backend: TestMatrix/PROTO/BACKEND/FILE.
func TestMatrix(t *testing.T) {
	dirs, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	fes := frontEnds()
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		proto := d.Name()
		t.Run(proto, func(t *testing.T) {
			fe, ok := fes[proto]
			if !ok {
				t.Skipf("no front end registered for %s in frontEnds", proto)
			}
			files, err := filepath.Glob(filepath.Join("testdata", proto, "*.txtar"))
			if err != nil {
				t.Fatal(err)
			}
			sort.Strings(files)
			for _, b := range backends() {
				t.Run(b.name, func(t *testing.T) {
					for _, file := range files {
						name := filepath.Base(file)
						t.Run(name[:len(name)-len(".txtar")], func(t *testing.T) {
							if !*update {
								t.Parallel()
							}
							runFile(t, file, proto, fe, b)
						})
					}
				})
			}
		})
	}
}

func runFile(t *testing.T, file, proto string, fe frontEnd, b backend) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s, err := conformance.Parse(file, data)
	if err != nil {
		t.Fatal(err)
	}
	if s.Proto != proto {
		t.Fatalf("%s: proto: %s, but the file is under testdata/%s", file, s.Proto, proto)
	}
	log := zerolog.Nop()
	if *logConn {
		log = zerolog.New(zerolog.NewTestWriter(t))
	}
	st := b.new(t)
	fe, refusing := frontEndFor(s, proto, fe)
	h, err := fe(st, log)
	if err != nil {
		t.Fatalf("front end: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tgt, err := conformance.NewStoreTarget(ctx, st, h)
	if err != nil {
		t.Fatal(err)
	}
	if b.noSeen != "" {
		tgt.LacksSeen(b.noSeen)
	}
	defer func() {
		if err := tgt.Close(); err != nil {
			t.Error(err)
		}
	}()
	r := conformance.Runner{Update: *update}
	res, err := r.Run(ctx, s, featureTarget{tgt, proto, refusing})
	if *update && len(res.Fixes) > 0 {
		if werr := os.WriteFile(file, conformance.Rewrite(data, res.Fixes), 0o644); werr != nil {
			t.Fatal(werr)
		}
		t.Logf("%s: rewrote %d lines", file, len(res.Fixes))
	}
	if errors.Is(err, conformance.ErrSkip) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
}
