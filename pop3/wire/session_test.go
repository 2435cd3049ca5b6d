package wire

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		done <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-done
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = server.Close(); _ = client.Close() })
	return server, client
}

func TestRunPipelinedAndClose(t *testing.T) {
	srv, cli := tcpPair(t)
	wc := New(srv, Options{})
	first := "ONE"
	if _, err := io.WriteString(cli, "TWO\r\nQUIT\r\nLATE\r\n"); err != nil {
		t.Fatal(err)
	}
	var got []string
	closing := false
	wc.Run(&first, Loop{
		Idle: func() time.Duration { return 5 * time.Second },
		Handle: func(line []byte) Ending {
			got = append(got, string(line))
			wc.Line("+ " + string(line))
			if string(line) == "QUIT" {
				return CloseAfterReply
			}
			return KeepOpen
		},
		ReadFailed: func(err error) { t.Errorf("ReadFailed(%v)", err) },
		Closing:    func() { closing = !wc.Linger(time.Second) },
	})
	if strings.Join(got, ",") != "ONE,TWO,QUIT" || closing {
		t.Fatalf("handled %q, linger failed %v", got, closing)
	}
	_ = srv.Close()
	b, _ := io.ReadAll(cli)
	if string(b) != "+ ONE\r\n+ TWO\r\n+ QUIT\r\n" {
		t.Fatalf("client read %q", b)
	}
}

func TestRunFirstLineTooLong(t *testing.T) {
	srv, _ := tcpPair(t)
	wc := New(srv, Options{MaxLine: 8})
	first := "1234567"
	var tooLong bool
	var readErr error
	l := Loop{
		Handle:     func([]byte) Ending { t.Error("Handle called"); return CloseAtOnce },
		ReadFailed: func(err error) { readErr = err },
	}
	wc.Run(&first, l)
	if !errors.Is(readErr, ErrLineTooLong) {
		t.Fatalf("ReadFailed got %v, want ErrLineTooLong", readErr)
	}
	l.TooLong = func() { tooLong = true }
	readErr = nil
	wc.Run(&first, l)
	if !tooLong || readErr != nil {
		t.Fatalf("TooLong %v, ReadFailed %v", tooLong, readErr)
	}
}

func TestCloseOnDone(t *testing.T) {
	srv, cli := tcpPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	sctx, end := CloseOnDone(ctx, srv)
	defer end()
	cancel()
	<-sctx.Done()
	_ = cli.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(cli).ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("read after shutdown: %v, want EOF", err)
	}

	srv2, _ := tcpPair(t)
	_, end2 := CloseOnDone(context.Background(), srv2)
	end2()
	if _, err := srv2.Write([]byte("x")); err != nil {
		t.Fatalf("end closed the connection: %v", err)
	}
}

func TestHostnameAndOrDefault(t *testing.T) {
	if h, err := Hostname("mail.example"); h != "mail.example" || err != nil {
		t.Errorf("Hostname(mail.example) = %q, %v", h, err)
	}
	if h, err := Hostname(""); h == "" || err != nil {
		t.Errorf("Hostname(\"\") = %q, %v", h, err)
	}
	if _, err := Hostname("two words"); err == nil {
		t.Error("Hostname(two words) succeeded")
	}
	if OrDefault(0, 7) != 7 || OrDefault(-1, 7) != 7 || OrDefault(3, 7) != 3 || OrDefault(time.Duration(0), time.Second) != time.Second {
		t.Error("OrDefault")
	}
	var ids ConnIDs
	if ids.Next() != 1 || ids.Next() != 2 {
		t.Error("ConnIDs does not count from 1")
	}
}
