package pop2client

import (
	"errors"
	"io"
	"net"
	"testing"
)

func TestBadGreeting(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		_, _ = io.WriteString(server, "-ERR go away\r\n")
		_ = server.Close()
	}()
	if _, err := NewClient(client); !errors.Is(err, ErrBadGreeting) {
		t.Errorf("NewClient = %v, want ErrBadGreeting", err)
	}
}

func TestReplyErrorAndQuote(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		_, _ = io.WriteString(server, "+ POP2 host ready\r\n")
		buf := make([]byte, 64)
		n, _ := server.Read(buf)
		if string(buf[:n]) != "HELO a\\ b c\\\\d\r\n" {
			_, _ = io.WriteString(server, "- wrong quoting\r\n")
		} else {
			_, _ = io.WriteString(server, "- Bad login\r\n")
		}
		_ = server.Close()
	}()
	c, err := NewClient(client)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Helo("a b", `c\d`)
	var re *ReplyError
	if !errors.As(err, &re) || re.Line != "- Bad login" {
		t.Errorf("Helo = %v, want ReplyError with - Bad login", err)
	}
}
