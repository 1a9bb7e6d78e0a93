package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/wire"
)

// Strategy is the API's authentication strategy, named as Ironic's
// auth_strategy.
type Strategy string

// The strategies.
const (
	// NoAuth lets every request through.
	NoAuth Strategy = "noauth"
	// HTTPBasic requires HTTP basic authentication against a user file
	// on every route but the public ones.
	HTTPBasic Strategy = "http_basic"
)

// DefaultRealm is the realm of the WWW-Authenticate challenge, Ironic's.
const DefaultRealm = "Baremetal API"

// Config configures the API's authentication.
type Config struct {
	// Strategy is NoAuth or HTTPBasic. Empty picks the default for the
	// listen address: NoAuth when it is a loopback address, HTTPBasic
	// otherwise (a wildcard address included).
	Strategy Strategy
	// UserFile is the Apache htpasswd file of HTTPBasic (bcrypt only);
	// required with it.
	UserFile string
	// RolesFile optionally gives users their roles (see ApplyRoles).
	RolesFile string
	// AllowInsecureNoAuth permits Strategy NoAuth on an address that is
	// not loopback; without it that is a start-up error. A warning is
	// logged at every start all the same.
	AllowInsecureNoAuth bool
	// Realm is the realm of the basic challenge (default DefaultRealm).
	Realm string
	// CacheTTL is the verified-credential cache lifetime (see
	// VerifierConfig; zero means the default, negative disables it).
	CacheTTL time.Duration
	// Logger receives refusals and reload errors (default
	// slog.Default()).
	Logger *slog.Logger
}

// Guard is the API's authentication and authorisation middleware.
type Guard struct {
	strategy Strategy
	realm    string
	verifier *Verifier
	log      *slog.Logger
}

// New resolves the strategy for a listener at addr and, for HTTPBasic,
// loads the user file. It refuses NoAuth on a non-loopback address unless
// AllowInsecureNoAuth is set, and HTTPBasic without a user file.
func New(cfg Config, addr net.Addr) (*Guard, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	g := &Guard{strategy: cfg.Strategy, realm: cfg.Realm, log: log}
	if g.realm == "" {
		g.realm = DefaultRealm
	}
	local := LoopbackOnly(addr)
	if g.strategy == "" {
		g.strategy = HTTPBasic
		if local {
			g.strategy = NoAuth
		}
	}
	switch g.strategy {
	case NoAuth:
		if cfg.UserFile != "" {
			log.Warn("API authentication is off (noauth): the user file is not used", "file", cfg.UserFile)
		}
		if local {
			log.Info("API authentication is off (noauth): the API listens on loopback only", "listen", addr.String())
			return g, nil
		}
		if !cfg.AllowInsecureNoAuth {
			return nil, fmt.Errorf("auth: refusing noauth on %s, which is reachable from the network: "+
				"use http_basic, listen on loopback, or allow it explicitly (--insecure-allow-noauth)", addr)
		}
		log.Warn("API AUTHENTICATION IS OFF on a network-reachable address: anyone who reaches it can "+
			"power nodes off, deploy or delete them", "listen", addr.String(), "auth_strategy", string(NoAuth))
		return g, nil
	case HTTPBasic:
		if cfg.UserFile == "" {
			why := "http_basic authentication needs a user file (--http-basic-auth-user-file)"
			if cfg.Strategy == "" {
				why = fmt.Sprintf("the API listens on %s, which is not loopback, so it requires http_basic "+
					"authentication and a user file (--http-basic-auth-user-file)", addr)
			}
			return nil, errors.New("auth: " + why)
		}
		v, err := NewVerifier(VerifierConfig{UserFile: cfg.UserFile, RolesFile: cfg.RolesFile,
			CacheTTL: cfg.CacheTTL, Logger: log})
		if err != nil {
			return nil, err
		}
		g.verifier = v
		return g, nil
	default:
		return nil, fmt.Errorf("auth: unknown strategy %q (want %s or %s)", g.strategy, NoAuth, HTTPBasic)
	}
}

