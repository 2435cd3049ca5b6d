//go:build tools

// Package tools pins module dependencies that packages under construction
// will import, so that concurrent work does not race on go.mod. It is never
// built.
package tools

import (
	_ "github.com/emersion/go-imap/v2/imapclient"
	_ "github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	_ "github.com/emersion/go-sasl"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/rs/zerolog"
	_ "github.com/spf13/pflag"
	_ "golang.org/x/crypto/bcrypt"
	_ "golang.org/x/tools/txtar"
)
