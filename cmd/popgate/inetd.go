package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// serveInetd serves one connection on standard input and output, as inetd,
// xinetd or systemd socket activation with Accept=yes start a server: the
// accepted socket is file descriptors 0 and 1. When they are not a socket
// (a pipe from ssh or a test harness) they are served as a byte stream with
// the same timeouts.
func serveInetd(ctx context.Context, fe frontEnd) error {
	if c, err := net.FileConn(os.Stdin); err == nil {
		fe.ServeConn(ctx, c)
		return nil
	}
	conn, err := newStdioConn()
	if err != nil {
		return err
	}
	fe.ServeConn(ctx, conn)
	return nil
}

// stdioConn is a net.Conn over file descriptors 0 and 1. Both are switched
// to non-blocking mode so that Go's poller, and therefore read and write
// deadlines, work on them; Close restores blocking mode.
type stdioConn struct {
	in, out *os.File
}

func newStdioConn() (*stdioConn, error) {
	for _, fd := range []int{0, 1} {
		if err := syscall.SetNonblock(fd, true); err != nil {
			return nil, fmt.Errorf("stdio: making fd %d non-blocking: %w", fd, err)
		}
	}
	return &stdioConn{in: os.NewFile(0, "stdin"), out: os.NewFile(1, "stdout")}, nil
}

func (c *stdioConn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *stdioConn) Write(p []byte) (int, error) { return c.out.Write(p) }

func (c *stdioConn) Close() error {
	errIn := c.in.Close()
	errOut := c.out.Close()
	return errors.Join(errIn, errOut)
}

func (c *stdioConn) LocalAddr() net.Addr  { return stdioAddr("stdout") }
func (c *stdioConn) RemoteAddr() net.Addr { return stdioAddr("stdin") }

func (c *stdioConn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}

func (c *stdioConn) SetReadDeadline(t time.Time) error {
	return deadlineErr(c.in.SetReadDeadline(t))
}

func (c *stdioConn) SetWriteDeadline(t time.Time) error {
	return deadlineErr(c.out.SetWriteDeadline(t))
}

// deadlineErr forgives os.ErrNoDeadline: a regular file (output redirected
// to a file) never blocks, so it needs no deadline.
func deadlineErr(err error) error {
	if errors.Is(err, os.ErrNoDeadline) {
		return nil
	}
	return err
}

// stdioAddr names the two ends of a stdio connection in logs.
type stdioAddr string

func (a stdioAddr) Network() string { return "stdio" }
func (a stdioAddr) String() string  { return string(a) }
