package images

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/cavaliergopher/grab/v3"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/imagewriter/checksumfile"
)

// Resolver is what the engine needs of the image cache: where a node
// downloads its image from. *Cache implements it.
type Resolver interface {
	// Resolve returns the download of a node's instance_info: image_source
	// itself when it passes through (an http(s) URL without
	// image_download_source "http"/"local"), else the conductor's own URL
	// of the cached, verified copy, baseURL being the conductor's API URL
	// as the conductor reaches it (the engine maps it to the node's view
	// afterwards, as for any URL). It blocks until the image is cached;
	// errors carry errdefs classes.
	Resolve(ctx context.Context, instanceInfo map[string]any, baseURL string) (Resolved, error)
}

// Resolved is where a node downloads its image from.
type Resolved struct {
	// URL is the image's URL as the conductor reaches it.
	URL string
	// Cached is true when URL is the conductor's verified copy; Algo and
	// Checksum are then the checksum the copy was verified with (a
	// checksum-file URL resolved to its value), which the node checks too.
	Cached         bool
	Algo, Checksum string
}

// Cache keeps local, checksum-verified copies of the images nodes download
// from the conductor instead of from their source: http(s) sources when
// instance_info asks for it (image_download_source "http" or "local") and
// file:// sources always. A download resumes a partial file (grab, HTTP
// Range); the checksum is verified once, when the download completes, and
// a verified image is served as is afterwards. Serve it under
// /agent_images/ (ServeHTTP).
//
// The agents that download cached images send no credentials, so the
// names they are served under are unguessable: an HMAC of source and
// checksum under a random key kept in the cache directory (nameKeyFile).
// Knowing an image's source and checksum is not enough to fetch it from
// the conductor; the name is handed out in the node's deploy command.
type Cache struct {
	dir     string
	root    *os.Root
	key     []byte
	client  *grab.Client
	log     *slog.Logger
	metrics CacheMetrics

	mu       sync.Mutex
	inflight map[string]*fetch
}

// CacheMetrics receives the cache's lookups and size
// (conductor/metrics.Metrics).
type CacheMetrics interface {
	// ImageCacheLookup counts a lookup that found the image cached (hit)
	// or had to download it.
	ImageCacheLookup(hit bool)
	// ImageCacheSize sets the bytes the cache holds.
	ImageCacheSize(bytes int64)
}

// ReportTo makes the cache report its lookups and size to m, starting
// with the size it holds now. Call it before the cache is used.
func (c *Cache) ReportTo(m CacheMetrics) {
	c.metrics = m
	c.reportSize()
}

// reportSize reports the bytes of every file in the cache (partial
// downloads included).
func (c *Cache) reportSize() {
	if c.metrics == nil {
		return
	}
	var total int64
	err := fs.WalkDir(c.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || p == nameKeyFile {
			return err
		}
		info, err := d.Info()
		if err == nil {
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		c.log.Warn("image cache: measuring its size failed", "dir", c.dir, "error", err)
		return
	}
	c.metrics.ImageCacheSize(total)
}

type fetch struct {
	done chan struct{}
	err  error
}

var _ Resolver = (*Cache)(nil)

// NewCache opens (creating it if needed) a cache directory.
func NewCache(dir string, log *slog.Logger) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("image cache: create %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("image cache: open %s: %w", dir, err)
	}
	key, err := nameKey(root)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("image cache: %s: %w", dir, err)
	}
	if log == nil {
		log = slog.Default()
	}
	c := grab.NewClient()
	c.UserAgent = "rivet-conductor"
	return &Cache{dir: dir, root: root, key: key, client: c, log: log, inflight: map[string]*fetch{}}, nil
}

// nameKeyFile holds the 32-byte secret key of the cache's names, made on
// first use; it is never served (names are 32 hex digits).
const nameKeyFile = ".name-key"

// nameKey reads the cache's naming key, creating it if there is none.
func nameKey(root *os.Root) ([]byte, error) {
	for {
		key, err := root.ReadFile(nameKeyFile)
		if err == nil {
			if len(key) != 32 {
				return nil, fmt.Errorf("%s: %d bytes, want 32 (remove it to make a new key)", nameKeyFile, len(key))
			}
			return key, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		tmp := nameKeyFile + "." + hex.EncodeToString(key[:8])
		f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		_, werr := f.Write(key)
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			_ = root.Remove(tmp)
			return nil, fmt.Errorf("write %s: %w", nameKeyFile, err)
		}
		// Link, not rename: of two conductors starting on one
		// directory, the second keeps the first one's key.
		err = root.Link(tmp, nameKeyFile)
		_ = root.Remove(tmp)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create %s: %w", nameKeyFile, err)
		}
	}
}

// Close releases the directory.
func (c *Cache) Close() error { return c.root.Close() }

