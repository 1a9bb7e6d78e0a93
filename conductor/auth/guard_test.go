package auth

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rivetmetal/rivet/internal/syncbuf"
	"github.com/rivetmetal/rivet/wire"
)

func TestPublic(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		want         bool
	}{
		{"GET", "/", true}, {"HEAD", "/", true}, {"POST", "/", false},
		{"GET", "/v1", true}, {"GET", "/v1/", true}, {"DELETE", "/v1", false},
		{"GET", "/v1/lookup", true}, {"GET", "/v1/lookup/", true}, {"POST", "/v1/lookup", false},
		{"POST", "/v1/heartbeat/1be26c0b-03f2-4d2e-ae87-c02d7f33c123", true},
		{"POST", "/v1/heartbeat/node-1/", true},
		{"GET", "/v1/heartbeat/node-1", false},
		{"POST", "/v1/heartbeat/", false},
		{"POST", "/v1/heartbeat/a/b", false},
		{"POST", "/v1/continue_inspection", true}, {"GET", "/v1/continue_inspection", false},
		{"GET", "/boot/boot.ipxe", true}, {"GET", "/boot/52:54:00:12:34:56.ipxe", true},
		{"HEAD", "/boot/1be26c0b-03f2-4d2e-ae87-c02d7f33c123/deploy_ramdisk", true},
		{"POST", "/boot/boot.ipxe", false},
		{"GET", "/images/disk.raw", true}, {"GET", "/agent_images/0123abcd", true},
		{"PUT", "/images/disk.raw", false},
		// Everything else needs a user.
		{"GET", "/v1/nodes", false}, {"GET", "/v1/nodes/n1", false}, {"POST", "/v1/nodes", false},
		{"GET", "/v1/ports", false}, {"GET", "/v1/nodes/n1/inventory", false},
		{"GET", "/v2", false}, {"GET", "/v1/lookupx", false}, {"GET", "/bootx", false},
		{"GET", "/imagesx/a", false}, {"GET", "/debug/pprof/", false},
		// Paths that are not clean are never public, whatever they resolve to.
		{"GET", "/boot/../v1/nodes", false}, {"GET", "/images/../v1/nodes", false},
		{"POST", "/v1/heartbeat/../nodes", false}, {"GET", "//v1", false},
		{"GET", "/v1/./lookup", false}, {"GET", "/boot//x", false},
	} {
		if got := Public(tc.method, tc.path); got != tc.want {
			t.Errorf("Public(%s %s) = %v, want %v", tc.method, tc.path, got, tc.want)
		}
	}
}

func tcpAddr(s string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		panic(err)
	}
	return a
}

