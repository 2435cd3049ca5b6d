package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"popgate/conformance"
)

// Demo listening addresses, used when no listener flag is given.
const (
	demoPOP3Addr = "127.0.0.1:1110"
	demo109Addr  = "127.0.0.1:1109"
)

// config is the parsed command line.
type config struct {
	pop3Addrs       []string
	pop2Addrs       []string
	pop1Addrs       []string
	pop109Addrs     []string
	storeCfg        storeConfig
	hostname        string
	logLevel        string
	logFormat       string
	authTimeout     time.Duration
	idleTimeout     time.Duration
	shutdownTimeout time.Duration
	maxConns        int
	runAs           string
	inetd           string
	traceDir        string
	tls             tlsSettings // tls.go
	eras            eraSettings // eras.go
	demoListeners   bool        // no listener flag: the demo's listeners
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{}
	fs := pflag.NewFlagSet("popgate", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: popgate [flags]\n\n"+
			"popgate serves mail over POP3 (RFC 1939), POP2 (RFC 937) and POP1 (RFC 918)\n"+
			"from one mailstore. With no listener flag it serves POP3 on %s and POP1+POP2\n"+
			"on %s; with the default --store it serves the demo maildrop (user demo,\n"+
			"password demo).\n\nFlags:\n", demoPOP3Addr, demo109Addr)
		fs.PrintDefaults()
	}
	fs.StringArrayVar(&cfg.pop3Addrs, "pop3", nil, "POP3 (RFC 1939) listener `ADDR` (host:port; repeatable); standard port 110. Per-listener options after semicolons: ADDR;profile=NAME;quirks=LIST override --pop3-profile and --pop3-quirks (docs/eras.md)")
	fs.StringArrayVar(&cfg.pop2Addrs, "pop2", nil, "POP2 (RFC 937) listener `ADDR` (repeatable); standard port 109")
	fs.StringArrayVar(&cfg.pop1Addrs, "pop1", nil, "POP1 (RFC 918) listener `ADDR` (repeatable)")
	addTLSFlags(fs, &cfg.tls)
	addEraFlags(fs, &cfg.eras)
	fs.StringArrayVar(&cfg.pop109Addrs, "pop109", nil, "POP1 and POP2 on one listener `ADDR`, told apart by the first command (HELO: POP2, USER: POP1); the historical port 109")
	fs.StringVar(&cfg.storeCfg.url, "store", "memory:", "mail store `URL`: memory: (the demo maildrop), maildir:PATH, mbox:PATH (PATH may hold %u), imaps://HOST[:PORT], imap://HOST, pop3s://HOST[:PORT], pop3://HOST")
	fs.StringVar(&cfg.storeCfg.usersFile, "users", "", "Dovecot-style passwd-file `FILE` (user:{SCHEME}secret:...); needed by maildir: and mbox:; with a gateway --store, maps local users to upstream accounts (extra fields upstream_user=, upstream_pass= or upstream_token_command=); reloaded on SIGHUP")
	fs.StringVar(&cfg.storeCfg.uidlFormat, "uidl-format", "basename", "maildir UIDLs: basename, or dovecot to reproduce Dovecot's from dovecot-uidlist")
	fs.StringVar(&cfg.storeCfg.maildirLock, "maildir-lock", "rename", "maildir session lock: rename (a permanent token renamed to its holder's name), dotlock (popgate.lock exists while a session holds the folder; for file systems without flock), or flock (flock(2) per session; one more open file per session)")
	fs.StringVar(&cfg.storeCfg.mboxFlavour, "mbox-flavour", "mboxo", "mbox From_ quoting: mboxo (Debian's Postfix and procmail) or mboxrd")
	fs.StringVar(&cfg.storeCfg.mboxFolders, "mbox-folders", "", "mbox: `DIR` of a user's other folders, e.g. %h/mail (empty: INBOX only)")
	fs.StringVar(&cfg.storeCfg.upstreamCA, "upstream-ca", "", "gateway: CA certificate `FILE` for the upstream (default: system roots)")
	fs.BoolVar(&cfg.storeCfg.upstreamInsec, "upstream-insecure", false, "gateway: do not verify the upstream's certificate (logged at every start)")
	fs.StringVar(&cfg.storeCfg.upstreamDelete, "upstream-delete", "expunge", "gateway: what a POP deletion does upstream: expunge, or keyword (hide from POP, keep in IMAP)")
	fs.IntVar(&cfg.storeCfg.upstreamWindow, "upstream-window", 0, "gateway: serve only the newest `N` messages of each folder (0: all)")
	fs.StringVar(&cfg.hostname, "hostname", "", "host `NAME` in greetings and APOP timestamps (default: the system host name)")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "log `LEVEL`: debug, info, warn, error")
	fs.StringVar(&cfg.logFormat, "log-format", "console", "log `FORMAT`: console or json")
	fs.DurationVar(&cfg.authTimeout, "auth-timeout", 0, "idle limit before login (default: each protocol's own: POP3 2m, POP2 3m)")
	fs.DurationVar(&cfg.idleTimeout, "idle-timeout", 0, "idle limit after login (default: POP3 10m, the RFC 1939 minimum; POP2 30m)")
	fs.DurationVar(&cfg.shutdownTimeout, "shutdown-timeout", 5*time.Second, "on SIGINT/SIGTERM, how long sessions may run on before they are closed without UPDATE")
	fs.StringVar(&cfg.inetd, "inetd", "", "serve one connection on stdin/stdout with `PROTO` (pop3, pop2, pop1 or pop109) and exit, as inetd or systemd Accept=yes expect; no listeners")
	fs.StringVar(&cfg.runAs, "run-as", "", "after binding the listeners, drop root privileges to `USER[:GROUP]`")
	fs.IntVar(&cfg.maxConns, "max-conns", 1000, "most simultaneous connections over all listeners (0: no limit)")
	fs.StringVar(&cfg.traceDir, "trace", "", "record every session into `DIR` as a conformance transcript (passwords redacted; message contents kept)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if len(cfg.pop3Addrs)+len(cfg.pop2Addrs)+len(cfg.pop1Addrs)+len(cfg.pop109Addrs)+len(cfg.tls.pop3sAddrs) == 0 {
		cfg.pop3Addrs = []string{demoPOP3Addr}
		cfg.pop109Addrs = []string{demo109Addr}
		cfg.tls.pop3sAddrs = []string{demoPOP3SAddr}
		cfg.demoListeners = true
	}
	if err := cfg.tls.validate(); err != nil {
		return nil, err
	}
	if err := cfg.eras.validate(); err != nil {
		return nil, err
	}
	if err := cfg.eras.parseListeners(cfg.pop3Addrs, cfg.tls.pop3sAddrs); err != nil {
		return nil, err
	}
	for _, l := range []struct {
		flag  string
		addrs []string
	}{{"pop2", cfg.pop2Addrs}, {"pop1", cfg.pop1Addrs}, {"pop109", cfg.pop109Addrs}} {
		if err := noListenerOptions(l.flag, l.addrs); err != nil {
			return nil, err
		}
	}
	if cfg.idleTimeout != 0 && cfg.idleTimeout < 10*time.Minute {
		fmt.Fprintf(stderr, "popgate: warning: --idle-timeout %v is shorter than the 10 minutes RFC 1939 §3 asks for\n", cfg.idleTimeout)
	}
	return cfg, nil
}

