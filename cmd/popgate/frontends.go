package main

import (
	"fmt"

	"github.com/rs/zerolog"

	"popgate/mailstore"
	"popgate/pop1"
	"popgate/pop1/port109"
	"popgate/pop2"
	"popgate/pop3"
)

// frontEnds are the protocol servers, built once and shared by every
// listener of their protocol; POP3 has one server per distinct set of
// listener options.
type frontEnds struct {
	pop3   *pop3.Server // the process-wide flags; --inetd pop3
	pop3By map[eraKey]*pop3.Server
	pop2   *pop2.Server
	pop1   *pop1.Server
	pop109 *port109.Dispatcher
}

func newFrontEnds(cfg *config, store mailstore.Store, log zerolog.Logger) (*frontEnds, error) {
	p3opts := pop3.Options{
		Store:       store,
		Hostname:    cfg.hostname,
		Logger:      log,
		AuthTimeout: cfg.authTimeout,
		IdleTimeout: cfg.idleTimeout,
	}
	cfg.tls.apply(&p3opts)  // STLS, plaintext policy, shared limiter
	cfg.eras.apply(&p3opts) // profile, quirks, XTND
	p3, err := pop3.New(p3opts)
	if err != nil {
		return nil, fmt.Errorf("pop3: %w", err)
	}
	// One more server for each distinct set of listener options; they
	// share the store, the login limiter and the TLS configuration.
	pop3By := map[eraKey]*pop3.Server{cfg.eras.defaultKey(): p3}
	for _, l := range append(append([]pop3Listener(nil), cfg.eras.pop3Listeners...), cfg.eras.pop3sListeners...) {
		if pop3By[l.era] != nil {
			continue
		}
		o := p3opts
		o.Profile, o.Quirks = l.era.profile, l.era.quirks
		s, err := pop3.New(o)
		if err != nil {
			return nil, fmt.Errorf("pop3 listener %s (%v): %w", l.addr, l.era, err)
		}
		pop3By[l.era] = s
	}
	p2, err := pop2.New(pop2.Options{
		Store:       store,
		Hostname:    cfg.hostname,
		Logger:      log,
		AuthTimeout: cfg.authTimeout,
		IdleTimeout: cfg.idleTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("pop2: %w", err)
	}
	p1, err := pop1.New(pop1.Options{
		Store:       store,
		Hostname:    cfg.hostname,
		Logger:      log,
		AuthTimeout: cfg.authTimeout,
		IdleTimeout: cfg.idleTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("pop1: %w", err)
	}
	d, err := port109.New(port109.Options{POP1: p1, POP2: p2, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("port 109: %w", err)
	}
	return &frontEnds{pop3: p3, pop3By: pop3By, pop2: p2, pop1: p1, pop109: d}, nil
}

// pop3For returns the POP3 server for a listener's options.
func (f *frontEnds) pop3For(k eraKey) *pop3.Server {
	if s := f.pop3By[k]; s != nil {
		return s
	}
	return f.pop3
}

// byProto returns the front end for an --inetd protocol name, or nil.
func (f *frontEnds) byProto(name string) frontEnd {
	switch name {
	case "pop3":
		return f.pop3
	case "pop2":
		return f.pop2
	case "pop1":
		return f.pop1
	case "pop109":
		return f.pop109
	}
	return nil
}