func TestStrategyDefaults(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users")
	writeUsers(t, users, "alice", "pw")
	for _, tc := range []struct {
		name string
		cfg  Config
		addr string
		want Strategy
		err  string
		warn bool
	}{
		{name: "loopback", addr: "127.0.0.1:6385", want: NoAuth},
		{name: "loopback v6", addr: "[::1]:6385", want: NoAuth},
		{name: "loopback 127/8", addr: "127.0.0.2:6385", want: NoAuth},
		{name: "wildcard", addr: "0.0.0.0:6385", err: "which is not loopback, so it requires http_basic"},
		{name: "wildcard v6", addr: "[::]:6385", err: "requires http_basic"},
		{name: "lan", addr: "192.0.2.10:6385", err: "--http-basic-auth-user-file"},
		{name: "lan with users", cfg: Config{UserFile: users}, addr: "192.0.2.10:6385", want: HTTPBasic},
		{name: "explicit basic on loopback", cfg: Config{Strategy: HTTPBasic, UserFile: users}, addr: "127.0.0.1:1", want: HTTPBasic},
		{name: "basic without users", cfg: Config{Strategy: HTTPBasic}, addr: "127.0.0.1:1", err: "needs a user file"},
		{name: "noauth off loopback", cfg: Config{Strategy: NoAuth}, addr: "0.0.0.0:6385", err: "--insecure-allow-noauth"},
		{name: "noauth allowed", cfg: Config{Strategy: NoAuth, AllowInsecureNoAuth: true}, addr: "192.0.2.10:6385",
			want: NoAuth, warn: true},
		{name: "keystone", cfg: Config{Strategy: "keystone"}, addr: "127.0.0.1:1", err: `unknown strategy "keystone"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncbuf.Buffer
			tc.cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			g, err := New(tc.cfg, tcpAddr(tc.addr))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("New = %v, want error %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g.Strategy() != tc.want {
				t.Errorf("strategy %s, want %s", g.Strategy(), tc.want)
			}
			if warned := strings.Contains(logs.String(), "level=WARN msg=\"API AUTHENTICATION IS OFF"); warned != tc.warn {
				t.Errorf("warning logged: %v, want %v:\n%s", warned, tc.warn, logs.String())
			}
		})
	}
}

// apiStub records what the guarded handler receives.
type apiStub struct {
	mu       sync.Mutex
	auth     []string
	identity []Identity
}

func (s *apiStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	id, _ := IdentityFrom(r.Context())
	s.identity = append(s.identity, id)
	s.mu.Unlock()
	w.WriteHeader(http.StatusTeapot)
}

func TestGuard(t *testing.T) {
	dir := t.TempDir()
	users, roles := filepath.Join(dir, "users"), filepath.Join(dir, "roles")
	writeUsers(t, users, "admin", "admin-pw", "viewer", "viewer-pw")
	writeAtomic(t, roles, "admin:admin\nviewer:reader\n")
	g, err := New(Config{UserFile: users, RolesFile: roles, Logger: discardLogger()}, tcpAddr("192.0.2.1:6385"))
	if err != nil {
		t.Fatal(err)
	}
	stub := &apiStub{}
	h := g.Wrap(stub)

	type want struct {
		status int
		fault  string
	}
	for _, tc := range []struct {
		name, method, path, header string
		want                       want
	}{
		{"public root", "GET", "/", "", want{http.StatusTeapot, ""}},
		{"public heartbeat", "POST", "/v1/heartbeat/n1", "", want{http.StatusTeapot, ""}},
		{"public heartbeat with bad credentials", "POST", "/v1/heartbeat/n1", "Basic !!", want{http.StatusTeapot, ""}},
		{"no credentials", "GET", "/v1/nodes", "", want{401, "Authorization required"}},
		{"unknown path, no credentials", "GET", "/nope", "", want{401, "Authorization required"}},
		{"wrong password", "GET", "/v1/nodes", basic("admin", "nope"), want{401, "Incorrect username or password"}},
		{"unknown user", "GET", "/v1/nodes", basic("mallory", "admin-pw"), want{401, "Incorrect username or password"}},
		{"bearer", "GET", "/v1/nodes", "Bearer abc", want{400, `Unsupported authorization type "Bearer"`}},
		{"no token", "GET", "/v1/nodes", "Basic", want{400, "Could not parse Authorization header"}},
		{"bad base64", "GET", "/v1/nodes", "Basic %%%", want{400, "Could not decode authorization token"}},
		{"no colon", "GET", "/v1/nodes", "Basic YWRtaW4=", want{400, "Could not decode authorization token"}},
		{"admin reads", "GET", "/v1/nodes", basic("admin", "admin-pw"), want{http.StatusTeapot, ""}},
		{"admin writes", "DELETE", "/v1/nodes/n1", basic("admin", "admin-pw"), want{http.StatusTeapot, ""}},
		{"lower-case scheme", "GET", "/v1/nodes", "basic " + strings.TrimPrefix(basic("admin", "admin-pw"), "Basic "), want{http.StatusTeapot, ""}},
		{"reader reads", "GET", "/v1/nodes/n1", basic("viewer", "viewer-pw"), want{http.StatusTeapot, ""}},
		{"reader writes", "PUT", "/v1/nodes/n1/states/power", basic("viewer", "viewer-pw"),
			want{403, "Access was denied to the following resource: PUT /v1/nodes/n1/states/power (user viewer has the read-only role reader)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want.status {
				t.Fatalf("status %d, want %d (body %s)", w.Code, tc.want.status, w.Body)
			}
			challenge := w.Header().Get("WWW-Authenticate")
			if (w.Code == 401) != (challenge == `Basic realm="Baremetal API"`) {
				t.Errorf("status %d with WWW-Authenticate %q", w.Code, challenge)
			}
			if tc.want.fault == "" {
				return
			}
			var body wire.IronicError
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("body %q (%v), content type %q", w.Body, err, w.Header().Get("Content-Type"))
			}
			if f := body.Fault(); f.FaultCode != wire.FaultClient || f.FaultString != tc.want.fault {
				t.Errorf("fault %+v, want Client %q", f, tc.want.fault)
			}
		})
	}
	// The handler never sees credentials, and gets the identity.
	stub.mu.Lock()
	defer stub.mu.Unlock()
	var named []Identity
	for i, a := range stub.auth {
		if a != "" && i > 2 { // the public heartbeat passes its header through untouched
			t.Errorf("request %d reached the handler with Authorization %q", i, a)
		}
		if stub.identity[i].Name != "" {
			named = append(named, stub.identity[i])
		}
	}
	wantIDs := []Identity{{"admin", RoleAdmin}, {"admin", RoleAdmin}, {"admin", RoleAdmin}, {"viewer", RoleReader}}
	if len(named) != len(wantIDs) {
		t.Fatalf("identities %v, want %v", named, wantIDs)
	}
	for i := range named {
		if named[i] != wantIDs[i] {
			t.Errorf("identity %d = %v, want %v", i, named[i], wantIDs[i])
		}
	}
}

func TestGuardNoAuthPassesThrough(t *testing.T) {
	g, err := New(Config{Logger: discardLogger()}, tcpAddr("127.0.0.1:6385"))
	if err != nil {
		t.Fatal(err)
	}
	stub := &apiStub{}
	w := httptest.NewRecorder()
	g.Wrap(stub).ServeHTTP(w, httptest.NewRequest("DELETE", "/v1/nodes/n1", nil))
	if w.Code != http.StatusTeapot {
		t.Errorf("noauth: status %d", w.Code)
	}
	if err := g.Reload(); err != nil {
		t.Errorf("noauth Reload: %v", err)
	}
}

func basic(user, pass string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pass)
	return r.Header.Get("Authorization")
}
