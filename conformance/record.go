package conformance

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// RecordedPassword is the password a recorded transcript gives its user in
// place of the real one. The user: header sets it and the C: lines send
// it, so the file replays against a store the runner seeds, and nothing
// secret is written.
const RecordedPassword = "redacted"

// wrongPassword replaces the password of a login that failed in the
// recorded session, so that it fails again on replay.
const wrongPassword = "not-the-password"

// Recorder writes each session of the connections it wraps as a transcript
// in the conformance format (popgate --trace DIR): a POP3 session becomes
// a file that replays with no editing, its retrieved messages as fixtures
// and its secrets replaced (see [RecordedPassword]). It is safe for
// concurrent use.
type Recorder struct {
	dir string
	// OnWrite, if set, is called after each transcript is written (err
	// nil) or could not be written.
	OnWrite func(path string, err error)

	mu  sync.Mutex
	seq int
}

// NewRecorder returns a Recorder writing into dir, which it creates
// (mode 0700: sessions hold mail) if it does not exist.
func NewRecorder(dir string) (*Recorder, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("conformance: trace folder: %w", err)
	}
	return &Recorder{dir: dir}, nil
}

// Wrap returns conn with its traffic recorded; proto (pop1, pop2, pop3)
// says how to read it. The transcript is written when the returned
// connection is closed.
func (r *Recorder) Wrap(conn net.Conn, proto string) net.Conn {
	return &recConn{Conn: conn, rec: r, proto: proto, start: time.Now()}
}

// nextName returns a new file name: the session's start time and a
// sequence number, so names sort in start order and never collide.
func (r *Recorder) nextName(start time.Time) string {
	r.mu.Lock()
	r.seq++
	n := r.seq
	r.mu.Unlock()
	return filepath.Join(r.dir, fmt.Sprintf("%s-%06d.txtar", start.UTC().Format("20060102T150405"), n))
}

// recEvent is a run of octets in one direction.
type recEvent struct {
	client bool // sent by the client (read by the server)
	data   []byte
}

// recConn is a recorded connection.
type recConn struct {
	net.Conn
	rec   *Recorder
	proto string
	start time.Time

	mu         sync.Mutex
	events     []recEvent
	clientGone bool // the client hung up (EOF or reset on read)
	once       sync.Once
	closeErr   error
}

func (c *recConn) add(client bool, p []byte) {
	if n := len(c.events); n > 0 && c.events[n-1].client == client {
		c.events[n-1].data = append(c.events[n-1].data, p...)
		return
	}
	c.events = append(c.events, recEvent{client: client, data: append([]byte(nil), p...)})
}

func (c *recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if n > 0 {
		c.add(true, p[:n])
	}
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		c.clientGone = true
	}
	c.mu.Unlock()
	return n, err
}

func (c *recConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.mu.Lock()
		c.add(false, p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// Close closes the connection, then writes the transcript.
func (c *recConn) Close() error {
	c.once.Do(func() {
		c.closeErr = c.Conn.Close()
		c.mu.Lock()
		info := sessionInfo{
			proto:      c.proto,
			remote:     c.RemoteAddr().String(),
			start:      c.start,
			clientGone: c.clientGone,
		}
		events := c.events
		c.events = nil
		c.mu.Unlock()
		path := c.rec.nextName(c.start)
		err := os.WriteFile(path, buildTranscript(info, events), 0o600)
		if err != nil {
			err = fmt.Errorf("conformance: writing trace: %w", err)
		}
		if c.rec.OnWrite != nil {
			c.rec.OnWrite(path, err)
		}
	})
	return c.closeErr
}
