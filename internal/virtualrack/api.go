package virtualrack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/internal/netns"
	"github.com/rivetmetal/rivet/wire"
)

// apiVersion is the microversion the rack's requests ask for.
const apiVersion = "1.89"

// maxAnswer bounds an API answer read by the rack.
const maxAnswer = 16 << 20

// APIError is an API answer with an error status.
type APIError struct {
	Method, Path string
	Status       int
	Message      string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, e.Message)
}

// apiClient calls the conductor's API from the host, through the
// namespace, as the rack's user.
type apiClient struct {
	base               string
	username, password string
	hc                 *http.Client
}

func newAPIClient(ns, base, username, password string) *apiClient {
	tr := &http.Transport{DialContext: netns.Dialer(ns), MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
	return &apiClient{base: base, username: username, password: password,
		hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// do sends a JSON request and decodes the JSON answer into out (when not
// nil); an error status is an *APIError with Ironic's fault string.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set(wire.APIVersionHeader, apiVersion)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.username != "" {
		req.SetBasicAuth(c.username, c.password)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if len(data) > maxAnswer {
		return fmt.Errorf("%s %s: answer larger than %d bytes", method, path, maxAnswer)
	}
	if resp.StatusCode >= 400 {
		msg := strings.TrimSpace(string(data))
		var ie wire.IronicError
		if json.Unmarshal(data, &ie) == nil && ie.ErrorMessage != "" {
			msg = ie.Fault().FaultString
		}
		return &APIError{Method: method, Path: path, Status: resp.StatusCode, Message: msg}
	}
	if out != nil && len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// ready waits until the API answers GET /v1, or exited is closed.
func (c *apiClient) ready(ctx context.Context, exited <-chan struct{}) error {
	var last error
	for {
		if last = c.do(ctx, http.MethodGet, "/v1", nil, nil); last == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("the conductor exited before its API answered (%v)", last)
		case <-ctx.Done():
			return fmt.Errorf("the conductor's API did not answer: %w (last: %v)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ErrFailed is returned by WaitState when the node reaches one of the
// failure states given.
var ErrFailed = errors.New("node reached a failure state")

// waitState polls the node until its provision_state is want (and no
// target is pending), or one of fail; it returns the node document.
func (c *apiClient) waitState(ctx context.Context, ident, want string, fail ...string) (map[string]any, error) {
	for {
		var n map[string]any
		err := c.do(ctx, http.MethodGet, "/v1/nodes/"+ident, nil, &n)
		if err != nil && ctx.Err() != nil {
			return nil, err
		}
		if err == nil {
			st, _ := n["provision_state"].(string)
			if st == want && n["target_provision_state"] == nil {
				return n, nil
			}
			if slices.Contains(fail, st) {
				return n, fmt.Errorf("node %s: %w %q waiting for %q: last_error %v", ident, ErrFailed, st, want, n["last_error"])
			}
		}
		select {
		case <-ctx.Done():
			return n, fmt.Errorf("node %s: waiting for %q: %w (last seen: %v, error %v)", ident, want, ctx.Err(), n["provision_state"], err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
