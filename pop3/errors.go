package pop3

import (
	"errors"
	"strconv"
	"time"

	"popgate/mailstore"
)

// protocolError is a client mistake. Its text is ours and safe to send.
type protocolError struct{ text string }

func (e *protocolError) Error() string { return "pop3: " + e.text }

// Protocol errors. They are never mutated.
var (
	errEmptyCommand   = &protocolError{"empty command"}
	errBadOctets      = &protocolError{"invalid characters in command"}
	errSyntax         = &protocolError{"syntax error"}
	errUnknownCommand = &protocolError{"unknown command"}
	errWrongState     = &protocolError{"command not valid in this state"}
	errArgCount       = &protocolError{"wrong number of arguments"}
	errBadNumber      = &protocolError{"invalid number"}
	errPassNoUser     = &protocolError{"PASS must immediately follow a successful USER"}
	errNoAPOP         = &protocolError{"APOP not available"}
	errBadDigest      = &protocolError{"APOP digest must be 32 hex digits"}
	errNotPOP3        = &protocolError{"this is a POP3 server"}
	errLineTooLong    = &protocolError{"line too long"}
	errTooManyErrors  = &protocolError{"too many errors"}
	errUnknownMech    = &protocolError{"Unrecognized authentication type"}
	errAuthCancelled  = &protocolError{"authentication cancelled"}
	errBadBase64      = &protocolError{"invalid base64 in authentication exchange"}
	errIRNotAllowed   = &protocolError{"this mechanism takes no initial response"}
	errBadSASL        = &protocolError{"malformed authentication exchange"}
	errBadUTF8        = &protocolError{"user name or password is not valid UTF-8"}
)

// cleartextError refuses a password login on a connection without TLS
// from outside the allowed networks (Options.Plaintext).
type cleartextError struct {
	stls bool // STLS is offered on this connection
}

func (e *cleartextError) Error() string { return "pop3: cleartext login refused" }

// throttleError refuses a login attempt while the [Limiter] delays its
// address or user.
type throttleError struct{ wait time.Duration }

func (e *throttleError) Error() string { return "pop3: login throttled for " + e.wait.String() }

// loginDelayError refuses a login that comes sooner than
// Options.LoginDelay after the user's previous one (RFC 2449 §6.5).
type loginDelayError struct{ wait time.Duration }

func (e *loginDelayError) Error() string { return "pop3: login delay: wait " + e.wait.String() }

// seconds rounds d up to whole seconds, at least 1.
func seconds(d time.Duration) int {
	n := int((d + time.Second - 1) / time.Second)
	return max(n, 1)
}

// msgError carries the message number an error is about, for the reply
// text.
type msgError struct {
	n   int
	err error
}

func (e *msgError) Error() string { return "message " + strconv.Itoa(e.n) + ": " + e.err.Error() }
func (e *msgError) Unwrap() error { return e.err }

// fatalError is a failure after a multi-line reply has started (or a
// framing failure): no reply can be sent, the connection must close.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return "pop3: fatal: " + e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// commitError is a failed UPDATE (RFC 1939 §6).
type commitError struct{ err error }

func (e *commitError) Error() string { return "pop3: update: " + e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

// errorOutcome is what [replyFor] decides for an error.
type errorOutcome struct {
	// reply is the whole reply line, "" for none.
	reply string
	// counts says the error counts toward Options.MaxErrors.
	counts bool
	// fatal says the connection must close at once, without flushing.
	fatal bool
	// logDetail says the error is unexpected: log it at error level.
	logDetail bool
}

// replyFor is the one place where errors become replies (RFC 2449 §8 and
// RFC 3206 response codes). It tests sentinels with errors.Is and never
// puts err.Error() on the wire.
func replyFor(err error) errorOutcome {
	var pe *protocolError
	var fe *fatalError
	var ce *commitError
	var cle *cleartextError
	var te *throttleError
	var lde *loginDelayError
	switch {
	case errors.As(err, &fe), errors.Is(err, mailstore.ErrSizeMismatch):
		return errorOutcome{fatal: true, logDetail: true}
	case errors.As(err, &ce):
		// RFC 1939 §6 names this reply; update() logs the cause.
		return errorOutcome{reply: "-ERR [SYS/TEMP] some deleted messages not removed"}
	case errors.As(err, &cle):
		// RFC 3206 §5: a policy problem with the login is [AUTH]. The reply
		// is the same whatever the credentials (RFC 8314 §4.1).
		if cle.stls {
			return errorOutcome{reply: "-ERR [AUTH] cleartext login refused here: TLS is needed (use STLS or port 995)", counts: true}
		}
		return errorOutcome{reply: "-ERR [AUTH] cleartext login refused here: TLS is needed (use port 995)", counts: true}
	case errors.As(err, &te):
		// RFC 2449 §8.1.1: retry after a delay, the password is not known
		// to be wrong (so clients do not ask for a new one).
		return errorOutcome{reply: "-ERR [LOGIN-DELAY] too many failed logins, try again in " + strconv.Itoa(seconds(te.wait)) + " seconds", counts: true}
	case errors.As(err, &lde):
		return errorOutcome{reply: "-ERR [LOGIN-DELAY] logged in too recently, try again in " + strconv.Itoa(seconds(lde.wait)) + " seconds", counts: true}
	case errors.As(err, &pe):
		return errorOutcome{reply: "-ERR " + pe.text, counts: true}
	case errors.Is(err, mailstore.ErrAuthFailed):
		return errorOutcome{reply: "-ERR [AUTH] invalid user name or password", counts: true}
	case errors.Is(err, mailstore.ErrUnsupported):
		return errorOutcome{reply: "-ERR [AUTH] authentication method not available for this user", counts: true}
	case errors.Is(err, mailstore.ErrLocked):
		return errorOutcome{reply: "-ERR [IN-USE] maildrop already locked"}
	case errors.Is(err, mailstore.ErrMessageDeleted):
		var me *msgError
		if errors.As(err, &me) {
			return errorOutcome{reply: "-ERR message " + strconv.Itoa(me.n) + " already deleted"}
		}
		return errorOutcome{reply: "-ERR message already deleted"}
	case errors.Is(err, mailstore.ErrNoSuchMessage):
		return errorOutcome{reply: "-ERR no such message"}
	case errors.Is(err, mailstore.ErrPermanent), errors.Is(err, mailstore.ErrNoSuchFolder):
		return errorOutcome{reply: "-ERR [SYS/PERM] maildrop unavailable, contact your administrator", logDetail: true}
	default:
		return errorOutcome{reply: "-ERR [SYS/TEMP] temporary failure, try again later", logDetail: true}
	}
}
