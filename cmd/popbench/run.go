package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// usage is the top-level help.
const usage = `Usage:
  popbench SCENARIO [flags]   load a POP3 server; one JSON line per run
  popbench ceiling [flags]    serve the trivial POP3 responder (the ceiling)
  popbench compare [flags]    popgate vs Dovecot vs the ceiling, as a table

Scenarios: greet, login, fetchall, bigmsg, idle, scale.
"popbench SCENARIO --help" lists the flags.
`

// run is the whole program; main only supplies the context and streams.
// It returns the exit status: 0 when the run saw no error, 1 when it
// counted errors or could not run, 2 on a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	switch args[0] {
	case "ceiling":
		return runCeiling(ctx, args[1:], stdout, stderr)
	case "compare":
		return runCompare(ctx, args[1:], stdout, stderr)
	}
	return runScenario(ctx, args[0], args[1:], stdout, stderr)
}

// exitFor maps a flag-parsing error to an exit status, printing it.
func exitFor(err error, stderr io.Writer) int {
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "popbench: %v\n", err)
	return 2
}

// runScenario parses a scenario's flags, runs it and prints its JSON line.
func runScenario(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	cfg := benchConfig{scenario: name}
	fs := pflag.NewFlagSet("popbench "+name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:1110", "POP3 server `HOST:PORT`")
	fs.StringVar(&cfg.user, "user", "demo", "user `NAME`")
	fs.StringVar(&cfg.password, "password", "demo", "password of every user")
	fs.StringVar(&cfg.userTemplate, "user-template", "", "user names by worker (session for idle) `TEMPLATE`, %d the index from 0, e.g. bench%d; overrides --user")
	fs.IntVarP(&cfg.concurrency, "concurrency", "c", 1, "parallel sessions (idle: parallel dialers)")
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "how long to run (ignored with --count)")
	fs.IntVar(&cfg.count, "count", 0, "run this many sessions in all instead of --duration")
	fs.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "per-reply timeout")
	fs.IntVar(&cfg.pid, "pid", 0, "server `PID` whose VmRSS is reported (idle: per session)")
	fs.IntVar(&cfg.sessions, "sessions", 100, "idle: logged-in sessions to hold")
	fs.DurationVar(&cfg.settle, "settle", 2*time.Second, "idle: wait after the last login before reading RSS")
	fs.StringArrayVar(&cfg.coldRemove, "cold-remove", nil, "scale: `GLOB` (%u the user) to delete before every session, for cold runs (repeatable)")
	fs.StringVar(&cfg.server, "server", "", "label of the server in the JSON line")
	fs.IntVar(&cfg.pipeline, "pipeline", defaultPipeline, "fetchall: RETR commands kept in flight when the server's CAPA lists PIPELINING (1: one per round trip, no CAPA)")
	progressMode := fs.String("progress", "auto", "progress line on stderr: auto (when a terminal), always, never")
	if err := fs.Parse(args); err != nil {
		return exitFor(err, stderr)
	}
	if fs.NArg() > 0 {
		return exitFor(fmt.Errorf("unexpected argument %q", fs.Arg(0)), stderr)
	}
	if cfg.concurrency < 1 || cfg.sessions < 1 || cfg.count < 0 || (cfg.count == 0 && cfg.duration <= 0) {
		return exitFor(errors.New("--concurrency, --sessions and --duration or --count must be positive"), stderr)
	}
	if cfg.pipeline < 1 || cfg.pipeline > maxPipeline {
		return exitFor(fmt.Errorf("--pipeline %d: want 1 to %d", cfg.pipeline, maxPipeline), stderr)
	}
	switch *progressMode {
	case "always":
		cfg.progress = stderr
	case "auto":
		if isTerminal(stderr) {
			cfg.progress = stderr
		}
	case "never":
	default:
		return exitFor(fmt.Errorf("--progress %q: want auto, always or never", *progressMode), stderr)
	}
	if !isScenario(name) {
		fmt.Fprintf(stderr, "popbench: unknown scenario or command %q\n\n%s", name, usage)
		return 2
	}
	res, err := runBench(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "popbench: %v\n", err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		fmt.Fprintf(stderr, "popbench: writing result: %v\n", err)
		return 1
	}
	if res.Errors > 0 {
		return 1
	}
	return 0
}

func isScenario(name string) bool {
	for _, s := range scenarioNames() {
		if s == name {
			return true
		}
	}
	return false
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// runCeiling serves the ceiling responder until ctx is cancelled.
func runCeiling(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var s ceiling
	fs := pflag.NewFlagSet("popbench ceiling", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:1111", "listen `HOST:PORT`")
	fs.StringVar(&s.template, "maildir", "", "Maildir of user %u, e.g. /srv/mail/%u (empty: every maildrop is empty)")
	fs.DurationVar(&s.timeout, "timeout", 10*time.Minute, "idle limit per session")
	if err := fs.Parse(args); err != nil {
		return exitFor(err, stderr)
	}
	if fs.NArg() > 0 {
		return exitFor(fmt.Errorf("unexpected argument %q", fs.Arg(0)), stderr)
	}
	if strings.Contains(s.template, "%") && !strings.Contains(s.template, "%u") {
		return exitFor(fmt.Errorf("--maildir %q: the only escape is %%u", s.template), stderr)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "popbench: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "popbench: ceiling on %s\n", ln.Addr())
	if err := s.serve(ctx, ln); err != nil {
		fmt.Fprintf(stderr, "popbench: %v\n", err)
		return 1
	}
	return 0
}
