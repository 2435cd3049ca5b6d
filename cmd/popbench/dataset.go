package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"popgate/mailstore"
)

// dataset is the Maildir tree popbench compare measures: a pool of
// generated messages, hard-linked into the users' cur/ directories so that
// many users share one copy on disk and in the page cache.
//
//	u0..u(C-1)  login, greet: smallMessages each
//	f0..f(C-1)  fetchall: messages of msgSize each
//	b0..b(C-1)  bigmsg: one message of bigSize
//	s0          scale: scaleMessages
//	i0..i(K-1)  idle: smallMessages each
//
// C is the highest concurrency, K the idle session count. Every password
// is benchPassword, stored {PLAIN} in a Dovecot passwd-file.
type dataset struct {
	root  string
	cfg   compareConfig
	users int
}

func (d dataset) mail() string   { return filepath.Join(d.root, "mail") }
func (d dataset) passwd() string { return filepath.Join(d.root, "passwd") }
func (d dataset) pool() string   { return filepath.Join(d.root, "pool") }

// stamp describes the data, so that a matching tree is reused.
func (d dataset) stamp() []byte {
	b, _ := json.Marshal(map[string]any{
		"version": 1, "users": d.users, "messages": d.cfg.messages, "msg_size": d.cfg.msgSize,
		"small": d.cfg.smallMessages, "big": d.cfg.bigSize, "scale": d.cfg.scaleMessages, "idle": d.cfg.idleSessions,
	})
	return b
}

// prepare builds the tree unless a matching one exists.
func (d dataset) prepare(ctx context.Context, logf func(string, ...any)) error {
	stampPath := filepath.Join(d.root, "data.stamp")
	if old, err := os.ReadFile(stampPath); err == nil && bytes.Equal(old, d.stamp()) {
		logf("reusing the data in %s", d.root)
		return nil
	}
	logf("generating the data in %s", d.root)
	_ = os.Remove(stampPath)
	for _, p := range []string{d.mail(), d.pool()} {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("clearing %s: %w", p, err)
		}
	}
	for _, p := range []string{d.mail(), d.pool()} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", p, err)
		}
	}
	poolSize := max(d.cfg.messages, d.cfg.scaleMessages, d.cfg.smallMessages)
	names := make([]string, poolSize)
	for i := range poolSize {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("generating data: %w", err)
		}
		name, err := d.writePool(i, genMessage(i, d.cfg.msgSize))
		if err != nil {
			return err
		}
		names[i] = name
	}
	big, err := d.writePool(poolSize, genMessage(poolSize, int(d.cfg.bigSize)))
	if err != nil {
		return err
	}
	type user struct {
		name  string
		files []string
	}
	var us []user
	for i := range d.users {
		n := strconv.Itoa(i)
		us = append(us, user{"u" + n, names[:d.cfg.smallMessages]}, user{"f" + n, names[:d.cfg.messages]},
			user{"b" + n, []string{big}})
	}
	us = append(us, user{"s0", names[:d.cfg.scaleMessages]})
	for i := range d.cfg.idleSessions {
		us = append(us, user{"i" + strconv.Itoa(i), names[:d.cfg.smallMessages]})
	}
	var pw bytes.Buffer
	for _, u := range us {
		fmt.Fprintf(&pw, "%s:{PLAIN}%s::::::\n", u.name, benchPassword)
	}
	if err := os.WriteFile(d.passwd(), pw.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing passwd-file: %w", err)
	}
	// Link the users' messages, a few users at a time.
	work := make(chan user)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for u := range work {
				if err := d.linkUser(u.name, u.files); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		})
	}
	for _, u := range us {
		if ctx.Err() != nil {
			break
		}
		work <- u
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("generating data: %w", err)
	}
	for _, p := range []string{d.mail(), d.pool()} {
		if err := os.Chown(p, mailOwner, mailOwner); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
	}
	if err := os.WriteFile(stampPath, d.stamp(), 0o644); err != nil {
		return fmt.Errorf("writing stamp: %w", err)
	}
	return nil
}

// writePool writes message i to the pool under a Maildir name with ,S=
// and ,W= fields, as Dovecot's LDA writes them, and returns the name.
func (d dataset) writePool(i int, msg []byte) (string, error) {
	w, err := mailstore.CRLFSize(bytes.NewReader(msg))
	if err != nil {
		return "", fmt.Errorf("sizing message %d: %w", i, err)
	}
	name := fmt.Sprintf("%d.M%dP4242_%d.bench.example,S=%d,W=%d:2,", 1600000000+i, i%1000000, i, len(msg), w)
	p := filepath.Join(d.pool(), name)
	if err := os.WriteFile(p, msg, 0o644); err != nil {
		return "", fmt.Errorf("writing %s: %w", p, err)
	}
	if err := os.Chown(p, mailOwner, mailOwner); err != nil {
		return "", fmt.Errorf("chown %s: %w", p, err)
	}
	return name, nil
}

// linkUser creates user's Maildir and hard-links files into its cur/.
func (d dataset) linkUser(user string, files []string) error {
	root := filepath.Join(d.mail(), user)
	for _, sub := range []string{"", "cur", "new", "tmp"} {
		p := filepath.Join(root, sub)
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("creating %s: %w", p, err)
		}
		if err := os.Chown(p, mailOwner, mailOwner); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
	}
	cur := filepath.Join(root, "cur")
	for _, f := range files {
		if err := os.Link(filepath.Join(d.pool(), f), filepath.Join(cur, f)); err != nil {
			return fmt.Errorf("linking %s for %s: %w", f, user, err)
		}
	}
	return nil
}

// genMessage returns a deterministic LF-terminated mail message of about
// size octets: headers, then lines of words, one of them starting with a
// dot so that every transfer exercises dot-stuffing.
func genMessage(i, size int) []byte {
	words := []string{"mail", "post", "office", "protocol", "server", "client", "retrieve", "list",
		"the", "of", "and", "a", "to", "in", "is", "message", "maildrop", "octets", "line", "CRLF"}
	var b bytes.Buffer
	b.Grow(size + 128)
	fmt.Fprintf(&b, "Return-Path: <sender%d@bench.example>\nFrom: Sender %d <sender%d@bench.example>\n"+
		"To: user@bench.example\nSubject: benchmark message %d\nDate: Mon, 14 Sep 2020 12:26:40 +0000\n"+
		"Message-ID: <%d@bench.example>\n\n", i, i, i, i, i)
	seed := uint32(i)*2654435761 + 1
	line := 0
	for b.Len() < size {
		n := 0
		if line == 3 {
			b.WriteString(".")
			n++
		}
		for n < 68 {
			seed = seed*1664525 + 1013904223
			w := words[seed>>27%uint32(len(words))]
			b.WriteString(w)
			b.WriteByte(' ')
			n += len(w) + 1
		}
		b.WriteByte('\n')
		line++
	}
	return b.Bytes()
}
