package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

// compareConfig is the command line of popbench compare.
type compareConfig struct {
	workdir       string
	runs          int
	duration      time.Duration
	concurrency   []int
	scenarios     []string
	messages      int
	msgSize       int
	smallMessages int
	bigSize       int64
	scaleMessages int
	idleSessions  int
	dovecot       string
	popgateBin    string
	raw           string
	timeout       time.Duration
	users         int
	pipeline      int
}

// benchPassword is every benchmark user's password.
const benchPassword = "bench"

// mailOwner is the uid and gid that own the benchmark Maildirs: Dovecot
// refuses to run mail processes as root, so its userdb maps every user to
// nobody; popgate runs as the caller and can read them either way.
const mailOwner = 65534

func runCompare(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := compareConfig{}
	fs := pflag.NewFlagSet("popbench compare", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.workdir, "workdir", filepath.Join(os.TempDir(), "popbench-compare"), "`DIR` for the Maildirs, binaries, configs and logs (reused when the data matches)")
	fs.IntVar(&cfg.runs, "runs", 5, "measured runs per scenario, concurrency and server")
	fs.DurationVar(&cfg.duration, "duration", 2*time.Second, "length of each run")
	fs.IntSliceVar(&cfg.concurrency, "concurrency", []int{1, 8, 64}, "concurrency levels")
	fs.StringSliceVar(&cfg.scenarios, "scenarios", []string{"greet", "login", "fetchall", "bigmsg", "scale", "idle"}, "scenarios to run")
	fs.IntVar(&cfg.messages, "messages", 10000, "fetchall: messages per maildrop")
	fs.IntVar(&cfg.msgSize, "msg-size", 4096, "fetchall: octets per message (LF form)")
	fs.IntVar(&cfg.smallMessages, "small-messages", 10, "login and idle: messages per maildrop")
	fs.Int64Var(&cfg.bigSize, "big-size", 50_000_000, "bigmsg: octets of the large message")
	fs.IntVar(&cfg.scaleMessages, "scale-messages", 100000, "scale: messages in the large maildrop")
	fs.IntVar(&cfg.idleSessions, "idle-sessions", 10000, "idle: logged-in sessions to hold")
	fs.StringVar(&cfg.dovecot, "dovecot", "/usr/sbin/dovecot", "Dovecot `BINARY` (apt-get install dovecot-pop3d); \"\" skips Dovecot")
	fs.StringVar(&cfg.popgateBin, "popgate-bin", "", "popgate `BINARY` to measure (default: go build popgate/cmd/popgate)")
	fs.StringVar(&cfg.raw, "raw", "", "append every run's JSON line to `FILE` (default WORKDIR/results.jsonl)")
	fs.DurationVar(&cfg.timeout, "timeout", 60*time.Second, "per-reply timeout")
	fs.IntVar(&cfg.pipeline, "pipeline", defaultPipeline, "fetchall: RETR commands in flight when the server's CAPA lists PIPELINING (1: one per round trip, as before)")
	fs.IntVar(&cfg.users, "users", 0, "users per scenario in the data set (0: the highest --concurrency); keep it equal between runs to reuse the data")
	if err := fs.Parse(args); err != nil {
		return exitFor(err, stderr)
	}
	if fs.NArg() > 0 {
		return exitFor(fmt.Errorf("unexpected argument %q", fs.Arg(0)), stderr)
	}
	for _, s := range cfg.scenarios {
		if !isScenario(s) {
			return exitFor(fmt.Errorf("--scenarios: unknown scenario %q", s), stderr)
		}
	}
	if cfg.runs < 1 || len(cfg.concurrency) == 0 || slices.Min(cfg.concurrency) < 1 {
		return exitFor(errors.New("--runs and every --concurrency must be positive"), stderr)
	}
	if cfg.pipeline < 1 || cfg.pipeline > maxPipeline {
		return exitFor(fmt.Errorf("--pipeline %d: want 1 to %d", cfg.pipeline, maxPipeline), stderr)
	}
	if cfg.raw == "" {
		cfg.raw = filepath.Join(cfg.workdir, "results.jsonl")
	}
	if err := compare(ctx, cfg, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "popbench compare: %v\n", err)
		return 1
	}
	return 0
}

