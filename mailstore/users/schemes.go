package users

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Password scheme names, as Dovecot spells them between braces.
const (
	// Plain is a clear-text password. It is the only scheme that allows
	// APOP. CLEARTEXT is accepted as a synonym.
	Plain = "PLAIN"
	// Cleartext is Dovecot's synonym of Plain.
	Cleartext = "CLEARTEXT"
	// SHA512Crypt is glibc crypt "$6$".
	SHA512Crypt = "SHA512-CRYPT"
	// SHA256Crypt is glibc crypt "$5$".
	SHA256Crypt = "SHA256-CRYPT"
	// BlfCrypt is bcrypt ("$2a$", "$2b$", "$2y$").
	BlfCrypt = "BLF-CRYPT"
	// Argon2ID is Argon2id in the PHC string format.
	Argon2ID = "ARGON2ID"
	// Argon2I is Argon2i in the PHC string format.
	Argon2I = "ARGON2I"
	// Crypt is a crypt(3) string whose prefix chooses the algorithm; it is
	// the default when a password field has no {SCHEME} prefix. popgate
	// understands the "$5$", "$6$" and "$2?$" prefixes.
	Crypt = "CRYPT"
)

// Parameters used by Hash for new secrets.
const (
	// BcryptCost is the bcrypt cost factor of new BLF-CRYPT secrets.
	BcryptCost = bcrypt.DefaultCost
	// Argon2Memory is the memory of new Argon2 secrets, in KiB (64 MiB, as
	// Dovecot's default).
	Argon2Memory = 64 * 1024
	// Argon2Time is the number of passes of new Argon2 secrets.
	Argon2Time = 3
	// Argon2Threads is the parallelism of new Argon2 secrets.
	Argon2Threads = 1
	argon2KeyLen  = 32
	argon2SaltLen = 16
	// argon2MaxMemory bounds the memory a stored Argon2 secret may demand
	// (4 GiB), so that a typo in the users file cannot exhaust the host.
	argon2MaxMemory = 4 * 1024 * 1024
)

// errUnknownScheme is wrapped by every error about an unsupported scheme.
var errUnknownScheme = errors.New("unsupported password scheme")

// canonicalScheme returns the canonical spelling of a scheme name, or an
// error if popgate cannot verify it.
func canonicalScheme(s string) (string, error) {
	switch u := strings.ToUpper(s); u {
	case Plain, Cleartext:
		return Plain, nil
	case SHA512Crypt, SHA256Crypt, BlfCrypt, Argon2ID, Argon2I, Crypt:
		return u, nil
	default:
		return "", fmt.Errorf("scheme %q: %w", s, errUnknownScheme)
	}
}

// cryptKind resolves a CRYPT secret to the scheme its prefix names.
func cryptKind(secret string) (string, error) {
	switch {
	case strings.HasPrefix(secret, "$6$"):
		return SHA512Crypt, nil
	case strings.HasPrefix(secret, "$5$"):
		return SHA256Crypt, nil
	case len(secret) > 4 && strings.HasPrefix(secret, "$2") && secret[3] == '$':
		return BlfCrypt, nil
	case strings.HasPrefix(secret, "$argon2id$"):
		return Argon2ID, nil
	case strings.HasPrefix(secret, "$argon2i$"):
		return Argon2I, nil
	default:
		return "", fmt.Errorf("crypt secret with prefix %.4q: %w", secret, errUnknownScheme)
	}
}

// checkSecret validates that secret is well formed for scheme, so that a
// broken users file is reported when it is loaded, not at a login.
func checkSecret(scheme, secret string) error {
	switch scheme {
	case Plain:
		return nil
	case SHA512Crypt, SHA256Crypt:
		p, err := parseShaCrypt(secret)
		if err != nil {
			return err
		}
		if p.hashSuffix == "" || (scheme == SHA512Crypt) != (p.v == &sha512Variant) {
			return fmt.Errorf("%s secret is malformed", scheme)
		}
		return nil
	case BlfCrypt:
		if _, err := bcrypt.Cost([]byte(secret)); err != nil {
			return fmt.Errorf("BLF-CRYPT secret: %w", err)
		}
		return nil
	case Argon2ID, Argon2I:
		p, err := parseArgon2(secret)
		if err != nil {
			return err
		}
		if p.variant != scheme {
			return fmt.Errorf("%s scheme with a %s secret", scheme, p.variant)
		}
		return nil
	case Crypt:
		kind, err := cryptKind(secret)
		if err != nil {
			return err
		}
		return checkSecret(kind, secret)
	default:
		return fmt.Errorf("scheme %q: %w", scheme, errUnknownScheme)
	}
}

