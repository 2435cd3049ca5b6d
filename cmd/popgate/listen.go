package main

import (
	"context"
	"errors"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"popgate/conformance"
)

// frontEnd is what every protocol package's Server offers: it serves one
// accepted connection until the session ends, and closes it.
type frontEnd interface {
	ServeConn(ctx context.Context, conn net.Conn)
}

// listeners owns the accept loops, the connection limit and shutdown. The
// accept loop, limits and TLS wrapping live here once; the protocol
// packages see only accepted connections.
type listeners struct {
	log      zerolog.Logger
	maxConns int64

	sessCtx    context.Context // parent of every session; cancelled last
	cancelSess context.CancelFunc

	// trace, if set, records every session as a transcript (--trace).
	trace *conformance.Recorder

	mu    sync.Mutex
	lns   []net.Listener
	conns sync.WaitGroup
	loops sync.WaitGroup
	open  atomic.Int64
}

func newListeners(log zerolog.Logger, maxConns int) *listeners {
	ctx, cancel := context.WithCancel(context.Background())
	return &listeners{log: log, maxConns: int64(maxConns), sessCtx: ctx, cancelSess: cancel}
}

// serve starts accepting on ln for fe. proto names the protocol in logs.
func (l *listeners) serve(ln net.Listener, proto string, fe frontEnd) {
	l.mu.Lock()
	l.lns = append(l.lns, ln)
	l.mu.Unlock()
	l.loops.Add(1)
	go func() {
		defer l.loops.Done()
		l.acceptLoop(ln, proto, fe)
	}()
}

func (l *listeners) acceptLoop(ln net.Listener, proto string, fe frontEnd) {
	log := l.log.With().Str("proto", proto).Str("listen", ln.Addr().String()).Logger()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, never spin.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff < time.Second {
				backoff *= 2
			}
			log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if l.maxConns > 0 && l.open.Load() >= l.maxConns {
			log.Warn().Str("remote", conn.RemoteAddr().String()).Int64("limit", l.maxConns).
				Msg("connection refused: connection limit reached")
			_ = conn.Close()
			continue
		}
		l.open.Add(1)
		l.conns.Add(1)
		go func() {
			defer l.conns.Done()
			defer l.open.Add(-1)
			defer func() {
				if r := recover(); r != nil {
					log.Error().Interface("panic", r).Bytes("stack", debug.Stack()).Msg("session panicked")
					_ = conn.Close()
				}
			}()
			if l.trace != nil {
				conn = l.trace.Wrap(conn, traceProto(proto))
			}
			fe.ServeConn(l.sessCtx, conn)
		}()
	}
}

// shutdown stops accepting, gives running sessions grace to end by
// themselves (a client in the middle of QUIT finishes its commit), then
// cancels the rest. A cancelled session closes without UPDATE: nothing
// that did not QUIT is committed. shutdown returns when every session and
// accept loop has ended, or after a further hard limit.
func (l *listeners) shutdown(grace time.Duration) {
	l.mu.Lock()
	for _, ln := range l.lns {
		_ = ln.Close()
	}
	l.mu.Unlock()
	l.loops.Wait()

	done := make(chan struct{})
	go func() {
		l.conns.Wait()
		close(done)
	}()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-done:
		l.cancelSess()
		return
	case <-timer.C:
	}
	if l.open.Load() == 0 {
		// Every session ended just as the grace period did.
		<-done
		l.cancelSess()
		return
	}
	l.log.Info().Int64("sessions", l.open.Load()).Msg("grace period over; closing remaining sessions without UPDATE")
	l.cancelSess()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		l.log.Error().Int64("sessions", l.open.Load()).Msg("sessions did not end after cancellation")
	}
}

// traceProto is the transcript protocol of a listener's sessions: POP3
// over TLS records as POP3 (the recorder sees the decrypted stream).
func traceProto(proto string) string {
	if strings.HasPrefix(proto, "pop3") {
		return "pop3"
	}
	return proto
}