// server is one POP3 server under test.
type server struct {
	name string
	addr string
	pid  int // the process whose RSS is reported; 0: none
	cmd  *exec.Cmd
	// cold lists the files whose removal makes the next login cold.
	cold []string
	// perSessionRSS says the pid's RSS covers every session (one
	// process); Dovecot runs a process per session.
	perSessionRSS bool
}

// stop terminates the server and waits for it.
func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

func compare(ctx context.Context, cfg compareConfig, stdout, stderr io.Writer) error {
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "popbench compare: "+format+"\n", a...) }
	if err := raiseNoFile(); err != nil {
		logf("warning: %v", err)
	}
	if err := os.MkdirAll(cfg.workdir, 0o755); err != nil {
		return fmt.Errorf("workdir: %w", err)
	}
	if err := os.Chmod(cfg.workdir, 0o755); err != nil {
		return fmt.Errorf("workdir: %w", err)
	}
	maxC := slices.Max(cfg.concurrency)
	d := dataset{root: cfg.workdir, cfg: cfg, users: max(maxC, cfg.users)}
	t0 := time.Now()
	if err := d.prepare(ctx, logf); err != nil {
		return err
	}
	logf("data ready in %v", time.Since(t0).Round(time.Millisecond))

	bin := cfg.popgateBin
	if bin == "" {
		bin = filepath.Join(cfg.workdir, "bin", "popgate")
		logf("building popgate")
		out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "popgate/cmd/popgate").CombinedOutput()
		if err != nil {
			return fmt.Errorf("go build popgate: %w\n%s", err, out)
		}
	}
	var servers []*server
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	pg, err := startPopgate(ctx, bin, d)
	if err != nil {
		return err
	}
	servers = append(servers, pg)
	if cfg.dovecot != "" {
		for _, perf := range []bool{false, true} {
			name := "dovecot"
			if perf {
				name = "dovecot-perf"
			}
			dv, err := startDovecot(ctx, cfg.dovecot, name, perf, d)
			if err != nil {
				return err
			}
			servers = append(servers, dv)
		}
	}
	ce, err := startCeiling(ctx, d)
	if err != nil {
		return err
	}
	servers = append(servers, ce)
	for _, s := range servers {
		if err := waitReady(ctx, s); err != nil {
			return err
		}
		logf("%s on %s (pid %d)", s.name, s.addr, s.pid)
	}

	raw, err := os.OpenFile(cfg.raw, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("--raw: %w", err)
	}
	defer raw.Close()
	var rows []row

	if slices.Contains(cfg.scenarios, "bigmsg") {
		var mbs []float64
		for range cfg.runs {
			v, err := loopbackMBps(ctx, cfg.bigSize)
			if err != nil {
				return err
			}
			mbs = append(mbs, v)
		}
		rows = append(rows, row{scenario: "loopback", metric: "MB/s (one TCP stream, 64 KiB writes)", values: map[string]float64{"popgate": median(mbs)}})
		logf("loopback single stream: %.0f MB/s", median(mbs))
	}

	measure := func(b benchConfig, s *server, runs int) ([]result, error) {
		var out []result
		for range runs {
			b.server, b.addr, b.pid = s.name, s.addr, s.pid
			r, err := runBench(ctx, b)
			if err != nil {
				return nil, err
			}
			line, _ := json.Marshal(r)
			fmt.Fprintf(raw, "%s\n", line)
			out = append(out, r)
		}
		return out, nil
	}
	// each runs one configuration on every server, rotating the order
	// from run to run, after one unmeasured warm-up run per server.
	each := func(b benchConfig, only func(*server) bool) (map[string][]result, error) {
		res := map[string][]result{}
		var ss []*server
		for _, s := range servers {
			if only == nil || only(s) {
				ss = append(ss, s)
			}
		}
		warm := b
		if warm.count == 0 {
			warm.duration = min(b.duration, time.Second)
		}
		for _, s := range ss {
			if _, err := measure(warm, s, 1); err != nil {
				return nil, err
			}
		}
		for r := range cfg.runs {
			for k := range ss {
				s := ss[(k+r)%len(ss)]
				out, err := measure(b, s, 1)
				if err != nil {
					return nil, err
				}
				res[s.name] = append(res[s.name], out...)
			}
		}
		return res, nil
	}

	for _, sc := range cfg.scenarios {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		base := benchConfig{scenario: sc, password: benchPassword, duration: cfg.duration, timeout: cfg.timeout, pipeline: cfg.pipeline}
		switch sc {
		case "greet", "login", "fetchall", "bigmsg":
			base.userTemplate = map[string]string{"greet": "u%d", "login": "u%d", "fetchall": "f%d", "bigmsg": "b%d"}[sc]
			metric, pick := "sessions/s", func(r result) float64 { return r.OpsPerSec }
			if sc == "fetchall" || sc == "bigmsg" {
				metric, pick = "MB/s", func(r result) float64 { return r.MBPerSec }
			}
			if sc == "fetchall" {
				metric = "MB/s, " + pipelineLabel(cfg.pipeline)
			}
			for _, c := range cfg.concurrency {
				b := base
				b.concurrency = c
				logf("%s c=%d", sc, c)
				res, err := each(b, nil)
				if err != nil {
					return err
				}
				rows = append(rows, summarize(sc, c, metric, res, pick))
				if sc == "fetchall" {
					if r, ok := pipelineRow(c, cfg.pipeline, res); ok {
						rows = append(rows, r)
					}
				}
				if sc == "bigmsg" {
					rows = append(rows, summarize(sc, c, "server RSS growth, peak - start (KiB)", res,
						func(r result) float64 { return float64(r.RSSPeakKiB - r.RSSBeforeKiB) }))
				}
			}
		case "scale":
			b := base
			b.concurrency = 1
			b.userTemplate = "s%d"
			logf("scale warm (%d messages)", cfg.scaleMessages)
			res, err := each(b, nil)
			if err != nil {
				return err
			}
			lat := func(r result) float64 { return r.LatencyP50 }
			rows = append(rows, summarize(sc, 1, fmt.Sprintf("login+UIDL+LIST ms, %d msgs, warm", cfg.scaleMessages), res, lat))
			logf("scale cold")
			cold := map[string][]result{}
			for _, s := range servers {
				if s.cold == nil {
					continue
				}
				cb := b
				cb.count, cb.coldRemove = 1, s.cold
				out, err := measure(cb, s, cfg.runs)
				if err != nil {
					return err
				}
				cold[s.name] = out
			}
			rows = append(rows, summarize(sc, 1, fmt.Sprintf("login+UIDL+LIST ms, %d msgs, cold", cfg.scaleMessages), cold, lat))
		case "idle":
			b := base
			b.concurrency = min(maxC, 64)
			b.userTemplate = "i%d"
			b.sessions = cfg.idleSessions
			b.settle = 2 * time.Second
			logf("idle %d sessions", cfg.idleSessions)
			res, err := each(b, func(s *server) bool { return s.perSessionRSS })
			if err != nil {
				return err
			}
			rows = append(rows, summarize(sc, b.concurrency, fmt.Sprintf("RSS KiB per idle logged-in session (%d sessions)", cfg.idleSessions), res,
				func(r result) float64 { return r.RSSPerSessionKiB }))
		}
	}
	printTable(stdout, rows, cfg)
	return nil
}

