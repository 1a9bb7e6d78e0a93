package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Authenticator checks a user's password and gives the user's role. The
// conductor's API authentication (http_basic with an htpasswd file)
// satisfies it; it must compare secrets in constant time.
type Authenticator interface {
	Authenticate(user, password string) (role string, ok bool)
}

// cookieName is the session cookie.
const cookieName = "rivet_dashboard"

// session is what the signed cookie carries.
type session struct {
	User    string `json:"u"`
	Role    string `json:"r"`
	Expires int64  `json:"e"`
	// Nonce makes each login's session (and its CSRF token) unique.
	Nonce string `json:"n"`
}

// sessions signs and checks session cookies with an HMAC-SHA256 key.
type sessions struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

// newSessions uses key, or a random key when it is empty (sessions then
// end with the process).
func newSessions(key []byte, ttl time.Duration, now func() time.Time) (*sessions, error) {
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
	} else if len(key) < 16 {
		return nil, errors.New("dashboard: session key shorter than 16 bytes")
	}
	return &sessions{key: key, ttl: ttl, now: now}, nil
}

func (s *sessions) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, s.key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

var b64 = base64.RawURLEncoding

// issue returns the cookie value of a new session.
func (s *sessions) issue(user, role string) (string, session, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return "", session{}, err
	}
	ss := session{User: user, Role: role, Expires: s.now().Add(s.ttl).Unix(), Nonce: b64.EncodeToString(nonce)}
	payload, err := json.Marshal(ss)
	if err != nil {
		return "", session{}, err
	}
	p := b64.EncodeToString(payload)
	return p + "." + b64.EncodeToString(s.mac("session", p)), ss, nil
}

// check returns the session of a cookie value, if it is genuine and
// unexpired.
func (s *sessions) check(v string) (session, bool) {
	p, sig, ok := strings.Cut(v, ".")
	if !ok || len(v) > 4096 {
		return session{}, false
	}
	got, err := b64.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac("session", p)) {
		return session{}, false
	}
	payload, err := b64.DecodeString(p)
	if err != nil {
		return session{}, false
	}
	var ss session
	if err := json.Unmarshal(payload, &ss); err != nil || ss.Nonce == "" {
		return session{}, false
	}
	if s.now().Unix() >= ss.Expires {
		return session{}, false
	}
	return ss, true
}

// csrfToken is the token state-changing requests of a session must carry.
func (s *sessions) csrfToken(ss session) string {
	return b64.EncodeToString(s.mac("csrf", ss.Nonce))
}

// checkCSRF compares a request's token with the session's in constant
// time.
func (s *sessions) checkCSRF(ss session, token string) bool {
	got, err := b64.DecodeString(token)
	return err == nil && hmac.Equal(got, s.mac("csrf", ss.Nonce))
}

// setCookie sets the session cookie: HttpOnly, SameSite=Strict, Secure on
// TLS, scoped to the dashboard.
func setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: value, Path: "/dashboard/", MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// sameOrigin reports whether a form post comes from this site's own page:
// the browser's Origin (or, without it, Referer) must name the host the
// request was sent to. Browsers send Origin on every cross-site POST.
func sameOrigin(r *http.Request) bool {
	src := r.Header.Get("Origin")
	if src == "" {
		src = r.Header.Get("Referer")
	}
	if src == "" {
		// Not a browser (or one that sends neither): nothing to forge.
		return r.Header.Get("Sec-Fetch-Site") == "" || r.Header.Get("Sec-Fetch-Site") == "same-origin"
	}
	u, err := url.Parse(src)
	return err == nil && u.Host == r.Host
}

// safeNext is a post-login destination inside the dashboard, or the
// dashboard's root.
func safeNext(next string) string {
	if strings.HasPrefix(next, "/dashboard/") && !strings.HasPrefix(next, "//") && !strings.ContainsAny(next, "\\\r\n") {
		return next
	}
	return "/dashboard/"
}
