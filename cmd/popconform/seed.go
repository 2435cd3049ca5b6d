package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"popgate/conformance"
	"popgate/mailstore"
	"popgate/mailstore/users"
)

// seeder places a script's fixtures in the Maildirs the server under test
// reads (--seed-maildir), and its accounts in the passwd-file it checks
// (--users-file). With it, every transcript replays against a real
// server: Dovecot, Courier, popgate --store maildir:.
type seeder struct {
	// template is the Maildir of a user, %u standing for the name.
	template string
	// usersFile, if set, is rewritten for every script with its users,
	// passwords in the PLAIN scheme.
	usersFile string
	// stamp is the modification time last given to usersFile: each
	// rewrite moves it on by at least a second, so that servers that
	// reload the file when its mtime changes (Dovecot) always see it.
	stamp time.Time
}

// newSeeder reads the --seed-maildir value: a template with %u, or a
// folder under which DIR/%u/Maildir is used.
func newSeeder(arg, usersFile string) *seeder {
	tmpl := arg
	if !strings.Contains(tmpl, "%u") {
		tmpl = filepath.Join(tmpl, "%u", "Maildir")
	}
	return &seeder{template: tmpl, usersFile: usersFile}
}

// maildir returns user's Maildir, refusing names that would leave the
// tree.
func (sd *seeder) maildir(user string) (string, error) {
	if user == "" || user == "." || user == ".." || strings.ContainsAny(user, "/\x00") {
		return "", fmt.Errorf("user name %q cannot be a folder name: %w", user, conformance.ErrSkip)
	}
	return strings.ReplaceAll(sd.template, "%u", user), nil
}

// folderDir is the directory of a Maildir++ folder: the root for INBOX,
// .NAME for the others.
func folderDir(root, folder string) (string, error) {
	if folder == mailstore.Inbox {
		return root, nil
	}
	if folder == "" || strings.HasPrefix(folder, ".") || strings.ContainsAny(folder, "/\x00") {
		return "", fmt.Errorf("folder %q has no Maildir++ name: %w", folder, conformance.ErrSkip)
	}
	return filepath.Join(root, "."+folder), nil
}

// seed writes the users file, then empties and fills each declared
// user's Maildir. names maps the script's user names to the accounts on
// the server (they differ under --user).
func (sd *seeder) seed(s *conformance.Script, account func(conformance.User) conformance.User) error {
	if sd.usersFile != "" {
		if err := sd.writeUsers(s, account); err != nil {
			return err
		}
	}
	for _, u := range s.Users {
		dir, err := sd.maildir(account(u).Name)
		if err != nil {
			return err
		}
		if err := removeAll(dir); err != nil {
			return err
		}
		if err := makeMaildir(dir); err != nil {
			return err
		}
	}
	seq := 0
	for _, mb := range s.Mailboxes {
		u, _ := s.User(mb.User)
		root, err := sd.maildir(account(u).Name)
		if err != nil {
			return err
		}
		dir, err := folderDir(root, mb.Folder)
		if err != nil {
			return err
		}
		if err := makeMaildir(dir); err != nil {
			return err
		}
		if dir != root {
			if err := os.WriteFile(filepath.Join(dir, "maildirfolder"), nil, 0o600); err != nil {
				return fmt.Errorf("popconform: %w", err)
			}
		}
		for _, name := range mb.Fixtures {
			seq++
			// Seconds and microseconds rise with the delivery order, so
			// servers that order new mail by name (Dovecot, popgate)
			// number it as the script lists it.
			base := fmt.Sprintf("%d.M%06dP%d.popconform", 1700000000+seq, seq, os.Getpid())
			tmp := filepath.Join(dir, "tmp", base)
			if err := os.WriteFile(tmp, s.Fixtures[name].Raw, 0o600); err != nil {
				return fmt.Errorf("popconform: delivering %s: %w", name, err)
			}
			if err := os.Rename(tmp, filepath.Join(dir, "new", base)); err != nil {
				return fmt.Errorf("popconform: delivering %s: %w", name, err)
			}
		}
	}
	return nil
}

// removeAll empties a Maildir away. A server session of the previous
// script that is still ending may write into it meanwhile; it tries again
// for a while.
func removeAll(dir string) error {
	var err error
	for range 50 {
		if err = os.RemoveAll(dir); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("popconform: clearing %s: %w", dir, err)
}

func makeMaildir(dir string) error {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return fmt.Errorf("popconform: making Maildir %s: %w", dir, err)
		}
	}
	return nil
}