// pipelineLabel describes the fetchall pipeline of a comparison.
func pipelineLabel(depth int) string {
	if depth <= 1 {
		return "one RETR per round trip"
	}
	return fmt.Sprintf("up to %d RETRs in flight (PIPELINING)", depth)
}

// pipelineRow returns a table row with the depth each server's fetchall
// sessions used, if some server used less than the requested one (its
// CAPA did not list PIPELINING).
func pipelineRow(c, want int, res map[string][]result) (row, bool) {
	fell := false
	for _, rs := range res {
		for _, r := range rs {
			fell = fell || r.Pipeline < int64(want)
		}
	}
	if !fell {
		return row{}, false
	}
	return summarize("fetchall", c, "RETRs in flight (less than asked: no PIPELINING in CAPA)", res,
		func(r result) float64 { return float64(r.Pipeline) }), true
}

// row is one line of the comparison table: a median per server.
type row struct {
	scenario    string
	concurrency int
	metric      string
	values      map[string]float64
	errors      map[string]int64
}

func summarize(sc string, c int, metric string, res map[string][]result, pick func(result) float64) row {
	r := row{scenario: sc, concurrency: c, metric: metric, values: map[string]float64{}, errors: map[string]int64{}}
	for name, rs := range res {
		var vs []float64
		for _, x := range rs {
			vs = append(vs, pick(x))
			r.errors[name] += x.Errors
		}
		r.values[name] = median(vs)
	}
	return r
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// tableServers are the table's columns, in order.
func tableServers() []string { return []string{"popgate", "dovecot", "dovecot-perf", "ceiling"} }

// printTable writes the medians and ratios as a Markdown table.
func printTable(w io.Writer, rows []row, cfg compareConfig) {
	fmt.Fprintf(w, "popbench compare: %d runs of %v per cell (medians), nproc %d, %s; fetchall: %s\n\n",
		cfg.runs, cfg.duration, runtime.NumCPU(), runtime.Version(), pipelineLabel(cfg.pipeline))
	var cols []string
	for _, name := range tableServers() {
		for _, r := range rows {
			if _, ok := r.values[name]; ok && !slices.Contains(cols, name) {
				cols = append(cols, name)
			}
		}
	}
	if len(cols) == 0 {
		return
	}
	head := "| scenario | c | metric |"
	for _, c := range cols {
		head += " " + c + " |"
	}
	for _, c := range cols[1:] {
		head += " popgate/" + c + " |"
	}
	head += " errors " + strings.Join(cols, "/") + " |"
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, strings.Repeat("|---", 3+2*len(cols))+"|")
	for _, r := range rows {
		c := strconv.Itoa(r.concurrency)
		if r.concurrency == 0 {
			c = ""
		}
		line := "| " + r.scenario + " | " + c + " | " + r.metric + " |"
		for _, k := range cols {
			v, ok := r.values[k]
			if !ok {
				line += " – |"
				continue
			}
			line += " " + strconv.FormatFloat(v, 'f', precision(v), 64) + " |"
		}
		for _, k := range cols[1:] {
			va, oka := r.values[cols[0]]
			vb, okb := r.values[k]
			if !oka || !okb || vb == 0 {
				line += " – |"
				continue
			}
			line += " " + strconv.FormatFloat(va/vb, 'f', 2, 64) + "× |"
		}
		var errs []string
		for _, k := range cols {
			if v, ok := r.errors[k]; ok {
				errs = append(errs, strconv.FormatInt(v, 10))
			} else {
				errs = append(errs, "–")
			}
		}
		line += " " + strings.Join(errs, "/") + " |"
		fmt.Fprintln(w, line)
	}
}

