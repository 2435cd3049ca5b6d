package conformance

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// startTLS runs the client side of a TLS handshake on the current
// connection (! starttls), after the script has sent STLS and read its
// +OK (RFC 2595 §4). The server's certificate is not verified: the
// transcripts test the protocol, not a PKI. Octets the server sent after
// its +OK and before the handshake are a failure: the handshake must
// start right after that reply's CRLF.
func (ru *run) startTLS(c *conn, st *Step) error {
	if n := c.r.Buffered(); n > 0 {
		got, _ := c.r.Peek(n)
		return ru.fail(st, "nothing before the TLS handshake", got, errors.New("server sent data after its STLS reply"))
	}
	tc := tls.Client(c.nc, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err := tc.SetDeadline(time.Now().Add(ru.r.timeout())); err != nil {
		return ru.fail(st, "", nil, err)
	}
	if err := tc.Handshake(); err != nil {
		return ru.fail(st, "", nil, fmt.Errorf("TLS handshake: %w", err))
	}
	_ = tc.SetDeadline(time.Time{})
	c.nc = tc
	c.r = bufio.NewReaderSize(tc, 4096)
	return nil
}
