package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"regexp"
	"time"

	"popgate/conformance"
)

// noFixtures is the skip reason of scripts that need fixtures placed or
// a folder inspected.
const noFixtures = "fixtures cannot be placed on that server (use --seed-maildir if it reads Maildirs)"

// remote is a conformance.Target for a server reached over TCP. It cannot
// seed fixtures or look into the store.
type remote struct {
	addr     string
	user     string
	password string
	popgate  bool
	timeout  time.Duration
}

var (
	_ conformance.Target           = (*remote)(nil)
	_ conformance.Supporter        = (*remote)(nil)
	_ conformance.CredentialMapper = (*remote)(nil)
)

func (rt *remote) Dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", rt.addr)
	if err != nil {
		return nil, fmt.Errorf("popconform: %w", err)
	}
	return c, nil
}

// Seed places nothing: scripts with fixtures or mailbox checks are
// skipped, and so are scripts with several accounts when --user names
// one.
func (rt *remote) Seed(_ context.Context, s *conformance.Script) error {
	if s.NeedsStore() {
		return fmt.Errorf("%s: %w", noFixtures, conformance.ErrSkip)
	}
	if rt.user != "" && len(s.Users) > 1 {
		return fmt.Errorf("the script uses %d accounts and --user gives one: %w", len(s.Users), conformance.ErrSkip)
	}
	return nil
}

func (rt *remote) Mailbox(context.Context, string, string, string) ([][]byte, error) {
	return nil, fmt.Errorf("%s: %w", noFixtures, conformance.ErrSkip)
}

// MapUser replaces the script's account with --user and --password, if
// given.
func (rt *remote) MapUser(u conformance.User) conformance.User {
	if rt.user == "" {
		return u
	}
	return conformance.User{Name: rt.user, Password: rt.password}
}

var apopTimestamp = regexp.MustCompile(`<[^<>]*@[^<>]*>`)

// Supports knows popgate (from --popgate) and apop (the greeting carries
// an RFC 1939 §7 timestamp).
func (rt *remote) Supports(ctx context.Context, feature string) (bool, string) {
	switch feature {
	case "popgate":
		return rt.popgate, "checks popgate's own choices; add --popgate if the server is popgate"
	case "apop":
		greeting, err := rt.greeting(ctx)
		if err != nil {
			return false, fmt.Sprintf("reading the greeting: %v", err)
		}
		if !apopTimestamp.MatchString(greeting) {
			return false, "the server's greeting carries no APOP timestamp"
		}
		return true, ""
	}
	return false, fmt.Sprintf("unknown feature %q", feature)
}

// greeting reads the first line the server sends, then hangs up.
func (rt *remote) greeting(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, rt.timeout)
	defer cancel()
	c, err := rt.Dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetReadDeadline(dl)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("popconform: %w", err)
	}
	return line, nil
}
