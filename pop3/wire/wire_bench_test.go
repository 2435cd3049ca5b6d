package wire

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// pipeConn is a net.Conn that reads from a fixed script and discards
// writes, so the benchmarks measure wire's own code, not a socket.
type pipeConn struct {
	net.Conn // nil: only the methods below are used
	r        *bytes.Reader
}

func (c *pipeConn) Read(p []byte) (int, error)          { return c.r.Read(p) }
func (c *pipeConn) Write(p []byte) (int, error)         { return len(p), nil }
func (c *pipeConn) SetReadDeadline(time.Time) error     { return nil }
func (c *pipeConn) SetWriteDeadline(time.Time) error    { return nil }
func (c *pipeConn) Close() error                        { return nil }
func (c *pipeConn) RemoteAddr() net.Addr                { return nil }
func (c *pipeConn) LocalAddr() net.Addr                 { return nil }
func (c *pipeConn) SetDeadline(t time.Time) error       { return nil }
func (c *pipeConn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) }

// BenchmarkReadLine reads pipelined command lines ("RETR n") as a
// fetchall client sends them, 1 000 per op.
func BenchmarkReadLine(b *testing.B) {
	var script bytes.Buffer
	for i := range 1000 {
		script.WriteString("RETR ")
		script.WriteString(string(rune('0' + i%10)))
		script.WriteString("\r\n")
	}
	data := script.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	pc := &pipeConn{r: bytes.NewReader(data)}
	for b.Loop() {
		pc.r.Reset(data)
		c := New(pc, Options{MaxLine: 255})
		for range 1000 {
			if _, err := c.ReadLine(time.Minute); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkReplyLines buffers and flushes the status lines of a LIST of
// 1 000 messages, the way pop3 builds them.
func BenchmarkReplyLines(b *testing.B) {
	c := New(&pipeConn{r: bytes.NewReader(nil)}, Options{})
	b.ReportAllocs()
	for b.Loop() {
		c.Line("+OK 1000 messages (4200000 octets)")
		for range 1000 {
			c.Line("1234 4200")
		}
		c.Line(".")
		if err := c.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}
