// Package source fetches an image over http(s) or from a file:// URL as one
// in-order byte stream that survives dropped connections: a read that fails
// mid-body is resumed with an HTTP Range request from the last byte handed
// out, under IPA's retry policy (contract §6.1). It also serves random
// reads (Range requests, or ReadAt on a file) for formats whose metadata
// must be read before the stream, and reports truncation as an error,
// never as a short success.
package source

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/rivetmetal/rivet/internal/pause"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Error classes. Every error of this package wraps one of them.
var (
	// ErrDownload: the image could not be fetched (HTTP status, connection
	// failure, every URL and every retry tried).
	ErrDownload = errors.New("image download failed")
	// ErrTruncated: the source ended before the image did, and resuming
	// did not bring the missing bytes.
	ErrTruncated = errors.New("image truncated")
	// ErrNoRanges is wrapped (with ErrDownload) by a random read from a
	// server that answered a Range request with the whole entity (200):
	// it does not serve byte ranges, whatever it said.
	ErrNoRanges = errors.New("the server does not serve byte ranges")
	// ErrMaxDuration is the cause of a download stopped because it took
	// longer than Source.MaxDuration.
	ErrMaxDuration = errors.New("image download took longer than allowed")
)

// Defaults of Source's zero-valued fields (contract §6.1, IPA's
// image_download_connection_retries/_interval/_timeout).
const (
	DefaultConnectTimeout = 60 * time.Second
	DefaultReadGapTimeout = 60 * time.Second
	DefaultRetries        = 9
	DefaultRetryInterval  = 10 * time.Second
)

// Retry is the retry policy for opening, resuming and Range reads.
type Retry struct {
	// Attempts is how many times a failed request is retried (so
	// Attempts+1 tries in all). Zero means DefaultRetries; negative means
	// no retry.
	Attempts int
	// Interval is the wait between tries. Zero means DefaultRetryInterval.
	Interval time.Duration
}

func (r Retry) attempts() int {
	switch {
	case r.Attempts < 0:
		return 0
	case r.Attempts == 0:
		return DefaultRetries
	}
	return r.Attempts
}

func (r Retry) interval() time.Duration {
	if r.Interval <= 0 {
		return DefaultRetryInterval
	}
	return r.Interval
}

// Source is where an image comes from. The zero value of every field but
// URLs works.
type Source struct {
	// URLs are tried in turn until one answers (http, https or file).
	URLs []string
	// Client does the HTTP requests. Nil means NewHTTPClient(0, nil).
	Client *http.Client
	// Header is added to every request (e.g. Authorization).
	Header http.Header
	// Retry is the retry policy; the zero value is IPA's.
	Retry Retry
	// ReadGapTimeout fails (and then resumes) a body that sends nothing
	// for this long. Zero means DefaultReadGapTimeout.
	ReadGapTimeout time.Duration
	// MaxDuration, when positive, stops the download (every request of
	// the stream, retries included) after this long, whatever its
	// progress (IPA's image_download_max_duration).
	MaxDuration time.Duration
	// Logger receives retries and resumes; nil means slog.Default().
	Logger *slog.Logger
}

// NewHTTPClient returns the client Source uses when Client is nil: connect,
// TLS handshake and response-header timeouts of connectTimeout (zero means
// DefaultConnectTimeout), proxies from proxy (nil means the environment's),
// server certificates verified as tlsConfig says (nil means the system
// roots), and no transparent gzip, so the bytes hashed are the bytes
// served.
func NewHTTPClient(connectTimeout time.Duration, proxy func(*http.Request) (*url.URL, error), tlsConfig *tls.Config) *http.Client {
	if connectTimeout <= 0 {
		connectTimeout = DefaultConnectTimeout
	}
	if proxy == nil {
		proxy = http.ProxyFromEnvironment
	}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 proxy,
		DialContext:           (&net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   connectTimeout,
		ResponseHeaderTimeout: connectTimeout,
		MaxIdleConnsPerHost:   16,
		DisableCompression:    true,
		TLSClientConfig:       tlsConfig.Clone(),
	}}
}

func (s *Source) client() *http.Client {
	if s.Client == nil {
		s.Client = NewHTTPClient(0, nil, nil)
	}
	return s.Client
}

func (s *Source) log() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

func (s *Source) gap() time.Duration {
	if s.ReadGapTimeout <= 0 {
		return DefaultReadGapTimeout
	}
	return s.ReadGapTimeout
}

// Redact hides a password in a URL's user info, for logs and errors.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// fatalError marks a failure that retrying cannot fix (a 4xx answer, a bad
// URL, a missing file).
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func fatal(err error) error { return &fatalError{err} }

func isFatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f)
}