// verify checks password against secret stored under scheme. Comparisons
// are constant-time.
func verify(scheme, secret, password string) (bool, error) {
	switch scheme {
	case Plain:
		// Comparing digests hides the secret's length as well.
		a := sha256.Sum256([]byte(secret))
		b := sha256.Sum256([]byte(password))
		return subtle.ConstantTimeCompare(a[:], b[:]) == 1, nil
	case SHA512Crypt, SHA256Crypt:
		return verifyShaCrypt(secret, password)
	case BlfCrypt:
		err := bcrypt.CompareHashAndPassword([]byte(secret), []byte(password))
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
			return false, nil
		default:
			return false, fmt.Errorf("BLF-CRYPT: %w", err)
		}
	case Argon2ID, Argon2I:
		return verifyArgon2(secret, password)
	case Crypt:
		kind, err := cryptKind(secret)
		if err != nil {
			return false, err
		}
		return verify(kind, secret, password)
	default:
		return false, fmt.Errorf("scheme %q: %w", scheme, errUnknownScheme)
	}
}

// Hash returns a new secret for password under scheme, without the
// {SCHEME} prefix, with a fresh random salt.
func Hash(password, scheme string) (string, error) {
	sc, err := canonicalScheme(scheme)
	if err != nil {
		return "", err
	}
	switch sc {
	case Plain:
		if strings.ContainsAny(password, ":\r\n") {
			return "", fmt.Errorf("a PLAIN password cannot contain ':', CR or LF in a passwd-file")
		}
		return password, nil
	case SHA512Crypt, SHA256Crypt:
		v := &sha512Variant
		if sc == SHA256Crypt {
			v = &sha256Variant
		}
		salt, err := randomCryptSalt(shaCryptMaxSalt)
		if err != nil {
			return "", err
		}
		return shaCrypt(shaCryptParams{v: v, rounds: shaCryptDefaultRounds, salt: salt}, []byte(password)), nil
	case BlfCrypt:
		h, err := bcrypt.GenerateFromPassword([]byte(password), BcryptCost)
		if err != nil {
			return "", fmt.Errorf("BLF-CRYPT: %w", err)
		}
		return string(h), nil
	case Argon2ID, Argon2I:
		salt := make([]byte, argon2SaltLen)
		if _, err := rand.Read(salt); err != nil {
			return "", fmt.Errorf("argon2 salt: %w", err)
		}
		p := argon2Params{variant: sc, version: argon2.Version, memory: Argon2Memory,
			time: Argon2Time, threads: Argon2Threads, salt: salt}
		return p.encode(p.key([]byte(password), argon2KeyLen)), nil
	default:
		return "", fmt.Errorf("cannot create %s secrets: %w", sc, errUnknownScheme)
	}
}

// hashLike returns a secret of the same scheme and cost parameters as
// secret, for a random password: the dummy a missing user is checked
// against, so that it costs what a wrong password costs.
func hashLike(scheme, secret string) (string, string, error) {
	if scheme == Crypt {
		kind, err := cryptKind(secret)
		if err != nil {
			return "", "", err
		}
		scheme = kind
	}
	pw, err := randomCryptSalt(16)
	if err != nil {
		return "", "", err
	}
	switch scheme {
	case Plain:
		return scheme, pw, nil
	case SHA512Crypt, SHA256Crypt:
		p, err := parseShaCrypt(secret)
		if err != nil {
			return "", "", err
		}
		if p.salt, err = randomCryptSalt(max(len(p.salt), 1)); err != nil {
			return "", "", err
		}
		p.hashSuffix = ""
		return scheme, shaCrypt(p, []byte(pw)), nil
	case BlfCrypt:
		cost, err := bcrypt.Cost([]byte(secret))
		if err != nil {
			return "", "", fmt.Errorf("BLF-CRYPT: %w", err)
		}
		h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
		if err != nil {
			return "", "", fmt.Errorf("BLF-CRYPT: %w", err)
		}
		return scheme, string(h), nil
	case Argon2ID, Argon2I:
		p, err := parseArgon2(secret)
		if err != nil {
			return "", "", err
		}
		keyLen := len(p.hash)
		if _, err := rand.Read(p.salt); err != nil {
			return "", "", fmt.Errorf("argon2 salt: %w", err)
		}
		return scheme, p.encode(p.key([]byte(pw), uint32(keyLen))), nil
	default:
		return "", "", fmt.Errorf("scheme %q: %w", scheme, errUnknownScheme)
	}
}

