package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"popgate/mailstore"
	"popgate/mailstore/maildir"
	"popgate/mailstore/users"
	"popgate/pop3"
)

// liveServer is popgate's POP3 front end over a Maildir store, serving on
// loopback inside the test process.
type liveServer struct {
	addr string
	mail string // Maildir template root: mail/<user>
}

// startLivePopgate serves users u0..u(n-1) (password "pw") with msgs messages
// each of about size octets, plus "big" with one message of bigSize.
func startLivePopgate(tb testing.TB, n, msgs, size, bigSize int) *liveServer {
	tb.Helper()
	dir := tb.TempDir()
	mail := filepath.Join(dir, "mail")
	db := users.NewMemory()
	st, err := maildir.New(maildir.Options{Path: mail + "/%u", Users: db, Hostname: "test.example"})
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	// Messages are written straight into cur/ under Dovecot-style names
	// (no fsync per delivery), so that large maildrops set up quickly.
	add := func(user string, count, sz int) {
		if err := st.AddUser(ctx, user, "pw"); err != nil {
			tb.Fatal(err)
		}
		cur := filepath.Join(mail, user, "cur")
		for i := range count {
			msg := genMessage(i, sz)
			w, err := mailstore.CRLFSize(bytes.NewReader(msg))
			if err != nil {
				tb.Fatal(err)
			}
			name := fmt.Sprintf("%d.M%dP1_%d.test,S=%d,W=%d:2,", 1600000000+i, i, i, len(msg), w)
			if err := os.WriteFile(filepath.Join(cur, name), msg, 0o600); err != nil {
				tb.Fatal(err)
			}
		}
		// Like a Maildir that has been quiet for a while (as popbench
		// compare's data set is), so that the store may reuse its
		// listing from the second login on.
		old := time.Now().Add(-time.Minute)
		for _, sub := range []string{"cur", "new"} {
			if err := os.Chtimes(filepath.Join(mail, user, sub), old, old); err != nil {
				tb.Fatal(err)
			}
		}
	}
	for i := range n {
		add(fmt.Sprintf("u%d", i), msgs, size)
	}
	if bigSize > 0 {
		add("big", 1, bigSize)
	}
	srv, err := pop3.New(pop3.Options{Store: st, Hostname: "test.example"})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { srv.ServeConn(sctx, nc) })
		}
	})
	tb.Cleanup(func() {
		_ = ln.Close()
		cancel()
		wg.Wait()
	})
	return &liveServer{addr: ln.Addr().String(), mail: mail}
}

// startLiveCeiling serves the ceiling responder over mail on loopback.
func startLiveCeiling(tb testing.TB, mail string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&ceiling{template: mail + "/%u", timeout: 10 * time.Second}).serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Error(err)
		}
	})
	return ln.Addr().String()
}

// popbench runs the command line and decodes its JSON line.
func popbench(t *testing.T, args ...string) (result, int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	var r result
	if out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("output %q is not one JSON object: %v", out.String(), err)
		}
		if strings.Count(out.String(), "\n") != 1 {
			t.Fatalf("output %q is not one line", out.String())
		}
	}
	return r, code, errb.String()
}

func TestScenarios(t *testing.T) {
	ls := startLivePopgate(t, 2, 20, 3000, 300_000)
	ceil := startLiveCeiling(t, ls.mail)
	pid := fmt.Sprint(os.Getpid())
	for _, addr := range []string{ls.addr, ceil} {
		for _, tc := range []struct {
			args                  []string
			ops, messages, octets int64
		}{
			{args: []string{"greet", "--count", "3"}, ops: 3},
			{args: []string{"login", "--user-template", "u%d", "-c", "2", "--count", "4"}, ops: 4},
			{args: []string{"fetchall", "--user-template", "u%d", "-c", "2", "--count", "2"}, ops: 2, messages: 40, octets: -1},
			{args: []string{"bigmsg", "--user", "big", "--count", "1", "--pid", pid}, ops: 1, messages: 1, octets: -1},
			{args: []string{"scale", "--user", "u0", "--count", "2"}, ops: 2},
			{args: []string{"idle", "--user-template", "u%d", "--sessions", "2", "-c", "2", "--settle", "10ms", "--pid", pid}, ops: 2},
		} {
			args := append(append([]string{}, tc.args...), "--addr", addr, "--password", "pw", "--server", "t", "--progress", "never")
			r, code, stderr := popbench(t, args...)
			if code != 0 || r.Errors != 0 {
				t.Fatalf("%v: exit %d, result %+v, stderr %s", args, code, r, stderr)
			}
			if r.Scenario != tc.args[0] || r.Server != "t" || r.Addr != addr || r.Ops != tc.ops || r.Messages != tc.messages {
				t.Errorf("%v: result %+v", args, r)
			}
			if tc.octets == -1 && (r.Bytes <= 0 || r.MBPerSec <= 0) {
				t.Errorf("%v: no bytes counted: %+v", args, r)
			}
			if r.LatencyP50 <= 0 || r.LatencyMax < r.LatencyP99 || r.Seconds <= 0 {
				t.Errorf("%v: bad timings %+v", args, r)
			}
			switch tc.args[0] {
			case "scale":
				if r.MaildropMessages != 20 {
					t.Errorf("scale: maildrop_messages %d, want 20", r.MaildropMessages)
				}
			case "idle":
				if r.Sessions != 2 || r.RSSBeforeKiB <= 0 || r.RSSAfterKiB <= 0 {
					t.Errorf("idle: %+v", r)
				}
			case "bigmsg":
				if r.RSSBeforeKiB <= 0 || r.RSSPeakKiB < r.RSSBeforeKiB {
					t.Errorf("bigmsg RSS: %+v", r)
				}
			}
		}
	}
}

