package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// scenarioNames lists the load scenarios in the order help shows them.
func scenarioNames() []string {
	return []string{"greet", "login", "fetchall", "bigmsg", "idle", "scale"}
}

// benchConfig is what one scenario run needs.
type benchConfig struct {
	scenario     string
	server       string // label for the JSON line
	addr         string
	user         string
	password     string
	userTemplate string // "%d" is replaced by the worker or session index
	concurrency  int
	duration     time.Duration
	count        int
	timeout      time.Duration
	pid          int           // server process for RSS figures; 0: none
	sessions     int           // idle: sessions to hold
	settle       time.Duration // idle: wait before the second RSS reading
	coldRemove   []string      // scale: globs removed before every session
	pipeline     int           // fetchall: RETRs in flight if CAPA lists PIPELINING; 0: defaultPipeline
	progress     io.Writer     // progress lines; nil: none
}

// defaultPipeline is how many RETR commands fetchall keeps in flight when
// the server's CAPA lists PIPELINING and --pipeline is not given.
const defaultPipeline = 16

// maxPipeline bounds --pipeline, so that the commands in flight (about 12
// octets each) always fit into the socket buffers and client and server
// cannot both block writing.
const maxPipeline = 1024

// userFor returns the user name of worker or session i.
func (c *benchConfig) userFor(i int) string {
	if c.userTemplate == "" {
		return c.user
	}
	return strings.ReplaceAll(c.userTemplate, "%d", strconv.Itoa(i))
}

// result is the one JSON line a run prints. Sizes are octets; MB is 10^6
// octets; times are milliseconds unless the name says otherwise.
type result struct {
	Scenario         string   `json:"scenario"`
	Server           string   `json:"server,omitempty"`
	Addr             string   `json:"addr"`
	Concurrency      int      `json:"concurrency"`
	Ops              int64    `json:"ops"`
	Errors           int64    `json:"errors"`
	ErrorSample      []string `json:"error_sample,omitempty"`
	Seconds          float64  `json:"seconds"`
	OpsPerSec        float64  `json:"ops_per_s"`
	Messages         int64    `json:"messages"`
	Bytes            int64    `json:"bytes"`
	MBPerSec         float64  `json:"mb_per_s"`
	LatencyP50       float64  `json:"latency_p50_ms"`
	LatencyP99       float64  `json:"latency_p99_ms"`
	LatencyMax       float64  `json:"latency_max_ms"`
	MaildropMessages int64    `json:"maildrop_messages,omitempty"`
	Sessions         int64    `json:"sessions,omitempty"`
	RSSBeforeKiB     int64    `json:"rss_before_kib,omitempty"`
	RSSAfterKiB      int64    `json:"rss_after_kib,omitempty"`
	RSSPeakKiB       int64    `json:"rss_peak_kib,omitempty"`
	RSSPerSessionKiB float64  `json:"rss_per_session_kib,omitempty"`
	Pipeline         int64    `json:"pipeline,omitempty"`
}

// tally collects what the workers of one run did.
type tally struct {
	ops, errors, messages, bytes, maildrop atomic.Int64
	// pipeline is the smallest number of RETRs a fetchall session kept in
	// flight; 0 until one has decided.
	pipeline atomic.Int64

	mu        sync.Mutex
	samples   []string
	latencies []time.Duration
}

func (t *tally) fail(err error) {
	t.errors.Add(1)
	t.mu.Lock()
	defer t.mu.Unlock()
	msg := err.Error()
	if len(t.samples) < 5 && !slices.Contains(t.samples, msg) {
		t.samples = append(t.samples, msg)
	}
}

// usedPipeline records that a session kept up to depth RETRs in flight.
func (t *tally) usedPipeline(depth int) {
	for {
		old := t.pipeline.Load()
		if old != 0 && old <= int64(depth) {
			return
		}
		if t.pipeline.CompareAndSwap(old, int64(depth)) {
			return
		}
	}
}

func (t *tally) done(d time.Duration) {
	t.ops.Add(1)
	t.mu.Lock()
	t.latencies = append(t.latencies, d)
	t.mu.Unlock()
}

// fill copies the tally into r.
func (t *tally) fill(r *result, elapsed time.Duration) {
	r.Ops, r.Errors = t.ops.Load(), t.errors.Load()
	r.Messages, r.Bytes = t.messages.Load(), t.bytes.Load()
	r.ErrorSample = t.samples
	r.Seconds = elapsed.Seconds()
	if s := elapsed.Seconds(); s > 0 {
		r.OpsPerSec = float64(r.Ops) / s
		r.MBPerSec = float64(r.Bytes) / 1e6 / s
	}
	if len(t.latencies) > 0 {
		slices.Sort(t.latencies)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		r.LatencyP50 = ms(t.latencies[len(t.latencies)/2])
		r.LatencyP99 = ms(t.latencies[len(t.latencies)*99/100])
		r.LatencyMax = ms(t.latencies[len(t.latencies)-1])
	}
}

