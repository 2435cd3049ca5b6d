package conformance

import "net"

// NetConn returns the recorded connection, so that a front end can see
// through the recorder (pop3 recognises an implicit-TLS *tls.Conn this
// way).
func (c *recConn) NetConn() net.Conn { return c.Conn }
