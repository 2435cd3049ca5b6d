package pop3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-sasl"

	"popgate/mailstore"
)

// MaxSASLResponse is the longest client response line accepted inside an
// AUTH exchange, CRLF included. RFC 5034 §4 exempts these lines from the
// 255-octet command limit but asks servers to take the largest response
// of the mechanisms they offer: PLAIN with its three fields at RFC 4616
// §2's 255 octets each is 767 octets, 1024 in base64.
const MaxSASLResponse = 2048

// SASL mechanism names (RFC 4616, draft-murchison-sasl-login, RFC 2195).
const (
	MechPlain   = "PLAIN"
	MechLogin   = "LOGIN"
	MechCRAMMD5 = "CRAM-MD5"
)

// saslResult is what a mechanism's verification produced.
type saslResult struct {
	ran  bool   // credentials were checked (or refused by policy)
	user string // the authentication identity, for logs and the limiter
	acct mailstore.Account
	err  error
}

// mechanism is one AUTH mechanism. Every mechanism popgate offers is
// password-based, so every one follows Options.Plaintext.
type mechanism struct {
	name string
	// clientFirst says the mechanism accepts an initial response (RFC
	// 5034 §4: else AUTH with one gets -ERR).
	clientFirst bool
	start       func(c *conn, res *saslResult) sasl.Server
}

// allMechanisms lists what popgate implements, in CAPA order. SCRAM
// (RFC 5802) is absent: it needs a salted verifier that no popgate store
// keeps.
func allMechanisms() []*mechanism {
	return []*mechanism{
		{name: MechPlain, clientFirst: true, start: startPlain},
		{name: MechLogin, clientFirst: true, start: startLogin},
		{name: MechCRAMMD5, start: startCRAMMD5},
	}
}

// selectMechanisms returns the mechanisms to offer over store: names in
// order, or all that the store supports if names is nil.
func selectMechanisms(store mailstore.Store, names []string) ([]*mechanism, error) {
	_, cram := store.(mailstore.CRAMMD5Store)
	supported := func(m *mechanism) bool { return m.name != MechCRAMMD5 || cram }
	all := allMechanisms()
	if names == nil {
		var out []*mechanism
		for _, m := range all {
			if supported(m) {
				out = append(out, m)
			}
		}
		return out, nil
	}
	out := []*mechanism{}
	for _, n := range names {
		var found *mechanism
		for _, m := range all {
			if strings.EqualFold(m.name, n) {
				found = m
			}
		}
		switch {
		case found == nil:
			return nil, fmt.Errorf("pop3: SASL mechanism %q is unknown to popgate (it has PLAIN, LOGIN, CRAM-MD5)", n)
		case !supported(found):
			return nil, fmt.Errorf("pop3: SASL mechanism %s needs a store that implements mailstore.CRAMMD5Store; %T does not", found.name, store)
		}
		for _, m := range out {
			if m == found {
				return nil, fmt.Errorf("pop3: SASL mechanism %s listed twice", found.name)
			}
		}
		out = append(out, found)
	}
	return out, nil
}

// startPlain is RFC 4616 PLAIN, from go-sasl. An authorization identity
// other than the authentication identity is refused: popgate has no
// proxy logins.
func startPlain(c *conn, res *saslResult) sasl.Server {
	return sasl.NewPlainServer(func(authzid, user, password string) error {
		if authzid != "" && authzid != user {
			res.ran, res.user = true, user
			res.err = fmt.Errorf("PLAIN authorization identity %q differs from %q: %w", authzid, user, mailstore.ErrAuthFailed)
			return res.err
		}
		return c.saslVerify(res, user, password, func(ctx context.Context) (mailstore.Account, error) {
			return c.srv.opts.Store.Login(ctx, user, password)
		})
	})
}

// loginServer is the LOGIN mechanism (draft-murchison-sasl-login):
// "Username:" and "Password:" challenges. go-sasl has only its client
// side. An initial response, as some clients send, is the user name.
type loginServer struct {
	c     *conn
	res   *saslResult
	step  int // 0: nothing yet, 1: have the user name, 2: done
	user  string
	first bool
}

func startLogin(c *conn, res *saslResult) sasl.Server {
	return &loginServer{c: c, res: res, first: true}
}

