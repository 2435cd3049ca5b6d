package pop3

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Quirks are switches for the habits of particular legacy clients. Each
// changes only the wire form; none changes what is stored. Quirks that
// change the octets of a message (all but StripUserDomain, AnswerProbes,
// HideCAPA and the greeting switches) also change the sizes that STAT,
// LIST, RETR and the login reply report, so that a size always equals
// the octets RETR sends (before dot-stuffing). docs/clients.md names the
// client behind each switch.
type Quirks struct {
	// BlankBeforeDot sends an empty line before the "." that ends RETR
	// and TOP (blank-before-dot).
	BlankBeforeDot bool
	// StatusHeader puts "Status: RO" (retrieved in an earlier session) or
	// "Status: U" (not yet) first in the header, replacing any Status
	// header the message has (status-header).
	StatusHeader bool
	// ReplaceNUL sends each NUL octet as "?" (replace-nul).
	ReplaceNUL bool
	// AddEndOfHeaders adds the empty line that ends the header when a
	// message lacks it: before the first line that is neither a header
	// field nor a continuation, or at the end (add-eoh).
	AddEndOfHeaders bool
	// StripUserDomain takes "name@domain" in USER as "name"
	// (strip-user-domain).
	StripUserDomain bool
	// AnswerProbes answers a bare AUTH (with an empty list where the
	// profile has no AUTH) and XSENDER without counting them as errors
	// (answer-probes).
	AnswerProbes bool
	// HideCAPA makes CAPA an unknown command (hide-capa).
	HideCAPA bool
	// ShortGreeting greets with "+OK POP3 server ready", without the host
	// name, as the RFC 1460 and 1725 examples do (greeting-short).
	ShortGreeting bool
	// NoTimestamp leaves the APOP timestamp out of the greeting, which
	// turns APOP off (greeting-no-timestamp).
	NoTimestamp bool
	// WrapLines breaks message lines longer than this many octets (CRLF
	// not counted); header lines are folded. 0: no wrapping (wrap=N,
	// N >= 16).
	WrapLines int
	// SizeCap truncates messages longer than this many octets and ends
	// them with a notice. 0: no cap (size-cap=N, N >= 256).
	SizeCap int64
}

// Limits of the numeric quirks.
const (
	minWrapLines = 16
	minSizeCap   = 256
)

// quirkFlag is a boolean switch and its flag name.
type quirkFlag struct {
	name string
	on   *bool
}

// quirkFlags returns the boolean switches of q by their flag names.
func quirkFlags(q *Quirks) []quirkFlag {
	return []quirkFlag{
		{"blank-before-dot", &q.BlankBeforeDot},
		{"status-header", &q.StatusHeader},
		{"replace-nul", &q.ReplaceNUL},
		{"add-eoh", &q.AddEndOfHeaders},
		{"strip-user-domain", &q.StripUserDomain},
		{"answer-probes", &q.AnswerProbes},
		{"hide-capa", &q.HideCAPA},
		{"greeting-short", &q.ShortGreeting},
		{"greeting-no-timestamp", &q.NoTimestamp},
	}
}

// QuirkNames lists every quirk switch ParseQuirks accepts; the numeric
// ones end in "=N".
func QuirkNames() []string {
	var q Quirks
	var out []string
	for _, f := range quirkFlags(&q) {
		out = append(out, f.name)
	}
	return append(out, "wrap=N", "size-cap=N")
}

// ParseQuirks parses a comma-separated list of quirk names (QuirkNames);
// "" is no quirk.
func ParseQuirks(s string) (Quirks, error) {
	var q Quirks
	flags := quirkFlags(&q)
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if f == "" {
			continue
		}
		name, val, hasVal := strings.Cut(f, "=")
		switch name {
		case "wrap", "size-cap":
			n, err := strconv.ParseInt(val, 10, 64)
			if !hasVal || err != nil {
				return Quirks{}, fmt.Errorf("pop3: quirk %q: want %s=N", f, name)
			}
			if name == "wrap" {
				if n < minWrapLines || n > 1<<20 {
					return Quirks{}, fmt.Errorf("pop3: quirk %q: N must be %d to %d", f, minWrapLines, 1<<20)
				}
				q.WrapLines = int(n)
			} else {
				q.SizeCap = n
			}
			continue
		}
		i := slices.IndexFunc(flags, func(fl quirkFlag) bool { return fl.name == name })
		if i < 0 || hasVal {
			return Quirks{}, fmt.Errorf("pop3: unknown quirk %q: want some of %s", f, strings.Join(QuirkNames(), ", "))
		}
		*flags[i].on = true
	}
	return q, q.check()
}

// check validates the numeric quirks.
func (q Quirks) check() error {
	if q.WrapLines != 0 && q.WrapLines < minWrapLines {
		return fmt.Errorf("pop3: Quirks.WrapLines %d: want 0 or at least %d", q.WrapLines, minWrapLines)
	}
	if q.SizeCap != 0 && q.SizeCap < minSizeCap {
		return fmt.Errorf("pop3: Quirks.SizeCap %d: want 0 or at least %d", q.SizeCap, minSizeCap)
	}
	return nil
}

// String returns the quirks in ParseQuirks form.
func (q Quirks) String() string {
	var out []string
	for _, f := range quirkFlags(&q) {
		if *f.on {
			out = append(out, f.name)
		}
	}
	if q.WrapLines > 0 {
		out = append(out, "wrap="+strconv.Itoa(q.WrapLines))
	}
	if q.SizeCap > 0 {
		out = append(out, "size-cap="+strconv.FormatInt(q.SizeCap, 10))
	}
	return strings.Join(out, ",")
}

// rewrites reports whether message content goes through [quirkReader].
func (q Quirks) rewrites() bool {
	return q.StatusHeader || q.ReplaceNUL || q.AddEndOfHeaders || q.WrapLines > 0 || q.SizeCap > 0
}

// sizeNeutral reports whether the wire size of every message equals its
// stored size (NUL replacement is one octet for one).
func (q Quirks) sizeNeutral() bool {
	return !q.BlankBeforeDot && !q.StatusHeader && !q.AddEndOfHeaders && q.WrapLines == 0 && q.SizeCap == 0
}
