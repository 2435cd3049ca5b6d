package pop3

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// fakeClock is a settable clock for the limiter.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Unix(1_000_000, 0)} }
func addr(s string) (netip.Addr, bool)   { return netip.MustParseAddr(s), true }
func mustWait(t *testing.T, got, want time.Duration) {
	t.Helper()
	if got != want {
		t.Errorf("wait %v, want %v", got, want)
	}
}

func TestLimiterDelays(t *testing.T) {
	clk := newFakeClock()
	l := NewLimiter(LimiterOptions{Now: clk.now, MaxDelay: 10 * time.Second})
	ip, ok := addr("192.0.2.7")
	for i := 0; i < DefaultIPThreshold-1; i++ {
		l.Failure(ip, ok, "alice")
		mustWait(t, l.Check(ip, ok, "alice"), 0)
	}
	// The third failure reaches the threshold: 2 s, then 4 s, 8 s, and
	// the 10 s cap.
	for _, want := range []time.Duration{2, 4, 8, 10, 10} {
		l.Failure(ip, ok, "alice")
		mustWait(t, l.Check(ip, ok, "alice"), want*time.Second)
		mustWait(t, l.Check(ip, ok, ""), want*time.Second)
	}
	// Another address is not delayed, and neither is the user (below
	// the user threshold).
	other, _ := addr("198.51.100.1")
	mustWait(t, l.Check(other, true, "alice"), 0)
	// The window passes.
	clk.add(10 * time.Second)
	mustWait(t, l.Check(ip, ok, "alice"), 0)
	// Counts decay: after enough time the next failure is free again.
	clk.add(10 * DefaultDecay)
	l.Failure(ip, ok, "alice")
	mustWait(t, l.Check(ip, ok, "alice"), 0)
}

func TestLimiterPerUser(t *testing.T) {
	clk := newFakeClock()
	l := NewLimiter(LimiterOptions{Now: clk.now, UserThreshold: 2, IPThreshold: 100})
	for i := 0; i < 2; i++ {
		ip, _ := addr(fmt.Sprintf("203.0.113.%d", i+1))
		l.Failure(ip, true, "bob")
	}
	fresh, _ := addr("203.0.113.99")
	mustWait(t, l.Check(fresh, true, "bob"), DefaultBaseDelay)
	mustWait(t, l.Check(fresh, true, "carol"), 0)
	// A success clears the user's count.
	l.Success("bob")
	mustWait(t, l.Check(fresh, true, "bob"), 0)
	if d, ok := l.SinceLogin("bob"); !ok || d != 0 {
		t.Errorf("SinceLogin = %v %v", d, ok)
	}
	if _, ok := l.SinceLogin("carol"); ok {
		t.Error("SinceLogin for a user who never logged in")
	}
}

func TestLimiterIPv6Prefix(t *testing.T) {
	l := NewLimiter(LimiterOptions{IPThreshold: 1})
	a, _ := addr("2001:db8:1:2::1")
	b, _ := addr("2001:db8:1:2:ffff::9")
	c, _ := addr("2001:db8:1:3::1")
	l.Failure(a, true, "")
	if l.Check(b, true, "") == 0 {
		t.Error("same /64 not delayed")
	}
	if l.Check(c, true, "") != 0 {
		t.Error("other /64 delayed")
	}
	if l.Check(netip.Addr{}, false, "") != 0 {
		t.Error("no address delayed")
	}
}

func TestLimiterBounded(t *testing.T) {
	l := NewLimiter(LimiterOptions{MaxEntries: 50})
	for i := 0; i < 1000; i++ {
		ip := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		l.Failure(ip, true, fmt.Sprint("user", i))
	}
	if n := l.Len(); n > 50 {
		t.Errorf("%d entries, cap 50", n)
	}
}