// Open starts the download: it tries each URL in turn, and the whole list
// again up to Retry.Attempts times, until one answers with the image. A URL
// that answers 4xx is not asked again. The returned Stream reads the image
// from its first byte and resumes by itself; it stops when ctx ends.
func (s *Source) Open(ctx context.Context) (*Stream, error) {
	if len(s.URLs) == 0 {
		return nil, fmt.Errorf("%w: no image URL given", ErrDownload)
	}
	dead := make([]bool, len(s.URLs))
	var errs []string
	// The stream's lifetime context: Abort and Close end every request
	// the stream makes, including a resume.
	// limit is the MaxDuration bound, which random reads share; the
	// timer goes when ctx does, or fires.
	limit, stopLimit := ctx, context.CancelFunc(func() {})
	if s.MaxDuration > 0 {
		limit, stopLimit = context.WithTimeoutCause(ctx, s.MaxDuration, fmt.Errorf("%w (%s)", ErrMaxDuration, s.MaxDuration))
	}
	life, abort := context.WithCancel(limit)
	for try := 0; ; try++ {
		for i, u := range s.URLs {
			if dead[i] {
				continue
			}
			st, err := s.openAt(life, u, 0, nil)
			if err == nil {
				st.abort, st.limit, st.stopLimit = abort, limit, stopLimit
				return st, nil
			}
			if life.Err() != nil {
				abort()
				stopLimit()
				return nil, fmt.Errorf("%w: %s: %w", ErrDownload, Redact(u), context.Cause(life))
			}
			errs = append(errs, err.Error())
			if isFatal(err) {
				dead[i] = true
			}
		}
		alive := false
		for _, d := range dead {
			alive = alive || !d
		}
		if !alive || try >= s.Retry.attempts() {
			abort()
			stopLimit()
			return nil, fmt.Errorf("%w: %s", ErrDownload, strings.Join(dedupe(errs), "; "))
		}
		s.log().Warn("image download failed, retrying", "try", try+1, "of", s.Retry.attempts()+1, "error", errs[len(errs)-1])
		if err := pause.For(life, s.Retry.interval()); err != nil {
			abort()
			stopLimit()
			return nil, fmt.Errorf("%w: %w", ErrDownload, context.Cause(life))
		}
	}
}

func dedupe(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// validator pins the entity a resume must continue: the strong ETag or the
// Last-Modified date of the first answer.
type validator struct {
	etag, lastModified string
}

func (v validator) ifRange() string {
	if v.etag != "" && !strings.HasPrefix(v.etag, "W/") {
		return v.etag
	}
	return v.lastModified
}

// openAt requests raw from byte off. A nil want means the first request;
// otherwise the answer must continue the entity want describes.
func (s *Source) openAt(ctx context.Context, raw string, off int64, want *Stream) (*Stream, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fatal(fmt.Errorf("bad image URL %q: %w", Redact(raw), err))
	}
	switch u.Scheme {
	case "file":
		return s.openFile(ctx, raw, u.Path, off)
	case "http", "https":
	default:
		return nil, fatal(fmt.Errorf("%s: unsupported URL scheme %q", Redact(raw), u.Scheme))
	}
	reqCtx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, raw, nil)
	if err != nil {
		cancel()
		return nil, fatal(fmt.Errorf("%s: %w", Redact(raw), err))
	}
	for k, v := range s.Header {
		req.Header[k] = v
	}
	if off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
		if want != nil {
			if ir := want.val.ifRange(); ir != "" {
				req.Header.Set("If-Range", ir)
			}
		}
	}
	resp, err := s.client().Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("GET %s: %w", Redact(raw), err)
	}
	fail := func(err error) (*Stream, error) {
		resp.Body.Close()
		cancel()
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		msg := fmt.Sprintf("GET %s: HTTP %s", Redact(raw), resp.Status)
		if t := strings.TrimSpace(string(snippet)); t != "" {
			msg += ": " + t
		}
		err := errors.New(msg)
		if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
			err = fatal(err)
		}
		return fail(err)
	}
	st := &Stream{src: s, ctx: ctx, limit: ctx, url: raw, size: resp.ContentLength, cancel: cancel, abort: func() {}, stopLimit: func() {},
		val:     validator{etag: resp.Header.Get("ETag"), lastModified: resp.Header.Get("Last-Modified")},
		rangeOK: resp.Header.Get("Accept-Ranges") == "bytes"}
	skip := off
	if resp.StatusCode == http.StatusPartialContent {
		start, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return fail(fmt.Errorf("GET %s from byte %d: %w", Redact(raw), off, err))
		}
		if start != off {
			return fail(fmt.Errorf("GET %s from byte %d: server answered from byte %d", Redact(raw), off, start))
		}
		st.size, st.rangeOK, skip = total, true, 0
	}
	if want != nil {
		if want.size >= 0 && st.size >= 0 && want.size != st.size {
			return fail(fatal(fmt.Errorf("GET %s: the image changed size from %d to %d bytes while resuming", Redact(raw), want.size, st.size)))
		}
		st.size = want.size
	}
	// A server that ignores Range sends the whole entity again: skip what
	// was already handed out.
	if skip > 0 {
		if _, err := io.CopyN(io.Discard, resp.Body, skip); err != nil {
			return fail(fmt.Errorf("GET %s: skipping %d bytes already read: %w", Redact(raw), skip, err))
		}
	}
	st.body = newGapReader(resp.Body, s.gap(), cancel)
	st.off = off
	return st, nil
}

func (s *Source) openFile(ctx context.Context, raw, path string, off int64) (*Stream, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fatal(fmt.Errorf("%s: %w", raw, err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fatal(fmt.Errorf("%s: %w", raw, err))
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return nil, fatal(fmt.Errorf("%s: %w", raw, err))
	}
	return &Stream{src: s, ctx: ctx, limit: ctx, url: raw, size: fi.Size(), body: f, file: f, off: off, rangeOK: true, cancel: func() {}, abort: func() {}, stopLimit: func() {}}, nil
}

// parseContentRange reads "bytes start-end/total" (total may be "*").
func parseContentRange(v string) (start, total int64, err error) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, fmt.Errorf("bad Content-Range %q", v)
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, fmt.Errorf("bad Content-Range %q", v)
	}
	a, _, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, fmt.Errorf("bad Content-Range %q", v)
	}
	if start, err = strconv.ParseInt(a, 10, 64); err != nil || start < 0 {
		return 0, 0, fmt.Errorf("bad Content-Range %q", v)
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total < 0 {
			return 0, 0, fmt.Errorf("bad Content-Range %q", v)
		}
	}
	return start, total, nil
}