// LoopbackOnly reports whether a listen address is reachable from this
// host only: a TCP address on a loopback IP (not a wildcard one).
func LoopbackOnly(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// Strategy is the strategy in force.
func (g *Guard) Strategy() Strategy { return g.strategy }

// Reload re-reads the user and roles files (SIGHUP); with NoAuth it does
// nothing. On error the users read before stay in force.
func (g *Guard) Reload() error {
	if g.verifier == nil {
		return nil
	}
	return g.verifier.Reload()
}

// Wrap returns next behind the guard. With HTTPBasic, a request to a
// route that is not public must carry valid basic credentials (401 with a
// WWW-Authenticate challenge otherwise, 400 for a malformed header, as
// Ironic) and a role that allows its method (403 otherwise). The
// Authorization header is removed before next sees the request, and the
// user's Identity is in its context (IdentityFrom).
func (g *Guard) Wrap(next http.Handler) http.Handler {
	if g.strategy == NoAuth {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if Public(r.Method, r.URL.Path) || under(path.Clean(r.URL.Path), DashboardPath) {
			next.ServeHTTP(w, r)
			return
		}
		name, password, status, msg := basicCredentials(r.Header.Get("Authorization"))
		if status != 0 {
			g.log.Info("API request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
				"reason", msg)
			g.refuse(w, status, msg)
			return
		}
		id, err := g.verifier.Verify(r.Context(), name, password)
		switch {
		case errors.Is(err, ErrBadCredentials):
			g.log.Warn("API authentication failed", "user", name, "method", r.Method, "path", r.URL.Path,
				"remote", r.RemoteAddr)
			g.refuse(w, http.StatusUnauthorized, "Incorrect username or password")
			return
		case err != nil:
			// The client went away while waiting for a bcrypt slot.
			g.refuse(w, http.StatusServiceUnavailable, "The request was cancelled.")
			return
		}
		if !id.Role.Allows(r.Method) {
			g.log.Warn("API request forbidden", "user", id.Name, "role", string(id.Role), "method", r.Method,
				"path", r.URL.Path, "remote", r.RemoteAddr)
			g.refuse(w, http.StatusForbidden, fmt.Sprintf(
				"Access was denied to the following resource: %s %s (user %s has the read-only role %s)",
				r.Method, r.URL.Path, id.Name, id.Role))
			return
		}
		r2 := r.WithContext(WithIdentity(r.Context(), id))
		r2.Header = r.Header.Clone()
		r2.Header.Del("Authorization")
		next.ServeHTTP(w, r2)
	})
}

// DashboardPath is the tree the dashboard serves; the guard leaves it to
// the dashboard's own login (a session cookie), which checks the same
// users through Authenticate.
const DashboardPath = "/dashboard"

// Authenticate checks a user name and password against the user file, for
// logins that do not come as basic credentials (the dashboard's form). It
// returns the user's role; ok is false for bad credentials, and always
// with NoAuth (there are no users).
func (g *Guard) Authenticate(user, password string) (role string, ok bool) {
	if g.verifier == nil {
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := g.verifier.Verify(ctx, user, password)
	if err != nil {
		g.log.Warn("dashboard login failed", "user", user)
		return "", false
	}
	return string(id.Role), true
}

// basicCredentials parses an Authorization header; a non-zero status
// (with its message, Ironic's) means it is missing or malformed.
func basicCredentials(header string) (name, password string, status int, msg string) {
	header = strings.TrimSpace(header)
	if header == "" {
		return "", "", http.StatusUnauthorized, "Authorization required"
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok {
		return "", "", http.StatusBadRequest, "Could not parse Authorization header"
	}
	if !strings.EqualFold(scheme, "basic") {
		return "", "", http.StatusBadRequest, fmt.Sprintf("Unsupported authorization type %q", scheme)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(token))
	if err != nil {
		return "", "", http.StatusBadRequest, "Could not decode authorization token"
	}
	name, password, ok = strings.Cut(string(raw), ":")
	if !ok {
		return "", "", http.StatusBadRequest, "Could not decode authorization token"
	}
	return name, password, 0, ""
}

// refuse answers with Ironic's error body; a 401 carries the basic
// challenge.
func (g *Guard) refuse(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Basic realm="`+g.realm+`"`)
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	code := wire.FaultClient
	if status >= 500 {
		code = wire.FaultServer
	}
	_ = json.NewEncoder(w).Encode(wire.NewIronicError(code, msg))
}

// Public reports whether a request needs no credentials, as in Ironic's
// public routes plus the files nodes fetch: GET (and HEAD) of / and /v1
// (the version documents) and /v1/lookup, POST /v1/heartbeat/{node} and
// POST /v1/continue_inspection (the ramdisk endpoints, which the agent
// token and the node's state protect; also without the /v1 prefix), and
// GET of the trees /boot/ (iPXE scripts, deploy kernel and ramdisk),
// /images/ and /agent_images/ (the images agents download). A trailing slash is ignored; a path that is
// not clean (dot segments, doubled slashes) is never public.
func Public(method, p string) bool {
	clean := path.Clean(p)
	if clean != p && clean+"/" != p {
		return false
	}
	get := method == http.MethodGet || method == http.MethodHead
	post := method == http.MethodPost
	// The ramdisk endpoints are public without the /v1 prefix too (the
	// API serves every v1 resource unversioned, as Ironic does).
	if clean == "/lookup" || clean == "/continue_inspection" || strings.HasPrefix(clean, "/heartbeat/") {
		clean = "/v1" + clean
	}
	switch {
	case clean == "/", clean == "/v1", clean == "/v1/lookup":
		return get
	case clean == "/v1/continue_inspection":
		return post
	case strings.HasPrefix(clean, "/v1/heartbeat/"):
		return post && !strings.Contains(strings.TrimPrefix(clean, "/v1/heartbeat/"), "/")
	case under(clean, "/boot"), under(clean, "/images"), under(clean, "/agent_images"):
		return get
	}
	return false
}

func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

type identityKey struct{}

// WithIdentity returns ctx carrying an authenticated identity.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom is the identity the guard put in a request's context, and
// false when there is none (noauth, or a public route).
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}
