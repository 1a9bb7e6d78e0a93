// Package agentclient is the conductor's client of the deploy agent's HTTP
// API (contract §1 and §4.4): POST <agent_url>/v1/commands/ with the wait
// flag and the agent token in the query string, GET of the command list,
// a per-call timeout, retries on connection failures, polling of an
// asynchronous command until it ends (install_bootloader), "agent is busy"
// reported as its own error so the caller retries on the next heartbeat,
// and TLS verified against the agent's own certificate (auto-TLS).
package agentclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	segjson "github.com/segmentio/encoding/json"

	"github.com/rivetmetal/rivet/internal/pause"
	"github.com/rivetmetal/rivet/wire"
)

// ErrAgentBusy is returned (wrapped) when the agent refuses a command
// because its last command is still running (HTTP 409, or a fault text
// containing "agent is busy"). Ironic retries on the next heartbeat.
var ErrAgentBusy = errors.New("agent is busy")

// ErrUnreachable is returned (wrapped) when the agent could not be reached
// after every attempt.
var ErrUnreachable = errors.New("agent unreachable")

// ErrWaitTimeout is returned (wrapped) by Wait when the command is still
// running after every poll.
var ErrWaitTimeout = errors.New("timed out waiting for the agent command")

// ErrBadCertificate is returned (wrapped) when the agent's verify CA is
// not a PEM certificate.
var ErrBadCertificate = errors.New("invalid agent certificate")

// APIError is an error answer (HTTP status >= 400) of the agent API.
type APIError struct {
	Status int
	Fault  wire.Fault
}

// Error implements error.
func (e *APIError) Error() string {
	if e.Fault.FaultString != "" {
		return fmt.Sprintf("agent API error %d: %s", e.Status, e.Fault.FaultString)
	}
	return fmt.Sprintf("agent API error %d", e.Status)
}

// Endpoint is one running agent as the conductor reaches it.
type Endpoint struct {
	// URL is the agent's callback_url (http or https, no trailing slash).
	URL string
	// Token is the agent token, sent as ?agent_token= (never logged).
	Token string
	// VerifyCA is the agent's own certificate (PEM) from its heartbeats
	// (agent_verify_ca). When set, an https agent is verified against it
	// alone, host name checked against its IP SAN; when empty, https
	// agents are verified against the system roots.
	VerifyCA []byte
	// Guard, when set, is called before every request to the agent,
	// retries and polls included; an error it returns ends the call with
	// that error before anything is sent (the conductor's lease fence).
	Guard func() error
}

// Config configures a Client; zero fields take the defaults.
type Config struct {
	// Timeout bounds each HTTP call ([agent]command_timeout, default 60 s).
	Timeout time.Duration
	// MaxAttempts is the number of tries on connection failures
	// ([agent]max_command_attempts, default 3).
	MaxAttempts int
	// RetryDelay is the pause between tries (default 1 s).
	RetryDelay time.Duration
	// HTTPClient is the client for agents without a pinned certificate
	// (default: a new http.Client). Clients for pinned certificates are
	// built by the Client.
	HTTPClient *http.Client
	// UserAgent is sent with every request (default "rivet-conductor"),
	// so that an agent's log names the conductor that called it.
	UserAgent string
	// Logger receives debug logs (default slog.Default()).
	Logger *slog.Logger
}

// Client talks to deploy agents. It is safe for concurrent use.
type Client struct {
	cfg Config
	hc  *http.Client
	log *slog.Logger

	mu     sync.Mutex
	pinned map[[32]byte]*http.Client
}

// maxBody caps the size of an agent answer (system logs are the largest).
const maxBody = 128 << 20

// maxPinned bounds the cache of per-certificate clients; agents make a
// new certificate on every boot.
const maxPinned = 256

// New returns a Client.
func New(cfg Config) *Client {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = time.Second
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "rivet-conductor"
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: agentTransport()}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Client{cfg: cfg, hc: hc, log: log, pinned: map[[32]byte]*http.Client{}}
}

// maxIdleConns bounds the idle connections kept to agents, in all.
const maxIdleConns = 1024

// agentTransport is the default client's transport: http.DefaultTransport's
// settings (proxies from the environment among them), but a pool of its
// own, with idle connections bounded in total rather than per agent. A
// deploy sends an agent several commands and polls within seconds of each
// other; with the default transport's bounds (100 idle connections in
// all, 2 per address) a conductor driving thousands of agents, or agents
// sharing one address (port-forwarded VMs, the load generator), dialled
// for nearly every command.
func agentTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = maxIdleConns
	t.MaxIdleConnsPerHost = maxIdleConns
	return t
}

// Close releases idle connections.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, hc := range c.pinned {
		hc.CloseIdleConnections()
		delete(c.pinned, k)
	}
	c.hc.CloseIdleConnections()
}