// writeUsers replaces the passwd-file with the script's accounts. A file
// that would not change is left alone. After a change it waits for the
// clock's next second: Dovecot looks at the file at most once a second
// and reloads it when its modification time moved, which each rewrite
// makes sure of.
func (sd *seeder) writeUsers(s *conformance.Script, account func(conformance.User) conformance.User) error {
	var b bytes.Buffer
	b.WriteString("# written by popconform --users-file\n")
	for _, su := range s.Users {
		u := account(su)
		if su.APOP != "" && su.APOP != su.Password {
			return fmt.Errorf("user %s: an APOP secret apart from the password cannot be written to a passwd-file: %w", su.Name, conformance.ErrSkip)
		}
		line, err := users.Entry(u.Name, u.Password, users.Plain)
		if err != nil {
			return fmt.Errorf("user %s: %v: %w", su.Name, err, conformance.ErrSkip)
		}
		b.WriteString(line + "\n")
	}
	if old, err := os.ReadFile(sd.usersFile); err == nil && bytes.Equal(old, b.Bytes()) {
		return nil
	}
	tmp := sd.usersFile + ".popconform-tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("popconform: writing %s: %w", tmp, err)
	}
	stamp := time.Now().Truncate(time.Second)
	if !stamp.After(sd.stamp) {
		stamp = sd.stamp.Add(time.Second)
	}
	sd.stamp = stamp
	if err := os.Chtimes(tmp, stamp, stamp); err != nil {
		return fmt.Errorf("popconform: %w", err)
	}
	if err := os.Rename(tmp, sd.usersFile); err != nil {
		return fmt.Errorf("popconform: replacing %s: %w", sd.usersFile, err)
	}
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second).Sub(now))
	return nil
}

// mailbox reads a folder back in order (by base name, which is delivery
// order for seeded messages), in CRLF form. While a popgate session still
// holds the folder (see folderHeld) it says so with ErrLocked, and the
// runner retries.
func (sd *seeder) mailbox(user, folder string) ([][]byte, error) {
	root, err := sd.maildir(user)
	if err != nil {
		return nil, err
	}
	dir, err := folderDir(root, folder)
	if err != nil {
		return nil, err
	}
	if held, err := folderHeld(dir); err != nil || held {
		return nil, fmt.Errorf("popconform: %s is locked (%v): %w", dir, err, mailstore.ErrLocked)
	}
	type file struct{ base, path string }
	var files []file
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("popconform: reading %s: %w", dir, err)
		}
		for _, e := range ents {
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			base, _, _ := strings.Cut(e.Name(), ":")
			files = append(files, file{base, filepath.Join(dir, sub, e.Name())})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].base < files[j].base })
	out := make([][]byte, 0, len(files))
	for _, f := range files {
		data, err := os.ReadFile(f.path)
		if errors.Is(err, os.ErrNotExist) {
			// Renamed (flags) or removed while we looked: look again.
			return nil, fmt.Errorf("popconform: %s changed while read: %w", dir, mailstore.ErrLocked)
		}
		if err != nil {
			return nil, fmt.Errorf("popconform: %w", err)
		}
		out = append(out, mailstore.ToCRLF(data))
	}
	return out, nil
}

// seededRemote is a remote server whose Maildirs popconform can write.
type seededRemote struct {
	*remote
	sd *seeder
}

var _ conformance.Target = seededRemote{}

// Seed places the script's users and fixtures.
func (st seededRemote) Seed(_ context.Context, s *conformance.Script) error {
	if st.user != "" && len(s.Users) > 1 {
		return fmt.Errorf("the script uses %d accounts and --user gives one: %w", len(s.Users), conformance.ErrSkip)
	}
	return st.sd.seed(s, st.MapUser)
}

// Mailbox reads a folder from the Maildir.
func (st seededRemote) Mailbox(_ context.Context, user, _, folder string) ([][]byte, error) {
	return st.sd.mailbox(user, folder)
}

// folderHeld reports whether a popgate session holds the Maildir folder
// dir, whichever --maildir-lock method the server uses: a token under a
// held name (rename), a popgate.lock symbolic link (dotlock), or a
// popgate.lock file that is flocked (flock) or, on file systems without
// symbolic links, that is a dotlock.
func folderHeld(dir string) (bool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "popgate.lock.held.") {
			return true, nil
		}
	}
	lock := filepath.Join(dir, "popgate.lock")
	st, err := os.Lstat(lock)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil || st.Mode()&os.ModeSymlink != 0 {
		return true, err
	}
	f, err := os.Open(lock)
	if err != nil {
		return true, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true, nil
	}
	// Free for flock; a file with a holder in it and no flock method in
	// use would be a dotlock, which this cannot tell apart: the flock
	// method keeps its (permanent) file, so free wins.
	return false, nil
}
