// Command popgate is a multi-protocol historical POP server: POP1 (RFC 918),
// POP2 (RFC 937) and POP3 (RFC 1939) over one mailstore.
//
// With no flags it runs a demo: an in-memory maildrop for user "demo"
// (password "demo") served on loopback. Run "popgate --help" for the flags
// and docs/ for the guides.
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
	if len(os.Args) > 1 && os.Args[1] == "passwd" {
		os.Exit(runPasswd(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
