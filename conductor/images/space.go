package images

import (
	"errors"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
)

// entry is a file of the cache: a verified image (its name) or a partial
// download (name + ".part").
type entry struct {
	file    string // file name in the directory
	name    string // the image's name
	partial bool
	size    int64
	lastUse time.Time
}

// entries lists the cache's images and partial downloads; other files
// (the naming key) are not the cache's to count or remove.
func (c *Cache) entries() ([]entry, error) {
	des, err := fs.ReadDir(c.root.FS(), ".")
	if err != nil {
		return nil, err
	}
	var out []entry
	for _, de := range des {
		name, partial := strings.CutSuffix(de.Name(), ".part")
		if !nameRE.MatchString(name) || !de.Type().IsRegular() {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue // removed meanwhile
		}
		e := entry{file: de.Name(), name: name, partial: partial, size: fi.Size(), lastUse: fi.ModTime()}
		if !partial {
			e.lastUse = accessTime(fi)
		}
		out = append(out, e)
	}
	return out, nil
}

// touch records a use of an image (its access time), which keeps it from
// eviction for InUseWindow and orders evictions. The modification time,
// which the image is served with, is kept.
func (c *Cache) touch(name string) {
	fi, err := c.root.Stat(name)
	if err != nil {
		return
	}
	if err := c.root.Chtimes(name, time.Now(), fi.ModTime()); err != nil {
		c.log.Debug("recording an image's use failed", "name", name, "error", err)
	}
}

// reserve makes room for an image of size bytes (the whole file, a part
// already downloaded included) and records it, so that concurrent
// downloads do not count the same free space. Entries unused for
// InUseWindow, not being downloaded or served, are evicted least recently
// used first. The cache's file system must have the room too.
//
// A negative size is an image whose size its server does not say: it
// gets the room the cache has once every entry that may be evicted has
// been, and reserve returns that room (its download is cut off past it).
func (c *Cache) reserve(name string, size int64) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if size > c.cfg.MaxSize {
		return 0, c.errTooBig(name, size)
	}
	unknown := size < 0
	if unknown {
		size = c.cfg.MaxSize
	}
	es, err := c.entries()
	if err != nil {
		return 0, err
	}
	onDisk := map[string]int64{}
	var used int64
	for _, e := range es {
		used += e.size
		onDisk[e.file] = e.size
	}
	// What in-flight downloads (this one included) will still write.
	pending := func() int64 {
		var p int64
		for n, total := range c.reserved {
			if n != name {
				p += max(0, total-onDisk[n+".part"])
			}
		}
		return p + max(0, size-onDisk[name+".part"])
	}
	if used+pending() > c.cfg.MaxSize {
		now := time.Now()
		sort.Slice(es, func(i, j int) bool { return es[i].lastUse.Before(es[j].lastUse) })
		for _, e := range es {
			if used+pending() <= c.cfg.MaxSize {
				break
			}
			if !c.evictable(e, name, now) {
				continue
			}
			if err := c.root.Remove(e.file); err != nil && !errors.Is(err, fs.ErrNotExist) {
				c.log.Warn("evicting a cached image failed", "file", e.file, "error", err)
				continue
			}
			c.log.Info("cached image evicted to make room", "file", e.file, "bytes", e.size,
				"last_use", e.lastUse.UTC().Format(time.RFC3339))
			used -= e.size
			delete(onDisk, e.file)
		}
	}
	if unknown {
		size = c.cfg.MaxSize - used - (pending() - max(0, size-onDisk[name+".part"])) + onDisk[name+".part"]
		if size <= onDisk[name+".part"] {
			return 0, &refusedDownload{errdefs.Unavailable(
				"The conductor's image cache is full: %d bytes are held by images in use (used in the last %s) and downloads in progress (--image-cache-max-size %d bytes).",
				used, InUseWindow, c.cfg.MaxSize)}
		}
	}
	if used+pending() > c.cfg.MaxSize {
		return 0, &refusedDownload{errdefs.Unavailable(
			"The conductor's image cache is full: %d bytes are held by images in use (used in the last %s) and downloads in progress; %d more do not fit in --image-cache-max-size %d bytes.",
			used, InUseWindow, max(0, size-onDisk[name+".part"]), c.cfg.MaxSize)}
	}
	if free, err := freeBytes(c.dir); err == nil {
		need := max(0, size-onDisk[name+".part"])
		switch {
		case unknown && need > free:
			size = onDisk[name+".part"] + free
		case need > free:
			return 0, &refusedDownload{errdefs.Unavailable(
				"The file system of the conductor's image cache has %d bytes free; the image needs %d more.", free, need)}
		}
	}
	c.reserved[name] = size
	return size, nil
}

// evictable reports whether an entry may be removed to make room for the
// image named for: not that image, not being downloaded or served, not
// used within InUseWindow. Call with c.mu held.
func (c *Cache) evictable(e entry, forName string, now time.Time) bool {
	if e.name == forName || c.serving[e.name] > 0 {
		return false
	}
	if _, downloading := c.inflight[e.name]; downloading && e.partial {
		return false
	}
	if _, downloading := c.reserved[e.name]; downloading {
		return false
	}
	return now.Sub(e.lastUse) >= InUseWindow
}

// cleanAtStart removes partial downloads (no download survives a
// restart), unfinished naming-key files, and images unused for the TTL.
func (c *Cache) cleanAtStart() {
	des, err := fs.ReadDir(c.root.FS(), ".")
	if err != nil {
		c.log.Warn("reading the image cache failed", "dir", c.dir, "error", err)
		return
	}
	for _, de := range des {
		n := de.Name()
		if strings.HasSuffix(n, ".part") || strings.HasPrefix(n, nameKeyFile+".") {
			if err := c.root.Remove(n); err != nil {
				c.log.Warn("removing a partial file from the image cache failed", "file", n, "error", err)
				continue
			}
			c.log.Info("partial file left by an earlier run removed from the image cache", "file", n)
		}
	}
	c.expire()
}

// expire removes images unused for the TTL that are not in use.
func (c *Cache) expire() {
	if c.cfg.TTL < 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	es, err := c.entries()
	if err != nil {
		return
	}
	now := time.Now()
	for _, e := range es {
		if e.partial || now.Sub(e.lastUse) < c.cfg.TTL || !c.evictable(e, "", now) {
			continue
		}
		if err := c.root.Remove(e.file); err == nil {
			c.log.Info("cached image unused past the TTL removed", "file", e.file, "bytes", e.size,
				"last_use", e.lastUse.UTC().Format(time.RFC3339), "ttl", c.cfg.TTL)
		}
	}
}

// Usage returns the bytes the cache's images and partial downloads take.
func (c *Cache) Usage() (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	es, err := c.entries()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range es {
		n += e.size
	}
	return n, nil
}
