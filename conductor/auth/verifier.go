package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// ErrBadCredentials is returned for an unknown user or a wrong password
// (which of the two is not told).
var ErrBadCredentials = errors.New("incorrect username or password")

// maxPassword is bcrypt's input limit: longer passwords are refused
// rather than silently truncated.
const maxPassword = 72

// Defaults of VerifierConfig.
const (
	DefaultCacheTTL  = 5 * time.Minute
	DefaultCacheSize = 1024
)

// Identity is an authenticated user.
type Identity struct {
	Name string
	Role Role
}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// UserFile is the Apache htpasswd file (bcrypt entries only); required.
	UserFile string
	// RolesFile, when set, assigns roles (USER:ROLE lines); users it does
	// not name are readers. Without it every user is an admin.
	RolesFile string
	// CacheTTL is how long a verified user name and password are
	// accepted without running bcrypt again (default DefaultCacheTTL;
	// negative disables the cache).
	CacheTTL time.Duration
	// CacheSize bounds the number of cached credentials (default
	// DefaultCacheSize).
	CacheSize int
	// Logger receives reload errors (default slog.Default()).
	Logger *slog.Logger
}

// Verifier checks user names and passwords against a user file. Like
// Ironic, which reads its user file on every request, it notices when the
// files change (a stat on each check) and re-reads them; Reload forces
// it (SIGHUP). A file that fails to parse is logged and the users read
// before stay in force.
//
// Unknown users cost the same as known ones: their password is compared
// with a dummy hash of the file's highest bcrypt cost, so timing does not
// tell which users exist. Verified credentials are cached for CacheTTL
// under an HMAC of user name and password with a per-process random key
// (no password is kept in memory); every reload starts an empty cache, so
// a changed password or a removed user takes effect at once. At most
// GOMAXPROCS bcrypt comparisons run at a time, so wrong passwords cannot
// take every CPU.
type Verifier struct {
	cfg    VerifierConfig
	log    *slog.Logger
	macKey []byte
	sem    chan struct{}
	now    func() time.Time

	cur atomic.Pointer[snapshot]

	mu        sync.Mutex // serialises loads; guards the fields below
	badStamps *stamps    // files that failed to load, until they change
	statErr   string     // last stat error logged
}

// snapshot is one load of the files.
type snapshot struct {
	users  *Users
	dummy  []byte
	stamps stamps
	cache  *credCache
}

// NewVerifier loads the files; an error there is returned.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	v := &Verifier{cfg: cfg, log: cfg.Logger, macKey: make([]byte, 32),
		sem: make(chan struct{}, max(1, runtime.GOMAXPROCS(0))), now: time.Now}
	if _, err := rand.Read(v.macKey); err != nil {
		return nil, fmt.Errorf("auth: cache key: %w", err)
	}
	if err := v.Reload(); err != nil {
		return nil, err
	}
	return v, nil
}

// Reload re-reads the files. On error the users read before stay in
// force and the error is returned.
func (v *Verifier) Reload() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	st, err := statFiles(v.cfg.UserFile, v.cfg.RolesFile)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return v.load(st)
}

// load reads the files into a new snapshot; v.mu is held.
func (v *Verifier) load(st stamps) error {
	users, unknown, err := loadFiles(v.cfg.UserFile, v.cfg.RolesFile)
	if err != nil {
		v.badStamps = &st
		return fmt.Errorf("auth: %w", err)
	}
	cost := users.maxCost
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	old := v.cur.Load()
	var dummy []byte
	if old != nil {
		if c, err := bcrypt.Cost(old.dummy); err == nil && c == cost {
			dummy = old.dummy
		}
	}
	if dummy == nil {
		secret := make([]byte, 24)
		if _, err := rand.Read(secret); err != nil {
			return fmt.Errorf("auth: dummy hash: %w", err)
		}
		if dummy, err = bcrypt.GenerateFromPassword(secret, cost); err != nil {
			return fmt.Errorf("auth: dummy hash: %w", err)
		}
	}
	v.cur.Store(&snapshot{users: users, dummy: dummy, stamps: st,
		cache: newCredCache(v.cfg.CacheSize)})
	v.badStamps, v.statErr = nil, ""
	if users.Len() == 0 {
		v.log.Warn("the API user file has no users: nobody can use the authenticated API", "file", v.cfg.UserFile)
	}
	if len(unknown) > 0 {
		v.log.Warn("the roles file names users the user file does not have", "file", v.cfg.RolesFile, "users", unknown)
	}
	v.log.Info("API users loaded", "file", v.cfg.UserFile, "users", users.Len(), "roles_file", v.cfg.RolesFile)
	return nil
}

