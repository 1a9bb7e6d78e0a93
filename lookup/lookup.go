// Package lookup finds the agent's node through the Ironic API: it sends
// the machine's MAC addresses to GET /v1/lookup and returns the node and the
// agent configuration (heartbeat timeout, agent token), retrying with a
// randomized exponential backoff until a deadline, as IPA does.
package lookup

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/internal/pause"
	"github.com/rivetmetal/rivet/wire"
)

// Config controls a lookup. Zero values mean IPA's defaults.
type Config struct {
	// APIURLs are the Ironic API endpoints, tried in order on connection
	// errors (ipa-api-url).
	APIURLs []string
	// MACs are every interface MAC of the machine.
	MACs []string
	// NodeUUID, when known (e.g. from inspection), is sent as node_uuid.
	NodeUUID string
	// APIVersion overrides version discovery (ipa-ironic-api-version).
	APIVersion string
	// Timeout bounds the whole lookup (ipa-lookup-timeout); 0 means 600 s.
	Timeout time.Duration
	// Interval is the first backoff step (ipa-lookup-interval); 0 means 1 s.
	Interval time.Duration
	// MaxInterval caps the backoff; 0 means 60 s.
	MaxInterval time.Duration
	// Client makes the requests; nil means a client with a 30 s timeout.
	Client *http.Client
	// RequestID is sent as X-OpenStack-Request-ID when set.
	RequestID string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Sleep waits between attempts; nil means a context-aware sleep. Tests
	// replace it.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Result is a successful lookup.
type Result struct {
	wire.LookupResponse
	// APIURL is the endpoint that answered.
	APIURL string
	// MaxVersion is the API's maximum microversion, "" if not discovered.
	MaxVersion string
}

// Token returns the agent token handed out, or "" when none was (null, or
// "******" because one was already handed out to an earlier boot).
func (r *Result) Token() string {
	t := r.Config.AgentToken
	if t == nil || *t == wire.Masked {
		return ""
	}
	return *t
}

// ErrTimeout is returned when no lookup succeeded before the deadline.
var ErrTimeout = errors.New("lookup timed out")

// MinTokenLength is the shortest agent token the agent accepts (contract §1.5).
const MinTokenLength = 32

// Lookup finds the node. It retries every failure (unknown node, a node not
// yet in a lookup state, API unreachable, token not yet available) until
// Timeout, and returns only an answer that carries a usable agent token.
func Lookup(ctx context.Context, cfg Config) (*Result, error) {
	if len(cfg.APIURLs) == 0 {
		return nil, errors.New("lookup: no Ironic API URL (ipa-api-url)")
	}
	if len(cfg.MACs) == 0 && cfg.NodeUUID == "" {
		return nil, errors.New("lookup: no MAC address and no node UUID to look up")
	}
	cfg.defaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	log := cfg.Logger
	backoff := cfg.Interval
	conflicts := 0
	urls := append([]string(nil), cfg.APIURLs...)
	// answered is the last failure an API answered with, unanswered the
	// last one no API answered (refused connection, untrusted certificate)
	// before the deadline: why the lookups failed, when the deadline then
	// cuts an attempt short.
	var answered, unanswered error
	for attempt := 1; ; attempt++ {
		var wait time.Duration
		res, status, err := cfg.tryAll(ctx, urls)
		switch {
		case status != 0:
			answered = err
		case err != nil && ctx.Err() == nil:
			unanswered = err
		}
		switch {
		case err == nil:
			log.Info("lookup succeeded", "node", res.Node.UUID, "api", res.APIURL, "attempt", attempt,
				"heartbeat_timeout", res.Config.HeartbeatTimeout)
			return res, nil
		case status == http.StatusConflict:
			// The node is locked while its token is generated.
			wait = []time.Duration{5 * time.Second, 10 * time.Second, 30 * time.Second}[min(conflicts, 2)]
			conflicts++
		default:
			wait = time.Duration(rand.Int64N(int64(backoff)/2+1)) + backoff/2
			backoff = min(backoff*2, cfg.MaxInterval)
		}
		log.Warn("lookup failed; retrying", "attempt", attempt, "status", status, "error", err, "retry_in", wait.Round(time.Millisecond))
		if serr := cfg.Sleep(ctx, wait); serr != nil {
			if status == 0 {
				err = cmp.Or(answered, unanswered, err)
			}
			return nil, fmt.Errorf("%w after %d attempts (%s): last error: %w", ErrTimeout, attempt, cfg.Timeout, err)
		}
	}
}

func (cfg *Config) defaults() {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 600 * time.Second
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.MaxInterval <= 0 {
		cfg.MaxInterval = 60 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Sleep == nil {
		cfg.Sleep = pause.For
	}
}

// tryAll tries each URL in turn, moving to the next only on connection
// errors, and puts the one that answered first for next time.
func (cfg *Config) tryAll(ctx context.Context, urls []string) (*Result, int, error) {
	var lastErr error
	for i, u := range urls {
		res, status, err := cfg.tryOne(ctx, u)
		if status != 0 || err == nil {
			if i > 0 {
				urls[0], urls[i] = urls[i], urls[0]
			}
			return res, status, err
		}
		lastErr = err
	}
	return nil, 0, lastErr
}

// tryOne does version discovery and one lookup against apiURL. status is
// the lookup's HTTP status, 0 when the API could not be reached.
func (cfg *Config) tryOne(ctx context.Context, apiURL string) (*Result, int, error) {
	base := strings.TrimRight(apiURL, "/")
	maxVer := cfg.APIVersion
	if maxVer == "" {
		v, err := DiscoverVersion(ctx, cfg.Client, base, cfg.RequestID)
		if err != nil {
			return nil, 0, err
		}
		maxVer = v
	}
	q := url.Values{}
	if len(cfg.MACs) > 0 {
		q.Set("addresses", strings.Join(cfg.MACs, ","))
	}
	if cfg.NodeUUID != "" {
		q.Set("node_uuid", cfg.NodeUUID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/lookup?"+q.Encode(), nil)
	if err != nil {
		return nil, 0, err
	}
	setHeaders(req, wire.NegotiateVersion(maxVer, wire.LookupAPIVersion), cfg.RequestID)
	resp, err := cfg.Client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s/v1/lookup: %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("GET %s/v1/lookup: read body: %w", base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, fmt.Errorf("GET %s/v1/lookup: HTTP %d: %s", base, resp.StatusCode, wire.FaultText(body))
	}
	res, err := parseAnswer(body, base, maxVer)
	return res, resp.StatusCode, err
}

// parseAnswer reads a 200 answer of GET /v1/lookup: it must name a node
// and hand out a usable agent token.
func parseAnswer(body []byte, base, maxVer string) (*Result, error) {
	res := &Result{APIURL: base, MaxVersion: maxVer}
	if err := json.Unmarshal(body, &res.LookupResponse); err != nil {
		return nil, fmt.Errorf("GET %s/v1/lookup: bad answer: %w", base, err)
	}
	if res.Node.UUID == "" {
		return nil, fmt.Errorf("GET %s/v1/lookup: answer has no node uuid", base)
	}
	switch tok := res.Config.AgentToken; {
	case tok == nil:
		return nil, fmt.Errorf("lookup of node %s returned no agent token (API max version %s; 1.62 or later is needed)", res.Node.UUID, maxVer)
	case *tok == wire.Masked:
		return nil, fmt.Errorf("the agent token of node %s was already handed out to an earlier boot; the conductor clears it on the next power off or reboot", res.Node.UUID)
	case len(*tok) < MinTokenLength:
		return nil, fmt.Errorf("lookup of node %s returned an agent token of %d characters; at least %d are required", res.Node.UUID, len(*tok), MinTokenLength)
	}
	return res, nil
}

// DiscoverVersion reads the API's maximum microversion from its root
// document (GET /).
func DiscoverVersion(ctx context.Context, client *http.Client, apiURL, requestID string) (string, error) {
	base := strings.TrimRight(apiURL, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
	if err != nil {
		return "", err
	}
	setHeaders(req, "", requestID)
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s/: %w", base, err)
	}
	defer resp.Body.Close()
	var doc wire.RootDocument
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil {
		return "", fmt.Errorf("GET %s/: HTTP %d, not a version document: %w", base, resp.StatusCode, err)
	}
	if _, err := wire.ParseMicroversion(doc.DefaultVersion.Version); err != nil {
		return "", fmt.Errorf("GET %s/: %w", base, err)
	}
	return doc.DefaultVersion.Version, nil
}

func setHeaders(req *http.Request, version, requestID string) {
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	if version != "" {
		req.Header.Set(wire.APIVersionHeader, version)
	}
	if requestID != "" {
		req.Header.Set(wire.RequestIDHeader, requestID)
	}
	req.Header.Set("User-Agent", "rivet-agent")
}
