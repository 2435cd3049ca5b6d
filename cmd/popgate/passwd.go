package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"popgate/mailstore/users"
)

// runPasswd is "popgate passwd [--scheme S] USER": it reads the password
// from the first line of stdin and prints a passwd-file line for it, ready
// to append to the --users file. The password is never taken from the
// command line, where other users could read it in the process list.
func runPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("popgate passwd", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	scheme := fs.String("scheme", "SHA512-CRYPT", "password `SCHEME`: SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, ARGON2ID, or PLAIN (the only one APOP and CRAM-MD5 can use)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: popgate passwd [--scheme SCHEME] USER < password-file\n\n"+
			"Reads the password from the first line of standard input and prints a\n"+
			"line for a Dovecot-style passwd-file (popgate --users FILE), e.g.\n"+
			"  printf '%%s\\n' 'secret' | popgate passwd alice >> /etc/popgate/users\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintf(stderr, "popgate passwd: reading the password: %v\n", err)
		return 1
	}
	password := strings.TrimRight(line, "\r\n")
	if password == "" {
		fmt.Fprintln(stderr, "popgate passwd: no password on standard input")
		return 1
	}
	entry, err := users.Entry(fs.Arg(0), password, *scheme)
	if err != nil {
		fmt.Fprintf(stderr, "popgate passwd: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, entry)
	return 0
}
