package interop

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"popgate/conformance"
	"popgate/mailstore/memstore"
	"popgate/pop3"
)

// result is one row of the summary table.
type result struct {
	client, mode, status, detail string
	login                        string // the logins popgate logged, summarised
}

// usage is what a client sent, from its recorded sessions.
type usage struct {
	sessions  int
	verbs     []string // in order of first use
	seen      map[string]bool
	pipelined int // most commands sent before a reply was read
}

// TestClients runs every client in keep and delete mode against a fresh
// popgate and compares what it stored with what was delivered.
func TestClients(t *testing.T) {
	inCI := os.Getenv("CI") == "true"
	msgs := messages()
	var results []result
	usages := map[string]*usage{}
	for _, c := range clients() {
		for _, keep := range []bool{true, false} {
			mode := map[bool]string{true: "keep", false: "delete"}[keep]
			r := result{client: c.name, mode: mode}
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				r.status = "FAIL"
				if missing := missingTools(c.need); missing != "" {
					r.status, r.detail = "SKIP", missing+" not installed (bash .ci/install-clients)"
					if inCI {
						r.status = "FAIL"
						t.Fatalf("%s: %s, and CI=true requires every client", c.name, r.detail)
					}
					t.Skipf("%s: %s", c.name, r.detail)
				}
				s := startServer(t, msgs, c.tls != "")
				if err := check(t, c, s, msgs, keep); err != nil {
					r.detail = err.Error()
					t.Fatal(err)
				}
				if err := s.stop(); err != nil {
					t.Errorf("stopping the server: %v", err)
				}
				login, err := checkLogins(c, s)
				r.login = login
				if err != nil {
					r.detail = err.Error()
					t.Fatal(err)
				}
				u := usages[c.name]
				if u == nil {
					u = &usage{seen: map[string]bool{}}
					usages[c.name] = u
				}
				if err := u.add(s.traceDir); err != nil {
					t.Errorf("reading the recorded sessions: %v", err)
				}
				if err := replayTraces(s, c.tls); err != nil {
					r.detail = err.Error()
					t.Fatal(err)
				}
				r.status, r.detail = "PASS", c.note
			})
			if r.status != "" { // "" when -run left it out
				results = append(results, r)
			}
		}
	}
	table := formatTable(results)
	for _, line := range strings.Split(strings.TrimRight(table, "\n"), "\n") {
		t.Log(line)
	}
	if path := os.Getenv("INTEROP_SUMMARY"); path != "" {
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			t.Errorf("writing INTEROP_SUMMARY: %v", err)
		}
	}
	if path := os.Getenv("INTEROP_COMMANDS"); path != "" {
		if err := os.WriteFile(path, []byte(formatUsage(usages)), 0o644); err != nil {
			t.Errorf("writing INTEROP_COMMANDS: %v", err)
		}
	}
}

// missingTools names the first program or Perl module that is missing.
func missingTools(need []string) string {
	for _, n := range need {
		if mod, ok := strings.CutPrefix(n, "perl:"); ok {
			if exec.Command("perl", "-M"+mod, "-e", "1").Run() != nil {
				return "Perl module " + mod
			}
			continue
		}
		if _, err := exec.LookPath(n); err != nil {
			return n
		}
	}
	return ""
}

// check runs one client and compares. It returns the first problem.
func check(t *testing.T, c client, s *server, msgs []message, keep bool) error {
	work := t.TempDir()
	out := filepath.Join(work, "out")
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	if err := c.fetch(ctx, s, work, out, keep); err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	t.Logf("%s fetched in %v", c.name, time.Since(start).Round(time.Millisecond))

	stored, paths, err := mailFiles(out)
	if err != nil {
		return err
	}
	byName := map[string]message{}
	for _, m := range msgs {
		byName[m.name] = m
	}
	got := map[string]bool{}
	var problems []string
	for i, data := range stored {
		if c.undo != nil {
			if data, err = c.undo(data); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", paths[i], err))
				continue
			}
		}
		name := messageName(data)
		m, ok := byName[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: not one of the test messages: %q", paths[i], data[:min(len(data), 200)]))
			continue
		}
		if got[name] {
			problems = append(problems, fmt.Sprintf("message %s stored twice", name))
		}
		got[name] = true
		if want := c.expect(m.canonical()); !sameBytes(want, data) {
			problems = append(problems, fmt.Sprintf("message %s differs: %s", name, firstDiff(want, data)))
		}
	}
	for _, m := range msgs {
		if !got[m.name] {
			problems = append(problems, fmt.Sprintf("message %s was not stored", m.name))
		}
	}

	left, err := s.serverMessages()
	if err != nil {
		return err
	}
	switch {
	case keep && len(left) != len(msgs):
		problems = append(problems, fmt.Sprintf("keep mode: the server's Maildir holds %d messages, want all %d", len(left), len(msgs)))
	case keep:
		want := map[string]bool{}
		for _, m := range msgs {
			want[string(m.raw)] = true
		}
		for _, l := range left {
			if !want[string(l)] {
				problems = append(problems, fmt.Sprintf("keep mode: a message on the server changed: %q", l[:min(len(l), 100)]))
			}
		}
	case len(left) != 0:
		problems = append(problems, fmt.Sprintf("delete mode: the server's Maildir still holds %d messages", len(left)))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s (%d problems):\n\t%s", c.name, len(problems), strings.Join(problems, "\n\t"))
	}
	return nil
}

