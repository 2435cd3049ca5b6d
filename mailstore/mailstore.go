// Package mailstore is the one storage API behind popgate's three protocol
// front ends (POP1, POP2 and POP3).
//
// It provides:
//
//   - [Store], [Account] and [Maildrop]: the minimal interfaces a backend
//     implements (memstore, maildir, mbox, upstream gateways);
//   - [APOPStore]: an optional interface for stores that can verify an RFC
//     1939 APOP digest without handing out the shared secret;
//   - [CRAMMD5Store]: the same for an RFC 2195 CRAM-MD5 digest (POP3 AUTH);
//   - [Provisioner]: an optional interface for stores that can create users
//     and accept deliveries (tests, the demo, conformance fixtures);
//   - [MessageInfo] and [Changes]: what a maildrop lists and what a commit
//     changes;
//   - the sentinel errors ([ErrAuthFailed], [ErrLocked], ...) that front ends
//     turn into protocol replies;
//   - [Session]: the concrete per-connection view every front end uses:
//     message numbers, deletion marks, totals, RSET, LAST and commit.
//
// # Invariants
//
// Every backend keeps these; the storetest suite checks them.
//
//   - The CRLF form is canonical. A message is served as lines ending in
//     CRLF; [MessageInfo.Size] counts the octets of that form (before any
//     POP3 dot-stuffing) and [Maildrop.OpenMessage] returns exactly that many
//     octets. Stores that keep LF files convert on the fly and cache sizes.
//   - A Maildrop is a snapshot. Mail delivered after [Account.Open] is not
//     part of it; it is left untouched and is there for the next session.
//   - The maildrop lock is exclusive and fails fast. A second Open of the
//     same folder, from any front end or process, gets [ErrLocked] at once
//     instead of waiting. The lock never blocks delivery.
//   - Nothing is removed without Commit. [Maildrop.Close] (a hang-up, a
//     timeout, a shutdown) releases the lock and changes nothing.
//     [Maildrop.Commit] removes exactly the messages it is given, durably,
//     and nothing else. A crash at any instant leaves every message that was
//     not listed intact and readable.
//   - Backends never choose reply text. They return (wrapped) sentinels; the
//     detail goes to the log, never onto the wire.
//   - Every blocking call takes a context, cancelled on hang-up and shutdown.
package mailstore

import (
	"context"
	"errors"
	"io"
	"strings"
)

// Inbox is the name of every account's default folder. Open("") means the
// same folder.
const Inbox = "INBOX"

// Sentinel errors. Backends wrap them with context (fmt.Errorf("...: %w",
// ErrLocked)); front ends test them with errors.Is and map them to replies.
var (
	// ErrAuthFailed means the user is unknown or the credentials are wrong.
	// Backends must not say which, and should take the same time for both.
	ErrAuthFailed = errors.New("mailstore: authentication failed")
	// ErrLocked means another session holds the folder's maildrop lock.
	ErrLocked = errors.New("mailstore: maildrop is locked by another session")
	// ErrNoSuchFolder means the account has no folder of that name.
	ErrNoSuchFolder = errors.New("mailstore: no such folder")
	// ErrNoSuchMessage means the message number or UID is not in the maildrop.
	ErrNoSuchMessage = errors.New("mailstore: no such message")
	// ErrMessageDeleted means the message is marked deleted in this session.
	ErrMessageDeleted = errors.New("mailstore: message is marked deleted")
	// ErrUnsupported means the store does not offer the requested operation
	// (for example APOP with a hashed password).
	ErrUnsupported = errors.New("mailstore: operation not supported by this store")
	// ErrPermanent marks a system failure that retrying will not fix (a
	// missing or unreadable maildrop, a corrupt spool). Front ends report it
	// as RFC 3206 SYS/PERM; any other unexpected error is SYS/TEMP.
	ErrPermanent = errors.New("mailstore: permanent failure")
	// ErrSizeMismatch means a message's content did not have the size the
	// store announced. Length-framed protocols (POP1, POP2) must close the
	// connection when they see it.
	ErrSizeMismatch = errors.New("mailstore: message size differs from its announced size")
)

// Store is a backend: it authenticates users. Implementations are safe for
// concurrent use.
type Store interface {
	// Login checks the user's password and returns the account. Unknown
	// users and wrong passwords both give ErrAuthFailed.
	Login(ctx context.Context, user, password string) (Account, error)
}

