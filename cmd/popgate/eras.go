package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"popgate/pop3"
)

// eraSettings are the POP3 era and legacy-client flags. They apply to
// every POP3 listener of the process (--pop3, --pop3s, --inetd pop3).
type eraSettings struct {
	profile    string
	quirks     string
	xtnd       []string
	xmitRelay  string
	xmitDomain string

	// Parsed by validate.
	parsedProfile pop3.Profile
	parsedQuirks  pop3.Quirks
	xtndOpts      pop3.XTNDOptions
}

func addEraFlags(fs *pflag.FlagSet, e *eraSettings) {
	fs.StringVar(&e.profile, "pop3-profile", "modern", "POP3 revision to speak: modern (RFC 1939 + extensions), rfc1939, rfc1725, rfc1460, rfc1225 or rfc1081 (docs/eras.md)")
	fs.StringVar(&e.quirks, "pop3-quirks", "", "`LIST` of legacy client switches, comma-separated: "+strings.Join(pop3.QuirkNames(), ", ")+" (docs/clients.md)")
	fs.StringSliceVar(&e.xtnd, "pop3-xtnd", nil, "XTND subcommands to offer, a `LIST` of: xlst (Message-Id list for clients without UIDL), xmit (send mail through --pop3-xmit-relay)")
	fs.StringVar(&e.xmitRelay, "pop3-xmit-relay", "", "SMTP relay `HOST:PORT` for XTND XMIT")
	fs.StringVar(&e.xmitDomain, "pop3-xmit-domain", "", "`DOMAIN` for XTND XMIT envelope senders of user names without @ (default: --hostname)")
}

// validate parses the flags; errors are usage errors.
func (e *eraSettings) validate() error {
	p, err := pop3.ParseProfile(e.profile)
	if err != nil {
		return fmt.Errorf("--pop3-profile: %w", err)
	}
	q, err := pop3.ParseQuirks(e.quirks)
	if err != nil {
		return fmt.Errorf("--pop3-quirks: %w", err)
	}
	var x pop3.XTNDOptions
	for _, s := range e.xtnd {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "xlst":
			x.XLST = true
		case "xmit":
			if e.xmitRelay == "" {
				return errors.New("--pop3-xtnd xmit needs --pop3-xmit-relay")
			}
			x.XMIT = &pop3.XMITOptions{Relay: e.xmitRelay, Domain: e.xmitDomain}
		case "":
		default:
			return fmt.Errorf("--pop3-xtnd %q: want xlst or xmit", s)
		}
	}
	if e.xmitRelay != "" && x.XMIT == nil {
		return errors.New("--pop3-xmit-relay without --pop3-xtnd xmit")
	}
	e.parsedProfile, e.parsedQuirks, e.xtndOpts = p, q, x
	return nil
}

// apply sets the era options of the POP3 server.
func (e *eraSettings) apply(o *pop3.Options) {
	o.Profile = e.parsedProfile
	o.Quirks = e.parsedQuirks
	o.XTND = e.xtndOpts
	if x := o.XTND.XMIT; x != nil {
		cp := *x
		o.XTND.XMIT = &cp
	}
}
