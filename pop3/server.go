package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"popgate/mailstore"
	"popgate/pop3/wire"
)

// Defaults for the zero fields of [Options].
const (
	// DefaultAuthTimeout is the idle limit before login.
	DefaultAuthTimeout = 2 * time.Minute
	// DefaultIdleTimeout is the idle limit after login: the RFC 1939 §3
	// minimum for an autologout timer.
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultMaxErrors is the number of protocol errors after which the
	// connection is closed.
	DefaultMaxErrors = 10
	// DefaultImplementation is the CAPA IMPLEMENTATION argument.
	DefaultImplementation = "popgate"
	// MaxCommandLine is the longest accepted command line, CRLF included
	// (RFC 2449 §4).
	MaxCommandLine = 255
)

// lingerTimeout bounds how long a closing connection drains unread client
// input after its last reply, so that the kernel does not answer that
// input with a reset that would destroy the reply.
const lingerTimeout = 2 * time.Second

// Options configures a [Server]. The zero value of every field except
// Store means its documented default.
type Options struct {
	// Store authenticates users and opens maildrops. Required. If it
	// implements [mailstore.APOPStore], APOP is offered: the greeting
	// carries an RFC 1939 §7 timestamp.
	Store mailstore.Store
	// Hostname appears in the greeting and the APOP timestamp. Default:
	// os.Hostname(), or "localhost".
	Hostname string
	// Logger receives connection logs. The zero value discards them
	// (zerolog.Nop()).
	Logger zerolog.Logger
	// AuthTimeout is the idle limit before login. Default
	// [DefaultAuthTimeout].
	AuthTimeout time.Duration
	// IdleTimeout is the autologout limit after login. Default
	// [DefaultIdleTimeout], the RFC 1939 §3 minimum; a shorter value is
	// honoured (tests use one) but breaks that rule.
	IdleTimeout time.Duration
	// LineTimeout bounds the time to finish a command line once it has
	// started; WriteTimeout bounds each write. Zero means the pop3/wire
	// defaults.
	LineTimeout, WriteTimeout time.Duration
	// MaxErrors closes the connection after this many protocol errors
	// (unknown or malformed commands, commands in the wrong state, failed
	// logins). Default [DefaultMaxErrors].
	MaxErrors int
	// Implementation is the CAPA IMPLEMENTATION argument (RFC 2449 §6.9).
	// Default [DefaultImplementation].
	Implementation string
	// DisableAPOP withholds APOP even from a store that can verify it.
	DisableAPOP bool

	// TLSConfig enables STLS (RFC 2595 §4) on connections that are not
	// TLS yet. Its MinVersion is raised to TLS 1.2 (RFC 8314 §4.1). A
	// connection that is already TLS when ServeConn gets it (a *tls.Conn,
	// as tls.NewListener makes for port 995) is served as implicit TLS
	// (RFC 8314 §3) whether or not TLSConfig is set: the handshake runs
	// first and STLS is not offered.
	TLSConfig *tls.Config
	// Plaintext says where password logins (USER/PASS, APOP, AUTH PLAIN,
	// LOGIN, CRAM-MD5) are allowed without TLS. The zero value is
	// [PlaintextLAN].
	Plaintext PlaintextPolicy
	// PlaintextNetworks are the networks [PlaintextLAN] allows. Nil means
	// [DefaultPlaintextNetworks].
	PlaintextNetworks []netip.Prefix
	// SASLMechanisms restricts AUTH (RFC 5034) to these mechanisms, in
	// this order. Nil means every mechanism the store supports: PLAIN,
	// LOGIN, and CRAM-MD5 if the store implements
	// [mailstore.CRAMMD5Store]. An empty non-nil slice disables AUTH.
	SASLMechanisms []string
	// Limiter throttles failed logins. Nil means a limiter of this server
	// with default [LimiterOptions]; pass one Limiter to several servers
	// to share the counts between listeners.
	Limiter *Limiter
	// LoginDelay is the shortest time between two logins of one user
	// (RFC 2449 §6.5). When set it is enforced and advertised as
	// LOGIN-DELAY (whole seconds, rounded up); zero means neither.
	LoginDelay time.Duration
	// Expire is the argument of the EXPIRE capability (RFC 2449 §6.7):
	// "NEVER" or a number of days that mail is kept at least. Empty: not
	// advertised. popgate itself never removes undeleted mail; the
	// setting states the site's retention policy.
	Expire string

	// Profile is the POP3 revision this server speaks (docs/eras.md). The
	// zero value is [ProfileModern].
	Profile Profile
	// Quirks are switches for legacy clients' habits; the zero value has
	// none.
	Quirks Quirks
	// XTND enables XTND subcommands (RFC 1082's command; XLST and XMIT
	// as qpopper defined them). The zero value enables none.
	XTND XTNDOptions
	// RPOP enables RPOP in the rfc1081 and rfc1225 profiles. Nil: off.
	// Read the warning on [RPOPOptions] first.
	RPOP *RPOPOptions
}

