// Command popbench is popgate's load tool: it drives any POP3 server
// through a scenario (greet, login, fetchall, bigmsg, idle, scale), checks
// every reply it receives, and prints one JSON line per run. "popbench
// ceiling" runs a trivial POP3 responder, the upper bound of the
// comparison; "popbench compare" builds popgate and runs it side by side
// with Dovecot and the ceiling. See docs/performance.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
