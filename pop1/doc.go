// Package pop1 is popgate's POP1 front end: the Post Office Protocol of
// RFC 918 (October 1984), served from any [popgate/mailstore] backend.
//
// It provides [Server], built by [New] from [Options], with two entry
// points: [Server.ServeConn] for a connection of its own (it sends the
// greeting) and [Server.ServeGreeted] for the port 109 dispatcher
// (package port109), which greets once and hands a connection over when
// the first command is USER. Package pop1client is a client written from
// the RFC, for tests.
//
// # Protocol
//
// POP1 moves a whole mailbox at a time. After USER and PASS the client
// starts a mail reading transaction with RETR (read all, keep) or RDEL
// (read all, delete); the server locks the mailbox and announces its
// size as "#xxx"; RCEV asks for exactly those octets; RCVD ends the
// transaction, and after RDEL deletes what was sent:
//
//	USER name       +OK
//	PASS password   +OK, or -ERR and back to USER
//	RETR mailbox    #xxx (mailbox locked), or -ERR
//	RDEL mailbox    #xxx (mailbox locked), or -ERR
//	RCEV            exactly xxx octets of mail data (RECV is accepted too)
//	RCVD            +OK (RDEL: deleted), or -ERR (not all deleted); unlocked
//	RSET            +OK: transaction aborted, nothing deleted, unlocked
//	NOOP            +OK
//	QUIT            +OK, then close
//
// The states and transitions of the RFC's Diagram (p.5) are a table in
// this package, with popgate's additions where the RFC is silent marked as
// such.
//
// # Invariants
//
//   - "#xxx" counts the octets of the mail data exactly as RCEV sends
//     them, every CRLF counting two. The mail data are the mailbox as an
//     mboxrd file with CRLF line ends (see the comment in mbox.go and
//     docs/pop1.md). The size is computed by reading every message once
//     before "#xxx" is sent, and the data are streamed, never held in
//     memory whole. If the store then yields other octets, the connection
//     is closed rather than misframed.
//   - Only RCVD of an RDEL transaction deletes, and exactly the messages
//     that were sent: the transaction works on a mailstore snapshot, so
//     mail that arrives meanwhile is neither sent nor deleted. RSET, QUIT
//     inside a transaction, a hang-up (even between RCEV and RCVD), a
//     timeout and a shutdown delete nothing and unlock the mailbox.
//   - The PASS argument is never logged, traced or echoed.
//   - Replies are buffered and flushed once no pipelined command waits;
//     pipelined commands are answered in order.
//
// The decisions taken where RFC 918 is ambiguous (the FLAG-918 list) are
// in docs/pop1.md.
package pop1
