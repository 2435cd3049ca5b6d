package main

import (
	"context"
	"fmt"

	"popgate/mailstore/memstore"
)

// The demo maildrop: user "demo", password "demo", and a few messages from
// the eras of the protocols popgate speaks. They are chosen to exercise the
// edges a teacher wants to show: a line that is a lone dot (POP3 stuffs it,
// POP1 and POP2 send it as it is), lines that begin with a dot, and 8-bit
// text in both Latin-1 and UTF-8.
const (
	demoUser     = "demo"
	demoPassword = "demo"
)

var demoMessages = []string{
	`From: Joyce Reynolds <jkrey@isi.example>
To: demo@popgate.example
Subject: Welcome to the Post Office
Date: Mon, 1 Oct 1984 09:00:00 -0700
Message-ID: <19841001090000.1@isi.example>

Hello,

Your mail is waiting for you at the post office. Connect, say who you
are, and it is handed over. That is all there is to it.

-- the Postmaster
`,
	`From: Marshall Rose <mrose@dewey.example>
To: demo@popgate.example
Subject: A lone dot, and lines that start with one
Date: Tue, 1 Nov 1988 14:30:00 -0500
Message-ID: <19881101143000.2@dewey.example>

In POP3 a line holding only a dot ends a multi-line reply, so the server
doubles any dot at the start of a line and the client takes it away.
The next line is a single dot:
.
...and this one starts with three dots.
.signature files were popular back then.
`,
	"From: =?iso-8859-1?q?J=FCrgen_M=FCller?= <jm@uni-zuerich.example>\n" +
		"To: demo@popgate.example\n" +
		"Subject: =?iso-8859-1?q?Gr=FC=DFe_aus_Z=FCrich?=\n" +
		"Date: Fri, 17 Sep 1993 16:45:00 +0200\n" +
		"Message-ID: <19930917164500.3@uni-zuerich.example>\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: text/plain; charset=iso-8859-1\n" +
		"Content-Transfer-Encoding: 8bit\n" +
		"\n" +
		"Gr\xfc\xdfe aus Z\xfcrich! Die Nachricht ist 8-bit ISO-8859-1: \xe4 \xf6 \xfc \xdf.\n" +
		"POP does not care: the octets travel as they are.\n",
	`From: Chris Newman <chris@example.org>
To: demo@popgate.example
Subject: UTF-8 everywhere: naïve café, 日本語, Ελληνικά
Date: Wed, 20 Mar 2013 10:00:00 -0700
Message-ID: <20130320100000.4@example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

RFC 6856 lets POP3 say UTF8. This message has UTF-8 in its headers and
in its body: naïve café, 日本語, Ελληνικά.
`,
}

// newDemoStore returns an in-memory store holding the demo maildrop.
func newDemoStore(ctx context.Context) (*memstore.Store, error) {
	st := memstore.New()
	if err := st.AddUser(ctx, demoUser, demoPassword); err != nil {
		return nil, fmt.Errorf("demo store: %w", err)
	}
	for i, m := range demoMessages {
		if err := st.Deliver(ctx, demoUser, "", []byte(m)); err != nil {
			return nil, fmt.Errorf("demo store: message %d: %w", i+1, err)
		}
	}
	return st, nil
}
