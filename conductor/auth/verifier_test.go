package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/rivetmetal/rivet/internal/syncbuf"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// writeUsers writes a user file of name:password pairs (bcrypt MinCost)
// atomically, as an operator's tool would (write, rename).
func writeUsers(t *testing.T, path string, pairs ...string) {
	t.Helper()
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		fmt.Fprintf(&b, "%s:%s\n", pairs[i], hashOf(t, pairs[i+1]))
	}
	writeAtomic(t, path, b.String())
}

func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func newTestVerifier(t *testing.T, cfg VerifierConfig) *Verifier {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = discardLogger()
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify(t *testing.T) {
	dir := t.TempDir()
	users, roles := filepath.Join(dir, "users"), filepath.Join(dir, "roles")
	writeUsers(t, users, "alice", "alice-pw", "bob", "bob-pw")
	writeAtomic(t, roles, "bob:reader\n")
	v := newTestVerifier(t, VerifierConfig{UserFile: users, RolesFile: roles})
	ctx := t.Context()

	if id, err := v.Verify(ctx, "alice", "alice-pw"); err != nil || id != (Identity{"alice", RoleReader}) {
		t.Errorf("alice (not in the roles file): %+v %v", id, err)
	}
	if id, err := v.Verify(ctx, "bob", "bob-pw"); err != nil || id != (Identity{"bob", RoleReader}) {
		t.Errorf("bob: %+v %v", id, err)
	}
	for _, c := range [][2]string{{"alice", "bob-pw"}, {"alice", ""}, {"carol", "alice-pw"}, {"", ""},
		{"alice", "alice-pw" + strings.Repeat("x", 80)}} {
		if id, err := v.Verify(ctx, c[0], c[1]); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("Verify(%q, %q) = %+v %v, want ErrBadCredentials", c[0], c[1], id, err)
		}
	}
	// Only successes are cached.
	if n := v.cur.Load().cache.len(); n != 2 {
		t.Errorf("%d cached credentials, want 2", n)
	}
}

// TestUnknownUsersCostTheSame: an unknown user's password is compared with
// a dummy hash of the file's highest cost, so it takes as long as a known
// user's of that cost.
func TestUnknownUsersCostTheSame(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	h5, _ := bcrypt.GenerateFromPassword([]byte("a"), 5)
	h6, _ := bcrypt.GenerateFromPassword([]byte("b"), 6)
	writeAtomic(t, path, fmt.Sprintf("a:%s\nb:%s\n", h5, h6))
	v := newTestVerifier(t, VerifierConfig{UserFile: path})
	if c, err := bcrypt.Cost(v.cur.Load().dummy); err != nil || c != 6 {
		t.Fatalf("dummy hash cost %d (%v), want 6", c, err)
	}
	// An empty file still has a dummy of bcrypt's default cost.
	writeAtomic(t, path, "# nobody\n")
	if err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	if c, _ := bcrypt.Cost(v.cur.Load().dummy); c != bcrypt.DefaultCost {
		t.Fatalf("dummy hash cost %d, want %d", c, bcrypt.DefaultCost)
	}
	if _, err := v.Verify(t.Context(), "a", "a"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("removed user: %v", err)
	}
}

func TestCacheExpiresAndIsKeyedByPassword(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	writeUsers(t, path, "alice", "pw")
	v := newTestVerifier(t, VerifierConfig{UserFile: path, CacheTTL: time.Minute})
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	v.now = func() time.Time { return now }
	ctx := t.Context()
	if _, err := v.Verify(ctx, "alice", "pw"); err != nil {
		t.Fatal(err)
	}
	c := v.cur.Load().cache
	k := v.cacheKey("alice", "pw")
	if _, ok := c.get(k, now.Add(59*time.Second)); !ok {
		t.Error("entry gone before its TTL")
	}
	if _, ok := c.get(k, now.Add(time.Minute)); ok {
		t.Error("entry kept past its TTL")
	}
	// Keys differ by user and password, and the name/password split
	// cannot be shifted.
	keys := map[[32]byte]bool{}
	for _, p := range [][2]string{{"alice", "pw"}, {"alice", "pw2"}, {"alicep", "w"}, {"bob", "pw"}} {
		keys[v.cacheKey(p[0], p[1])] = true
	}
	if len(keys) != 4 {
		t.Errorf("%d distinct cache keys for 4 credentials", len(keys))
	}
	// A cached success is not a way around a wrong password.
	if _, err := v.Verify(ctx, "alice", "PW"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("wrong password after a cached success: %v", err)
	}
}

func TestCacheIsBounded(t *testing.T) {
	c := newCredCache(8)
	now := time.Now()
	for i := range 100 {
		var k [32]byte
		k[0], k[1] = byte(i), byte(i>>8)
		exp := now.Add(time.Minute)
		if i%3 == 0 {
			exp = now.Add(-time.Second) // already expired
		}
		c.put(k, Identity{Name: fmt.Sprint(i)}, now, exp)
		if n := c.len(); n > 8 {
			t.Fatalf("cache holds %d entries, bound 8", n)
		}
	}
}

