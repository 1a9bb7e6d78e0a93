// Package client is the rivet CLI's client of the conductor's Ironic-style
// API: nodes, ports and provision states, with Ironic's error bodies
// turned into Go errors, HTTP basic credentials (http_basic) and a CA
// bundle to verify the conductor's TLS certificate.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/rivetmetal/rivet/wire"
)

// APIVersion is the microversion the CLI requests.
const APIVersion = "1.89"

// Client talks to one conductor.
type Client struct {
	base               string
	hc                 *http.Client
	username, password string
}

// Options configure a Client; the zero value talks without credentials
// and verifies TLS certificates against the system's CAs.
type Options struct {
	// Username and Password, when Username is set, are sent as HTTP
	// basic credentials on every request.
	Username, Password string
	// CACertFile, when set, is a PEM bundle of the CAs that verify the
	// conductor's certificate, instead of the system's.
	CACertFile string
	// HTTPClient, when set, is used as is (CACertFile is then ignored).
	HTTPClient *http.Client
}

// maxCABundle caps a CA bundle file.
const maxCABundle = 4 << 20

// New returns a client of the conductor at baseURL.
func New(baseURL string, o Options) (*Client, error) {
	hc := o.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
		if o.CACertFile != "" {
			pool, err := loadCAs(o.CACertFile)
			if err != nil {
				return nil, err
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			hc = &http.Client{Transport: tr}
		}
	}
	return &Client{base: strings.TrimSuffix(baseURL, "/"), hc: hc, username: o.Username, password: o.Password}, nil
}

// loadCAs reads a PEM CA bundle.
func loadCAs(path string) (*x509.CertPool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCABundle+1))
	if err != nil {
		return nil, fmt.Errorf("CA bundle %s: %w", path, err)
	}
	if len(data) > maxCABundle {
		return nil, fmt.Errorf("CA bundle %s: larger than %d bytes", path, maxCABundle)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// HasCredentials reports whether the client sends credentials.
func (c *Client) HasCredentials() bool { return c.username != "" }

// IsUnauthorized reports whether err is the API refusing missing or
// wrong credentials (HTTP 401).
func IsUnauthorized(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusUnauthorized
}

// Error is an error answer of the API.
type Error struct {
	Status  int
	Message string
}

// Error implements error.
func (e *Error) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status) }

// Node is a node document; Raw holds every field as the API sent it.
type Node struct {
	UUID                 string         `json:"uuid"`
	Name                 string         `json:"name"`
	Driver               string         `json:"driver"`
	ProvisionState       string         `json:"provision_state"`
	TargetProvisionState string         `json:"target_provision_state"`
	PowerState           string         `json:"power_state"`
	Maintenance          bool           `json:"maintenance"`
	LastError            string         `json:"last_error"`
	InstanceInfo         map[string]any `json:"instance_info"`
	DriverInternalInfo   map[string]any `json:"driver_internal_info"`
	DeployStep           map[string]any `json:"deploy_step"`
	ProvisionUpdatedAt   string         `json:"provision_updated_at"`
	Raw                  map[string]any `json:"-"`
}

// Label is the node's name, or its UUID when it has none.
func (n *Node) Label() string {
	if n.Name != "" {
		return n.Name
	}
	return n.UUID
}

// Timings are the per-phase deploy timings the engine records in
// driver_internal_info.deploy_timings (phase → seconds), or nil.
func (n *Node) Timings() map[string]float64 {
	m, ok := n.DriverInternalInfo["deploy_timings"].(map[string]any)
	if !ok {
		return nil
	}
	out := make(map[string]float64, len(m))
	for k, v := range m {
		if f, ok := v.(float64); ok {
			out[k] = f
		}
	}
	return out
}

// Progress is the image write progress the conductor recorded, or nil.
func (n *Node) Progress() *wire.Progress {
	v, ok := n.DriverInternalInfo["deploy_progress"]
	if !ok || v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var p wire.Progress
	if json.Unmarshal(b, &p) != nil {
		return nil
	}
	return &p
}

// Port is a port document.
type Port struct {
	UUID     string         `json:"uuid"`
	Address  string         `json:"address"`
	NodeUUID string         `json:"node_uuid"`
	Raw      map[string]any `json:"-"`
}

// PatchOp is one JSON Patch operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// CreateNode creates a node from its fields.
func (c *Client) CreateNode(ctx context.Context, fields map[string]any) (*Node, error) {
	var n Node
	return &n, c.doNode(ctx, http.MethodPost, "/v1/nodes", fields, &n)
}

// GetNode reads a node by name or UUID.
func (c *Client) GetNode(ctx context.Context, ident string) (*Node, error) {
	var n Node
	return &n, c.doNode(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(ident), nil, &n)
}