// httpClient returns the client that reaches ep: the default one, or one
// that trusts only the agent's pinned certificate.
func (c *Client) httpClient(ep Endpoint) (*http.Client, error) {
	if len(ep.VerifyCA) == 0 || !strings.HasPrefix(strings.ToLower(ep.URL), "https://") {
		return c.hc, nil
	}
	key := sha256.Sum256(ep.VerifyCA)
	c.mu.Lock()
	defer c.mu.Unlock()
	if hc, ok := c.pinned[key]; ok {
		return hc, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ep.VerifyCA) {
		return nil, ErrBadCertificate
	}
	if len(c.pinned) >= maxPinned {
		for k, hc := range c.pinned {
			hc.CloseIdleConnections()
			delete(c.pinned, k)
		}
	}
	hc := &http.Client{Transport: &http.Transport{
		Proxy:               nil, // agents are reached directly
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 2,
	}}
	c.pinned[key] = hc
	return hc, nil
}

// commandBody is the JSON of wire.CommandRequest{Name: name, Params:
// params encoded}, written around the encoded params: encoding the request
// with json.Marshal would validate and compact them again, and they are
// most of it (a deploy's node document). The params are encoded by
// segmentio/encoding, as encoding/json would (HTML escaped, Marshalers'
// output compacted) in about half the time, except that map keys are
// left in map order: the agent decodes the body into dicts, and sorting
// the keys of every map in a deploy's node document (its steps among
// them) was a third of the encoding, itself 6 % of a boot storm's CPU.
func commandBody(name string, params any) ([]byte, error) {
	n, err := json.Marshal(name)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	bp := bodyBuffers.Get().(*[]byte)
	buf := append(append(append((*bp)[:0], `{"name":`...), n...), `,"params":`...)
	buf, err = segjson.Append(buf, params, segjson.EscapeHTML)
	var body []byte
	if err == nil {
		// The body outlives the buffer (retries send it again): a copy
		// of its exact size, taken before the buffer goes back.
		body = append(append(make([]byte, 0, len(buf)+1), buf...), '}')
	}
	if cap(buf) <= maxPooledBody {
		*bp = buf[:0]
		bodyBuffers.Put(bp)
	}
	if err != nil {
		return nil, fmt.Errorf("encode params: %w", err)
	}
	return body, nil
}

// bodyBuffers are the buffers command bodies are encoded into, which
// grow to a node document's size once instead of for every command;
// those grown past maxPooledBody (a configdrive in the args) are dropped.
var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

const maxPooledBody = 1 << 20

// Execute runs command name ("<extension>.<command>") with params on the
// agent. With wait, the answer holds the final result. A command the agent
// accepted gives a result even when it FAILED; errors are transport or API
// errors (ErrAgentBusy, ErrUnreachable, *APIError). If a POST is lost in a
// dropped connection but the agent did start the command, the running
// command is returned (Ironic's behaviour with big configdrives).
func (c *Client) Execute(ctx context.Context, ep Endpoint, name string, params any, block bool) (*wire.CommandResult, error) {
	if params == nil {
		params = map[string]any{}
	}
	body, err := commandBody(name, params)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %s: %w", ep.URL, name, err)
	}
	hc, err := c.httpClient(ep)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %s: %w", ep.URL, name, err)
	}
	q := url.Values{}
	q.Set("wait", strconv.FormatBool(block))
	q.Set("agent_token", ep.Token)
	target := strings.TrimSuffix(ep.URL, "/") + "/v1/commands/?" + q.Encode()
	short := ShortName(name)

	var lastErr error
	for attempt := 1; attempt <= c.cfg.MaxAttempts; attempt++ {
		if attempt > 1 {
			if err := pause.For(ctx, c.cfg.RetryDelay); err != nil {
				return nil, fmt.Errorf("agent %s: %s: %w", ep.URL, name, err)
			}
			// The previous POST may have reached the agent before the
			// connection dropped: if the command is running, it started.
			if r := c.runningCommand(ctx, hc, ep, short); r != nil {
				return r, nil
			}
		}
		var res wire.CommandResult
		status, err := c.do(ctx, hc, ep, http.MethodPost, target, body, &res)
		if err == nil {
			return &res, nil
		}
		if status != 0 || ctx.Err() != nil {
			return nil, fmt.Errorf("agent %s: %s: %w", ep.URL, name, err)
		}
		lastErr = err
		c.log.Debug("agent command attempt failed", "agent", ep.URL, "command", name,
			"attempt", attempt, "error", err)
	}
	if r := c.runningCommand(ctx, hc, ep, short); r != nil {
		return r, nil
	}
	return nil, fmt.Errorf("agent %s: %s after %d attempts: %w: %w", ep.URL, name, c.cfg.MaxAttempts, ErrUnreachable, lastErr)
}

