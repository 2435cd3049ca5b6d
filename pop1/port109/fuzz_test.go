package port109

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// memConn is an in-memory net.Conn: reads come from a fixed input (then
// EOF), writes are counted and kept up to a limit. Deadlines are no-ops,
// so a session ends only by reaching the end of its input or by closing.
type memConn struct {
	mu      sync.Mutex
	in      *bytes.Reader
	out     bytes.Buffer
	written int
	closed  bool
}

const keepOutput = 1 << 16

func (c *memConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.in.Read(p)
}

func (c *memConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	c.written += len(p)
	if room := keepOutput - c.out.Len(); room > 0 {
		c.out.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (c *memConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

var _ io.ReadWriteCloser = (*memConn)(nil)

// FuzzDispatch feeds junk to the port 109 dispatcher (and, when the first
// line routes it, to the POP1 or POP2 server): no panic, no hang, output
// bounded by the input, and the connection always closed.
func FuzzDispatch(f *testing.F) {
	for _, s := range []string{
		"USER fred\r\nPASS secret\r\nRDEL\r\nRCEV\r\nRCVD\r\nQUIT\r\n",
		"HELO fred secret\r\nREAD 1\r\nRETR\r\nACKD\r\nQUIT\r\n",
		"QUIT\r\n", "\r\n", "\x00\xff\n", "user\n", "HELO\n", "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"USER fred\nPASS secret\nRETR\nRECV\nRSET\nRETR x\nNOOP\n",
	} {
		f.Add([]byte(s))
	}
	d := newDispatcher(f, newStoreTB(f), Options{})
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &memConn{in: bytes.NewReader(in)}
		done := make(chan struct{})
		go func() {
			defer close(done)
			d.ServeConn(context.Background(), c)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("session on %q did not end", in)
		}
		if !c.closed {
			t.Fatal("connection not closed")
		}
		// Every reply line is at most a few hundred octets and the
		// mailbox is small: output grows with the input, no faster.
		if limit := 16*1024 + 256*len(in); c.written > limit {
			t.Fatalf("wrote %d octets for %d octets of input", c.written, len(in))
		}
	})
}
