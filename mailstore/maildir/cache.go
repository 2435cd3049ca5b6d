package maildir

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"popgate/mailstore"
)

// The cache file, one per folder directory, keeps what popgate must not
// recompute at every login: each message's CRLF size, its UID (so that a
// UID never changes once shown) and its place in delivery order. It is
// text:
//
//	popgate-maildir-cache 1
//	next <seq>
//	<seq> <size> <uid> <base name, Go-quoted>
//
// It is replaced atomically (write a temporary file, fsync, rename, fsync
// the directory), so a crash leaves the old or the new version. A missing
// or unreadable cache is rebuilt.
const (
	cacheName   = "popgate-cache"
	cacheTmp    = "popgate-cache.tmp."
	cacheHeader = "popgate-maildir-cache 1"
)

// cacheEntry is what the cache knows about one message.
type cacheEntry struct {
	seq  uint64
	size int64
	uid  string
}

// cache is the parsed cache file of a folder.
type cache struct {
	next    uint64 // the next sequence number to hand out
	entries map[string]cacheEntry
}

func newCache() *cache { return &cache{next: 1, entries: make(map[string]cacheEntry)} }

// readCache loads dir's cache. A missing file gives an empty cache; a
// malformed one gives an empty cache and an error to log.
func readCache(dir string) (*cache, error) {
	data, err := os.ReadFile(filepath.Join(dir, cacheName))
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

func parseCache(data []byte) (*cache, error) {
	lines := bytes.Count(data, []byte{'\n'})
	c := &cache{next: 1, entries: make(map[string]cacheEntry, lines)}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	if !sc.Scan() || sc.Text() != cacheHeader {
		return nil, fmt.Errorf("bad header")
	}
	if !sc.Scan() {
		return nil, fmt.Errorf("missing next line")
	}
	nextStr, ok := strings.CutPrefix(sc.Text(), "next ")
	if !ok {
		return nil, fmt.Errorf("bad next line")
	}
	next, err := strconv.ParseUint(nextStr, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("bad next: %w", err)
	}
	c.next = next
	complete := false
	uids := make(map[string]bool, lines)
	for n := 3; sc.Scan(); n++ {
		line := sc.Text()
		if line == "end" {
			complete = true
			break
		}
		seqStr, rest, ok1 := strings.Cut(line, " ")
		sizeStr, rest, ok2 := strings.Cut(rest, " ")
		uid, quoted, ok3 := strings.Cut(rest, " ")
		if !ok1 || !ok2 || !ok3 {
			return nil, fmt.Errorf("line %d: malformed", n)
		}
		seq, err1 := strconv.ParseUint(seqStr, 10, 64)
		size, err2 := strconv.ParseInt(sizeStr, 10, 64)
		base, err3 := strconv.Unquote(quoted)
		if err := errors.Join(err1, err2, err3); err != nil || size < 0 || seq >= c.next ||
			!mailstore.ValidUID(uid) || uids[uid] {
			return nil, fmt.Errorf("line %d: malformed", n)
		}
		uids[uid] = true
		c.entries[base] = cacheEntry{seq: seq, size: size, uid: uid}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scanning: %w", err)
	}
	if !complete {
		return nil, fmt.Errorf("truncated (no end line)")
	}
	return c, nil
}

// marshal renders the cache in sequence order.
func (c *cache) marshal() []byte {
	bases := make([]string, 0, len(c.entries))
	for b := range c.entries {
		bases = append(bases, b)
	}
	sort.Slice(bases, func(i, j int) bool { return c.entries[bases[i]].seq < c.entries[bases[j]].seq })
	var buf bytes.Buffer
	buf.Grow(len(bases)*96 + 64)
	fmt.Fprintf(&buf, "%s\nnext %d\n", cacheHeader, c.next)
	for _, b := range bases {
		e := c.entries[b]
		fmt.Fprintf(&buf, "%d %d %s %s\n", e.seq, e.size, e.uid, strconv.Quote(b))
	}
	buf.WriteString("end\n")
	return buf.Bytes()
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
