package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"
)

// reloader is one thing SIGHUP re-reads: the users file, the TLS
// certificate. reload fails without side effects, so that a bad file
// leaves the previous version in force.
type reloader struct {
	what   string       // for the log: "users file", "TLS certificate"
	reload func() error // re-read
	detail func(*zerolog.Event)
}

// reloadOnSIGHUP re-reads every reloader on each SIGHUP, without dropping
// sessions, and logs each outcome. The returned function stops watching.
func reloadOnSIGHUP(log zerolog.Logger, rs ...reloader) func() {
	if len(rs) == 0 {
		return func() {}
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-ch:
				for _, r := range rs {
					if err := r.reload(); err != nil {
						log.Error().Err(err).Msgf("SIGHUP: %s not reloaded; the previous one stays in force", r.what)
						continue
					}
					ev := log.Info()
					if r.detail != nil {
						r.detail(ev)
					}
					ev.Msgf("SIGHUP: %s reloaded", r.what)
				}
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}