// TestFileChangesTakeEffect: like Ironic, which reads the file on every
// request, a changed user or roles file is used at the next check, and
// the cache is emptied with it; a broken file keeps the users in force.
func TestFileChangesTakeEffect(t *testing.T) {
	dir := t.TempDir()
	users, roles := filepath.Join(dir, "users"), filepath.Join(dir, "roles")
	writeUsers(t, users, "alice", "old")
	writeAtomic(t, roles, "alice:admin\n")
	var logs syncbuf.Buffer
	v := newTestVerifier(t, VerifierConfig{UserFile: users, RolesFile: roles,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := t.Context()
	if _, err := v.Verify(ctx, "alice", "old"); err != nil {
		t.Fatal(err)
	}

	writeUsers(t, users, "alice", "new", "bob", "bob-pw")
	if _, err := v.Verify(ctx, "alice", "old"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("the cached old password still works after the file changed: %v", err)
	}
	if id, err := v.Verify(ctx, "bob", "bob-pw"); err != nil || id.Role != RoleReader {
		t.Errorf("new user bob: %+v %v", id, err)
	}

	writeAtomic(t, roles, "alice:admin\nbob:admin\n")
	if id, err := v.Verify(ctx, "bob", "bob-pw"); err != nil || id.Role != RoleAdmin {
		t.Errorf("bob after the roles file made him admin: %+v %v", id, err)
	}

	// A broken user file is logged once and ignored.
	writeAtomic(t, users, "alice:{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=\n")
	for range 3 {
		if _, err := v.Verify(ctx, "alice", "new"); err != nil {
			t.Errorf("users in force after a broken file: %v", err)
		}
	}
	if n := strings.Count(logs.String(), "cannot be used"); n != 1 {
		t.Errorf("broken file logged %d times, want once:\n%s", n, logs.String())
	}
	// So is a missing one.
	if err := os.Remove(users); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, "alice", "new"); err != nil {
		t.Errorf("users in force with the file gone: %v", err)
	}
	if err := v.Reload(); err == nil {
		t.Error("Reload of a missing file succeeded")
	}
	// A good file again is picked up.
	writeUsers(t, users, "carol", "c")
	if _, err := v.Verify(ctx, "carol", "c"); err != nil {
		t.Errorf("carol after the file was fixed: %v", err)
	}
	if _, err := v.Verify(ctx, "alice", "new"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("alice after she was removed: %v", err)
	}
}

func TestNewVerifierErrors(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	writeAtomic(t, users, "alice:$apr1$Xlkx8qQf$LMtCdudNzQnY2d9vAwaBC1\n")
	for _, tc := range []struct {
		cfg  VerifierConfig
		want string
	}{
		{VerifierConfig{}, "user file"},
		{VerifierConfig{UserFile: filepath.Join(dir, "missing")}, "no such file"},
		{VerifierConfig{UserFile: users}, `users:1: user "alice": only bcrypt`},
	} {
		tc.cfg.Logger = discardLogger()
		if _, err := NewVerifier(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewVerifier(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	writeUsers(t, users, "alice", "pw")
	if _, err := NewVerifier(VerifierConfig{UserFile: users, RolesFile: filepath.Join(dir, "missing"),
		Logger: discardLogger()}); err == nil || !strings.Contains(err.Error(), "roles file") {
		t.Errorf("missing roles file: %v", err)
	}
}

// TestVerifyWaitsForASlot: bcrypt comparisons are limited; a request
// whose context ends while waiting gets its context's error, not a
// credential verdict.
func TestVerifyWaitsForASlot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	writeUsers(t, path, "alice", "pw")
	v := newTestVerifier(t, VerifierConfig{UserFile: path, CacheTTL: -1})
	for range cap(v.sem) {
		v.sem <- struct{}{}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := v.Verify(ctx, "alice", "pw")
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Verify with a cancelled context while busy: %v", err)
	}
	<-v.sem // one slot free
	if _, err := v.Verify(t.Context(), "alice", "pw"); err != nil {
		t.Errorf("Verify with a free slot: %v", err)
	}
}

// TestConcurrentVerifyAndChange runs checks while the files change and
// Reload runs (for the race detector): every answer is a verdict, and
// the password in force is accepted once the changes stop.
func TestConcurrentVerifyAndChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	writeUsers(t, path, "alice", "one")
	v := newTestVerifier(t, VerifierConfig{UserFile: path})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 8 {
		wg.Go(func() {
			for range 20 {
				for _, pw := range []string{"one", "two"} {
					if _, err := v.Verify(t.Context(), "alice", pw); err != nil && !errors.Is(err, ErrBadCredentials) {
						errs <- err
					}
				}
			}
		})
	}
	for i := range 6 {
		writeUsers(t, path, "alice", []string{"one", "two"}[i%2])
		if err := v.Reload(); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("unexpected error: %v", err)
	}
	if _, err := v.Verify(t.Context(), "alice", "two"); err != nil {
		t.Errorf("the last password written: %v", err)
	}
	if _, err := v.Verify(t.Context(), "alice", "one"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("the password replaced: %v", err)
	}
}