// current is the snapshot in force, re-reading the files first when they
// have changed since they were read.
func (v *Verifier) current() *snapshot {
	s := v.cur.Load()
	st, err := statFiles(v.cfg.UserFile, v.cfg.RolesFile)
	if err == nil && st.same(s.stamps) {
		return s
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	s = v.cur.Load()
	switch {
	case err != nil:
		// A missing file keeps the users in force; log it once.
		if msg := err.Error(); msg != v.statErr {
			v.statErr = msg
			v.log.Error("API user files unreadable; the users read before stay in force", "error", err)
		}
	case st.same(s.stamps), v.badStamps != nil && st.same(*v.badStamps):
		// Reloaded meanwhile, or already known to be bad.
	default:
		if err := v.load(st); err != nil {
			v.log.Error("API user files changed but cannot be used; the users read before stay in force", "error", err)
		}
	}
	return v.cur.Load()
}

// Verify checks a user name and password and returns the user's identity,
// or ErrBadCredentials. It blocks while GOMAXPROCS other bcrypt
// comparisons run, at most until ctx ends.
func (v *Verifier) Verify(ctx context.Context, name, password string) (Identity, error) {
	s := v.current()
	key := v.cacheKey(name, password)
	now := v.now()
	if v.cfg.CacheTTL > 0 {
		if id, ok := s.cache.get(key, now); ok {
			return id, nil
		}
	}
	e, known := s.users.byName[name]
	hash := e.hash
	if !known {
		hash = s.dummy
	}
	pw := []byte(password)
	if len(pw) > maxPassword {
		// Refused, after the same work as any other attempt.
		known, pw = false, pw[:maxPassword]
	}
	select {
	case v.sem <- struct{}{}:
	case <-ctx.Done():
		return Identity{}, fmt.Errorf("auth: %w", ctx.Err())
	}
	err := bcrypt.CompareHashAndPassword(hash, pw)
	<-v.sem
	if err != nil || !known {
		return Identity{}, ErrBadCredentials
	}
	id := Identity{Name: name, Role: e.role}
	if v.cfg.CacheTTL > 0 {
		s.cache.put(key, id, now, now.Add(v.cfg.CacheTTL))
	}
	return id, nil
}

// cacheKey is HMAC-SHA256 over the length-prefixed user name and the
// password.
func (v *Verifier) cacheKey(name, password string) [sha256.Size]byte {
	m := hmac.New(sha256.New, v.macKey)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(name)))
	m.Write(n[:])
	m.Write([]byte(name))
	m.Write([]byte(password))
	var k [sha256.Size]byte
	m.Sum(k[:0])
	return k
}

// credCache holds verified credentials until they expire.
type credCache struct {
	mu      sync.Mutex
	max     int
	entries map[[sha256.Size]byte]cached
}

type cached struct {
	id      Identity
	expires time.Time
}

func newCredCache(size int) *credCache {
	return &credCache{max: size, entries: map[[sha256.Size]byte]cached{}}
}

func (c *credCache) get(k [sha256.Size]byte, now time.Time) (Identity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return Identity{}, false
	}
	if !now.Before(e.expires) {
		delete(c.entries, k)
		return Identity{}, false
	}
	return e.id, true
}

// put caches an identity until expires; when the cache is full, expired
// entries go first, then arbitrary ones (map order is random).
func (c *credCache) put(k [sha256.Size]byte, id Identity, now, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		for key, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, key)
			}
		}
		for key := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, key)
		}
	}
	c.entries[k] = cached{id: id, expires: expires}
}

func (c *credCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// stamps identify the versions of the user and roles files.
type stamps struct {
	user, roles os.FileInfo
}

func statFiles(userFile, rolesFile string) (stamps, error) {
	var st stamps
	var err error
	if st.user, err = os.Stat(userFile); err != nil {
		return st, fmt.Errorf("user file: %w", err)
	}
	if rolesFile != "" {
		if st.roles, err = os.Stat(rolesFile); err != nil {
			return st, fmt.Errorf("roles file: %w", err)
		}
	}
	return st, nil
}

// same reports whether both files are the very ones of o: same file
// (device and inode, so a rename over it counts as a change), size and
// modification time.
func (s stamps) same(o stamps) bool {
	return sameFile(s.user, o.user) && sameFile(s.roles, o.roles)
}

func sameFile(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
