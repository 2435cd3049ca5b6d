package pop3

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// Defaults for the zero fields of [LimiterOptions].
const (
	// DefaultIPThreshold is the number of failed logins from one address
	// that are free; the next attempts are delayed.
	DefaultIPThreshold = 3
	// DefaultUserThreshold is the same for one user name. It is higher
	// than the address threshold so that an attacker cannot easily keep
	// the real user out (RFC 2449 §8.1.1 delays, it never locks).
	DefaultUserThreshold = 10
	// DefaultBaseDelay is the first delay after the threshold; each
	// further failure doubles it.
	DefaultBaseDelay = 2 * time.Second
	// DefaultMaxDelay caps the delay.
	DefaultMaxDelay = 5 * time.Minute
	// DefaultDecay is how long it takes for one counted failure to be
	// forgotten.
	DefaultDecay = time.Minute
	// DefaultMaxEntries bounds the limiter's memory: beyond it the least
	// recently touched entries are evicted.
	DefaultMaxEntries = 10000
)

// LimiterOptions configures a [Limiter]. Zero fields take the defaults.
type LimiterOptions struct {
	// IPThreshold and UserThreshold are the failures that are free per
	// remote address (an IPv6 address counts by its /64) and per user
	// name.
	IPThreshold, UserThreshold int
	// BaseDelay is the wait after the first failure over a threshold;
	// it doubles with each further failure, up to MaxDelay.
	BaseDelay, MaxDelay time.Duration
	// Decay is the time after which one failure is forgotten: the count
	// falls by one per Decay since the last failure.
	Decay time.Duration
	// MaxEntries bounds the number of addresses, users and login times
	// remembered.
	MaxEntries int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Limiter throttles password guessing: it counts failed logins per remote
// address and per user name, and once a count passes its threshold it
// refuses further attempts for a delay that doubles with each failure up
// to a cap. Counts decay, so nobody is locked out for good. It also
// remembers each user's last successful login for Options.LoginDelay.
// It is safe for concurrent use; one Limiter may be shared by several
// servers and listeners. Its memory is bounded by MaxEntries.
type Limiter struct {
	opts LimiterOptions

	mu      sync.Mutex
	entries map[string]*list.Element // key -> element holding *limitEntry
	lru     list.List                // front: most recently touched
}

type limitEntry struct {
	key       string
	failures  int       // counted failures, as of last
	last      time.Time // time of the last counted failure
	lastLogin time.Time // last successful login (user entries)
}

// NewLimiter returns a limiter with opts' defaults applied.
func NewLimiter(opts LimiterOptions) *Limiter {
	if opts.IPThreshold <= 0 {
		opts.IPThreshold = DefaultIPThreshold
	}
	if opts.UserThreshold <= 0 {
		opts.UserThreshold = DefaultUserThreshold
	}
	if opts.BaseDelay <= 0 {
		opts.BaseDelay = DefaultBaseDelay
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = DefaultMaxDelay
	}
	if opts.MaxDelay < opts.BaseDelay {
		opts.MaxDelay = opts.BaseDelay
	}
	if opts.Decay <= 0 {
		opts.Decay = DefaultDecay
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Limiter{opts: opts, entries: make(map[string]*list.Element)}
}

// ipKey is the counting key of an address: IPv4 as is, IPv6 by its /64
// (one host usually owns a whole /64). ok false: no address, not counted.
func ipKey(ip netip.Addr, ok bool) string {
	if !ok || !ip.IsValid() {
		return ""
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + ip.String()
}

func userKey(user string) string {
	if user == "" {
		return ""
	}
	return "user:" + user
}

// get returns the entry for key, touching it; create adds a missing one
// (evicting the oldest beyond MaxEntries). Callers hold mu.
func (l *Limiter) get(key string, create bool) *limitEntry {
	if key == "" {
		return nil
	}
	if el, ok := l.entries[key]; ok {
		l.lru.MoveToFront(el)
		return el.Value.(*limitEntry)
	}
	if !create {
		return nil
	}
	for len(l.entries) >= l.opts.MaxEntries {
		old := l.lru.Back()
		l.lru.Remove(old)
		delete(l.entries, old.Value.(*limitEntry).key)
	}
	e := &limitEntry{key: key}
	l.entries[key] = l.lru.PushFront(e)
	return e
}

// decayed returns e's failure count after decay at now.
func (l *Limiter) decayed(e *limitEntry, now time.Time) int {
	if e == nil || e.failures == 0 {
		return 0
	}
	n := e.failures - int(now.Sub(e.last)/l.opts.Decay)
	return max(n, 0)
}

// wait returns how much longer e must wait at now, given its threshold.
func (l *Limiter) wait(e *limitEntry, threshold int, now time.Time) time.Duration {
	n := l.decayed(e, now)
	if n < threshold {
		return 0
	}
	d := l.opts.BaseDelay
	for i := threshold; i < n && d < l.opts.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, l.opts.MaxDelay)
	if rest := e.last.Add(d).Sub(now); rest > 0 {
		return rest
	}
	return 0
}

// Check returns how long a login attempt from ip for user must still
// wait; 0 means it may go ahead. user may be "" when it is not known yet
// (the start of AUTH). A refused attempt is not counted.
func (l *Limiter) Check(ip netip.Addr, hasIP bool, user string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.opts.Now()
	w := l.wait(l.get(ipKey(ip, hasIP), false), l.opts.IPThreshold, now)
	if uw := l.wait(l.get(userKey(user), false), l.opts.UserThreshold, now); uw > w {
		w = uw
	}
	return w
}

// Failure counts a failed login from ip for user ("" if unknown).
func (l *Limiter) Failure(ip netip.Addr, hasIP bool, user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.opts.Now()
	for _, k := range []string{ipKey(ip, hasIP), userKey(user)} {
		if e := l.get(k, true); e != nil {
			e.failures = l.decayed(e, now) + 1
			e.last = now
		}
	}
}

// Success records a successful login of user: the user's failure count is
// cleared (the address's is not: a valid account must not reset a guesser's
// count) and the login time is kept for LOGIN-DELAY.
func (l *Limiter) Success(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.get(userKey(user), true); e != nil {
		e.failures = 0
		e.lastLogin = l.opts.Now()
	}
}

// SinceLogin returns the time since user's last successful login, and
// false if none is remembered.
func (l *Limiter) SinceLogin(user string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.get(userKey(user), false)
	if e == nil || e.lastLogin.IsZero() {
		return 0, false
	}
	return l.opts.Now().Sub(e.lastLogin), true
}

// Len returns the number of entries held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}