// Server is a POP3 front end. It is safe for concurrent use: ServeConn may
// run for many connections at once.
type Server struct {
	opts         Options
	log          zerolog.Logger
	apop         mailstore.APOPStore // nil: APOP not offered
	greetName    string              // hostname as printed in replies
	stampHost    string              // hostname as printed in APOP timestamps
	pid          int
	counter      atomic.Uint64 // connections served; feeds ids and timestamps
	commands     commandTable
	capabilities capabilityList
	tlsConfig    *tls.Config // nil: no STLS
	limiter      *Limiter
	mechs        []*mechanism // AUTH mechanisms in CAPA order
	msgBufs      msgBufferPool
}

// New checks opts, applies the defaults and returns a server.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("pop3: Options.Store is required")
	}
	if opts.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		opts.Hostname = h
	}
	if opts.AuthTimeout <= 0 {
		opts.AuthTimeout = DefaultAuthTimeout
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxErrors <= 0 {
		opts.MaxErrors = DefaultMaxErrors
	}
	if opts.Implementation == "" {
		opts.Implementation = DefaultImplementation
	}
	if opts.PlaintextNetworks == nil {
		opts.PlaintextNetworks = DefaultPlaintextNetworks()
	}
	switch opts.Plaintext {
	case PlaintextLAN, PlaintextAllow, PlaintextNever:
	default:
		return nil, fmt.Errorf("pop3: unknown Options.Plaintext %v", opts.Plaintext)
	}
	if opts.LoginDelay < 0 {
		return nil, fmt.Errorf("pop3: negative Options.LoginDelay %v", opts.LoginDelay)
	}
	if err := checkExpire(opts.Expire); err != nil {
		return nil, err
	}
	if !opts.Profile.valid() {
		return nil, fmt.Errorf("pop3: unknown Options.Profile %v", opts.Profile)
	}
	if err := opts.Quirks.check(); err != nil {
		return nil, err
	}
	if err := checkXTND(&opts); err != nil {
		return nil, err
	}
	if err := checkRPOP(&opts); err != nil {
		return nil, err
	}
	impl := strings.Join(strings.Fields(sanitizeText(opts.Implementation)), "-")
	if impl == "" {
		return nil, fmt.Errorf("pop3: Options.Implementation %q has no printable characters", opts.Implementation)
	}
	s := &Server{
		opts:         opts,
		log:          opts.Logger,
		greetName:    sanitizeText(opts.Hostname),
		stampHost:    stampHost(opts.Hostname),
		pid:          os.Getpid(),
		commands:     newCommandTable(opts.TLSConfig != nil),
		capabilities: newCapabilityList(impl),
		limiter:      opts.Limiter,
	}
	applyProfile(s.commands, &s.opts)
	// STLS is an extension: only the modern profile offers it.
	if opts.TLSConfig != nil && opts.Profile.extensions() {
		s.tlsConfig = opts.TLSConfig.Clone()
		if s.tlsConfig.MinVersion < tls.VersionTLS12 {
			s.tlsConfig.MinVersion = tls.VersionTLS12
		}
	}
	if s.limiter == nil {
		s.limiter = NewLimiter(LimiterOptions{})
	}
	mechs, err := selectMechanisms(opts.Store, opts.SASLMechanisms)
	if err != nil {
		return nil, err
	}
	s.mechs = mechs
	if s.commands["CAPA"] != nil {
		if err := s.capabilities.check(s.commands); err != nil {
			return nil, err
		}
	}
	if s.greetName == "" {
		s.greetName = "localhost"
	}
	// A zero zerolog.Logger is not a documented no-op; make it one.
	if reflect.ValueOf(opts.Logger).IsZero() {
		s.log = zerolog.Nop()
	}
	if as, ok := opts.Store.(mailstore.APOPStore); ok && !opts.DisableAPOP && opts.Profile.hasAPOP() && !opts.Quirks.NoTimestamp {
		s.apop = as
	}
	return s, nil
}

