// Package agentclient is the conductor's client of the deploy agent's HTTP
// API (contract §1 and §4.4): POST <agent_url>/v1/commands/ with the wait
// flag and the agent token in the query string, GET of the command list,
// a per-call timeout, retries on connection failures, and "agent is busy"
// reported as its own error so the caller retries on the next heartbeat.
package agentclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/agent/wire"
)

// ErrAgentBusy is returned (wrapped) when the agent refuses a command
// because its last command is still running (HTTP 409, or a fault text
// containing "agent is busy"). Ironic retries on the next heartbeat.
var ErrAgentBusy = errors.New("agent is busy")

// ErrUnreachable is returned (wrapped) when the agent could not be reached
// after every attempt.
var ErrUnreachable = errors.New("agent unreachable")

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

// Config configures a Client; zero fields take the defaults.
type Config struct {
	// Timeout bounds each HTTP call ([agent]command_timeout, default 60 s).
	Timeout time.Duration
	// MaxAttempts is the number of tries on connection failures
	// ([agent]max_command_attempts, default 3).
	MaxAttempts int
	// RetryDelay is the pause between tries (default 1 s).
	RetryDelay time.Duration
	// HTTPClient is the client to use (default: a new http.Client).
	HTTPClient *http.Client
	// Logger receives debug logs (default slog.Default()).
	Logger *slog.Logger
}

// Client talks to deploy agents.
type Client struct {
	cfg Config
	hc  *http.Client
	log *slog.Logger
}

// maxBody caps the size of an agent answer.
const maxBody = 64 << 20

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
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Client{cfg: cfg, hc: hc, log: log}
}

// Execute runs command name ("<extension>.<command>") with params on the
// agent at agentURL. With wait, the answer holds the final result. A
// command the agent accepted gives a result even when it FAILED; errors are
// transport or API errors (ErrAgentBusy, ErrUnreachable, *APIError).
func (c *Client) Execute(ctx context.Context, agentURL, token, name string, params any, wait bool) (*wire.CommandResult, error) {
	if params == nil {
		params = map[string]any{}
	}
	p, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %s: encode params: %w", agentURL, name, err)
	}
	body, err := json.Marshal(wire.CommandRequest{Name: name, Params: p})
	if err != nil {
		return nil, fmt.Errorf("agent %s: %s: encode request: %w", agentURL, name, err)
	}
	q := url.Values{}
	q.Set("wait", strconv.FormatBool(wait))
	q.Set("agent_token", token)
	target := strings.TrimSuffix(agentURL, "/") + "/v1/commands/?" + q.Encode()
	short := name
	if i := strings.IndexByte(name, '.'); i >= 0 {
		short = name[i+1:]
	}

	var lastErr error
	for attempt := 1; attempt <= c.cfg.MaxAttempts; attempt++ {
		if attempt > 1 {
			if err := sleep(ctx, c.cfg.RetryDelay); err != nil {
				return nil, fmt.Errorf("agent %s: %s: %w", agentURL, name, err)
			}
			// The previous POST may have reached the agent before the
			// connection dropped: if the command is running, it started.
			if r := c.runningCommand(ctx, agentURL, token, short); r != nil {
				return r, nil
			}
		}
		var res wire.CommandResult
		status, err := c.do(ctx, http.MethodPost, target, body, &res)
		if err == nil {
			return &res, nil
		}
		if status != 0 {
			return nil, fmt.Errorf("agent %s: %s: %w", agentURL, name, err)
		}
		lastErr = err
		c.log.Debug("agent command attempt failed", "agent", agentURL, "command", name,
			"attempt", attempt, "error", err)
	}
	if r := c.runningCommand(ctx, agentURL, token, short); r != nil {
		return r, nil
	}
	return nil, fmt.Errorf("agent %s: %s after %d attempts: %w: %w", agentURL, name, c.cfg.MaxAttempts, ErrUnreachable, lastErr)
}

// Commands returns the agent's command list, oldest first. The token is
// sent as Ironic 2025.1 and later do (older agents ignore it).
func (c *Client) Commands(ctx context.Context, agentURL, token string) (*wire.CommandList, error) {
	target := strings.TrimSuffix(agentURL, "/") + "/v1/commands/"
	if token != "" {
		target += "?" + url.Values{"agent_token": {token}}.Encode()
	}
	var lastErr error
	for attempt := 1; attempt <= c.cfg.MaxAttempts; attempt++ {
		if attempt > 1 {
			if err := sleep(ctx, c.cfg.RetryDelay); err != nil {
				return nil, fmt.Errorf("agent %s: list commands: %w", agentURL, err)
			}
		}
		var list wire.CommandList
		status, err := c.do(ctx, http.MethodGet, target, nil, &list)
		if err == nil {
			return &list, nil
		}
		if status != 0 {
			return nil, fmt.Errorf("agent %s: list commands: %w", agentURL, err)
		}
		lastErr = err
	}
	return nil, fmt.Errorf("agent %s: list commands after %d attempts: %w: %w", agentURL, c.cfg.MaxAttempts, ErrUnreachable, lastErr)
}

// runningCommand returns the agent's last command when it is short and
// RUNNING, else nil.
func (c *Client) runningCommand(ctx context.Context, agentURL, token, short string) *wire.CommandResult {
	target := strings.TrimSuffix(agentURL, "/") + "/v1/commands/?" + url.Values{"agent_token": {token}}.Encode()
	var list wire.CommandList
	if _, err := c.do(ctx, http.MethodGet, target, nil, &list); err != nil {
		return nil
	}
	if last := list.Last(); last != nil && last.CommandName == short && last.CommandStatus == wire.StatusRunning {
		return last
	}
	return nil
}

// do performs one call. A transport failure returns status 0; an HTTP
// error returns its status and an *APIError (wrapping ErrAgentBusy when
// the agent is busy). Errors never contain the URL, which holds the token.
func (c *Client) do(ctx context.Context, method, target string, body []byte, out any) (int, error) {
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
	resp, err := c.hc.Do(req)
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

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
