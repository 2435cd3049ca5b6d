package pop3

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// defaultHandshakeTimeout bounds an implicit-TLS handshake when
// Options.LineTimeout is zero (the pop3/wire line default).
const defaultHandshakeTimeout = 30 * time.Second

// implicitTLS returns the *tls.Conn behind nc if the listener already
// wrapped it (port 995, RFC 8314 §3), looking through wrappers that
// expose NetConn; nil for a plain connection.
func implicitTLS(nc net.Conn) *tls.Conn {
	for range 4 {
		switch v := nc.(type) {
		case *tls.Conn:
			return v
		case interface{ NetConn() net.Conn }:
			nc = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// implicitHandshake completes the TLS handshake of an implicit-TLS
// connection before the greeting (RFC 8314 §3.1: the client speaks
// first, then POP3 starts in AUTHORIZATION). false: the connection is
// unusable.
func (c *conn) implicitHandshake(tc *tls.Conn) bool {
	timeout := c.srv.opts.LineTimeout
	if timeout <= 0 {
		timeout = defaultHandshakeTimeout
	}
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.log.Info().Err(err).Msg("TLS handshake failed")
		return false
	}
	c.tlsUp(tc, "implicit")
	return true
}

// tlsUp records that the session is now protected and logs the
// negotiated parameters (RFC 8314 §4 asks servers to log them).
func (c *conn) tlsUp(tc *tls.Conn, how string) {
	c.tls = true
	st := tc.ConnectionState()
	c.log = c.log.With().Bool("tls", true).Logger()
	c.log.Info().Str("mode", how).Str("version", tls.VersionName(st.Version)).
		Str("cipher", tls.CipherSuiteName(st.CipherSuite)).Str("sni", st.ServerName).Msg("TLS established")
}

// activeTLS returns the session's TLS connection, or nil.
func (c *conn) activeTLS() *tls.Conn {
	if c.wc != nil {
		if tc, ok := c.wc.NetConn().(*tls.Conn); ok {
			return tc
		}
	}
	return implicitTLS(c.nc.Conn)
}

// closeNotify sends a TLS close_notify alert before the connection closes
// (RFC 8314 §3.4). It does nothing on a plain connection.
func (c *conn) closeNotify() {
	tc := c.activeTLS()
	if tc == nil {
		return
	}
	_ = tc.SetWriteDeadline(time.Now().Add(lingerTimeout))
	_ = tc.CloseWrite()
}

// Errors of STLS.
var (
	errTLSActive      = &protocolError{"Command not permitted when TLS active"}
	errSTLSAfterUTF8  = &protocolError{"STLS is not allowed after UTF8"}
	errSTLSNotOffered = &protocolError{"STLS not available"}
)

// cmdStls upgrades the connection (RFC 2595 §4). The +OK is flushed, the
// handshake runs, and the session stays in AUTHORIZATION with no new
// greeting. Octets the client sent after STLS before the handshake are
// discarded (an injection defence; the client must not pipeline past
// STLS), and the USER name given before is forgotten.
func (c *conn) cmdStls(request) (State, error) {
	switch {
	case c.tls:
		return c.state, errTLSActive
	case c.srv.tlsConfig == nil:
		return c.state, errSTLSNotOffered
	case c.utf8:
		// RFC 6856 §2.1: no STLS after UTF8.
		return c.state, errSTLSAfterUTF8
	}
	c.reply("+OK Begin TLS negotiation")
	injected := c.wc.Reader().Buffered()
	if err := c.wc.StartTLS(c.srv.tlsConfig); err != nil {
		c.log.Info().Err(err).Msg("STLS: TLS handshake failed; closing")
		c.closeNote = "TLS handshake failed"
		c.closing, c.abort = true, true
		return c.state, nil
	}
	if injected > 0 {
		c.log.Warn().Int("octets", injected).Msg("STLS: discarded plaintext sent after STLS")
	}
	if tc, ok := c.wc.NetConn().(*tls.Conn); ok {
		c.tlsUp(tc, "STLS")
	}
	c.userNext = ""
	return c.state, nil
}