// ListNodes lists the nodes matching the query filters
// (provision_state, maintenance, driver; nil for all), in detail.
func (c *Client) ListNodes(ctx context.Context, filters url.Values) ([]*Node, error) {
	var body struct {
		Nodes []json.RawMessage `json:"nodes"`
	}
	path := "/v1/nodes/detail"
	if len(filters) > 0 {
		path += "?" + filters.Encode()
	}
	if err := c.do(ctx, http.MethodGet, path, nil, &body); err != nil {
		return nil, err
	}
	out := make([]*Node, 0, len(body.Nodes))
	for _, raw := range body.Nodes {
		n := &Node{}
		if err := decodeWithRaw(raw, n, &n.Raw); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// PatchNode applies a JSON Patch to a node.
func (c *Client) PatchNode(ctx context.Context, ident string, ops []PatchOp) (*Node, error) {
	var n Node
	return &n, c.doNode(ctx, http.MethodPatch, "/v1/nodes/"+url.PathEscape(ident), ops, &n)
}

// SetProvisionState asks for a provision target ("manage", "active", ...);
// configdrive is sent when non-nil.
func (c *Client) SetProvisionState(ctx context.Context, ident, target string, configdrive any) error {
	body := map[string]any{"target": target}
	if configdrive != nil {
		body["configdrive"] = configdrive
	}
	return c.Provision(ctx, ident, body)
}

// Provision sends a provision request body ({"target": ..., "clean_steps":
// ..., ...}) as is.
func (c *Client) Provision(ctx context.Context, ident string, body map[string]any) error {
	return c.do(ctx, http.MethodPut, "/v1/nodes/"+url.PathEscape(ident)+"/states/provision", body, nil)
}

// SetPowerState asks for a power state ("power on", "power off",
// "rebooting", "soft power off", "soft rebooting"); timeout > 0 is sent.
func (c *Client) SetPowerState(ctx context.Context, ident, target string, timeout int) error {
	body := map[string]any{"target": target}
	if timeout > 0 {
		body["timeout"] = timeout
	}
	return c.do(ctx, http.MethodPut, "/v1/nodes/"+url.PathEscape(ident)+"/states/power", body, nil)
}

// SetBootDevice sets a node's next boot device.
func (c *Client) SetBootDevice(ctx context.Context, ident, dev string, persistent bool) error {
	return c.do(ctx, http.MethodPut, "/v1/nodes/"+url.PathEscape(ident)+"/management/boot_device",
		map[string]any{"boot_device": dev, "persistent": persistent}, nil)
}

// BootDevice reads a node's next boot device ({"boot_device", "persistent"}).
func (c *Client) BootDevice(ctx context.Context, ident string) (map[string]any, error) {
	var out map[string]any
	return out, c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(ident)+"/management/boot_device", nil, &out)
}

// SetMaintenance turns maintenance on (with an optional reason) or off.
func (c *Client) SetMaintenance(ctx context.Context, ident string, on bool, reason string) error {
	path := "/v1/nodes/" + url.PathEscape(ident) + "/maintenance"
	if !on {
		return c.do(ctx, http.MethodDelete, path, nil, nil)
	}
	var body map[string]any
	if reason != "" {
		body = map[string]any{"reason": reason}
	}
	return c.do(ctx, http.MethodPut, path, body, nil)
}

// Validate returns the node's per-interface validation.
func (c *Client) Validate(ctx context.Context, ident string) (map[string]map[string]any, error) {
	var out map[string]map[string]any
	return out, c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(ident)+"/validate", nil, &out)
}

// DeletePort deletes a port by UUID.
func (c *Client) DeletePort(ctx context.Context, uuid string) error {
	return c.do(ctx, http.MethodDelete, "/v1/ports/"+url.PathEscape(uuid), nil, nil)
}

// DeleteNode deletes a node.
func (c *Client) DeleteNode(ctx context.Context, ident string) error {
	return c.do(ctx, http.MethodDelete, "/v1/nodes/"+url.PathEscape(ident), nil, nil)
}

// CreatePort creates a port for a node (name or UUID).
func (c *Client) CreatePort(ctx context.Context, mac, node string) (*Port, error) {
	n, err := c.GetNode(ctx, node)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodPost, "/v1/ports", map[string]any{"address": mac, "node_uuid": n.UUID}, &raw); err != nil {
		return nil, err
	}
	p := &Port{}
	return p, decodeWithRaw(raw, p, &p.Raw)
}

// ListPorts lists every port, in detail.
func (c *Client) ListPorts(ctx context.Context) ([]*Port, error) {
	var body struct {
		Ports []json.RawMessage `json:"ports"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/ports/detail", nil, &body); err != nil {
		return nil, err
	}
	out := make([]*Port, 0, len(body.Ports))
	for _, raw := range body.Ports {
		p := &Port{}
		if err := decodeWithRaw(raw, p, &p.Raw); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (c *Client) doNode(ctx context.Context, method, path string, body any, n *Node) error {
	var raw json.RawMessage
	if err := c.do(ctx, method, path, body, &raw); err != nil {
		return err
	}
	return decodeWithRaw(raw, n, &n.Raw)
}

func decodeWithRaw(raw json.RawMessage, v any, m *map[string]any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	if err := json.Unmarshal(raw, m); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

// do sends a request and decodes a JSON answer into out (when non-nil).
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
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
	req.Header.Set(wire.APIVersionHeader, APIVersion)
	if c.username != "" {
		req.SetBasicAuth(c.username, c.password)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		var ie wire.IronicError
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &ie) == nil && ie.ErrorMessage != "" {
			msg = ie.Fault().FaultString
		}
		return &Error{Status: resp.StatusCode, Message: msg}
	}
	if out != nil && len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}