// TestErrorsCounted: a wrong password and a dead server are counted as
// errors, sampled, and make the exit status 1.
func TestErrorsCounted(t *testing.T) {
	ls := startLivePopgate(t, 1, 1, 100, 0)
	r, code, _ := popbench(t, "login", "--addr", ls.addr, "--user", "u0", "--password", "wrong", "--count", "2", "--progress", "never")
	if code != 1 || r.Errors != 2 || r.Ops != 0 || len(r.ErrorSample) == 0 || !strings.Contains(r.ErrorSample[0], "-ERR") {
		t.Errorf("wrong password: exit %d, %+v", code, r)
	}
	if strings.Contains(strings.Join(r.ErrorSample, " "), "wrong") {
		t.Errorf("error sample leaks the password: %v", r.ErrorSample)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	r, code, _ = popbench(t, "greet", "--addr", dead, "--count", "1", "--progress", "never")
	if code != 1 || r.Errors != 1 {
		t.Errorf("dead server: exit %d, %+v", code, r)
	}
}

// scriptedServer accepts one connection on loopback, writes script to it
// at once whatever the client sends, reads until the client hangs up
// (at most 2 s) and returns what the client sent.
func scriptedServer(t *testing.T, script string) (addr string, sent func() string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	got := make(chan string, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			got <- ""
			return
		}
		defer nc.Close()
		_, _ = nc.Write([]byte(script))
		_ = nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		var in bytes.Buffer
		buf := make([]byte, 512)
		for {
			n, err := nc.Read(buf)
			in.Write(buf[:n])
			if err != nil {
				got <- in.String()
				return
			}
		}
	}()
	return ln.Addr().String(), func() string { return <-got }
}

// TestVerification: a server whose RETR sends fewer octets than LIST
// promised, or forgets a dot-stuffing, is caught. The server answers
// CAPA with -ERR, so popbench falls back to one RETR per round trip.
func TestVerification(t *testing.T) {
	for _, tc := range []struct {
		name, body string
	}{
		{"short", "abc\r\n.\r\n"},
		{"bare LF", "abcdefgh\n.\r\n"},
		{"no terminator", "abcdefgh\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := scriptedServer(t, "+OK hi\r\n+OK\r\n+OK\r\n+OK\r\n1 u1\r\n.\r\n+OK\r\n1 10\r\n.\r\n-ERR no CAPA\r\n+OK\r\n"+tc.body)
			r, code, _ := popbench(t, "fetchall", "--addr", addr, "--count", "1", "--timeout", "2s", "--progress", "never")
			if code != 1 || r.Errors != 1 || r.Pipeline != 1 {
				t.Errorf("exit %d, %+v", code, r)
			}
			if tc.name != "no terminator" && !strings.Contains(strings.Join(r.ErrorSample, ""), errProtocol.Error()) {
				t.Errorf("exit %d, %+v", code, r)
			}
		})
	}
}

