package mbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"popgate/mailstore"
)

// mkdirs creates the spool directory of opts.
func mkdirs(opts Options) error {
	return os.MkdirAll(filepath.Dir(opts.Path), 0o755)
}

// The test binary doubles as a helper process (a second MDA, or a POP
// server to be killed) when MBOX_HELPER is set.
func TestMain(m *testing.M) {
	if mode := os.Getenv("MBOX_HELPER"); mode != "" {
		if err := runHelper(mode); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const helperUser = "u"

func runHelper(mode string) error {
	ctx := context.Background()
	s, err := New(Options{Path: os.Getenv("MBOX_PATH")})
	if err != nil {
		return err
	}
	switch mode {
	case "append":
		n, _ := strconv.Atoi(os.Getenv("MBOX_N"))
		for i := 0; i < n; i++ {
			msg := fmt.Sprintf("Subject: %s-%d\n\nFrom the helper %d\n", os.Getenv("MBOX_TAG"), i, i)
			if err := s.Deliver(ctx, helperUser, "", []byte(msg)); err != nil {
				return err
			}
		}
		return nil
	case "commitloop":
		// Delete message 2 forty times, one commit each (each a rewrite,
		// since message 2 is mid-spool). No message is read, so that the
		// process spends its time committing.
		if err := s.AddUser(ctx, helperUser, "pw"); err != nil {
			return err
		}
		for done := 0; done < 40; {
			acct, err := s.Login(ctx, helperUser, "pw")
			if err != nil {
				return err
			}
			md, err := acct.Open(ctx, "")
			if errors.Is(err, mailstore.ErrLocked) {
				continue
			}
			if err != nil {
				return err
			}
			msgs, err := md.Messages(ctx)
			if err != nil {
				return err
			}
			if err := md.Commit(ctx, mailstore.Changes{Deleted: []string{msgs[1].UID}}); err != nil {
				return err
			}
			if done == 0 {
				os.Stdout.WriteString("ready\n")
			}
			done++
		}
		return nil
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

var subjectRE = regexp.MustCompile(`(?m)^Subject: (.*)\r$`)

// subjects reads every message of md and returns their Subject values.
func subjects(ctx context.Context, md mailstore.Maildrop) ([]string, []mailstore.MessageInfo, error) {
	msgs, err := md.Messages(ctx)
	if err != nil {
		return nil, nil, err
	}
	out := make([]string, len(msgs))
	for i, m := range msgs {
		rc, err := md.OpenMessage(ctx, m.UID)
		if err != nil {
			return nil, nil, err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, nil, err
		}
		if int64(len(data)) != m.Size {
			return nil, nil, fmt.Errorf("message %s: size %d, read %d", m.UID, m.Size, len(data))
		}
		if sm := subjectRE.FindSubmatch(data); sm != nil {
			out[i] = string(sm[1])
		}
	}
	return out, msgs, nil
}

// helperCmdEnv is the environment of a helper process.
func helperEnv(mode, path string, extra ...string) []string {
	return append(append(os.Environ(), "MBOX_HELPER="+mode, "MBOX_PATH="+path), extra...)
}

// inbox returns the subjects of user's Inbox, opening and closing it.
func inbox(t *testing.T, s *Store) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acct, err := s.Login(ctx, helperUser, "pw")
	if err != nil {
		t.Fatalf("Login = %v", err)
	}
	md, err := acct.Open(ctx, "")
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	defer md.Close()
	subs, _, err := subjects(ctx, md)
	if err != nil {
		t.Fatalf("reading inbox: %v", err)
	}
	return subs
}