// session is one scenario operation: a whole POP3 session by worker w.
// stop reports that the run's time is up; long sessions check it between
// messages.
type session func(ctx context.Context, w int, t *tally, stop func() bool) error

// runBench runs one scenario and returns its result.
func runBench(ctx context.Context, cfg benchConfig) (result, error) {
	r := result{Scenario: cfg.scenario, Server: cfg.server, Addr: cfg.addr, Concurrency: cfg.concurrency}
	if cfg.scenario == "idle" {
		err := runIdle(ctx, cfg, &r)
		return r, err
	}
	var op session
	switch cfg.scenario {
	case "greet":
		op = cfg.greet
	case "login":
		op = cfg.login
	case "fetchall", "bigmsg":
		op = cfg.fetch
	case "scale":
		op = cfg.scale
	default:
		return r, fmt.Errorf("unknown scenario %q (want one of %s)", cfg.scenario, strings.Join(scenarioNames(), ", "))
	}
	var t tally
	rss := startRSS(cfg.pid)
	start := time.Now()
	deadline := start.Add(cfg.duration)
	var claimed atomic.Int64
	// next claims one more session, or reports that the run is over.
	next := func() bool {
		if ctx.Err() != nil {
			return false
		}
		if cfg.count > 0 {
			return claimed.Add(1) <= int64(cfg.count)
		}
		return time.Now().Before(deadline)
	}
	stop := func() bool { return ctx.Err() != nil || (cfg.count <= 0 && !time.Now().Before(deadline)) }
	stopProgress := progress(cfg.progress, cfg.scenario, &t, start)
	var wg sync.WaitGroup
	for w := range cfg.concurrency {
		wg.Go(func() {
			for next() {
				if err := removeGlobs(cfg.coldRemove, cfg.userFor(w)); err != nil {
					t.fail(err)
					return
				}
				t0 := time.Now()
				if err := op(ctx, w, &t, stop); err != nil {
					t.fail(err)
					continue
				}
				t.done(time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	t.fill(&r, elapsed)
	r.MaildropMessages = t.maildrop.Load()
	r.Pipeline = t.pipeline.Load()
	r.RSSBeforeKiB, r.RSSPeakKiB = rss.stop()
	return r, nil
}

// removeGlobs deletes the files the globs match ("%d" is not expanded;
// "%u" is the worker's user), for cold runs.
func removeGlobs(globs []string, user string) error {
	for _, g := range globs {
		matches, err := filepath.Glob(strings.ReplaceAll(g, "%u", user))
		if err != nil {
			return fmt.Errorf("--cold-remove %q: %w", g, err)
		}
		for _, m := range matches {
			if err := os.Remove(m); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("cold run: %w", err)
			}
		}
	}
	return nil
}

// greet connects, reads the greeting and quits.
func (c *benchConfig) greet(ctx context.Context, _ int, _ *tally, _ func() bool) error {
	cl, err := dial(ctx, c.addr, c.timeout, false)
	if err != nil {
		return err
	}
	return cl.quit()
}

// login runs USER, PASS, STAT and QUIT.
func (c *benchConfig) login(ctx context.Context, w int, _ *tally, _ func() bool) error {
	cl, err := dial(ctx, c.addr, c.timeout, false)
	if err != nil {
		return err
	}
	if err := cl.login(c.userFor(w), c.password); err != nil {
		cl.close()
		return err
	}
	st, err := cl.cmd("STAT")
	if err != nil {
		cl.close()
		return err
	}
	if f := strings.Fields(st); len(f) < 3 {
		cl.close()
		return fmt.Errorf("STAT reply %q: %w", st, errProtocol)
	}
	return cl.quit()
}

// listings logs in and runs UIDL and LIST, checking that they agree. big
// gives the client the read buffer for message retrieval.
func (c *benchConfig) listings(ctx context.Context, w int, big bool) (*client, []listing, error) {
	cl, err := dial(ctx, c.addr, c.timeout, big)
	if err != nil {
		return nil, nil, err
	}
	if err := cl.login(c.userFor(w), c.password); err != nil {
		cl.close()
		return nil, nil, err
	}
	uidl, err := cl.multi("UIDL")
	if err != nil {
		cl.close()
		return nil, nil, err
	}
	list, err := cl.multi("LIST")
	if err != nil {
		cl.close()
		return nil, nil, err
	}
	if len(uidl) != len(list) {
		cl.close()
		return nil, nil, fmt.Errorf("UIDL lists %d messages, LIST %d: %w", len(uidl), len(list), errProtocol)
	}
	return cl, list, nil
}

// fetch logs in, lists, retrieves every message (bigmsg: the first only)
// and quits without deleting anything. fetchall keeps up to c.pipeline
// RETRs in flight when the server's CAPA lists PIPELINING, and one
// otherwise; when the run's time is up it sends no more RETRs, reads the
// replies still due and quits.
func (c *benchConfig) fetch(ctx context.Context, w int, t *tally, stop func() bool) error {
	cl, list, err := c.listings(ctx, w, true)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		cl.close()
		return fmt.Errorf("user %s has an empty maildrop", c.userFor(w))
	}
	depth := 1
	if c.scenario == "bigmsg" {
		list = list[:1]
	} else if want := cmp.Or(c.pipeline, defaultPipeline); want > 1 {
		ok, err := cl.capaPipelining()
		if err != nil {
			cl.close()
			return err
		}
		if ok {
			depth = want
		}
		t.usedPipeline(depth)
	} else {
		t.usedPipeline(1)
	}
	// Refill the window when half of it has been answered, so that a
	// deep pipeline costs one write per depth/2 messages, not one each.
	refill := depth / 2
	sent, got, stopped := 0, 0, false
	for {
		if !stopped && sent < len(list) && sent-got <= refill {
			for sent < len(list) && sent-got < depth {
				if sent > 0 && stop() {
					stopped = true
					break
				}
				cl.queueRETR(list[sent].n)
				sent++
			}
			if err := cl.flush(); err != nil {
				cl.close()
				return err
			}
		}
		if got == sent {
			break
		}
		m := list[got]
		size, err := strconv.ParseInt(m.arg, 10, 64)
		if err != nil {
			cl.close()
			return fmt.Errorf("LIST size %q: %w", m.arg, errProtocol)
		}
		if err := cl.retrReply(m.n, size); err != nil {
			cl.close()
			return err
		}
		got++
		t.messages.Add(1)
		t.bytes.Add(size)
	}
	return cl.quit()
}

// scale logs in, runs UIDL and LIST over the whole maildrop, and quits.
func (c *benchConfig) scale(ctx context.Context, w int, t *tally, _ func() bool) error {
	cl, list, err := c.listings(ctx, w, false)
	if err != nil {
		return err
	}
	t.maildrop.Store(int64(len(list)))
	return cl.quit()
}

// runIdle opens cfg.sessions logged-in sessions, cfg.concurrency at a
// time, holds them, reads the server's RSS, checks every session with
// NOOP and quits them all.
func runIdle(ctx context.Context, cfg benchConfig, r *result) error {
	var t tally
	before, _ := readRSS(cfg.pid)
	start := time.Now()
	clients := make([]*client, cfg.sessions)
	var nextIdx atomic.Int64
	stopProgress := progress(cfg.progress, "idle", &t, start)
	parallel := func(fn func(i int)) {
		nextIdx.Store(0)
		var wg sync.WaitGroup
		for range cfg.concurrency {
			wg.Go(func() {
				for {
					i := int(nextIdx.Add(1)) - 1
					if i >= cfg.sessions || ctx.Err() != nil {
						return
					}
					fn(i)
				}
			})
		}
		wg.Wait()
	}
	parallel(func(i int) {
		t0 := time.Now()
		cl, err := dial(ctx, cfg.addr, cfg.timeout, false)
		if err == nil {
			if err = cl.login(cfg.userFor(i), cfg.password); err != nil {
				cl.close()
			}
		}
		if err != nil {
			t.fail(err)
			return
		}
		clients[i] = cl
		t.done(time.Since(t0))
	})
	held := t.ops.Load()
	select {
	case <-time.After(cfg.settle):
	case <-ctx.Done():
	}
	after, _ := readRSS(cfg.pid)
	parallel(func(i int) {
		cl := clients[i]
		if cl == nil {
			return
		}
		if _, err := cl.cmd("NOOP"); err != nil {
			cl.close()
			t.fail(fmt.Errorf("held session: %w", err))
			return
		}
		if err := cl.quit(); err != nil {
			t.fail(fmt.Errorf("held session: %w", err))
		}
	})
	stopProgress()
	t.fill(r, time.Since(start))
	r.Ops, r.OpsPerSec = held, 0
	r.Sessions = held
	r.RSSBeforeKiB, r.RSSAfterKiB = before, after
	if held > 0 && cfg.pid > 0 {
		r.RSSPerSessionKiB = float64(after-before) / float64(held)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	return nil
}

// progress prints a progress line every second until the returned
// function is called; w == nil prints nothing.
func progress(w io.Writer, name string, t *tally, start time.Time) func() {
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-tick.C:
				el := time.Since(start).Seconds()
				fmt.Fprintf(w, "\r\033[K%s: %.0fs  %d sessions  %d errors  %.1f MB/s",
					name, el, t.ops.Load(), t.errors.Load(), float64(t.bytes.Load())/1e6/el)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
