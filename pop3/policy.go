package pop3

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// PlaintextPolicy says where a connection without TLS may log in with a
// password-based method: USER/PASS, APOP and the SASL mechanisms PLAIN,
// LOGIN and CRAM-MD5. Over TLS (STLS or implicit TLS on port 995) every
// method is allowed. RFC 2595 §2 asks that servers can refuse cleartext
// logins; RFC 5034 §4 and RFC 8314 §4.1 want that as the default.
type PlaintextPolicy uint8

const (
	// PlaintextLAN, the zero value, allows password logins without TLS
	// only from Options.PlaintextNetworks (default
	// [DefaultPlaintextNetworks]: loopback and private LAN ranges).
	PlaintextLAN PlaintextPolicy = iota
	// PlaintextAllow allows password logins without TLS from anywhere.
	PlaintextAllow
	// PlaintextNever refuses every password login without TLS.
	PlaintextNever
)

// String returns the policy's name as the popgate flag spells it.
func (p PlaintextPolicy) String() string {
	switch p {
	case PlaintextLAN:
		return "lan"
	case PlaintextAllow:
		return "allow"
	case PlaintextNever:
		return "never"
	default:
		return fmt.Sprintf("PlaintextPolicy(%d)", uint8(p))
	}
}

// ParsePlaintextPolicy parses "allow", "lan" or "never".
func ParsePlaintextPolicy(s string) (PlaintextPolicy, error) {
	for _, p := range []PlaintextPolicy{PlaintextAllow, PlaintextLAN, PlaintextNever} {
		if strings.EqualFold(s, p.String()) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("pop3: plaintext policy %q: want allow, lan or never", s)
}

// DefaultPlaintextNetworks returns the networks [PlaintextLAN] trusts when
// Options.PlaintextNetworks is nil: IPv4 and IPv6 loopback, the RFC 1918
// private ranges and IPv6 unique local addresses (RFC 4193). A new slice
// each call.
func DefaultPlaintextNetworks() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("fc00::/7"),
	}
}

// ParseNetworks parses a comma-separated list of CIDR prefixes (a bare
// address is a single-host prefix).
func ParseNetworks(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("pop3: network %q: %w", f, err)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("pop3: network %q: %w", f, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// remoteIP returns the IP address of nc's peer; ok is false for a peer
// without one (a pipe, a Unix socket).
func remoteIP(nc net.Conn) (netip.Addr, bool) {
	a := nc.RemoteAddr()
	if a == nil {
		return netip.Addr{}, false
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, ok := netip.AddrFromSlice(ta.IP)
		return ip.Unmap(), ok
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// plaintextAllowed decides, once per connection, whether password logins
// are allowed before TLS. A peer without an IP address is local.
func (s *Server) plaintextAllowed(ip netip.Addr, hasIP bool) bool {
	switch s.opts.Plaintext {
	case PlaintextAllow:
		return true
	case PlaintextNever:
		return false
	}
	if !hasIP {
		return true
	}
	for _, p := range s.opts.PlaintextNetworks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
