package images

import (
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
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/cavaliergopher/grab/v3"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/hostpath"
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

// Defaults of CacheConfig (Ironic's [pxe]image_cache_size and
// image_cache_ttl, and the conductor's download timeouts).
const (
	DefaultMaxSize        int64 = 20 << 30
	DefaultTTL                  = 7 * 24 * time.Hour
	DefaultConnectTimeout       = 30 * time.Second
	DefaultReadTimeout          = 60 * time.Second
	// InUseWindow is how long after its last use (a deploy resolving it,
	// a node downloading it) an image is kept from eviction: a deploy
	// that resolved it is still booting its ramdisk.
	InUseWindow = time.Hour
)

// CacheConfig configures a Cache.
type CacheConfig struct {
	// Dir is the cache directory (created if missing). Required.
	Dir string
	// MaxSize caps the bytes the cache holds, partial downloads
	// included; 0 means DefaultMaxSize. An image larger than this is
	// refused before anything is copied; to make room, entries unused
	// for InUseWindow are evicted, least recently used first.
	MaxSize int64
	// TTL removes entries unused this long (at start and before each
	// download); 0 means DefaultTTL, negative never.
	TTL time.Duration
	// Files opens the host files of file:// sources (the allowed
	// directories); nil refuses file:// sources.
	Files *hostpath.Confiner
	// ConnectTimeout bounds connecting to an image server (TCP and TLS)
	// and waiting for its response headers; ReadTimeout bounds a stall
	// while reading from it. Zero means the defaults.
	ConnectTimeout, ReadTimeout time.Duration
	// Logger receives the cache's logs (default slog.Default()).
	Logger *slog.Logger
}

// Cache keeps local, checksum-verified copies of the images nodes download
// from the conductor instead of from their source: http(s) sources when
// instance_info asks for it (image_download_source "http" or "local") and
// file:// sources always. A download resumes a partial file (grab, HTTP
// Range); the checksum is verified once, when the download completes, and
// a verified image is served as is afterwards. Serve it under
// /agent_images/ (ServeHTTP).
//
// The cache is bounded: MaxSize over all its files, each image's size
// checked against what its source says before it is copied, and the copy
// cut off if the source sends more than it said (or than the cache can
// hold). Downloads time out when the server stalls, and a download nobody
// waits for any more (the deploys that asked for it were aborted or
// deleted) or that the conductor's shutdown interrupts is stopped and its
// partial file removed; partial files left by a crash are removed at
// start.
//
// The agents that download cached images send no credentials, so the
// names they are served under are unguessable: an HMAC of source and
// checksum under a random key kept in the cache directory (nameKeyFile).
// Knowing an image's source and checksum is not enough to fetch it from
// the conductor; the name is handed out in the node's deploy command.
type Cache struct {
	dir    string
	root   *os.Root
	key    []byte
	cfg    CacheConfig
	http   *http.Client
	client *grab.Client
	log    *slog.Logger

	ctx  context.Context // ends at Close: every download stops
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	inflight map[string]*fetch
	reserved map[string]int64 // name -> total size of an in-flight download
	serving  map[string]int
}

// fetch is one download and the callers waiting for it.
type fetch struct {
	done      chan struct{}
	err       error
	waiters   int
	cancel    context.CancelFunc
	cancelled bool // nobody waits any more: a new caller starts afresh
}

var _ Resolver = (*Cache)(nil)

// NewCache opens (creating it if needed) a cache directory and removes
// what a previous run left unfinished (partial downloads) or unused past
// the TTL.
func NewCache(cfg CacheConfig) (*Cache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("image cache: no directory")
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("image cache: create %s: %w", cfg.Dir, err)
	}
	root, err := os.OpenRoot(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("image cache: open %s: %w", cfg.Dir, err)
	}
	key, err := nameKey(root)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("image cache: %s: %w", cfg.Dir, err)
	}
	hc := newHTTPClient(cfg.ConnectTimeout, cfg.ReadTimeout)
	gc := grab.NewClient()
	gc.UserAgent = "rivet-conductor"
	gc.HTTPClient = hc
	ctx, stop := context.WithCancel(context.Background())
	c := &Cache{dir: cfg.Dir, root: root, key: key, cfg: cfg, http: hc, client: gc, log: cfg.Logger,
		ctx: ctx, stop: stop, inflight: map[string]*fetch{}, reserved: map[string]int64{}, serving: map[string]int{}}
	c.cleanAtStart()
	return c, nil
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