// checkLogins checks, from popgate's log, that every session logged in
// with the client's configured method and, for a TLS client, over the
// configured kind of TLS (and otherwise not over TLS). It returns the
// logins, summarised for the table.
func checkLogins(c client, s *server) (string, error) {
	logins, err := s.logins()
	if err != nil {
		return "", err
	}
	if len(logins) == 0 {
		return "none", errors.New("popgate logged no login")
	}
	count := map[string]int{}
	var kinds []string
	var problems []string
	for _, l := range logins {
		k := l.String()
		if count[k] == 0 {
			kinds = append(kinds, k)
		}
		count[k]++
		if l.method != c.login || l.tls != (c.tls != "") || l.tlsMode != c.tls {
			problems = append(problems, fmt.Sprintf("a login was %s (tls=%t, TLS mode %q); want %s with TLS mode %q", l.method, l.tls, l.tlsMode, c.login, c.tls))
		}
	}
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%d×%s", count[k], k))
	}
	summary := strings.Join(parts, ",")
	if len(problems) > 0 {
		return summary, fmt.Errorf("%s: %s", c.name, strings.Join(problems, "; "))
	}
	return summary, nil
}

// replayTraces replays every session recorded by s (popgate --trace's
// format) against a fresh popgate over an empty in-memory store, which
// the runner seeds with the recorded fixtures: a real client's session
// must become a passing regression test with no editing. The replaying
// popgate has s's certificate, so that CAPA lists STLS as it did; a
// session recorded over pop3s (tlsMode "implicit", recorded in clear
// inside TLS) is replayed over pop3s, and one that used STLS was
// recorded up to the STLS reply (the rest was encrypted).
func replayTraces(s *server, tlsMode string) error {
	files, err := filepath.Glob(filepath.Join(s.traceDir, "*.txtar"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no session was recorded in %s", s.traceDir)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte(password)) {
			return fmt.Errorf("%s: the password is in the recorded session", f)
		}
		sc, err := conformance.Parse(f, data)
		if err != nil {
			return fmt.Errorf("a recorded session does not parse: %w", err)
		}
		st := memstore.New()
		srv, err := pop3.New(pop3.Options{Store: st, Hostname: "replay.test", TLSConfig: s.tlsConfig})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		handler := srv.ServeConn
		if tlsMode == "implicit" {
			handler = func(ctx context.Context, c net.Conn) { srv.ServeConn(ctx, tls.Server(c, s.tlsConfig)) }
		}
		tgt, err := conformance.NewStoreTarget(ctx, st, handler)
		if err != nil {
			cancel()
			return err
		}
		var target conformance.Target = tgt
		if tlsMode == "implicit" {
			target = tlsTarget{tgt, &tls.Config{RootCAs: s.caPool, ServerName: "interop.test", MinVersion: tls.VersionTLS12}}
		}
		err = conformance.Run(ctx, sc, target)
		_ = tgt.Close()
		cancel()
		if err != nil {
			return fmt.Errorf("replaying a recorded session: %w", err)
		}
	}
	return nil
}

// tlsTarget is a StoreTarget whose listener speaks implicit TLS: Dial
// completes the handshake, verifying the server's certificate.
type tlsTarget struct {
	*conformance.StoreTarget
	config *tls.Config
}

func (t tlsTarget) Dial(ctx context.Context) (net.Conn, error) {
	c, err := t.StoreTarget.Dial(ctx)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, t.config)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}

// keywordRE matches a POP3 command keyword (RFC 1939 §3: three or four
// letters).
var keywordRE = regexp.MustCompile(`^[A-Za-z]{3,4}$`)

// add reads the transcripts the recorder wrote for one run.
func (u *usage) add(traceDir string) error {
	files, err := filepath.Glob(filepath.Join(traceDir, "*.txtar"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		s, err := conformance.Parse(f, data)
		if err != nil {
			return fmt.Errorf("a recorded session does not parse: %w", err)
		}
		u.sessions++
		run := 0
		for _, st := range s.Steps {
			switch st.Kind {
			case conformance.StepSend, conformance.StepSendBytes:
				run++
				u.pipelined = max(u.pipelined, run)
				f := strings.Fields(st.Arg)
				if len(f) == 0 || !keywordRE.MatchString(f[0]) {
					continue // a SASL response, not a command
				}
				verb := strings.ToUpper(f[0])
				switch {
				case verb == "TOP" && len(f) == 3:
					verb = "TOP n " + f[2]
				case verb == "AUTH" && len(f) >= 2:
					verb = "AUTH " + strings.ToUpper(f[1])
				}
				if !u.seen[verb] {
					u.seen[verb] = true
					u.verbs = append(u.verbs, verb)
				}
			case conformance.StepLine, conformance.StepRegexp, conformance.StepFixture:
				run = 0
			}
		}
	}
	return nil
}

func formatTable(results []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-20s %-7s %-6s %-22s %s\n", "client", "mode", "result", "logins (method/TLS)", "accounted for / reason")
	pass, fail, skip := 0, 0, 0
	for _, r := range results {
		detail, _, _ := strings.Cut(r.detail, "\n")
		login := r.login
		if login == "" {
			login = "-"
		}
		fmt.Fprintf(&b, "%-20s %-7s %-6s %-22s %s\n", r.client, r.mode, r.status, login, detail)
		switch r.status {
		case "PASS":
			pass++
		case "SKIP":
			skip++
		default:
			fail++
		}
	}
	fmt.Fprintf(&b, "interop: %d passed, %d failed, %d skipped\n", pass, fail, skip)
	return b.String()
}

func formatUsage(usages map[string]*usage) string {
	var names []string
	for n := range usages {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("| client | sessions (keep + delete runs) | commands, in order of first use | most commands in flight |\n|---|---|---|---|\n")
	for _, n := range names {
		u := usages[n]
		fmt.Fprintf(&b, "| %s | %d | %s | %d |\n", n, u.sessions, strings.Join(u.verbs, " "), u.pipelined)
	}
	return b.String()
}
