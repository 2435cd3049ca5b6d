package pop2

import (
	"bufio"
	"context"
	"net"
	"testing"
)

// listenOnce serves one connection with srv under ctx; the channel is
// closed when ServeConn returned.
func listenOnce(t *testing.T, srv *Server, ctx context.Context) (string, <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		_ = ln.Close()
		if err != nil {
			return
		}
		srv.ServeConn(ctx, c)
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().String(), done
}

// TestServeGreeted plays a port 109 dispatcher: it greets, reads the first
// line with its own buffered reader (the client pipelines more), and hands
// over.
func TestServeGreeted(t *testing.T) {
	opts, sizes := fredStore(t)
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if _, err := c.Write([]byte(srv.Greeting() + "\r\n")); err != nil {
			return
		}
		br := bufio.NewReaderSize(c, 4096)
		first, err := br.ReadString('\n')
		if err != nil {
			return
		}
		srv.ServeGreeted(context.Background(), c, br, first)
	}()
	r := dialRaw(t, ln.Addr().String())
	r.Send("HELO fred secret", "READ 3", "RETR", "ACKD", "QUIT")
	r.Expect("#3 ")
	r.Expect("=21 ")
	r.Data(21)
	r.Expect("=0 ")
	r.Expect("+ ")
	r.ExpectClose()
	<-done
	if got := sizes(); len(got) != 2 {
		t.Errorf("left %d messages, want 2", len(got))
	}
}
