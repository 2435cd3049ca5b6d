package conformance_test

import (
	"popgate/pop3"
)

// eraFrontEnds are the POP3 front-end variants of docs/eras.md, each
// with its own directory under testdata: one per profile
// (pop3-rfc1081 ... pop3-rfc1939), pop3-xtnd (RFC 1081 with XTND XLST)
// and one per quirk switch (pop3-quirk-NAME).
func eraFrontEnds() map[string]frontEnd {
	m := map[string]frontEnd{
		"pop3-xtnd": pop3FrontEnd(func(o *pop3.Options) {
			o.Profile = pop3.ProfileRFC1081
			o.XTND.XLST = true
		}),
	}
	for _, p := range []pop3.Profile{pop3.ProfileRFC1081, pop3.ProfileRFC1225, pop3.ProfileRFC1460,
		pop3.ProfileRFC1725, pop3.ProfileRFC1939} {
		m["pop3-"+p.String()] = pop3FrontEnd(func(o *pop3.Options) { o.Profile = p })
	}
	quirks := map[string]pop3.Quirks{
		"blank-before-dot":      {BlankBeforeDot: true},
		"status-header":         {StatusHeader: true},
		"replace-nul":           {ReplaceNUL: true},
		"add-eoh":               {AddEndOfHeaders: true},
		"strip-user-domain":     {StripUserDomain: true},
		"answer-probes":         {AnswerProbes: true},
		"hide-capa":             {HideCAPA: true},
		"greeting-short":        {ShortGreeting: true},
		"greeting-no-timestamp": {NoTimestamp: true},
		"wrap":                  {WrapLines: 40},
		"size-cap":              {SizeCap: 300},
	}
	for name, q := range quirks {
		m["pop3-quirk-"+name] = pop3FrontEnd(func(o *pop3.Options) {
			o.Quirks = q
			if name == "answer-probes" {
				// A profile without AUTH, so the probe's list is empty.
				o.Profile = pop3.ProfileRFC1725
			}
		})
	}
	return m
}