// Close stops the downloads in progress (removing their partial files),
// waits for them and releases the directory.
func (c *Cache) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.stop()
	c.wg.Wait()
	c.http.CloseIdleConnections()
	return c.root.Close()
}

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
	if hostpath.IsFileURL(src) {
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
	img, err := c.ImageFromInstanceInfo(ctx, ii)
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
// digest whose length names the algorithm, or the URL of a checksum file,
// fetched with the cache's timeouts).
func (c *Cache) ImageFromInstanceInfo(ctx context.Context, ii map[string]any) (Image, error) {
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
		e, err := c.fetchChecksumFile(ctx, checksum, src)
		if err != nil {
			return Image{}, err
		}
		img.Algo, img.Checksum = e.Algo, e.Value
	case checksum != "":
		img.Checksum = strings.ToLower(checksum)
	default:
		return Image{}, errdefs.InvalidArgument("Unable to verify image %s with available checksums. Please make sure the specified 'image_source' is valid or add 'image_checksum', or 'image_os_hash_algo' and 'image_os_hash_value', to instance_info.", redactURL(src))
	}
	if img.Algo == "" {
		img.Algo = algoByLength[len(img.Checksum)]
	}
	if _, err := newHash(img.Algo); err != nil || !hexRE.MatchString(img.Checksum) {
		return Image{}, errdefs.InvalidArgument("Invalid checksum %q (algorithm %q) for image %s", img.Checksum, img.Algo, redactURL(src))
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
// under. Concurrent calls for the same image share one download, which
// stops (its partial file removed) when every caller's ctx has ended; a
// verified image is never hashed again.
func (c *Cache) Ensure(ctx context.Context, img Image) (string, error) {
	name := c.name(img)
	if st, err := c.root.Stat(name); err == nil && st.Mode().IsRegular() {
		c.touch(name)
		return name, nil
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return "", errdefs.Unavailable("The image cache is shutting down.")
	}
	f := c.inflight[name]
	if f == nil || f.cancelled {
		f = c.startFetch(img, name, f)
		c.inflight[name] = f
	}
	f.waiters++
	c.mu.Unlock()
	select {
	case <-f.done:
		c.leave(f)
	case <-ctx.Done():
		c.leave(f)
		return "", fmt.Errorf("image cache: %s: %w", redactURL(img.Source), ctx.Err())
	}
	if f.err != nil {
		return "", f.err
	}
	c.touch(name)
	return name, nil
}

// startFetch starts the download of an image in the background, after
// prev (a cancelled download of the same image) has cleaned up. Call with
// c.mu held.
func (c *Cache) startFetch(img Image, name string, prev *fetch) *fetch {
	ctx, cancel := context.WithCancel(c.ctx)
	f := &fetch{done: make(chan struct{}), cancel: cancel}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer cancel()
		if prev != nil {
			<-prev.done
		}
		err := ctx.Err()
		if err == nil {
			err = c.download(ctx, img, name)
		}
		c.mu.Lock()
		f.err = err
		if c.inflight[name] == f {
			delete(c.inflight, name)
		}
		delete(c.reserved, name)
		c.mu.Unlock()
		close(f.done)
	}()
	return f
}

// leave drops a waiter of f; the last one to leave an unfinished
// download stops it.
func (c *Cache) leave(f *fetch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f.waiters--
	if f.waiters == 0 {
		select {
		case <-f.done:
		default:
			f.cancelled = true
			f.cancel()
		}
	}
}

// fetchChecksumFile fetches a checksum file and finds the image's entry
// in it (every format of contract §6.2, matched on the image's base name).
func (c *Cache) fetchChecksumFile(ctx context.Context, sumURL, imageURL string) (checksumfile.Entry, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sumURL, nil)
	if err != nil {
		return checksumfile.Entry{}, errdefs.InvalidArgument("Invalid image_checksum URL: %v", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return checksumfile.Entry{}, fmt.Errorf("image cache: fetch checksum file %s: %w", redactURL(sumURL), redactErr(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return checksumfile.Entry{}, errdefs.InvalidArgument("Could not fetch checksum file %s: HTTP %d", redactURL(sumURL), resp.StatusCode)
	}
	e, err := checksumfile.Parse(&limitedBody{r: resp.Body, max: maxChecksumFile, left: maxChecksumFile, what: "checksum file"}, path.Base(imageURL))
	if err != nil {
		return checksumfile.Entry{}, errdefs.InvalidArgument("Checksum file %s: %v", redactURL(sumURL), err)
	}
	return e, nil
}

// maxChecksumFile caps a checksum file (a distribution's SHA256SUMS is a
// few kilobytes).
const maxChecksumFile = 16 << 20

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

// redactErr drops the URL net/http puts in a client error (it may carry
// credentials or a signature), keeping the operation and the cause.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// ServeHTTP serves verified images by name (GET and HEAD, with Range);
// partial downloads are never served. An image being served is not
// evicted.
func (c *Cache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !allowGetHead(w, r) {
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	if !nameRE.MatchString(name) {
		http.NotFound(w, r)
		return
	}
	c.mu.Lock()
	f, err := c.root.Open(name)
	if err == nil {
		c.serving[name]++
	}
	c.mu.Unlock()
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer func() {
		c.mu.Lock()
		if c.serving[name]--; c.serving[name] <= 0 {
			delete(c.serving, name)
		}
		c.mu.Unlock()
	}()
	c.touch(name)
	ServeFile(w, r, f, name)
}
