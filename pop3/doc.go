// Package pop3 is popgate's POP3 front end: an RFC 1939 (STD 53) server
// with the RFC 2449 CAPA command, the RFC 2449 / RFC 3206 response codes,
// SASL AUTH (RFC 5034), STLS (RFC 2595) and implicit TLS (RFC 8314), and
// UTF8/LANG (RFC 6856), over the [mailstore] API.
//
// It provides [Server], built by [New] from [Options], whose
// [Server.ServeConn] runs one session on an accepted connection.
//
// # States
//
// The session follows RFC 1939 §3:
//
//	connect ──greeting──> AUTHORIZATION
//	AUTHORIZATION ──USER+PASS or APOP ok, maildrop locked──> TRANSACTION
//	AUTHORIZATION ──failed login──> AUTHORIZATION   (counts as an error)
//	AUTHORIZATION ──QUIT──> close                    (nothing to update)
//	TRANSACTION   ──QUIT──> UPDATE ──commit, +OK/-ERR──> close
//	any state     ──hang-up, timeout, shutdown, too many errors──> close,
//	                no UPDATE: Session.Close removes nothing
//
// # Commands
//
// Each Server has a command table (verb → legal states → handler); a unit
// test checks it against the summary in RFC 1939 §9.
//
//	verb  args            states                      source
//	USER  name            AUTHORIZATION               RFC 1939 §7
//	PASS  string          AUTHORIZATION, after USER   RFC 1939 §7
//	APOP  name digest     AUTHORIZATION               RFC 1939 §7
//	STAT                  TRANSACTION                 RFC 1939 §5
//	LIST  [msg]           TRANSACTION                 RFC 1939 §5
//	RETR  msg             TRANSACTION                 RFC 1939 §5
//	DELE  msg             TRANSACTION                 RFC 1939 §5
//	NOOP                  TRANSACTION                 RFC 1939 §5
//	RSET                  TRANSACTION                 RFC 1939 §5
//	TOP   msg n           TRANSACTION                 RFC 1939 §7
//	UIDL  [msg]           TRANSACTION                 RFC 1939 §7
//	QUIT                  AUTHORIZATION, TRANSACTION  RFC 1939 §4, §6
//	CAPA                  AUTHORIZATION, TRANSACTION  RFC 2449 §5
//	AUTH  [mech [ir]]     AUTHORIZATION               RFC 5034, RFC 1734
//	STLS                  AUTHORIZATION, no TLS yet   RFC 2595 §4
//	UTF8                  AUTHORIZATION               RFC 6856 §2
//	LANG  [range]         AUTHORIZATION, TRANSACTION  RFC 6856 §3
//
// CAPA is computed per connection and state: TOP, USER (where password
// logins are allowed), SASL (the mechanisms usable there), RESP-CODES,
// AUTH-RESP-CODE, LOGIN-DELAY (if Options.LoginDelay), PIPELINING,
// EXPIRE (if Options.Expire), UIDL, STLS (before TLS, in AUTHORIZATION,
// with Options.TLSConfig), UTF8 USER, LANG and IMPLEMENTATION. New checks
// that every announced command is implemented. AUTH offers PLAIN (from
// github.com/emersion/go-sasl), LOGIN and CRAM-MD5; STLS and implicit TLS
// (a *tls.Conn handed to ServeConn) run under [PlaintextPolicy] and a
// shared [Limiter]. docs/pop3-extensions.md has the decisions.
//
// APOP has no capability tag (RFC 2449 §6): it is
// offered when the greeting carries a timestamp, which happens when the
// store implements [mailstore.APOPStore] and Options.DisableAPOP is
// false. The timestamp is <pid.counter.clock@host>, unique per
// connection, made only of letters, digits and ".@_-".
//
// # Wire behaviour
//
//   - Keywords are case-insensitive; replies always start "+OK " or
//     "-ERR " with text after the space (RFC 1957), and stay within 512
//     octets (RFC 1939 §3).
//   - Command lines are bounded at 255 octets (RFC 2449 §4). A longer line
//     gets "-ERR line too long" and the connection closes. Control
//     characters (NUL, TAB, stray CR) are a syntax error. If the very first
//     line is clearly another protocol (an HTTP request line, HELO/EHLO, a
//     keyword that is not 3-4 letters, junk), the server answers -ERR and
//     closes.
//   - Pipelined commands are answered in order; replies are flushed when
//     no more input is buffered (RFC 2449 §6.6).
//   - RETR and TOP stream the message through a dot-stuffer: a line that
//     starts with "." gets another, the reply ends with ".CRLF". Nothing is
//     buffered whole. A message whose content does not match its
//     announced size breaks the framing: the connection is closed.
//   - The idle limit is AuthTimeout before login and IdleTimeout after;
//     on expiry the connection closes silently without UPDATE (RFC 1939
//     §3). A cancelled context (server shutdown) does the same.
//   - Errors become replies in one function: authentication failures get
//     [AUTH], a held lock [IN-USE], permanent store failures [SYS/PERM],
//     anything unexpected [SYS/TEMP]; details go to the log only.
//   - PASS, APOP and AUTH arguments, and SASL responses, are never logged.
//
// # Deviations and choices
//
//   - USER answers +OK for any name, so that user names cannot be probed
//     (RFC 1939 §7 allows -ERR for unknown names; RFC 3206 §5 warns
//     against it). The failure comes at PASS.
//   - USER takes exactly one argument: a name with spaces is refused.
//   - Arguments may be separated by several spaces and followed by
//     trailing spaces; arguments longer than RFC 1939's 40 characters are
//     accepted up to the 255-octet line limit.
//   - Message numbers too large for any maildrop (4294967296 and up) are
//     "no such message"; non-digits, signs and negative numbers are a
//     syntax error. Both get -ERR.
//   - IdleTimeout may be set below RFC 1939 §3's ten-minute minimum; the
//     default respects it.
//   - RFC 1939 §13 says a server should not allow both USER/PASS and APOP
//     for one user. That is left to the store: it may refuse APOP with
//     [mailstore.ErrUnsupported] (reply "-ERR [AUTH] ...").
//   - A bare LF in message content is sent as CRLF and an unterminated
//     last line is terminated, although stores already serve CRLF.
//
// # Eras and legacy clients
//
// Options.Profile makes a server speak an earlier revision instead
// ([ProfileRFC1081] ... [ProfileRFC1939]; the default [ProfileModern] is
// everything above): exactly that RFC's commands, LAST with its era's
// RSET rule (RFC 1081/1225 restore the session-start value, RFC 1460
// sets 0), RPOP only with [RPOPOptions] over trusted networks, no
// response codes before RFC 2449. Every profile keeps the rule that a
// broken connection never commits. Options.XTND enables XTND XLST and
// XMIT (qpopper's subcommands of RFC 1082's XTND). Options.Quirks are
// switches for legacy clients; those that change message octets change
// the reported sizes with them, so LIST always equals what RETR sends.
// docs/eras.md and docs/clients.md have the tables.
package pop3
