package pop3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"popgate/mailstore"
)

// RPOPOptions enables RPOP (RFC 1081 and 1225; removed by RFC 1460) in
// the rfc1081 and rfc1225 profiles.
//
// RPOP is DANGEROUS. It logs a user in with no password at all: the
// server believes that the client host has already authenticated its
// user, because the connection comes from a privileged TCP port (below
// 1024), which only root could bind on a 1980s Unix host. Anyone with
// root on, or a network path spoofing, a trusted host can read and delete
// every maildrop. Offer it only to hosts you administer, on a network no
// one else can reach.
type RPOPOptions struct {
	// Networks are the client addresses RPOP is accepted from. Required:
	// an empty list is a configuration error, not "everyone".
	Networks []netip.Prefix
	// Store opens an account with no credential. Nil means Options.Store,
	// which must then implement [TrustedStore].
	Store TrustedStore
}

// TrustedStore is a store that can open an account without checking a
// credential, for RPOP. Only stores meant for trusted-host logins should
// implement it.
type TrustedStore interface {
	// LoginTrusted returns the account of user, or ErrAuthFailed if there
	// is no such user.
	LoginTrusted(ctx context.Context, user string) (mailstore.Account, error)
}

var (
	errRPOPDenied = &protocolError{"permission denied"}
	errRPOPNoUser = &protocolError{"RPOP must immediately follow a successful USER"}
)

// checkRPOP validates and completes o.RPOP in New.
func checkRPOP(o *Options) error {
	r := o.RPOP
	if r == nil {
		return nil
	}
	if !o.Profile.hasRPOP() {
		return fmt.Errorf("pop3: Options.RPOP needs profile rfc1081 or rfc1225, not %s (RPOP was removed by RFC 1460)", o.Profile)
	}
	if len(r.Networks) == 0 {
		return errors.New("pop3: Options.RPOP.Networks is empty: name the trusted networks")
	}
	cp := *r
	if cp.Store == nil {
		ts, ok := o.Store.(TrustedStore)
		if !ok {
			return errors.New("pop3: Options.RPOP: the store cannot log users in without a password (no TrustedStore)")
		}
		cp.Store = ts
	}
	o.RPOP = &cp
	return nil
}

// rpopAllowed reports whether a peer may use RPOP: its address is in a
// trusted network and its source port is privileged (RFC 1081 p.12).
func rpopAllowed(addr net.Addr, networks []netip.Prefix) bool {
	var ap netip.AddrPort
	if ta, ok := addr.(*net.TCPAddr); ok {
		ap = ta.AddrPort()
	} else if addr != nil {
		p, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return false
		}
		ap = p
	} else {
		return false
	}
	if ap.Port() == 0 || ap.Port() >= 1024 {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, n := range networks {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// cmdRPOP logs in the user named by the USER just before without a
// password (RFC 1081 p.12). The argument is the user's name on the client
// host; popgate has no mapping between hosts' user names, so it must equal
// the USER name.
func (c *conn) cmdRPOP(req request) (State, error) {
	if c.user == "" {
		return c.state, errRPOPNoUser
	}
	r := c.srv.opts.RPOP
	if !rpopAllowed(c.nc.RemoteAddr(), r.Networks) || req.args[0] != c.user {
		c.log.Warn().Str("user", c.user).Msg("RPOP refused: untrusted host, unprivileged port or other client user")
		c.srv.limiter.Failure(c.ip, c.hasIP, c.user)
		return c.state, errRPOPDenied
	}
	if w := c.srv.limiter.Check(c.ip, c.hasIP, c.user); w > 0 {
		return c.state, c.loginRefused("RPOP", c.user, &throttleError{wait: w})
	}
	acct, err := r.Store.LoginTrusted(c.ctx, c.user)
	return c.login("RPOP", c.user, acct, err)
}
