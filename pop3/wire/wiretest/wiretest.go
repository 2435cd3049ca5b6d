// Package wiretest is test support for popgate's line protocols: a
// loopback listener that serves each connection with a handler until the
// test ends, and a line-level client with deadlines and expectations.
// Tests of pop1, pop2, the port 109 dispatcher and the upstream store use
// it.
package wiretest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Timeout bounds each read and write of a [Client].
const Timeout = 5 * time.Second

// Serve listens on a loopback port and runs h, in its own goroutine, for
// every connection, until the test ends; it returns the address. At the
// end of the test the context passed to h is cancelled, the listener
// closed, and the cleanup waits for every h to return.
func Serve(t testing.TB, h func(context.Context, net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				h(ctx, c)
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// Client is a line-level test client. Its methods fail the test on an
// error, except [Client.Line], which returns it.
type Client struct {
	t testing.TB
	// Conn is the connection, for tests that read or close it directly.
	Conn net.Conn
	// R is the buffered reader over Conn; it may hold input already.
	R *bufio.Reader
}

// Dial connects to addr; the connection is closed when the test ends.
// It reads nothing: the test expects the greeting itself.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return New(t, c)
}

// New returns a client over conn; the caller keeps closing it.
func New(t testing.TB, conn net.Conn) *Client {
	return &Client{t: t, Conn: conn, R: bufio.NewReader(conn)}
}

// Send writes lines, each followed by CRLF, in one write.
func (c *Client) Send(lines ...string) {
	c.t.Helper()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(Timeout))
	if _, err := io.WriteString(c.Conn, strings.Join(lines, "\r\n")+"\r\n"); err != nil {
		c.t.Fatalf("send %q: %v", lines, err)
	}
}

// Line reads one line and returns it without its CRLF. A line that ends
// without CR fails the test; a read error is returned with what was
// read.
func (c *Client) Line() (string, error) {
	c.t.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(Timeout))
	s, err := c.R.ReadString('\n')
	if err != nil {
		return s, err
	}
	if !strings.HasSuffix(s, "\r\n") {
		c.t.Fatalf("reply %q does not end in CRLF", s)
	}
	return strings.TrimSuffix(s, "\r\n"), nil
}

// Expect reads one line, checks that it starts with prefix and returns
// it.
func (c *Client) Expect(prefix string) string {
	c.t.Helper()
	s, err := c.Line()
	if err != nil {
		c.t.Fatalf("waiting for %q: %v (got %q)", prefix, err, s)
	}
	if !strings.HasPrefix(s, prefix) {
		c.t.Fatalf("got %q, want prefix %q", s, prefix)
	}
	return s
}

// ExpectLine reads one line and checks it whole.
func (c *Client) ExpectLine(want string) {
	c.t.Helper()
	s, err := c.Line()
	if err != nil || s != want {
		c.t.Fatalf("got %q (%v), want %q", s, err, want)
	}
}

// Data reads exactly n octets.
func (c *Client) Data(n int64) []byte {
	c.t.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(Timeout))
	b := make([]byte, n)
	if _, err := io.ReadFull(c.R, b); err != nil {
		c.t.Fatalf("reading %d octets: %v", n, err)
	}
	return b
}

// ExpectClose checks that the server closes the connection (an end of
// file or a reset) without sending more.
func (c *Client) ExpectClose() {
	c.t.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(Timeout))
	b, err := c.R.ReadByte()
	if err == nil {
		rest, _ := c.R.ReadString('\n')
		c.t.Fatalf("want close, got %q", string(b)+rest)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !IsReset(err) {
		c.t.Fatalf("want close, got %v", err)
	}
}

// IsReset reports whether err is a connection reset by the peer.
func IsReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}