func precision(v float64) int {
	switch {
	case v >= 100 || v <= -100:
		return 0
	case v >= 10 || v <= -10:
		return 1
	}
	return 2
}

// raiseNoFile raises the soft open-file limit to the hard one; servers
// started afterwards inherit it.
func raiseNoFile() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("setrlimit: %w", err)
	}
	return nil
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr, nil
}

// waitReady waits until s greets.
func waitReady(ctx context.Context, s *server) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		cl, err := dial(ctx, s.addr, time.Second, false)
		if err == nil {
			return cl.quit()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s on %s did not start: %w", s.name, s.addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startProcess starts argv with its output in logPath. It starts nothing
// once ctx is cancelled, so that an interrupted compare leaves no server
// behind.
func startProcess(ctx context.Context, name, logPath string, argv ...string) (*exec.Cmd, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	_ = logf.Close()
	return cmd, nil
}

func startPopgate(ctx context.Context, bin string, d dataset) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd, err := startProcess(ctx, "popgate", filepath.Join(d.root, "popgate.log"), bin,
		"--pop3", addr, "--store", "maildir:"+d.mail()+"/%u", "--users", d.passwd(),
		"--log-level", "error", "--max-conns", "0", "--hostname", "bench.example")
	if err != nil {
		return nil, err
	}
	return &server{name: "popgate", addr: addr, pid: cmd.Process.Pid, cmd: cmd, perSessionRSS: true,
		cold: []string{filepath.Join(d.mail(), "%u", "popgate-cache")}}, nil
}