// APOPStore is a Store that can check an RFC 1939 §7 APOP digest: the
// lower-case hex MD5 of timestamp (brackets included) followed by the
// user's shared secret. The secret never leaves the store. Stores return
// ErrUnsupported for users whose secret is not kept in a reversible form.
type APOPStore interface {
	Store
	LoginAPOP(ctx context.Context, user, timestamp, digest string) (Account, error)
}

// CRAMMD5Store is a Store that can check an RFC 2195 CRAM-MD5 response:
// digest is the lower-case hex HMAC-MD5 of challenge (brackets included)
// keyed with the user's shared secret. Like APOPStore it keeps the secret
// inside the store, and returns ErrUnsupported for users whose secret is
// not kept in a reversible form.
type CRAMMD5Store interface {
	Store
	LoginCRAMMD5(ctx context.Context, user, challenge, digest string) (Account, error)
}

// Account is an authenticated user. It holds no maildrop lock itself.
type Account interface {
	// User is the canonical user name.
	User() string
	// Folders lists the account's folders, Inbox first. POP2 FOLD and
	// POP1 mailbox names choose among them.
	Folders(ctx context.Context) ([]string, error)
	// Open takes the folder's exclusive maildrop lock and returns a snapshot
	// of it. It fails with ErrLocked at once if the lock is held, and with
	// ErrNoSuchFolder if there is no such folder. "" means Inbox.
	Open(ctx context.Context, folder string) (Maildrop, error)
	// Close releases the account. Maildrops it opened stay valid until they
	// are closed or committed.
	Close() error
}

// Maildrop is one locked folder, frozen at Open: later deliveries are not in
// it. Its methods are not safe for concurrent use; one session owns it.
type Maildrop interface {
	// Messages lists the snapshot in delivery order. The slice belongs to
	// the caller.
	Messages(ctx context.Context) ([]MessageInfo, error)
	// OpenMessage returns the message's CRLF form: exactly Size octets.
	OpenMessage(ctx context.Context, uid string) (io.ReadCloser, error)
	// Commit removes c.Deleted, marks c.Seen as seen, and releases the
	// lock. Messages that vanished meanwhile are not an error. If some
	// deletions fail, the others still happen and the error says so; the
	// lock is released in every case.
	Commit(ctx context.Context, c Changes) error
	// Close releases the lock and changes nothing. It is a no-op after
	// Commit or a previous Close.
	Close() error
}

// MessageInfo describes one message of a maildrop snapshot.
type MessageInfo struct {
	// UID is the RFC 1939 unique-id: 1 to 70 octets in 0x21-0x7E, unique
	// within the folder, stable across sessions, never reused.
	UID string
	// Size is the octet count of the CRLF form, before dot-stuffing: what
	// POP3 LIST, POP2 "=ccc" and POP1 "#ccc" are built from.
	Size int64
	// Seen reports that an earlier committed session retrieved the message.
	// RFC 1081-1460 LAST is derived from it.
	Seen bool
}

// Changes is what a committed session asks the store to do.
type Changes struct {
	// Deleted lists the UIDs to remove.
	Deleted []string
	// Seen lists the UIDs, not deleted, to mark as retrieved.
	Seen []string
}

// Provisioner is implemented by stores that can create users and accept
// deliveries. The demo, the storetest suite and conformance fixtures use it;
// protocol front ends never do.
type Provisioner interface {
	// AddUser creates a user with a plain-text password (so APOP works),
	// or replaces the password of an existing one.
	AddUser(ctx context.Context, user, password string) error
	// Deliver appends msg to the user's folder ("" is Inbox), creating the
	// folder if needed. Line ends may be LF or CRLF; the store serves the
	// CRLF form.
	Deliver(ctx context.Context, user, folder string, msg []byte) error
}

// ValidUID reports whether uid is a legal RFC 1939 unique-id: 1 to 70
// octets, each in 0x21-0x7E.
func ValidUID(uid string) bool {
	if len(uid) < 1 || len(uid) > 70 {
		return false
	}
	for i := 0; i < len(uid); i++ {
		if uid[i] < 0x21 || uid[i] > 0x7e {
			return false
		}
	}
	return true
}

// FolderName canonicalises a folder argument: "" and any case of "INBOX"
// become Inbox; other names are returned unchanged.
func FolderName(name string) string {
	if name == "" || strings.EqualFold(name, Inbox) {
		return Inbox
	}
	return name
}