// ServeConn runs one POP3 session on nc and closes nc when it ends. It
// returns after QUIT, a hang-up, a timeout, too many errors, or ctx's
// cancellation (a shutdown: the session ends without UPDATE, as on a
// hang-up).
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) {
	id := s.counter.Add(1)
	cc := &cancelConn{Conn: nc}
	c := &conn{
		srv:   s,
		ctx:   ctx,
		nc:    cc,
		state: Authorization,
		log: s.log.With().Str("proto", "pop3").Uint64("conn", id).
			Str("remote", remoteAddr(nc)).Logger(),
	}
	c.ip, c.hasIP = remoteIP(nc)
	c.plainOK = s.plaintextAllowed(c.ip, c.hasIP)
	if tc := implicitTLS(nc); tc != nil {
		if !c.implicitHandshake(tc) {
			_ = nc.Close()
			return
		}
	}
	if s.apop != nil && (c.passwordsAllowed() || s.tlsConfig != nil) {
		c.timestamp = fmt.Sprintf("<%d.%d.%d@%s>", s.pid, id, time.Now().UnixNano(), s.stampHost)
	}
	c.wc = wire.New(cc, wire.Options{
		MaxLine:      MaxCommandLine,
		LineTimeout:  s.opts.LineTimeout,
		WriteTimeout: s.opts.WriteTimeout,
	})
	stop := context.AfterFunc(ctx, cc.cancel)
	defer stop()
	defer c.finish()
	defer func() {
		if r := recover(); r != nil {
			c.log.Error().Str("panic", fmt.Sprint(r)).Bytes("stack", debug.Stack()).Msg("panic in session; closing")
			c.abort = true
		}
	}()
	c.log.Debug().Msg("connected")
	c.serve()
}

// cancelConn lets a shutdown interrupt a blocked read: once cancelled,
// every read deadline is in the past, even one set after the cancellation
// by the read loop.
type cancelConn struct {
	net.Conn
	mu        sync.Mutex
	cancelled bool
}

// pastDeadline is a read deadline that has always expired.
func pastDeadline() time.Time { return time.Unix(1, 0) }

func (c *cancelConn) cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancelled = true
	_ = c.Conn.SetReadDeadline(pastDeadline())
}

// SetReadDeadline sets the deadline unless the connection was cancelled.
func (c *cancelConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancelled {
		t = pastDeadline()
	}
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline sets both deadlines, keeping a cancelled read deadline.
func (c *cancelConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// lingerClose half-closes nc, drains what the client still sends for a
// short while, and closes it, so that a final reply is not destroyed by a
// reset caused by unread input.
func lingerClose(nc net.Conn) {
	type closeWriter interface{ CloseWrite() error }
	inner := nc
	if cc, ok := nc.(*cancelConn); ok {
		inner = cc.Conn
	}
	if cw, ok := inner.(closeWriter); ok {
		if cw.CloseWrite() == nil {
			_ = nc.SetReadDeadline(time.Now().Add(lingerTimeout))
			_, _ = io.CopyN(io.Discard, nc, 64*1024)
		}
	}
	_ = nc.Close()
}

func remoteAddr(nc net.Conn) string {
	if a := nc.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// sanitizeText keeps the octets that may appear in reply text: printable
// ASCII except "<" and ">" (they would fake an APOP timestamp, RFC 2449
// §6.2) and "[", "]" (a response code, RFC 2449 §8). It caps
// the length so that replies stay within 512 octets (RFC 1939 §3).
func sanitizeText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 128; i++ {
		c := s[i]
		if c > 0x20 && c < 0x7f && c != '<' && c != '>' && c != '[' && c != ']' {
			b.WriteByte(c)
		} else if c == ' ' {
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(b.String())
}

// stampHost turns a hostname into a dot-atom of [A-Za-z0-9_-] labels, the
// only characters besides digits, "." and "@" that timestamps carry: some
// clients (mpop) reject anything else inside the brackets.
func stampHost(h string) string {
	var labels []string
	for _, l := range strings.Split(h, ".") {
		var b strings.Builder
		for i := 0; i < len(l); i++ {
			c := l[i]
			if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' {
				b.WriteByte(c)
			}
		}
		if b.Len() > 0 {
			labels = append(labels, b.String())
		}
	}
	out := strings.Join(labels, ".")
	if len(out) > 128 {
		out = strings.Trim(out[:128], ".")
	}
	if out == "" {
		return "localhost"
	}
	return out
}
