package maildir

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"popgate/mailstore"
)

// fileName is a parsed Maildir file name:
//
//	<base>[:2,<flags>]     base = <unique>[,S=<size>][,W=<vsize>][,...]
type fileName struct {
	name  string // the whole name
	base  string // the part before the info separator ':'
	info  string // the part after ':' ("" if none), e.g. "2,RS"
	size  int64  // ,S= (octets of the file as stored), or -1
	vsize int64  // ,W= (octets of the CRLF form), or -1
}

// parseName splits a Maildir file name into its parts.
func parseName(name string) fileName {
	fn := fileName{name: name, base: name, size: -1, vsize: -1}
	if i := strings.IndexByte(name, ':'); i >= 0 {
		fn.base, fn.info = name[:i], name[i+1:]
	}
	rest := fn.base
	for {
		i := strings.IndexByte(rest, ',')
		if i < 0 {
			break
		}
		rest = rest[i+1:]
		f := rest
		if j := strings.IndexByte(f, ','); j >= 0 {
			f = f[:j]
		}
		switch {
		case strings.HasPrefix(f, "S="):
			if n, err := strconv.ParseInt(f[2:], 10, 64); err == nil && n >= 0 {
				fn.size = n
			}
		case strings.HasPrefix(f, "W="):
			if n, err := strconv.ParseInt(f[2:], 10, 64); err == nil && n >= 0 {
				fn.vsize = n
			}
		}
	}
	return fn
}

// flags returns the standard flags (the letters after ":2,").
func (f fileName) flags() string {
	if rest, ok := strings.CutPrefix(f.info, "2,"); ok {
		return rest
	}
	return ""
}

// seen reports whether the S (seen) flag is set.
func (f fileName) seen() bool { return strings.IndexByte(f.flags(), 'S') >= 0 }

// withFlag returns the file name with flag added to the ":2," flags, kept
// in ASCII order as the Maildir specification asks. A name whose info is
// not of the ":2," kind is returned unchanged.
func (f fileName) withFlag(flag byte) string {
	switch {
	case f.info == "":
		return f.base + ":2," + string(flag)
	case !strings.HasPrefix(f.info, "2,"):
		return f.name
	}
	flags := f.flags()
	if strings.IndexByte(flags, flag) >= 0 {
		return f.name
	}
	i := 0
	for i < len(flags) && flags[i] < flag {
		i++
	}
	return f.base + ":2," + flags[:i] + string(flag) + flags[i:]
}

// curName is the name a file from new/ gets in cur/: the same, with an
// empty ":2," info when it had none.
func curName(name string) string {
	if strings.IndexByte(name, ':') >= 0 {
		return name
	}
	return name + ":2,"
}

// baseUID is the default UID of a message: its base name without the
// ,S= and ,W= size fields, or, if that is not a legal RFC 1939 unique-id
// (too long, or octets outside 0x21-0x7E), "H" and 32 hex digits of its
// SHA-256.
func baseUID(base string) string {
	fields := strings.Split(base, ",")
	kept := fields[:1]
	for _, f := range fields[1:] {
		if !strings.HasPrefix(f, "S=") && !strings.HasPrefix(f, "W=") {
			kept = append(kept, f)
		}
	}
	uid := strings.Join(kept, ",")
	if mailstore.ValidUID(uid) {
		return uid
	}
	return hashedUID(base)
}

// hashedUID is a legal UID derived from an arbitrary string.
func hashedUID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "H" + hex.EncodeToString(sum[:16])
}

// deliveryOrder is the sort key of a file not yet in the cache: the
// seconds and microseconds that Maildir writers put at the start of the
// name ("<secs>.M<usecs>P<pid>...", "<secs>.<pid>_<n>...").
func deliveryOrder(base string) (secs, usecs int64) {
	head, rest, _ := strings.Cut(base, ".")
	secs, err := strconv.ParseInt(head, 10, 64)
	if err != nil {
		return -1, -1
	}
	if rest, ok := strings.CutPrefix(rest, "M"); ok {
		end := 0
		for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
			end++
		}
		if n, err := strconv.ParseInt(rest[:end], 10, 64); err == nil {
			usecs = n
		}
	}
	return secs, usecs
}

// sanitizeHost makes a host name safe inside a Maildir file name, as the
// Maildir specification and Dovecot do: '/' ':' and ',' become octal
// escapes.
func sanitizeHost(h string) string {
	r := strings.NewReplacer("/", `\057`, ":", `\072`, ",", `\054`)
	if h = r.Replace(h); h == "" {
		return "localhost"
	}
	return h
}