func newLogger(cfg *config, stderr io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(strings.ToLower(cfg.logLevel))
	if err != nil || cfg.logLevel == "" {
		return zerolog.Nop(), fmt.Errorf("--log-level %q: want debug, info, warn or error", cfg.logLevel)
	}
	var w io.Writer
	switch cfg.logFormat {
	case "json":
		w = stderr
	case "console":
		w = zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.RFC3339}
	default:
		return zerolog.Nop(), fmt.Errorf("--log-format %q: want console or json", cfg.logFormat)
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}

// run is the whole program; main only supplies the context and streams.
// It returns the exit status: 0 after a clean shutdown or --help, 1 on a
// start-up failure, 2 on a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "popgate: %v\n", err)
		return 2
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "popgate: %v\n", err)
		return 2
	}
	if cfg.hostname == "" {
		if h, err := os.Hostname(); err == nil {
			cfg.hostname = h
		} else {
			cfg.hostname = "localhost"
		}
	}
	opened, err := openStore(ctx, cfg.storeCfg, cfg.hostname, log)
	if err != nil {
		fmt.Fprintf(stderr, "popgate: %v\n", err)
		return 1
	}
	store, demo := opened.store, opened.demo
	log.Info().Str("store", opened.desc).Msg("mail store ready")

	if err := cfg.tls.setup(cfg.hostname, cfg.demoListeners && cfg.tls.certFile == "", log); err != nil {
		fmt.Fprintf(stderr, "popgate: %v\n", err)
		return 1
	}
	reloaders := certReloader(cfg.tls.certs)
	if db := opened.users; db != nil {
		reloaders = append(reloaders, reloader{
			what:   "users file",
			reload: db.Reload,
			detail: func(ev *zerolog.Event) { ev.Int("users", db.Len()) },
		})
	}
	defer reloadOnSIGHUP(log, reloaders...)()

	fes, err := newFrontEnds(cfg, store, log)
	if err != nil {
		fmt.Fprintf(stderr, "popgate: %v\n", err)
		return 1
	}

	if cfg.inetd != "" {
		fe := fes.byProto(cfg.inetd)
		if fe == nil {
			fmt.Fprintf(stderr, "popgate: --inetd %q: want pop3, pop2, pop1 or pop109\n", cfg.inetd)
			return 2
		}
		if err := serveInetd(ctx, fe); err != nil {
			fmt.Fprintf(stderr, "popgate: --inetd: %v\n", err)
			return 1
		}
		return 0
	}

	ls := newListeners(log, cfg.maxConns)
	if cfg.traceDir != "" {
		rec, err := conformance.NewRecorder(cfg.traceDir)
		if err != nil {
			fmt.Fprintf(stderr, "popgate: --trace: %v\n", err)
			return 1
		}
		rec.OnWrite = func(path string, err error) {
			if err != nil {
				log.Error().Err(err).Str("trace", path).Msg("session transcript not written")
				return
			}
			log.Debug().Str("trace", path).Msg("session transcript written")
		}
		ls.trace = rec
		log.Warn().Str("dir", cfg.traceDir).Msg("--trace: recording every session, message contents included")
	}
	var bound []boundListener
	type listenOn struct {
		proto, name, addr string
		fe                frontEnd
		era               *eraKey // POP3 listeners: the options served
	}
	var todo []listenOn
	for _, l := range []struct {
		proto, name string
		ls          []pop3Listener
	}{
		{"pop3", "POP3", cfg.eras.pop3Listeners},
		{"pop3s", "POP3S", cfg.eras.pop3sListeners},
	} {
		for _, pl := range l.ls {
			era := pl.era
			todo = append(todo, listenOn{l.proto, l.name, pl.addr, fes.pop3For(era), &era})
		}
	}
	for _, l := range []struct {
		proto, name string
		addrs       []string
		fe          frontEnd
	}{
		{"pop2", "POP2", cfg.pop2Addrs, fes.pop2},
		{"pop1", "POP1", cfg.pop1Addrs, fes.pop1},
		{"pop109", "POP1+POP2", cfg.pop109Addrs, fes.pop109},
	} {
		for _, addr := range l.addrs {
			todo = append(todo, listenOn{l.proto, l.name, addr, l.fe, nil})
		}
	}
	for _, l := range todo {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			ls.shutdown(0)
			fmt.Fprintf(stderr, "popgate: cannot listen for %s on %s: %v\n", l.name, l.addr, unwrapOpError(err))
			return 1
		}
		ln = cfg.tls.wrap(l.proto, ln)
		ev := log.Info().Str("proto", l.proto).Str("listen", ln.Addr().String())
		b := boundListener{proto: l.name, addr: ln.Addr().String()}
		if l.era != nil {
			ev = ev.Str("profile", l.era.profile.String()).Str("quirks", l.era.quirks.String())
			if *l.era != cfg.eras.defaultKey() {
				b.note = l.era.String()
			}
		}
		ev.Msg("listening")
		ls.serve(ln, l.proto, l.fe)
		bound = append(bound, b)
	}
	if cfg.runAs != "" {
		if err := dropPrivileges(cfg.runAs); err != nil {
			ls.shutdown(0)
			fmt.Fprintf(stderr, "popgate: %v\n", err)
			return 1
		}
		log.Info().Str("user", cfg.runAs).Int("uid", os.Getuid()).Msg("privileges dropped")
	}
	printWelcome(stdout, bound, demo)

	<-ctx.Done()
	log.Info().Msg("shutting down: no new connections")
	ls.shutdown(cfg.shutdownTimeout)
	log.Info().Msg("stopped")
	return 0
}

