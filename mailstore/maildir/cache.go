package maildir

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"popgate/mailstore"
)

// The cache file, one per folder directory, keeps what popgate must not
// recompute at every login: each message's CRLF size, its UID (so that a
// UID never changes once shown), its place in delivery order and its
// current file name in cur/. It is text:
//
//	popgate-maildir-cache 2
//	next <seq>
//	cur <cur mtime> <new mtime> <listed>
//	<seq> <size> <uid> <file name>
//	...
//	end
//
// The "cur" line stamps the listing the names come from: the modification
// times of cur/ and of new/ before they were read (new/'s is 0 unless the
// listing found new/ with nothing to move), and the time the reading
// began, all in nanoseconds since 1970. A file name is written as it is unless
// it holds a byte outside '!'..'~' or a '"' or '\\', in which case it is
// Go-quoted (and then begins with '"'). Version 1 files, which kept the
// base name (quoted) and no stamp, are still read; the next write
// upgrades them.
//
// It is replaced atomically (write a temporary file, fsync, rename, fsync
// the directory), so a crash leaves the old or the new version. A missing
// or unreadable cache is rebuilt.
const (
	cacheName     = "popgate-cache"
	cacheTmp      = "popgate-cache.tmp."
	cacheHeader   = "popgate-maildir-cache 2"
	cacheHeaderV1 = "popgate-maildir-cache 1"
)

// stableAfter is how long cur/ and new/ must have been unchanged before
// they were listed for the listing to be reused without reading them
// again. A
// change made after the listing began then always gives cur/ a
// modification time different from the one recorded, even on a file
// system that keeps times in whole seconds (or two, as FAT does) or
// takes them from a coarse clock.
const stableAfter = 3 * time.Second

// cacheEntry is what the cache knows about one message.
type cacheEntry struct {
	seq  uint64
	size int64
	uid  string
	name string // the file name in cur/ at the last listing; "" if unknown (version 1)
	base string // the name up to the ':' info separator
}

// listStamp identifies a listing of a folder: the modification times of
// cur/ and new/ before the listing (newMtime 0 unless new/ had nothing to
// move) and when the listing began (nanoseconds; 0: none).
type listStamp struct{ curMtime, newMtime, listed int64 }

// reusable reports whether a listing stamped s still describes the folder
// now that cur/ and new/ have these modification times: neither changed,
// new/ had nothing to move, and both had been quiet for stableAfter when
// the listing began.
func (s listStamp) reusable(curMtime, newMtime int64) bool {
	return s.listed != 0 && s.newMtime != 0 && s.curMtime == curMtime && s.newMtime == newMtime &&
		s.listed-max(s.curMtime, s.newMtime) >= int64(stableAfter)
}

// cache is the parsed cache file of a folder.
type cache struct {
	next  uint64 // the next sequence number to hand out
	stamp listStamp
	// list holds the entries in file (delivery) order as parsed; entries,
	// built from it on first use by index, is the form that changes.
	list    []cacheEntry
	byUID   map[string]int        // UID → index in list, as parsed
	entries map[string]cacheEntry // by base name
}

func newCache() *cache { return &cache{next: 1, entries: make(map[string]cacheEntry)} }

// index returns the entries by base name, building the map on first use.
func (c *cache) index() map[string]cacheEntry {
	if c.entries == nil {
		c.entries = make(map[string]cacheEntry, len(c.list))
		for _, e := range c.list {
			c.entries[e.base] = e
		}
		c.list, c.byUID = nil, nil
	}
	return c.entries
}

// readCache loads dir's cache. A missing file gives an empty cache; a
// malformed one gives an empty cache and an error to log.
func readCache(dir string) (*cache, error) {
	data, err := readFile(filepath.Join(dir, cacheName))
	if errors.Is(err, fs.ErrNotExist) {
		return newCache(), nil
	}
	if err != nil {
		return newCache(), fmt.Errorf("reading cache: %w", err)
	}
	c, err := parseCache(data)
	if err != nil {
		return newCache(), fmt.Errorf("cache %s ignored: %w", filepath.Join(dir, cacheName), err)
	}
	return c, nil
}

// readFile is os.ReadFile for the cache, through msgFile: open, fstat,
// one read and close. A regular file returns fewer octets than asked for
// only at its end, so the read of size+1 octets that comes back short has
// found it; a file that grew meanwhile is read on to its end.
func readFile(path string) ([]byte, error) {
	var f msgFile
	if err := f.open(path); err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	size, err := f.size()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size+1)
	n := 0
	for {
		m, err := f.Read(buf[n:])
		n += m
		switch {
		case errors.Is(err, io.EOF):
			return buf[:n], nil
		case err != nil:
			return nil, fmt.Errorf("reading %s: %w", path, err)
		case m > 0 && n < len(buf):
			return buf[:n], nil
		case n == len(buf):
			buf = append(buf, make([]byte, len(buf))...)
		}
	}
}

