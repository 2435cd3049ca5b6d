// Package pop2 is popgate's POP2 front end: the Post Office Protocol,
// version 2, of RFC 937 (February 1985), served from any
// [popgate/mailstore] backend.
//
// It provides [Server], built by [New] from [Options], with two entry
// points: [Server.ServeConn] for a connection of its own (it sends the
// greeting) and [Server.ServeGreeted] for a port 109 dispatcher that has
// already greeted and read the first command line. [Server.Greeting] is the
// greeting line such a dispatcher sends. The package pop2client is a
// client written from the RFC for tests.
//
// # Protocol
//
// The server states are RFC 937's (Server State Diagram, p.18):
//
//	LSTN --greet--> AUTH --HELO #NNN--> MBOX --READ =CCC--> ITEM --RETR data--> NEXT
//	                                    MBOX <--FOLD #NNN-- MBOX, ITEM
//	                                    ITEM <--READ =CCC-- ITEM
//	                                    ITEM <--ACKS/ACKD/NACK =CCC-- NEXT
//	AUTH, MBOX, ITEM --QUIT + Bye--> DONE
//
// Every command is looked up in the Server Decision Table (p.22), kept as
// data in this package; any command the table does not allow in the
// current state is answered "- error" and the connection is closed.
//
//	command        states      reply
//	HELO user pw   AUTH        #nnn (messages in INBOX), or "-" and close
//	FOLD mailbox   MBOX ITEM   #nnn (0 for an unknown or unreadable mailbox)
//	READ [n]       MBOX ITEM   =ccc (0: no such message, or marked deleted)
//	RETR           ITEM        exactly ccc octets; if ccc is 0, close
//	ACKS ACKD NACK NEXT        =ccc of the (now) current message
//	QUIT           AUTH MBOX ITEM  "+", then close
//
// # Invariants
//
//   - "=ccc" is [mailstore.MessageInfo.Size], the octets of the message's
//     CRLF form, and RETR sends exactly those octets with no terminator
//     and no dot-stuffing. If the store yields a different number
//     ([mailstore.ErrSizeMismatch]) the connection is closed: the client
//     never gets wrongly framed data.
//   - ACKD only marks. Marks are committed when the mailbox is released:
//     by FOLD (before the next mailbox is opened) or by QUIT. A hang-up, a
//     timeout, a shutdown or a protocol-error close releases the mailbox
//     with [mailstore.Session.Close], which removes nothing.
//   - The HELO password is never logged, traced or echoed.
//   - Replies are buffered and flushed once no pipelined command waits.
//
// The decisions taken where RFC 937 is ambiguous (the FLAG-937 list) are
// in docs/pop2.md.
package pop2