// unwrapOpError drops the repetition in "listen tcp ADDR: bind: ..." so the
// one-line message stays short.
func unwrapOpError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// boundListener is a listening address and the protocol it serves; note,
// if set, names the listener's own POP3 options.
type boundListener struct{ proto, addr, note string }

func printWelcome(w io.Writer, bound []boundListener, demo bool) {
	for _, b := range bound {
		host, port, _ := net.SplitHostPort(b.addr)
		note := ""
		if b.note != "" {
			note = " (" + b.note + ")"
		}
		if b.proto == "POP3S" {
			fmt.Fprintf(w, "popgate: %s on %s%s   try: openssl s_client -quiet -crlf -connect %s\n", b.proto, b.addr, note, b.addr)
			continue
		}
		fmt.Fprintf(w, "popgate: %s on %s%s   try: telnet %s %s\n", b.proto, b.addr, note, host, port)
	}
	if demo {
		fmt.Fprintf(w, "popgate: demo maildrop: user %q, password %q, %d messages (in memory; changes are lost at exit)\n",
			demoUser, demoPassword, len(demoMessages))
		for _, b := range bound {
			if b.proto == "POP3" {
				host, port, _ := net.SplitHostPort(b.addr)
				fmt.Fprintf(w, "popgate: python3 -c \"import poplib; p=poplib.POP3('%s',%s); p.user('demo'); p.pass_('demo'); print(p.list())\"\n", host, port)
				break
			}
		}
	}
	fmt.Fprintln(w, "popgate: press Ctrl-C to stop")
}