// randomCryptSalt returns n random characters of the crypt alphabet.
func randomCryptSalt(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random salt: %w", err)
	}
	for i := range b {
		b[i] = cryptAlphabet[b[i]&0x3f]
	}
	return string(b), nil
}

// argon2Params is a parsed PHC string "$argon2id$v=19$m=M,t=T,p=P$salt$hash"
// (salt and hash in unpadded standard base64).
type argon2Params struct {
	variant string // Argon2ID or Argon2I
	version int
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	hash    []byte
}

func parseArgon2(s string) (argon2Params, error) {
	var p argon2Params
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return p, fmt.Errorf("argon2: malformed PHC string")
	}
	switch parts[1] {
	case "argon2id":
		p.variant = Argon2ID
	case "argon2i":
		p.variant = Argon2I
	default:
		return p, fmt.Errorf("argon2 variant %q: %w", parts[1], errUnknownScheme)
	}
	v, ok := strings.CutPrefix(parts[2], "v=")
	if !ok {
		return p, fmt.Errorf("argon2: missing version")
	}
	ver, err := strconv.Atoi(v)
	if err != nil || ver != argon2.Version {
		return p, fmt.Errorf("argon2 version %q: only %d is supported: %w", v, argon2.Version, errUnknownScheme)
	}
	p.version = ver
	for _, kv := range strings.Split(parts[3], ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return p, fmt.Errorf("argon2: malformed parameter %q", kv)
		}
		n, err := strconv.ParseUint(val, 10, 32)
		if err != nil {
			return p, fmt.Errorf("argon2 parameter %s: %w", k, err)
		}
		switch k {
		case "m":
			p.memory = uint32(n)
		case "t":
			p.time = uint32(n)
		case "p":
			if n > 255 {
				return p, fmt.Errorf("argon2: parallelism %d out of range", n)
			}
			p.threads = uint8(n)
		default:
			return p, fmt.Errorf("argon2: unknown parameter %q", k)
		}
	}
	if p.time < 1 || p.threads < 1 || p.memory < 8*uint32(p.threads) || p.memory > argon2MaxMemory {
		return p, fmt.Errorf("argon2: parameters m=%d,t=%d,p=%d out of range", p.memory, p.time, p.threads)
	}
	if p.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil {
		return p, fmt.Errorf("argon2 salt: %w", err)
	}
	if p.hash, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil {
		return p, fmt.Errorf("argon2 hash: %w", err)
	}
	if len(p.salt) < 8 || len(p.hash) < 4 {
		return p, fmt.Errorf("argon2: salt or hash too short")
	}
	return p, nil
}

// key derives keyLen octets from password with p's parameters.
func (p argon2Params) key(password []byte, keyLen uint32) []byte {
	if p.variant == Argon2I {
		return argon2.Key(password, p.salt, p.time, p.memory, p.threads, keyLen)
	}
	return argon2.IDKey(password, p.salt, p.time, p.memory, p.threads, keyLen)
}

// encode formats p with hash as a PHC string.
func (p argon2Params) encode(hash []byte) string {
	name := "argon2id"
	if p.variant == Argon2I {
		name = "argon2i"
	}
	return fmt.Sprintf("$%s$v=%d$m=%d,t=%d,p=%d$%s$%s", name, p.version, p.memory, p.time, p.threads,
		base64.RawStdEncoding.EncodeToString(p.salt), base64.RawStdEncoding.EncodeToString(hash))
}

func verifyArgon2(secret, password string) (bool, error) {
	p, err := parseArgon2(secret)
	if err != nil {
		return false, err
	}
	got := p.key([]byte(password), uint32(len(p.hash)))
	return subtle.ConstantTimeCompare(got, p.hash) == 1, nil
}
