package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"popgate/mailstore/users"
)

// reloadOnSIGHUP re-reads the users file on every SIGHUP, without dropping
// sessions. A file that fails to load leaves the previous table in force.
// The returned function stops watching.
func reloadOnSIGHUP(db *users.DB, log zerolog.Logger) func() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-ch:
				if err := db.Reload(); err != nil {
					log.Error().Err(err).Msg("SIGHUP: users file not reloaded; the previous one stays in force")
					continue
				}
				log.Info().Int("users", db.Len()).Msg("SIGHUP: users file reloaded")
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}
