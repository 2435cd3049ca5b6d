package main

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
)

// dropPrivileges switches the whole process to spec ("user" or
// "user:group") once the listeners are bound, so that a server started as
// root for ports 109, 110 and 995 does not serve sessions as root. The
// supplementary groups are reduced to the user's primary group (or the
// named group).
func dropPrivileges(spec string) error {
	name, group, _ := strings.Cut(spec, ":")
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("--run-as %q: %w", spec, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return fmt.Errorf("--run-as %q: uid %q: %w", spec, u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return fmt.Errorf("--run-as %q: gid %q: %w", spec, u.Gid, err)
	}
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return fmt.Errorf("--run-as %q: %w", spec, err)
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return fmt.Errorf("--run-as %q: gid %q: %w", spec, g.Gid, err)
		}
	}
	if os.Geteuid() != 0 {
		if os.Geteuid() == uid {
			return nil // already that user
		}
		return fmt.Errorf("--run-as %q: only root can change user (running as uid %d)", spec, os.Geteuid())
	}
	// Order matters: groups first, while still root.
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("--run-as %q: setgroups: %w", spec, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("--run-as %q: setgid: %w", spec, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("--run-as %q: setuid: %w", spec, err)
	}
	if syscall.Setuid(0) == nil {
		return fmt.Errorf("--run-as %q: could regain root after dropping privileges", spec)
	}
	return nil
}