// TestPipelinedReplies: RETR replies that arrive back to back, with an
// empty body, stuffed lines and a terminator right before the next
// status line, are each verified against LIST, and the RETRs go out in
// one batch.
func TestPipelinedReplies(t *testing.T) {
	script := "+OK hi\r\n+OK\r\n+OK\r\n" +
		"+OK\r\n1 a\r\n2 b\r\n3 c\r\n.\r\n" +
		"+OK\r\n1 0\r\n2 8\r\n3 2\r\n.\r\n" +
		"+OK\r\nUSER\r\npipelining\r\n.\r\n" +
		"+OK 0\r\n.\r\n" +
		"+OK 8\r\n..\r\n...x\r\n.\r\n" +
		"+OK 2\r\n\r\n.\r\n" +
		"+OK bye\r\n"
	addr, sent := scriptedServer(t, script)
	r, code, stderr := popbench(t, "fetchall", "--addr", addr, "--count", "1", "--timeout", "2s", "--progress", "never", "--pipeline", "4")
	if code != 0 || r.Errors != 0 || r.Messages != 3 || r.Bytes != 10 || r.Pipeline != 4 {
		t.Errorf("exit %d, %+v, %s", code, r, stderr)
	}
	if in := sent(); !strings.HasSuffix(in, "CAPA\r\nRETR 1\r\nRETR 2\r\nRETR 3\r\nQUIT\r\n") {
		t.Errorf("client sent %q", in)
	}
}

// TestPipelineDuration: when the time is up, fetchall stops sending RETRs,
// reads the replies due and quits cleanly, against popgate and the
// ceiling; --pipeline 1 sends one at a time and says so.
func TestPipelineDuration(t *testing.T) {
	ls := startLivePopgate(t, 1, 3000, 4000, 0)
	ceil := startLiveCeiling(t, ls.mail)
	for _, addr := range []string{ls.addr, ceil} {
		for _, depth := range []string{"16", "1"} {
			r, code, stderr := popbench(t, "fetchall", "--addr", addr, "--user", "u0", "--password", "pw",
				"--duration", "50ms", "--progress", "never", "--pipeline", depth)
			if code != 0 || r.Errors != 0 || r.Ops != 1 || r.Messages < 1 || fmt.Sprint(r.Pipeline) != depth {
				t.Errorf("%s --pipeline %s: exit %d, %+v, %s", addr, depth, code, r, stderr)
			}
			t.Logf("%s --pipeline %s: %d messages in %.3fs", addr, depth, r.Messages, r.Seconds)
		}
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"nosuch"}, {"login", "--concurrency", "0"}, {"compare", "--scenarios", "x"},
		{"fetchall", "--pipeline", "0"}, {"compare", "--pipeline", "2000"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 2 || out.Len() != 0 {
			t.Errorf("%v: exit %d, stdout %q", args, code, out.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "compare") {
		t.Errorf("--help: exit %d, %q", code, errb.String())
	}
}

func TestMedianAndTable(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
	res := map[string][]result{
		"popgate": {{OpsPerSec: 100}, {OpsPerSec: 300}, {OpsPerSec: 200, Errors: 1}},
		"dovecot": {{OpsPerSec: 10}},
		"ceiling": {{OpsPerSec: 400}},
	}
	var out bytes.Buffer
	printTable(&out, []row{summarize("login", 8, "sessions/s", res, func(r result) float64 { return r.OpsPerSec })}, compareConfig{runs: 3, duration: time.Second})
	if !strings.Contains(out.String(), "| login | 8 | sessions/s | 200 | 10.0 | 400 | 20.00× | 0.50× | 1/0/0 |") {
		t.Errorf("table:\n%s", out.String())
	}
	fetch := map[string][]result{"popgate": {{Pipeline: 16}}, "dovecot": {{Pipeline: 1}}}
	r, ok := pipelineRow(8, 16, fetch)
	if !ok || r.values["popgate"] != 16 || r.values["dovecot"] != 1 {
		t.Errorf("pipelineRow = %+v, %v", r, ok)
	}
	if _, ok := pipelineRow(8, 16, map[string][]result{"popgate": {{Pipeline: 16}}}); ok {
		t.Error("pipelineRow without a fallback")
	}
	out.Reset()
	printTable(&out, nil, compareConfig{runs: 1, duration: time.Second, pipeline: 16})
	if !strings.Contains(out.String(), "fetchall: up to 16 RETRs in flight (PIPELINING)") {
		t.Errorf("header: %q", out.String())
	}
}

func TestGenMessage(t *testing.T) {
	m := genMessage(7, 4096)
	if len(m) < 4096 || len(m) > 4096+200 || !bytes.Contains(m, []byte("\n.")) || m[len(m)-1] != '\n' {
		t.Errorf("genMessage: %d octets, dot line %v", len(m), bytes.Contains(m, []byte("\n.")))
	}
	if !bytes.Equal(m, genMessage(7, 4096)) {
		t.Error("genMessage is not deterministic")
	}
}
