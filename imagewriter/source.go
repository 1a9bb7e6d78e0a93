package imagewriter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// Source is where an image comes from.
type Source struct {
	// URLs are tried in turn until one answers (http, https or file).
	URLs []string
	// Client does the HTTP requests. Nil means a client with a 60 s connect
	// and response-header timeout and proxies from the environment.
	Client *http.Client
	// Header is added to every request (e.g. Authorization).
	Header http.Header
}

// DefaultConnectTimeout is IPA's ipa-image-download-connection-timeout.
const DefaultConnectTimeout = 60 * time.Second

// NewHTTPClient returns the client Source uses when Client is nil: connect
// and response-header timeouts of connectTimeout, proxies from proxy (nil
// means the environment's).
func NewHTTPClient(connectTimeout time.Duration, proxy func(*http.Request) (*url.URL, error)) *http.Client {
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
		MaxIdleConnsPerHost:   4,
		// Images are usually compressed already; asking for gzip would
		// make the bytes hashed differ from the bytes served.
		DisableCompression: true,
	}}
}

// stream is an opened image body.
type stream struct {
	body io.ReadCloser
	// size is the image size in bytes, -1 when the server did not say.
	size int64
	url  string
}

// open tries each URL in turn. It returns at the first 2xx answer; the error
// names every URL and why it failed.
func (s Source) open(ctx context.Context) (*stream, error) {
	if len(s.URLs) == 0 {
		return nil, fmt.Errorf("%w: no image URL given", ErrDownload)
	}
	var errs []string
	for _, u := range s.URLs {
		st, err := s.openOne(ctx, u)
		if err == nil {
			return st, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrDownload, redactURL(u), ctx.Err())
		}
		errs = append(errs, err.Error())
	}
	return nil, fmt.Errorf("%w: %s", ErrDownload, strings.Join(errs, "; "))
}

func (s Source) openOne(ctx context.Context, raw string) (*stream, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("bad image URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "file":
		f, err := os.Open(u.Path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", raw, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", raw, err)
		}
		return &stream{body: f, size: fi.Size(), url: raw}, nil
	case "http", "https":
	default:
		return nil, fmt.Errorf("%s: unsupported URL scheme %q", redactURL(raw), u.Scheme)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", redactURL(raw), err)
	}
	for k, v := range s.Header {
		req.Header[k] = v
	}
	client := s.Client
	if client == nil {
		client = NewHTTPClient(0, nil)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", redactURL(raw), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		resp.Body.Close()
		msg := fmt.Sprintf("GET %s: HTTP %s", redactURL(raw), resp.Status)
		if s := strings.TrimSpace(string(snippet)); s != "" {
			msg += ": " + s
		}
		return nil, errors.New(msg)
	}
	return &stream{body: resp.Body, size: resp.ContentLength, url: raw}, nil
}

// redactURL hides a password in a URL's user info.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// gapReader fails a read that gets no data for longer than gap, so a server
// that stops sending cannot hang a deploy. Slow data that keeps flowing is
// fine.
type gapReader struct {
	r      io.Reader
	gap    time.Duration
	cancel func()
	mu     sync.Mutex
	timer  *time.Timer
	fired  bool
}

func newGapReader(r io.Reader, gap time.Duration, cancel func()) *gapReader {
	g := &gapReader{r: r, gap: gap, cancel: cancel}
	g.timer = time.AfterFunc(gap, g.fire)
	return g
}

func (g *gapReader) fire() {
	g.mu.Lock()
	g.fired = true
	g.mu.Unlock()
	g.cancel()
}

func (g *gapReader) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if n > 0 {
		g.timer.Reset(g.gap)
	}
	if err != nil && err != io.EOF {
		g.mu.Lock()
		fired := g.fired
		g.mu.Unlock()
		if fired {
			return n, fmt.Errorf("no data for %s: %w", g.gap, err)
		}
	}
	return n, err
}

func (g *gapReader) stop() { g.timer.Stop() }