// Image is an image to cache: its source and the checksum that verifies
// it.
type Image struct {
	// Source is an http(s):// or file:// URL.
	Source string
	// Algo is a hash name (md5, sha1, sha224, sha256, sha384, sha512) and
	// Checksum its hex value.
	Algo, Checksum string
}

// NeedsCache reports whether a node's instance_info asks for the image to
// be cached by the conductor: a file:// image_source, or
// image_download_source "http" or "local".
func NeedsCache(ii map[string]any) bool {
	src, _ := ii["image_source"].(string)
	if strings.HasPrefix(strings.ToLower(src), "file://") {
		return true
	}
	switch ii["image_download_source"] {
	case "http", "local":
		return true
	}
	return false
}

// Resolve implements Resolver.
func (c *Cache) Resolve(ctx context.Context, ii map[string]any, baseURL string) (Resolved, error) {
	src, _ := ii["image_source"].(string)
	if !NeedsCache(ii) {
		return Resolved{URL: src}, nil
	}
	img, err := ImageFromInstanceInfo(ctx, ii)
	if err != nil {
		return Resolved{}, err
	}
	name, err := c.Ensure(ctx, img)
	if err != nil {
		return Resolved{}, err
	}
	return Resolved{URL: strings.TrimSuffix(baseURL, "/") + "/agent_images/" + name, Cached: true,
		Algo: img.Algo, Checksum: img.Checksum}, nil
}

// ImageFromInstanceInfo reads the source and checksum of instance_info:
// image_os_hash_algo and image_os_hash_value, else image_checksum (a hex
// digest whose length names the algorithm, or the URL of a checksum file).
func ImageFromInstanceInfo(ctx context.Context, ii map[string]any) (Image, error) {
	src, _ := ii["image_source"].(string)
	if src == "" {
		return Image{}, errdefs.InvalidArgument("Some parameters were missing in node's instance_info. Missing are: ['image_source']")
	}
	img := Image{Source: src}
	algo, _ := ii["image_os_hash_algo"].(string)
	value, _ := ii["image_os_hash_value"].(string)
	checksum, _ := ii["image_checksum"].(string)
	switch {
	case algo != "" && value != "":
		img.Algo, img.Checksum = strings.ToLower(algo), strings.ToLower(value)
	case strings.HasPrefix(checksum, "http://") || strings.HasPrefix(checksum, "https://"):
		e, err := fetchChecksumFile(ctx, checksum, src)
		if err != nil {
			return Image{}, err
		}
		img.Algo, img.Checksum = e.Algo, e.Value
	case checksum != "":
		img.Checksum = strings.ToLower(checksum)
	default:
		return Image{}, errdefs.InvalidArgument("Unable to verify image %s with available checksums. Please make sure the specified 'image_source' is valid or add 'image_checksum', or 'image_os_hash_algo' and 'image_os_hash_value', to instance_info.", src)
	}
	if img.Algo == "" {
		img.Algo = algoByLength[len(img.Checksum)]
	}
	if _, err := newHash(img.Algo); err != nil || !hexRE.MatchString(img.Checksum) {
		return Image{}, errdefs.InvalidArgument("Invalid checksum %q (algorithm %q) for image %s", img.Checksum, img.Algo, src)
	}
	return img, nil
}