// Commands returns the agent's command list, oldest first. The token is
// sent as Ironic 2025.1 and later do (older agents ignore it).
func (c *Client) Commands(ctx context.Context, ep Endpoint) (*wire.CommandList, error) {
	hc, err := c.httpClient(ep)
	if err != nil {
		return nil, fmt.Errorf("agent %s: list commands: %w", ep.URL, err)
	}
	target := commandsURL(ep)
	var lastErr error
	for attempt := 1; attempt <= c.cfg.MaxAttempts; attempt++ {
		if attempt > 1 {
			if err := pause.For(ctx, c.cfg.RetryDelay); err != nil {
				return nil, fmt.Errorf("agent %s: list commands: %w", ep.URL, err)
			}
		}
		var list wire.CommandList
		status, err := c.do(ctx, hc, ep, http.MethodGet, target, nil, &list)
		if err == nil {
			return &list, nil
		}
		if status != 0 || ctx.Err() != nil {
			return nil, fmt.Errorf("agent %s: list commands: %w", ep.URL, err)
		}
		lastErr = err
	}
	return nil, fmt.Errorf("agent %s: list commands after %d attempts: %w: %w", ep.URL, c.cfg.MaxAttempts, ErrUnreachable, lastErr)
}

// firstPoll is the first delay of Wait's polling, doubled up to the
// interval: a command that ends at once (install_bootloader on a UEFI
// whole-disk image takes milliseconds) is seen without waiting a whole
// interval.
const firstPoll = 250 * time.Millisecond

// Wait polls the agent's command list until its last command named short
// ("install_bootloader") is no longer RUNNING, and returns it (Ironic's
// _wait_for_command with [agent]command_wait_interval and
// command_wait_attempts). Polls start firstPoll apart and back off to
// interval; the whole wait is bounded by attempts × interval. A command
// that never shows up is waited for like a running one.
func (c *Client) Wait(ctx context.Context, ep Endpoint, short string, interval time.Duration, attempts int) (*wire.CommandResult, error) {
	if attempts <= 0 {
		attempts = 1
	}
	deadline := time.Now().Add(time.Duration(attempts) * interval)
	delay := min(firstPoll, interval)
	var lastErr error
	for polls := 1; ; polls++ {
		list, err := c.Commands(ctx, ep)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			lastErr = err
		} else {
			lastErr = nil
			for j := len(list.Commands) - 1; j >= 0; j-- {
				cmd := list.Commands[j]
				if cmd.CommandName != short {
					continue
				}
				if cmd.CommandStatus.Finished() {
					return &cmd, nil
				}
				break
			}
		}
		if !time.Now().Add(delay).Before(deadline) {
			if lastErr != nil {
				return nil, fmt.Errorf("agent %s: wait for %s after %d polls: %w: %w", ep.URL, short, polls, ErrWaitTimeout, lastErr)
			}
			return nil, fmt.Errorf("agent %s: %s still running after %d polls over %s: %w", ep.URL, short, polls, time.Duration(attempts)*interval, ErrWaitTimeout)
		}
		if err := pause.For(ctx, delay); err != nil {
			return nil, fmt.Errorf("agent %s: wait for %s: %w", ep.URL, short, err)
		}
		delay = min(2*delay, interval)
	}
}

// ShortName is a command's name without its extension prefix, as the agent
// reports it in command_name ("standby.prepare_image" -> "prepare_image").
func ShortName(name string) string {
	if i := strings.IndexByte(name, '.'); i >= 0 {
		return name[i+1:]
	}
	return name
}

func commandsURL(ep Endpoint) string {
	target := strings.TrimSuffix(ep.URL, "/") + "/v1/commands/"
	if ep.Token != "" {
		target += "?" + url.Values{"agent_token": {ep.Token}}.Encode()
	}
	return target
}

// runningCommand returns the agent's last command when it is short and
// RUNNING, else nil.
func (c *Client) runningCommand(ctx context.Context, hc *http.Client, ep Endpoint, short string) *wire.CommandResult {
	var list wire.CommandList
	if _, err := c.do(ctx, hc, ep, http.MethodGet, commandsURL(ep), nil, &list); err != nil {
		return nil
	}
	if last := list.Last(); last != nil && last.CommandName == short && last.CommandStatus == wire.StatusRunning {
		return last
	}
	return nil
}

// do performs one call, once ep's guard lets it. A transport failure
// returns status 0; a refusal of the guard -1; an HTTP error returns its
// status and an *APIError (wrapping ErrAgentBusy when the agent is busy).
// Errors never contain the URL, which holds the token.
func (c *Client) do(ctx context.Context, hc *http.Client, ep Endpoint, method, target string, body []byte, out any) (int, error) {
	if ep.Guard != nil {
		if err := ep.Guard(); err != nil {
			return -1, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return -1, fmt.Errorf("build request: %w", redact(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, redact(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, fmt.Errorf("read answer: %w", redact(err))
	}
	if resp.StatusCode >= 400 {
		apiErr := &APIError{Status: resp.StatusCode}
		_ = json.Unmarshal(data, &apiErr.Fault)
		if resp.StatusCode == http.StatusConflict ||
			strings.Contains(strings.ToLower(apiErr.Fault.FaultString), "agent is busy") {
			return resp.StatusCode, fmt.Errorf("%w: %w", ErrAgentBusy, apiErr)
		}
		return resp.StatusCode, apiErr
	}
	if err := json.Unmarshal(data, out); err != nil {
		return resp.StatusCode, fmt.Errorf("decode answer (HTTP %d): %w", resp.StatusCode, err)
	}
	return resp.StatusCode, nil
}

// redact strips the request URL (which carries the agent token) from
// net/http errors.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}
