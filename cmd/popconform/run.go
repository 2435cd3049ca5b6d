package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"popgate/conformance"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	usageHeader = "usage: popconform --addr HOST:PORT [flags] FILE-OR-DIR...\n\n" +
		"Replays .txtar transcripts against a POP server. Flags:\n"
)

// run is the whole program, minus os.Exit: it parses args, replays every
// transcript and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fset := pflag.NewFlagSet("popconform", pflag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() {
		fmt.Fprint(stderr, usageHeader)
		fset.PrintDefaults()
	}
	var rt remote
	fset.StringVar(&rt.addr, "addr", "", "server address, HOST:PORT (required)")
	fset.StringVar(&rt.user, "user", "", "account to use instead of the transcripts' user")
	fset.StringVar(&rt.password, "password", "", "password (and APOP secret) of --user")
	fset.BoolVar(&rt.popgate, "popgate", false, "the server is popgate: also run files with \"requires: popgate\"")
	seedDir := fset.String("seed-maildir", "", "write each transcript's users' mail into the Maildirs the server reads: `PATH` with %u (e.g. /srv/mail/%u/Maildir), or a folder for DIR/%u/Maildir; emptied per transcript")
	usersFile := fset.String("users-file", "", "with --seed-maildir: rewrite this passwd-`FILE` (PLAIN scheme) with each transcript's users")
	knownFile := fset.String("known-deviations", "", "`FILE` listing transcripts (base names) this server is known to fail, each with the reason: they report XFAIL, and XPASS (a failure) once they pass")
	timeout := fset.Duration("timeout", conformance.DefaultTimeout, "deadline of each step (a read, a write)")
	verbose := fset.BoolP("verbose", "v", false, "print each failure in full: line, narration, expected and received bytes")
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintf(stderr, "popconform: %v\n", err)
		return exitUsage
	}
	if rt.addr == "" {
		fmt.Fprintln(stderr, "popconform: --addr is required")
		fset.Usage()
		return exitUsage
	}
	if fset.NArg() == 0 {
		fmt.Fprintln(stderr, "popconform: name at least one transcript file or folder")
		fset.Usage()
		return exitUsage
	}
	if (rt.user == "") != (rt.password == "") {
		fmt.Fprintln(stderr, "popconform: give --user and --password together")
		return exitUsage
	}
	if *usersFile != "" && *seedDir == "" {
		fmt.Fprintln(stderr, "popconform: --users-file needs --seed-maildir")
		return exitUsage
	}
	files, err := collect(fset.Args())
	if err != nil {
		fmt.Fprintf(stderr, "popconform: %v\n", err)
		return exitUsage
	}
	known := map[string]string{}
	if *knownFile != "" {
		if known, err = readKnown(*knownFile); err != nil {
			fmt.Fprintf(stderr, "popconform: %v\n", err)
			return exitUsage
		}
	}
	rt.timeout = *timeout
	var target conformance.Target = &rt
	if *seedDir != "" {
		target = seededRemote{remote: &rt, sd: newSeeder(*seedDir, *usersFile)}
	}
	r := conformance.Runner{Timeout: *timeout, IgnoreBanner: true}
	var passed, failed, skipped, xfail int
	for _, file := range files {
		if ctx.Err() != nil {
			break
		}
		status, detail := runFile(ctx, &r, target, file)
		reason, isKnown := known[filepath.Base(file)]
		switch {
		case isKnown && status == "FAIL":
			xfail++
			first, _, _ := strings.Cut(detail, "\n")
			fmt.Fprintf(stdout, "XFAIL %s: known deviation: %s\n\t%s\n", file, reason, first)
			continue
		case isKnown && status == "PASS":
			failed++
			fmt.Fprintf(stdout, "XPASS %s: listed in %s as failing (%s) but passed: remove it from the list\n", file, *knownFile, reason)
			continue
		}
		switch status {
		case "PASS":
			passed++
			fmt.Fprintf(stdout, "PASS %s\n", file)
		case "SKIP":
			skipped++
			fmt.Fprintf(stdout, "SKIP %s: %s\n", file, detail)
		default:
			failed++
			if *verbose {
				fmt.Fprintf(stdout, "FAIL %s\n\t%s\n", file, strings.ReplaceAll(detail, "\n", "\n\t"))
			} else {
				first, _, _ := strings.Cut(detail, "\n")
				fmt.Fprintf(stdout, "FAIL %s: %s\n", file, first)
			}
		}
	}
	if xfail > 0 {
		fmt.Fprintf(stdout, "%d known deviations (XFAIL, listed in %s)\n", xfail, *knownFile)
	}
	fmt.Fprintf(stdout, "%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "popconform: interrupted: %v\n", ctx.Err())
		return exitFailed
	}
	if failed > 0 {
		return exitFailed
	}
	return exitOK
}

// runFile replays one file and returns PASS, FAIL or SKIP with the reason
// or the failure.
func runFile(ctx context.Context, r *conformance.Runner, t conformance.Target, file string) (status, detail string) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "FAIL", err.Error()
	}
	s, err := conformance.Parse(file, data)
	if err != nil {
		return "FAIL", err.Error()
	}
	_, err = r.Run(ctx, s, t)
	switch {
	case err == nil:
		return "PASS", ""
	case errors.Is(err, conformance.ErrSkip):
		return "SKIP", conformance.SkipReason(err)
	}
	return "FAIL", err.Error()
}

// collect expands the arguments: files as given, folders walked for
// *.txtar files in lexical order.
func collect(args []string) ([]string, error) {
	var files []string
	for _, arg := range args {
		fi, err := os.Stat(arg)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			files = append(files, arg)
			continue
		}
		var found []string
		err = filepath.WalkDir(arg, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(path, ".txtar") {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", arg, err)
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("%s holds no .txtar files", arg)
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	return files, nil
}

// readKnown reads a --known-deviations file: one transcript base name per
// line, then the reason; blank lines and # lines are ignored.
func readKnown(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--known-deviations: %w", err)
	}
	out := map[string]string{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, reason, _ := strings.Cut(line, " ")
		reason = strings.TrimSpace(reason)
		if !strings.HasSuffix(name, ".txtar") || reason == "" {
			return nil, fmt.Errorf("--known-deviations %s:%d: want NAME.txtar and a reason", path, i+1)
		}
		out[name] = reason
	}
	return out, nil
}