// parseCache parses a cache file of either version. The strings of the
// result share one copy of data, so parsing allocates little per line.
func parseCache(data []byte) (*cache, error) {
	text := string(data)
	line := func() (string, bool) {
		i := strings.IndexByte(text, '\n')
		if i < 0 {
			return "", false
		}
		l := text[:i]
		text = text[i+1:]
		return l, true
	}
	header, ok := line()
	v1 := header == cacheHeaderV1
	if !ok || (header != cacheHeader && !v1) {
		return nil, fmt.Errorf("bad header")
	}
	l, ok := line()
	nextStr, ok2 := strings.CutPrefix(l, "next ")
	if !ok || !ok2 {
		return nil, fmt.Errorf("bad next line")
	}
	next, err := strconv.ParseUint(nextStr, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("bad next: %w", err)
	}
	c := &cache{next: next, list: make([]cacheEntry, 0, strings.Count(text, "\n"))}
	n := 3
	if !v1 {
		l, ok := line()
		rest, ok2 := strings.CutPrefix(l, "cur ")
		cmStr, rest, ok3 := strings.Cut(rest, " ")
		nmStr, lsStr, ok4 := strings.Cut(rest, " ")
		if !ok || !ok2 || !ok3 || !ok4 {
			return nil, fmt.Errorf("bad cur line")
		}
		cm, err1 := strconv.ParseInt(cmStr, 10, 64)
		nm, err2 := strconv.ParseInt(nmStr, 10, 64)
		ls, err3 := strconv.ParseInt(lsStr, 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("bad cur line: %w", err)
		}
		c.stamp = listStamp{curMtime: cm, newMtime: nm, listed: ls}
		n++
	}
	complete := false
	var prev uint64
	for ; ; n++ {
		l, ok := line()
		if !ok {
			break
		}
		if l == "end" {
			complete = text == ""
			break
		}
		seqStr, rest, ok1 := strings.Cut(l, " ")
		sizeStr, rest, ok2 := strings.Cut(rest, " ")
		uid, name, ok3 := strings.Cut(rest, " ")
		if !ok1 || !ok2 || !ok3 || name == "" {
			return nil, fmt.Errorf("line %d: malformed", n)
		}
		seq, err1 := strconv.ParseUint(seqStr, 10, 64)
		size, err2 := strconv.ParseInt(sizeStr, 10, 64)
		var err3 error
		if v1 || name[0] == '"' {
			name, err3 = strconv.Unquote(name)
		}
		if err := errors.Join(err1, err2, err3); err != nil || size < 0 || seq >= c.next || seq <= prev ||
			name == "" || !mailstore.ValidUID(uid) {
			return nil, fmt.Errorf("line %d: malformed", n)
		}
		prev = seq
		e := cacheEntry{seq: seq, size: size, uid: uid}
		if v1 {
			e.base = name
		} else {
			e.name = name
			e.base = parseName(name).base
		}
		c.list = append(c.list, e)
	}
	if !complete {
		return nil, fmt.Errorf("truncated (no end line)")
	}
	// UIDs must be unique; sequence numbers are, since they ascend.
	c.byUID = make(map[string]int, len(c.list))
	for i, e := range c.list {
		if _, dup := c.byUID[e.uid]; dup {
			return nil, fmt.Errorf("uid %q listed twice", e.uid)
		}
		c.byUID[e.uid] = i
	}
	return c, nil
}

// marshal renders the cache in sequence order, in version 2.
func (c *cache) marshal() []byte {
	list := c.list
	if c.entries != nil {
		list = make([]cacheEntry, 0, len(c.entries))
		for _, e := range c.entries {
			list = append(list, e)
		}
		slices.SortFunc(list, func(a, b cacheEntry) int { return cmp.Compare(a.seq, b.seq) })
	}
	stamp := c.stamp
	for _, e := range list {
		if e.name == "" {
			stamp = listStamp{} // names unknown: the listing cannot be reused
			break
		}
	}
	buf := make([]byte, 0, len(list)*96+96)
	buf = fmt.Appendf(buf, "%s\nnext %d\ncur %d %d %d\n", cacheHeader, c.next, stamp.curMtime, stamp.newMtime, stamp.listed)
	for _, e := range list {
		buf = strconv.AppendUint(buf, e.seq, 10)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, e.size, 10)
		buf = append(buf, ' ')
		buf = append(buf, e.uid...)
		buf = append(buf, ' ')
		name := e.name
		if name == "" {
			name = e.base // a version 1 entry never listed since: its base still names it
		}
		if plainName(name) {
			buf = append(buf, name...)
		} else {
			buf = strconv.AppendQuote(buf, name)
		}
		buf = append(buf, '\n')
	}
	return append(buf, "end\n"...)
}

// plainName reports whether a file name can be written unquoted.
func plainName(name string) bool {
	for i := 0; i < len(name); i++ {
		if b := name[i]; b < '!' || b > '~' || b == '"' || b == '\\' {
			return false
		}
	}
	return name != ""
}

// write replaces dir's cache atomically: temporary file, fsync, rename,
// fsync of the directory.
func (c *cache) write(dir string, pid int) error {
	tmp := filepath.Join(dir, cacheTmp+strconv.Itoa(pid))
	if err := writeFileSync(tmp, c.marshal()); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing cache: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, cacheName)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("installing cache: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("installing cache: %w", err)
	}
	return nil
}

// removeCacheTemps deletes temporary cache files left by a crash. The
// caller holds the folder lock, so no one else is writing one.
func removeCacheTemps(dir string, entries []os.DirEntry) {
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), cacheTmp) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// writeFileSync creates path exclusively, writes data and fsyncs it.
func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// syncDir fsyncs a directory so that renames and unlinks in it are
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %s for fsync: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