// Next implements sasl.Server.
func (s *loginServer) Next(resp []byte) ([]byte, bool, error) {
	first := s.first
	s.first = false
	switch s.step {
	case 0:
		if first && resp == nil {
			return []byte("Username:"), false, nil
		}
		if len(resp) == 0 {
			return nil, false, errBadSASL
		}
		s.user, s.step = string(resp), 1
		return []byte("Password:"), false, nil
	case 1:
		s.step = 2
		password := string(resp)
		err := s.c.saslVerify(s.res, s.user, password, func(ctx context.Context) (mailstore.Account, error) {
			return s.c.srv.opts.Store.Login(ctx, s.user, password)
		})
		return nil, true, err
	}
	return nil, false, sasl.ErrUnexpectedClientResponse
}

// cramServer is RFC 2195 CRAM-MD5: one challenge, one "user digest"
// response, checked by the store (mailstore.CRAMMD5Store). go-sasl has
// no CRAM-MD5.
type cramServer struct {
	c         *conn
	res       *saslResult
	challenge string
	sent      bool
}

func startCRAMMD5(c *conn, res *saslResult) sasl.Server {
	return &cramServer{c: c, res: res}
}

// Next implements sasl.Server.
func (s *cramServer) Next(resp []byte) ([]byte, bool, error) {
	if !s.sent {
		if resp != nil {
			return nil, false, errIRNotAllowed
		}
		s.sent = true
		s.challenge = s.c.cramChallenge()
		return []byte(s.challenge), false, nil
	}
	user, digest, ok := parseCRAMResponse(resp)
	if !ok {
		return nil, true, errBadSASL
	}
	cs := s.c.srv.opts.Store.(mailstore.CRAMMD5Store)
	err := s.c.saslVerify(s.res, user, "", func(ctx context.Context) (mailstore.Account, error) {
		return cs.LoginCRAMMD5(ctx, user, s.challenge, digest)
	})
	return nil, true, err
}

// parseCRAMResponse splits "user SP digest" (RFC 2195 §2) at the last
// space; the digest is 32 hex digits, returned in lower case.
func parseCRAMResponse(resp []byte) (user, digest string, ok bool) {
	i := bytes.LastIndexByte(resp, ' ')
	if i <= 0 {
		return "", "", false
	}
	user, digest = string(resp[:i]), strings.ToLower(string(resp[i+1:]))
	if len(digest) != 32 || strings.Trim(digest, "0123456789abcdef") != "" {
		return "", "", false
	}
	return user, digest, true
}

// cramChallenge returns a fresh msg-id-like challenge,
// <random.clock@host> (RFC 2195 §2).
func (c *conn) cramChallenge() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("<%d.%d@%s>", binary.BigEndian.Uint64(b[:])>>1, time.Now().UnixNano(), c.srv.stampHost)
}

// saslVerify runs one credential check for a mechanism: UTF-8 and
// throttle checks first, then login. It records the outcome in res and
// returns its error, so that the mechanism reports failure.
func (c *conn) saslVerify(res *saslResult, user, password string, login func(context.Context) (mailstore.Account, error)) error {
	res.ran, res.user = true, user
	if err := c.checkCredentials(user, password); err != nil {
		res.err = err
		return err
	}
	res.acct, res.err = login(c.ctx)
	return res.err
}

// decodeSASL decodes one client response (RFC 5034 §4): strict base64,
// nothing outside the alphabet, "=" only as final padding. An empty line
// is an empty response; "=" is one only as an initial response.
func decodeSASL(s string, initial bool) ([]byte, error) {
	if initial && s == "=" {
		return []byte{}, nil
	}
	if s == "" {
		return []byte{}, nil
	}
	if len(s)%4 != 0 {
		return nil, errBadBase64
	}
	pad := len(s) - len(strings.TrimRight(s, "="))
	if pad > 2 {
		return nil, errBadBase64
	}
	for i := 0; i < len(s)-pad; i++ {
		ch := s[i]
		if !('A' <= ch && ch <= 'Z' || 'a' <= ch && ch <= 'z' || '0' <= ch && ch <= '9' || ch == '+' || ch == '/') {
			return nil, errBadBase64
		}
	}
	out, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errBadBase64
	}
	return out, nil
}

// mechanismNames returns the names of the mechanisms usable on c now.
func (c *conn) mechanismNames() []string {
	if !c.passwordsAllowed() {
		return nil
	}
	names := make([]string, 0, len(c.srv.mechs))
	for _, m := range c.srv.mechs {
		names = append(names, m.name)
	}
	return names
}

// findMechanism returns the offered mechanism named name (any case).
func (s *Server) findMechanism(name string) *mechanism {
	for _, m := range s.mechs {
		if strings.EqualFold(m.name, name) {
			return m
		}
	}
	return nil
}
