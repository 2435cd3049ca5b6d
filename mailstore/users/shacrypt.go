package users

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// This file implements glibc's SHA-crypt ("$5$" SHA-256 and "$6$" SHA-512),
// following Ulrich Drepper's published specification "Unix crypt using
// SHA-256 and SHA-512". golang.org/x/crypto does not provide it.

const (
	shaCryptDefaultRounds = 5000
	shaCryptMinRounds     = 1000
	shaCryptMaxRounds     = 999999999
	shaCryptMaxSalt       = 16
	// cryptAlphabet is the crypt(3) base-64 alphabet.
	cryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// shaVariant describes one of the two SHA-crypt variants.
type shaVariant struct {
	prefix string
	newH   func() hash.Hash
	// perm lists the digest bytes in output order, in groups of three; the
	// last group may be shorter (see encode).
	perm [][]int
}

var (
	sha256Variant = shaVariant{
		prefix: "$5$",
		newH:   sha256.New,
		perm: [][]int{
			{0, 10, 20}, {21, 1, 11}, {12, 22, 2}, {3, 13, 23}, {24, 4, 14},
			{15, 25, 5}, {6, 16, 26}, {27, 7, 17}, {18, 28, 8}, {9, 19, 29},
			{31, 30},
		},
	}
	sha512Variant = shaVariant{
		prefix: "$6$",
		newH:   sha512.New,
		perm: [][]int{
			{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4},
			{47, 5, 26}, {6, 27, 48}, {28, 49, 7}, {50, 8, 29}, {9, 30, 51},
			{31, 52, 10}, {53, 11, 32}, {12, 33, 54}, {34, 55, 13}, {56, 14, 35},
			{15, 36, 57}, {37, 58, 16}, {59, 17, 38}, {18, 39, 60}, {40, 61, 19},
			{62, 20, 41}, {63},
		},
	}
)

// shaCryptParams is a parsed "$5$[rounds=N$]salt[$hash]" string.
type shaCryptParams struct {
	v          *shaVariant
	rounds     int
	roundsSet  bool // "rounds=" was given and must be echoed
	salt       string
	hashSuffix string // the encoded digest, if the string had one
}

// parseShaCrypt splits a SHA-crypt string. It accepts a bare setting
// (without the digest) as well as a full hash.
func parseShaCrypt(s string) (shaCryptParams, error) {
	var p shaCryptParams
	switch {
	case strings.HasPrefix(s, sha256Variant.prefix):
		p.v = &sha256Variant
	case strings.HasPrefix(s, sha512Variant.prefix):
		p.v = &sha512Variant
	default:
		return p, fmt.Errorf("sha-crypt: unknown prefix in %.3q", s)
	}
	rest := s[len(p.v.prefix):]
	p.rounds = shaCryptDefaultRounds
	if strings.HasPrefix(rest, "rounds=") {
		end := strings.IndexByte(rest, '$')
		if end < 0 {
			return p, fmt.Errorf("sha-crypt: rounds without salt")
		}
		n, err := strconv.ParseUint(rest[len("rounds="):end], 10, 64)
		if err != nil {
			return p, fmt.Errorf("sha-crypt: bad rounds: %w", err)
		}
		// The specification clamps out-of-range values rather than failing.
		switch {
		case n < shaCryptMinRounds:
			n = shaCryptMinRounds
		case n > shaCryptMaxRounds:
			n = shaCryptMaxRounds
		}
		p.rounds = int(n)
		p.roundsSet = true
		rest = rest[end+1:]
	}
	salt := rest
	if i := strings.IndexByte(rest, '$'); i >= 0 {
		salt = rest[:i]
		p.hashSuffix = rest[i+1:]
	}
	if len(salt) > shaCryptMaxSalt {
		salt = salt[:shaCryptMaxSalt]
	}
	p.salt = salt
	return p, nil
}

// shaCrypt computes the full crypt string for password with the settings p.
func shaCrypt(p shaCryptParams, password []byte) string {
	salt := []byte(p.salt)
	newH := p.v.newH

	// Digest B: password, salt, password.
	hb := newH()
	hb.Write(password)
	hb.Write(salt)
	hb.Write(password)
	b := hb.Sum(nil)
	size := len(b)

	// Digest A: password, salt, then B repeated over the password length,
	// then for each bit of the length B (bit set) or the password (clear).
	ha := newH()
	ha.Write(password)
	ha.Write(salt)
	n := len(password)
	for ; n > size; n -= size {
		ha.Write(b)
	}
	ha.Write(b[:n])
	for n = len(password); n > 0; n >>= 1 {
		if n&1 != 0 {
			ha.Write(b)
		} else {
			ha.Write(password)
		}
	}
	a := ha.Sum(nil)

	// Sequence P: digest of the password repeated len(password) times,
	// stretched to len(password).
	hp := newH()
	for range len(password) {
		hp.Write(password)
	}
	dp := hp.Sum(nil)
	pseq := repeatTo(dp, len(password))

	// Sequence S: digest of the salt repeated 16+A[0] times, stretched to
	// len(salt).
	hs := newH()
	for range 16 + int(a[0]) {
		hs.Write(salt)
	}
	ds := hs.Sum(nil)
	sseq := repeatTo(ds, len(salt))

	// The rounds.
	c := a
	h := newH()
	for i := range p.rounds {
		h.Reset()
		if i&1 != 0 {
			h.Write(pseq)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(sseq)
		}
		if i%7 != 0 {
			h.Write(pseq)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(pseq)
		}
		c = h.Sum(c[:0])
	}

	var out strings.Builder
	out.WriteString(p.v.prefix)
	if p.roundsSet {
		out.WriteString("rounds=")
		out.WriteString(strconv.Itoa(p.rounds))
		out.WriteByte('$')
	}
	out.WriteString(p.salt)
	out.WriteByte('$')
	for _, g := range p.v.perm {
		// Groups are big-endian byte order; a short final group encodes
		// fewer characters (4 for 3 bytes, 3 for 2 bytes, 2 for 1 byte).
		var w uint32
		for _, idx := range g {
			w = w<<8 | uint32(c[idx])
		}
		for range len(g) + 1 {
			out.WriteByte(cryptAlphabet[w&0x3f])
			w >>= 6
		}
	}
	return out.String()
}

// repeatTo returns d repeated to exactly n octets.
func repeatTo(d []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		k := min(len(d), n-len(out))
		out = append(out, d[:k]...)
	}
	return out
}

// verifyShaCrypt checks password against a full SHA-crypt hash in
// constant time (for a given hash).
func verifyShaCrypt(stored, password string) (bool, error) {
	p, err := parseShaCrypt(stored)
	if err != nil {
		return false, err
	}
	if p.hashSuffix == "" {
		return false, fmt.Errorf("sha-crypt: hash has no digest")
	}
	got := shaCrypt(p, []byte(password))
	return subtle.ConstantTimeCompare([]byte(got), []byte(stored)) == 1, nil
}
