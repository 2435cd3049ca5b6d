// Command popconform replays popgate's conversation transcripts (the
// conformance/testdata/*/*.txtar files, or your own) against any running
// POP server and reports, per file, PASS, FAIL or SKIP.
//
//	popconform --addr mail.example:110 --user alice --password s3cret conformance/testdata/pop3
//
// A remote server cannot be given the transcripts' fixture messages, so
// files with mailbox: headers or ! expect-mailbox steps are skipped,
// unless the server reads Maildirs that popconform can write:
//
//	popconform --addr 127.0.0.1:2110 --seed-maildir /srv/mail/%u/Maildir \
//	    --users-file /srv/mail/passwd conformance/testdata/pop3
//
// empties each user's Maildir, delivers the file's fixtures into it and
// rewrites the passwd-file with the file's users before every file, and
// reads ! expect-mailbox back from the Maildir. Files that pin popgate's
// own choices (requires: popgate) run only with --popgate. --user and
// --password replace the transcript's account where its name and password
// stand as words in C: lines. The exit status is 0 if nothing failed, 1 if
// a file failed, 2 on a usage error.
package main

import (
	"context"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
