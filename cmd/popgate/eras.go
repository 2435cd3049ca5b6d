package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"popgate/pop3"
)

// eraSettings are the POP3 era and legacy-client flags. They apply to
// every POP3 listener of the process (--pop3, --pop3s, --inetd pop3)
// that does not override them with listener options (parseListener).
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

	// The --pop3 and --pop3s listeners, parsed by parseListeners.
	pop3Listeners, pop3sListeners []pop3Listener
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

// eraKey is what may differ between the POP3 servers of one process: one
// pop3.Server is built for each distinct key (newFrontEnds). Everything
// else (store, limiter, TLS configuration, XTND) is the process's.
type eraKey struct {
	profile pop3.Profile
	quirks  pop3.Quirks
}

// String describes the key for logs and the welcome text.
func (k eraKey) String() string {
	s := "profile " + k.profile.String()
	if q := k.quirks.String(); q != "" {
		s += ", quirks " + q
	}
	return s
}

// defaultKey is the key of the process-wide flags.
func (e *eraSettings) defaultKey() eraKey {
	return eraKey{e.parsedProfile, e.parsedQuirks}
}

// pop3Listener is one --pop3 or --pop3s listener: the address to bind and
// the era options its connections get.
type pop3Listener struct {
	addr string
	era  eraKey
}

// listenerOptionSep separates a listener address from its options. A
// semicolon appears in no host:port form, IPv6 ("[::1]:110") included,
// and in no option value.
const listenerOptionSep = ";"

// parseListeners parses the --pop3 and --pop3s values; validate must have
// run. Errors are usage errors.
func (e *eraSettings) parseListeners(pop3Addrs, pop3sAddrs []string) error {
	e.pop3Listeners, e.pop3sListeners = nil, nil
	for _, spec := range pop3Addrs {
		l, err := e.parseListener(spec)
		if err != nil {
			return fmt.Errorf("--pop3 %q: %w", spec, err)
		}
		e.pop3Listeners = append(e.pop3Listeners, l)
	}
	for _, spec := range pop3sAddrs {
		l, err := e.parseListener(spec)
		if err != nil {
			return fmt.Errorf("--pop3s %q: %w", spec, err)
		}
		e.pop3sListeners = append(e.pop3sListeners, l)
	}
	return nil
}

// parseListener parses "ADDR[;profile=NAME][;quirks=LIST]". An option
// left out keeps the process-wide flag (--pop3-profile, --pop3-quirks);
// quirks=LIST replaces --pop3-quirks, and "quirks=" turns them all off.
func (e *eraSettings) parseListener(spec string) (pop3Listener, error) {
	parts := strings.Split(spec, listenerOptionSep)
	l := pop3Listener{addr: strings.TrimSpace(parts[0]), era: e.defaultKey()}
	if l.addr == "" {
		return l, errors.New("no address before the options")
	}
	seen := map[string]bool{}
	for _, opt := range parts[1:] {
		key, val, ok := strings.Cut(opt, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		if !ok || key == "" {
			return l, fmt.Errorf("listener option %q: want profile=NAME or quirks=LIST", opt)
		}
		if seen[key] {
			return l, fmt.Errorf("listener option %s given twice", key)
		}
		seen[key] = true
		switch key {
		case "profile":
			p, err := pop3.ParseProfile(strings.TrimSpace(val))
			if err != nil {
				return l, err
			}
			l.era.profile = p
		case "quirks":
			q, err := pop3.ParseQuirks(val)
			if err != nil {
				return l, err
			}
			l.era.quirks = q
		default:
			return l, fmt.Errorf("unknown listener option %q: want profile=NAME or quirks=LIST", key)
		}
	}
	return l, nil
}

// noListenerOptions rejects options on the listeners that take none
// (--pop2, --pop1, --pop109).
func noListenerOptions(flag string, addrs []string) error {
	for _, a := range addrs {
		if strings.Contains(a, listenerOptionSep) {
			return fmt.Errorf("--%s %q: listener options are for --pop3 and --pop3s only", flag, a)
		}
	}
	return nil
}
