// Package interop holds popgate's interoperability tests with real POP3
// clients: Debian's fetchmail, mpop, getmail6 and curl, Python's poplib
// and Perl's Net::POP3. It has no code of its own; run
//
//	go test ./conformance/interop/ -v
//
// Each client retrieves a Maildir of awkward messages from a popgate
// started in the test (POP3 over the Maildir store, on loopback), once
// leaving the mail on the server and once deleting it, and every message
// the client stored is compared byte for byte with what was delivered,
// after undoing exactly the changes that client is documented to make
// (its line ends, the headers it adds). A client that is not installed
// is skipped, except under CI=true, where it is a failure (.ci/run
// installs them with .ci/install-clients).
//
// fetchmail and mpop also run over TLS, upgrading with STLS and over
// implicit TLS (pop3s), logging in with SASL (CRAM-MD5, PLAIN); the
// server's certificate is signed by a CA made in the test, which the
// clients are told to trust. Every run checks from popgate's log that
// each login used the configured method, over the configured kind of
// TLS or none.
//
// INTEROP_SUMMARY=FILE writes the per-client PASS/FAIL table to FILE;
// INTEROP_COMMANDS=FILE writes, per client, the commands it sent, taken
// from the sessions recorded with conformance.Recorder (docs/clients.md
// is made from it).
package interop
