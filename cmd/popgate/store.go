package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/rs/zerolog"

	"popgate/mailstore"
	"popgate/mailstore/maildir"
	"popgate/mailstore/mbox"
	"popgate/mailstore/upstream"
	"popgate/mailstore/users"
)

// storeConfig is the part of the command line that chooses the store.
type storeConfig struct {
	url            string
	usersFile      string
	uidlFormat     string
	maildirLock    string
	mboxFlavour    string
	mboxFolders    string
	upstreamCA     string
	upstreamInsec  bool
	upstreamDelete string
	upstreamWindow int
}

// openedStore is a store and what run needs to know about it.
type openedStore struct {
	store mailstore.Store
	// demo is set for the in-memory demo maildrop.
	demo bool
	// users is the passwd-file, reloaded on SIGHUP; nil if none.
	users *users.DB
	// desc describes the store for the start-up log.
	desc string
}

// openStore builds the store named by the --store URL.
func openStore(ctx context.Context, sc storeConfig, hostname string, log zerolog.Logger) (*openedStore, error) {
	scheme, rest, _ := strings.Cut(sc.url, ":")
	switch scheme {
	case "memory":
		if rest != "" {
			return nil, fmt.Errorf("--store %q: memory: takes no path", sc.url)
		}
		st, err := newDemoStore(ctx)
		if err != nil {
			return nil, err
		}
		return &openedStore{store: st, demo: true, desc: "memory: (demo maildrop)"}, nil

	case "maildir", "mbox":
		if rest == "" {
			return nil, fmt.Errorf("--store %q: give a path, e.g. %s:/var/mail/%%u", sc.url, scheme)
		}
		if sc.usersFile == "" {
			return nil, fmt.Errorf("--store %s: needs --users FILE (a Dovecot-style passwd-file; make entries with 'popgate passwd')", scheme)
		}
		db, err := users.Open(sc.usersFile)
		if err != nil {
			return nil, fmt.Errorf("--users: %w", err)
		}
		if scheme == "maildir" {
			format := maildir.UIDLBaseName
			switch sc.uidlFormat {
			case "", "basename":
			case "dovecot":
				format = maildir.UIDLDovecot
			default:
				return nil, fmt.Errorf("--uidl-format %q: want basename or dovecot", sc.uidlFormat)
			}
			switch sc.maildirLock {
			case "", maildir.LockRename, maildir.LockDotlock, maildir.LockFlock:
			default:
				return nil, fmt.Errorf("--maildir-lock %q: want rename, dotlock or flock", sc.maildirLock)
			}
			st, err := maildir.New(maildir.Options{
				Path: rest, Users: db, UIDLFormat: format, LockMethod: sc.maildirLock, Hostname: hostname, Logger: log,
			})
			if err != nil {
				return nil, fmt.Errorf("--store: %w", err)
			}
			return &openedStore{store: st, users: db, desc: "maildir:" + rest}, nil
		}
		var flavour mbox.Flavour
		switch sc.mboxFlavour {
		case "", "mboxo":
			flavour = mbox.MboxO
		case "mboxrd":
			flavour = mbox.MboxRD
		default:
			return nil, fmt.Errorf("--mbox-flavour %q: want mboxo or mboxrd", sc.mboxFlavour)
		}
		st, err := mbox.New(mbox.Options{Path: rest, FolderDir: sc.mboxFolders, Auth: db, Flavour: flavour})
		if err != nil {
			return nil, fmt.Errorf("--store: %w", err)
		}
		return &openedStore{store: st, users: db, desc: "mbox:" + rest}, nil

	case "imaps", "imap", "pop3s", "pop3":
		if sc.upstreamInsec {
			log.Warn().Str("store", sc.url).Msg("--upstream-insecure: the upstream's TLS certificate is NOT verified")
		}
		// With --users, credentials are mapped: local passwords are
		// checked against the file, whose extra fields name the upstream
		// account (upstream_user=, upstream_pass= or
		// upstream_token_command=).
		var db *users.DB
		mode := "pass-through credentials"
		if sc.usersFile != "" {
			var err error
			if db, err = users.Open(sc.usersFile); err != nil {
				return nil, fmt.Errorf("--users: %w", err)
			}
			if fi, err := os.Stat(sc.usersFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
				log.Warn().Str("users", sc.usersFile).Str("mode", fi.Mode().Perm().String()).
					Msg("--users holds upstream passwords in mapped mode: make it readable by popgate only (chmod 600)")
			}
			mode = "mapped credentials from " + sc.usersFile
		}
		opts := upstream.Options{
			URL:        sc.url,
			CAFile:     sc.upstreamCA,
			Insecure:   sc.upstreamInsec,
			Logger:     log,
			DeleteMode: upstream.DeleteMode(sc.upstreamDelete),
			Window:     sc.upstreamWindow,
			// Connect once now, so a wrong host or an untrusted
			// certificate stops the start instead of every login.
			Probe: true,
		}
		if db != nil {
			// A nil *users.DB in the interface would not be nil.
			opts.Users = db
		}
		st, err := upstream.New(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("--store: %w", err)
		}
		return &openedStore{store: st, users: db, desc: sc.url + " (gateway, " + mode + ")"}, nil
	}
	return nil, fmt.Errorf("--store %q: unknown store (want memory:, maildir:PATH, mbox:PATH, imaps://HOST, pop3s://HOST)", sc.url)
}