func startCeiling(ctx context.Context, d dataset) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding popbench: %w", err)
	}
	cmd, err := startProcess(ctx, "ceiling", filepath.Join(d.root, "ceiling.log"), self,
		"ceiling", "--addr", addr, "--maildir", d.mail()+"/%u")
	if err != nil {
		return nil, err
	}
	return &server{name: "ceiling", addr: addr, pid: cmd.Process.Pid, cmd: cmd, perSessionRSS: true, cold: []string{}}, nil
}

// dovecotConf is a private Dovecot 2.3 configuration: POP3 only, on
// loopback, the same passwd-file and Maildirs, no TLS, no system paths.
const dovecotConf = `# written by popbench compare
base_dir = {{DIR}}/run
state_dir = {{DIR}}/state
log_path = {{DIR}}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{{MAIL}}/%u
pop3_uidl_format = %08Xu%08Xv
first_valid_uid = 1
mail_max_userip_connections = 100000
default_process_limit = 20000
default_client_limit = 40000
default_vsz_limit = 1G
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {{PASSWD}}
}
userdb {
  driver = static
  args = uid={{UID}} gid={{UID}} home={{MAIL}}/%u
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = {{PORT}}
  }
  inet_listener pop3s {
    port = 0
  }
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = 0
  }
}
`

// dovecotPerf is appended to the configuration of "dovecot-perf": the
// login processes of Dovecot's documented high-performance mode, reused
// and pre-started, instead of Debian's default of one fresh login process
// per connection.
const dovecotPerf = `service pop3-login {
  service_count = 0
  process_min_avail = {{NPROC}}
}
`

// startDovecot starts Dovecot under the name name; perf selects the
// high-performance login mode.
func startDovecot(ctx context.Context, bin, name string, perf bool, d dataset) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	dir := filepath.Join(d.root, name)
	for _, sub := range []string{"run", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("dovecot dir: %w", err)
		}
	}
	repl := strings.NewReplacer("{{DIR}}", dir, "{{MAIL}}", d.mail(), "{{PASSWD}}", d.passwd(),
		"{{UID}}", strconv.Itoa(mailOwner), "{{PORT}}", port, "{{NPROC}}", strconv.Itoa(runtime.NumCPU()))
	text := dovecotConf
	if perf {
		text += dovecotPerf
	}
	conf := repl.Replace(text)
	path := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("dovecot config: %w", err)
	}
	cmd, err := startProcess(ctx, "dovecot", filepath.Join(dir, "stdout.log"), bin, "-F", "-c", path)
	if err != nil {
		return nil, err
	}
	m := filepath.Join(d.mail(), "%u")
	return &server{name: name, addr: addr, pid: cmd.Process.Pid, cmd: cmd,
		cold: []string{filepath.Join(m, "dovecot.index*"), filepath.Join(m, "dovecot-uidlist"),
			filepath.Join(m, "dovecot.list.index*"), filepath.Join(m, "dovecot-keywords")}}, nil
}

// loopbackMBps measures one TCP stream over loopback in this process:
// size octets written in 64 KiB writes and read in 64 KiB reads.
func loopbackMBps(ctx context.Context, size int64) (float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("loopback: %w", err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 64*1024)
		for left := size; left > 0; {
			n := int64(len(buf))
			if left < n {
				n = left
			}
			if _, err := c.Write(buf[:n]); err != nil {
				errc <- err
				return
			}
			left -= n
		}
		errc <- nil
	}()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return 0, fmt.Errorf("loopback: %w", err)
	}
	defer c.Close()
	start := time.Now()
	buf := make([]byte, 64*1024)
	var n int64
	for n < size {
		m, err := c.Read(buf)
		n += int64(m)
		if err != nil {
			return 0, fmt.Errorf("loopback: read %d of %d: %w", n, size, err)
		}
	}
	el := time.Since(start)
	if err := <-errc; err != nil {
		return 0, fmt.Errorf("loopback: %w", err)
	}
	return float64(size) / 1e6 / el.Seconds(), nil
}