var (
	algoByLength = map[int]string{32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
	hexRE        = regexp.MustCompile(`^[0-9a-f]+$`)
	nameRE       = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

func newHash(algo string) (hash.Hash, error) {
	switch algo {
	case "md5":
		return md5.New(), nil
	case "sha1":
		return sha1.New(), nil
	case "sha224":
		return sha256.New224(), nil
	case "sha256":
		return sha256.New(), nil
	case "sha384":
		return sha512.New384(), nil
	case "sha512":
		return sha512.New(), nil
	default:
		return nil, fmt.Errorf("unsupported hash algorithm %q", algo)
	}
}

// name is the cache name of an image: an HMAC of its source and checksum
// under the cache's secret key.
func (c *Cache) name(img Image) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(img.Source + "\n" + img.Algo + ":" + img.Checksum))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// Ensure makes sure the image is in the cache, downloaded (resuming a
// partial download) and verified, and returns the name it is served
// under. Concurrent calls for the same image share one download; a
// verified image is never hashed again.
func (c *Cache) Ensure(ctx context.Context, img Image) (string, error) {
	name := c.name(img)
	if st, err := c.root.Stat(name); err == nil && st.Mode().IsRegular() {
		if c.metrics != nil {
			c.metrics.ImageCacheLookup(true)
		}
		return name, nil
	}
	if c.metrics != nil {
		c.metrics.ImageCacheLookup(false)
	}
	c.mu.Lock()
	f, running := c.inflight[name]
	if !running {
		f = &fetch{done: make(chan struct{})}
		c.inflight[name] = f
	}
	c.mu.Unlock()
	if !running {
		// The download runs for whoever asked first, bounded by its ctx;
		// the others wait for it or for their own ctx.
		f.err = c.download(ctx, img, name)
		c.reportSize()
		c.mu.Lock()
		delete(c.inflight, name)
		c.mu.Unlock()
		close(f.done)
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		return "", fmt.Errorf("image cache: %s: %w", redactURL(img.Source), ctx.Err())
	}
	if f.err != nil {
		return "", f.err
	}
	return name, nil
}

// download fetches the image into <name>.part, verifies it and renames it
// to name.
func (c *Cache) download(ctx context.Context, img Image, name string) error {
	src := redactURL(img.Source)
	h, err := newHash(img.Algo)
	if err != nil {
		return errdefs.InvalidArgument("image %s: %v", src, err)
	}
	want, _ := hex.DecodeString(img.Checksum)
	part := filepath.Join(c.dir, name+".part")
	start := time.Now()
	u, err := url.Parse(img.Source)
	if err != nil {
		return errdefs.InvalidArgument("Invalid image_source %s: %v", src, err)
	}
	var size int64
	switch strings.ToLower(u.Scheme) {
	case "file":
		size, err = copyLocal(ctx, u.Path, part, h, want)
	case "http", "https":
		size, err = c.grab(ctx, img.Source, part, h, want)
	default:
		return errdefs.InvalidArgument("Image source %s is neither http(s):// nor file://", src)
	}
	if err != nil {
		return fmt.Errorf("image cache: %s: %w", src, err)
	}
	if err := os.Rename(part, filepath.Join(c.dir, name)); err != nil {
		return fmt.Errorf("image cache: %s: %w", src, err)
	}
	c.log.Info("image cached and verified", "source", src, "name", name, "bytes", size,
		"algo", img.Algo, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// grab downloads url to part, resuming what is there, and verifies the
// whole file against want.
func (c *Cache) grab(ctx context.Context, src, part string, h hash.Hash, want []byte) (int64, error) {
	req, err := grab.NewRequest(part, src)
	if err != nil {
		return 0, errdefs.InvalidArgument("Invalid image_source: %v", err)
	}
	req = req.WithContext(ctx)
	req.SetChecksum(h, want, true)
	resp := c.client.Do(req)
	if err := resp.Err(); err != nil {
		if errors.Is(err, grab.ErrBadChecksum) {
			return 0, errdefs.InvalidArgument("Image checksum mismatch: the downloaded image does not match its checksum")
		}
		return 0, fmt.Errorf("download: %w", err)
	}
	if resp.DidResume {
		c.log.Info("image download resumed from a partial file", "source", redactURL(src))
	}
	return resp.Size(), nil
}

// copyLocal copies a local file to part, hashing it, and checks the sum.
func copyLocal(ctx context.Context, src, part string, h hash.Hash, want []byte) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, errdefs.InvalidArgument("Image source file %s does not exist", src)
		}
		return 0, err
	}
	defer in.Close()
	out, err := os.Create(part)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(io.MultiWriter(out, h), ctxReader{ctx, in})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && !bytes.Equal(h.Sum(nil), want) {
		err = errdefs.InvalidArgument("Image checksum mismatch: %s does not match its checksum", src)
	}
	if err != nil {
		os.Remove(part)
		return 0, err
	}
	return n, nil
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

// Read implements io.Reader.
func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// fetchChecksumFile fetches a checksum file and finds the image's entry
// in it (every format of contract §6.2, matched on the image's base name).
func fetchChecksumFile(ctx context.Context, sumURL, imageURL string) (checksumfile.Entry, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sumURL, nil)
	if err != nil {
		return checksumfile.Entry{}, errdefs.InvalidArgument("Invalid image_checksum URL: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return checksumfile.Entry{}, fmt.Errorf("image cache: fetch checksum file %s: %w", redactURL(sumURL), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return checksumfile.Entry{}, errdefs.InvalidArgument("Could not fetch checksum file %s: HTTP %d", redactURL(sumURL), resp.StatusCode)
	}
	e, err := checksumfile.Parse(resp.Body, path.Base(imageURL))
	if err != nil {
		return checksumfile.Entry{}, errdefs.InvalidArgument("Checksum file %s: %v", redactURL(sumURL), err)
	}
	return e, nil
}

// redactURL drops credentials and the query (which may hold a temporary
// URL's signature) from a URL for logs and errors.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<invalid URL>"
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

// ServeHTTP serves verified images by name (GET and HEAD, with Range);
// partial downloads are never served.
func (c *Cache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !allowGetHead(w, r) {
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	if !nameRE.MatchString(name) {
		http.NotFound(w, r)
		return
	}
	f, err := c.root.Open(name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	ServeFile(w, r, f, name)
}
