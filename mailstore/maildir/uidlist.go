package maildir

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"popgate/mailstore"
)

// uidlistName is the file in which Dovecot records IMAP UIDs.
const uidlistName = "dovecot-uidlist"

// dovecotUIDLs reads dir's dovecot-uidlist and returns, by base name, the
// UIDL Dovecot's POP3 server shows with its default pop3_uidl_format
// "%08Xu%08Xv" (uid and uidvalidity in 8-digit hex: Dovecot's X modifier
// writes lower-case digits, "000000074c0907b0", as Debian's Dovecot 2.3
// shows; see TestDovecotSameUIDLs), or the UIDL saved in the entry's P
// extension. A missing file gives an empty map.
func dovecotUIDLs(dir string) (map[string]dovecotEntry, error) {
	f, err := os.Open(dir + "/" + uidlistName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", uidlistName, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading %s: %w", uidlistName, err)
		}
		return nil, nil
	}
	version, validity, err := parseUidlistHeader(sc.Text())
	if err != nil {
		return nil, fmt.Errorf("%s header: %w", uidlistName, err)
	}
	out := make(map[string]dovecotEntry)
	for sc.Scan() {
		line := sc.Text()
		var uidField, exts, name string
		if version >= 3 {
			before, after, ok := strings.Cut(line, " :")
			if !ok {
				continue
			}
			name = after
			uidField, exts, _ = strings.Cut(before, " ")
		} else {
			uidField, name, _ = strings.Cut(line, " ")
		}
		uid, err := strconv.ParseUint(uidField, 10, 32)
		if err != nil || name == "" {
			continue
		}
		e := dovecotEntry{imapUID: uint32(uid)}
		e.uidl = fmt.Sprintf("%08x%08x", uid, validity)
		for _, x := range strings.Fields(exts) {
			if p, ok := strings.CutPrefix(x, "P"); ok && mailstore.ValidUID(p) {
				e.uidl = p
			}
		}
		base, _, _ := strings.Cut(name, ":")
		out[base] = e
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", uidlistName, err)
	}
	return out, nil
}

// dovecotEntry is one message listed in a dovecot-uidlist.
type dovecotEntry struct {
	imapUID uint32
	uidl    string
}

// parseUidlistHeader parses "3 V<validity> N<next> ..." (version 3) or
// "<1|2> <validity> <next> ..." (versions 1 and 2).
func parseUidlistHeader(h string) (version int, validity uint64, err error) {
	f := strings.Fields(h)
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("short header %q", h)
	}
	if version, err = strconv.Atoi(f[0]); err != nil {
		return 0, 0, fmt.Errorf("version %q: %w", f[0], err)
	}
	if version >= 3 {
		for _, x := range f[1:] {
			if v, ok := strings.CutPrefix(x, "V"); ok {
				validity, err = strconv.ParseUint(v, 10, 32)
				return version, validity, err
			}
		}
		return 0, 0, fmt.Errorf("no uidvalidity in %q", h)
	}
	validity, err = strconv.ParseUint(f[1], 10, 32)
	return version, validity, err
}
