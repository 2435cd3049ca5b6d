package conformance

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"

	"popgate/mailstore"
)

// fakeTimestamp is the APOP timestamp of the fake server's greeting.
const fakeTimestamp = "<1896.697170952@fake.example>"

// fakeServer is a deliberately small POP3-like server for the runner's own
// tests: USER, PASS, APOP, STAT, RETR, TOP, DELE, ECHO, SILENT and QUIT
// over a mailstore.Session. It is not a POP3 implementation.
func fakeServer(st mailstore.Store) Handler {
	return func(ctx context.Context, nc net.Conn) {
		defer nc.Close()
		r := bufio.NewReader(nc)
		w := bufio.NewWriter(nc)
		reply := func(s string) {
			_, _ = w.WriteString(s + "\r\n")
		}
		reply("+OK fake server ready " + fakeTimestamp)
		var user string
		var sess *mailstore.Session
		defer func() {
			if sess != nil {
				_ = sess.Close()
			}
		}()
		login := func(acct mailstore.Account, err error) {
			if err != nil {
				reply("-ERR [AUTH] no")
				return
			}
			md, err := acct.Open(ctx, "")
			if errors.Is(err, mailstore.ErrLocked) {
				reply("-ERR [IN-USE] locked")
				return
			}
			if err != nil {
				reply("-ERR [SYS/TEMP] " + err.Error())
				return
			}
			sess, err = mailstore.NewSession(ctx, md)
			if err != nil {
				reply("-ERR [SYS/TEMP] " + err.Error())
				return
			}
			reply("+OK logged in")
		}
		for {
			if r.Buffered() == 0 {
				if err := w.Flush(); err != nil {
					return
				}
			}
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			verb, arg, _ := strings.Cut(line, " ")
			n, _ := strconv.Atoi(strings.Fields(arg + " x")[0])
			switch strings.ToUpper(verb) {
			case "ECHO":
				reply("+OK " + arg)
			case "SILENT":
			case "USER":
				user = arg
				reply("+OK")
			case "PASS":
				login(st.Login(ctx, user, arg))
			case "APOP":
				name, digest, _ := strings.Cut(arg, " ")
				login(st.(mailstore.APOPStore).LoginAPOP(ctx, name, fakeTimestamp, digest))
			case "STAT":
				c, s := sess.Stat()
				reply("+OK " + strconv.Itoa(c) + " " + strconv.FormatInt(s, 10))
			case "RETR", "TOP":
				rc, err := sess.Open(ctx, n)
				if err != nil {
					reply("-ERR no such message")
					continue
				}
				data, _ := io.ReadAll(rc)
				_ = rc.Close()
				if strings.EqualFold(verb, "TOP") {
					k, _ := strconv.Atoi(strings.Fields(arg)[1])
					data = topLines(data, k)
				}
				reply("+OK message follows")
				for _, l := range splitCRLF(data) {
					if strings.HasPrefix(string(l), ".") {
						_ = w.WriteByte('.')
					}
					_, _ = w.Write(l)
				}
				reply(".")
			case "DELE":
				if err := sess.Delete(n); err != nil {
					reply("-ERR no such message")
					continue
				}
				reply("+OK deleted")
			case "QUIT":
				if sess != nil {
					_, _ = sess.Commit(ctx)
					sess = nil
				}
				reply("+OK bye")
				_ = w.Flush()
				return
			default:
				reply("-ERR unknown command")
			}
		}
	}
}
