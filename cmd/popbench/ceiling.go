package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"popgate/mailstore"
)

// ceiling is the trivial POP3 responder that popbench compare measures as
// the upper bound: it accepts any USER and PASS, lists the user's Maildir
// cur/ at PASS (sizes from the ,W= field), and serves RETR by converting
// LF to CRLF and stuffing dots on the fly. It keeps no locks, caches,
// logs or password hashes: whatever a real server does beyond that is
// overhead. Like a real server it takes pipelined commands (RFC 2449
// PIPELINING, which its CAPA lists) and flushes its replies only when no
// further complete command is waiting.
type ceiling struct {
	// template is the Maildir of user %u; "" serves empty maildrops.
	template string
	timeout  time.Duration
}

// serve accepts on ln until ctx is cancelled, then closes ln and waits
// for the sessions to end.
func (s *ceiling) serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("ceiling: accept: %w", err)
		}
		wg.Go(func() {
			// A shutdown closes idle sessions too.
			stopConn := context.AfterFunc(ctx, func() { _ = nc.Close() })
			defer stopConn()
			s.session(nc)
		})
	}
}

// ceilMsg is one message of a ceiling maildrop.
type ceilMsg struct {
	path string
	uid  string
	size int64
}

// session runs one POP3 session on nc.
func (s *ceiling) session(nc net.Conn) {
	defer nc.Close()
	r := bufio.NewReaderSize(nc, 1024)
	w := bufio.NewWriterSize(nc, 32*1024)
	var user string
	var msgs []ceilMsg
	ok := func(text string) { _, _ = w.WriteString("+OK " + text + "\r\n") }
	_, _ = w.WriteString("+OK ceiling ready\r\n")
	var copyBuf *bufio.Reader
	for {
		if !lineBuffered(r) {
			if w.Flush() != nil {
				return
			}
			_ = nc.SetReadDeadline(time.Now().Add(s.timeout))
		}
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(strings.TrimRight(string(line), "\r\n"), " ")
		verb = strings.ToUpper(verb)
		switch verb {
		case "USER":
			user = arg
			ok("send PASS")
		case "PASS":
			msgs, err = s.list(user)
			if err != nil {
				_, _ = w.WriteString("-ERR cannot list maildrop\r\n")
				continue
			}
			ok(strconv.Itoa(len(msgs)) + " messages")
		case "STAT":
			var total int64
			for _, m := range msgs {
				total += m.size
			}
			ok(strconv.Itoa(len(msgs)) + " " + strconv.FormatInt(total, 10))
		case "LIST", "UIDL":
			ok("listing follows")
			for i, m := range msgs {
				if verb == "UIDL" {
					_, _ = w.WriteString(strconv.Itoa(i+1) + " " + m.uid + "\r\n")
				} else {
					_, _ = w.WriteString(strconv.Itoa(i+1) + " " + strconv.FormatInt(m.size, 10) + "\r\n")
				}
			}
			_, _ = w.WriteString(".\r\n")
		case "RETR":
			n, err := strconv.Atoi(arg)
			if err != nil || n < 1 || n > len(msgs) {
				_, _ = w.WriteString("-ERR no such message\r\n")
				continue
			}
			f, err := os.Open(msgs[n-1].path)
			if err != nil {
				_, _ = w.WriteString("-ERR cannot open message\r\n")
				continue
			}
			ok(strconv.FormatInt(msgs[n-1].size, 10) + " octets")
			if copyBuf == nil {
				copyBuf = bufio.NewReaderSize(f, 64*1024)
			} else {
				copyBuf.Reset(f)
			}
			err = stuffLines(w, copyBuf, func() { _ = nc.SetWriteDeadline(time.Now().Add(s.timeout)) })
			_ = f.Close()
			if err != nil {
				return
			}
		case "CAPA":
			ok("capability list follows")
			_, _ = w.WriteString("USER\r\nUIDL\r\nPIPELINING\r\n.\r\n")
		case "NOOP":
			ok("")
		case "QUIT":
			ok("bye")
			_ = w.Flush()
			return
		default:
			_, _ = w.WriteString("-ERR unknown command\r\n")
		}
	}
}

// lineBuffered reports whether r holds a complete command line, which can
// be read without waiting for the client.
func lineBuffered(r *bufio.Reader) bool {
	buf, _ := r.Peek(r.Buffered())
	return bytes.IndexByte(buf, '\n') >= 0
}

// stuffLines copies r to w as the body of a multi-line reply: LF becomes
// CRLF, a leading dot is doubled, and ".CRLF" ends it. extend is called
// every 1 MiB to re-arm a write deadline.
func stuffLines(w *bufio.Writer, r *bufio.Reader, extend func()) error {
	bol := true
	var n int
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			if bol && line[0] == '.' {
				_ = w.WriteByte('.')
			}
			bol = line[len(line)-1] == '\n'
			if bol && (len(line) < 2 || line[len(line)-2] != '\r') {
				_, _ = w.Write(line[:len(line)-1])
				_, _ = w.WriteString("\r\n")
			} else {
				_, _ = w.Write(line)
			}
			if n += len(line); n > 1<<20 {
				n = 0
				extend()
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading message: %w", err)
		}
	}
	if !bol {
		_, _ = w.WriteString("\r\n")
	}
	_, err := w.WriteString(".\r\n")
	return err
}

// list reads user's cur/ directory.
func (s *ceiling) list(user string) ([]ceilMsg, error) {
	if s.template == "" {
		return nil, nil
	}
	if user == "" || strings.ContainsAny(user, "/\x00") || user == "." || user == ".." {
		return nil, fmt.Errorf("user name %q", user)
	}
	cur := filepath.Join(strings.ReplaceAll(s.template, "%u", user), "cur")
	entries, err := os.ReadDir(cur)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", cur, err)
	}
	msgs := make([]ceilMsg, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		base, _, _ := strings.Cut(name, ":")
		m := ceilMsg{path: filepath.Join(cur, name), uid: base, size: -1}
		if i := strings.Index(base, ",W="); i >= 0 {
			v, _, _ := strings.Cut(base[i+3:], ",")
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				m.size = n
			}
		}
		if i := strings.IndexByte(m.uid, ','); i >= 0 {
			m.uid = m.uid[:i]
		}
		if m.size < 0 {
			f, err := os.Open(m.path)
			if err != nil {
				return nil, fmt.Errorf("sizing %s: %w", name, err)
			}
			m.size, err = mailstore.CRLFSize(f)
			_ = f.Close()
			if err != nil {
				return nil, fmt.Errorf("sizing %s: %w", name, err)
			}
		}
		msgs = append(msgs, m)
	}
	slices.SortFunc(msgs, func(a, b ceilMsg) int { return strings.Compare(a.uid, b.uid) })
	return msgs, nil
}
