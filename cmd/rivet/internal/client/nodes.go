package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/nodes"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/ports"

	"github.com/rivetmetal/rivet/wire"
)

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

// Timings are the per-phase deploy timings the Rivet conductor records in
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

// Progress is the image write progress the Rivet conductor recorded, or
// nil.
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

// nodeOf decodes a node document.
func nodeOf(doc map[string]any) (*Node, error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("decode node: %w", err)
	}
	n := &Node{Raw: doc}
	if err := json.Unmarshal(b, n); err != nil {
		return nil, fmt.Errorf("decode node: %w", err)
	}
	return n, nil
}

// resultNode decodes the node of a gophercloud result.
func resultNode(r gophercloud.Result) (*Node, error) {
	if r.Err != nil {
		return nil, apiError(r.Err)
	}
	doc, ok := r.Body.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("decode node: the answer is not a JSON object")
	}
	return nodeOf(doc)
}

// Port is a port document.
type Port struct {
	UUID     string         `json:"uuid"`
	Address  string         `json:"address"`
	NodeUUID string         `json:"node_uuid"`
	Raw      map[string]any `json:"-"`
}

// CreateNode creates a node.
func (c *Client) CreateNode(ctx context.Context, opts nodes.CreateOpts) (*Node, error) {
	if err := c.negotiate(ctx); err != nil {
		return nil, err
	}
	return resultNode(nodes.Create(ctx, c.sc, opts).Result)
}

// GetNode reads a node by name or UUID.
func (c *Client) GetNode(ctx context.Context, ident string) (*Node, error) {
	if err := c.negotiate(ctx); err != nil {
		return nil, err
	}
	return resultNode(nodes.Get(ctx, c.sc, url.PathEscape(ident)).Result)
}

// NodeFilter selects nodes in ListNodes; zero fields do not filter.
type NodeFilter struct {
	ProvisionState string
	Driver         string
	// Maintenance filters on the flag when not nil.
	Maintenance *bool
}

// ToNodeListDetailQuery implements nodes.ListOptsBuilder (gophercloud's
// ListOpts cannot ask for maintenance=false).
func (f NodeFilter) ToNodeListDetailQuery() (string, error) {
	q := url.Values{}
	if f.ProvisionState != "" {
		q.Set("provision_state", f.ProvisionState)
	}
	if f.Driver != "" {
		q.Set("driver", f.Driver)
	}
	if f.Maintenance != nil {
		q.Set("maintenance", strconv.FormatBool(*f.Maintenance))
	}
	if len(q) == 0 {
		return "", nil
	}
	return "?" + q.Encode(), nil
}

// ToNodeListQuery implements nodes.ListOptsBuilder.
func (f NodeFilter) ToNodeListQuery() (string, error) { return f.ToNodeListDetailQuery() }

// ListNodes lists the matching nodes in detail, every page.
func (c *Client) ListNodes(ctx context.Context, f NodeFilter) ([]*Node, error) {
	if err := c.negotiate(ctx); err != nil {
		return nil, err
	}
	pages, err := nodes.ListDetail(c.sc, f).AllPages(ctx)
	if err != nil {
		return nil, apiError(err)
	}
	var docs []map[string]any
	if err := nodes.ExtractNodesInto(pages, &docs); err != nil {
		return nil, fmt.Errorf("decode nodes: %w", err)
	}
	out := make([]*Node, 0, len(docs))
	for _, d := range docs {
		n, err := nodeOf(d)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// PatchNode applies JSON Patch operations to a node.
func (c *Client) PatchNode(ctx context.Context, ident string, ops nodes.UpdateOpts) (*Node, error) {
	if err := c.negotiate(ctx); err != nil {
		return nil, err
	}
	return resultNode(nodes.Update(ctx, c.sc, url.PathEscape(ident), ops).Result)
}

// SetProvisionState asks for a provision target.
func (c *Client) SetProvisionState(ctx context.Context, ident string, opts nodes.ProvisionStateOpts) error {
	if err := c.negotiate(ctx); err != nil {
		return err
	}
	return apiError(nodes.ChangeProvisionState(ctx, c.sc, url.PathEscape(ident), opts).ExtractErr())
}

// SetPowerState asks for a power state ("power on", "power off",
// "rebooting", "soft power off", "soft rebooting"); timeout > 0 is sent.
func (c *Client) SetPowerState(ctx context.Context, ident, target string, timeout int) error {
	if err := c.negotiate(ctx); err != nil {
		return err
	}
	return apiError(nodes.ChangePowerState(ctx, c.sc, url.PathEscape(ident),
		nodes.PowerStateOpts{Target: nodes.TargetPowerState(target), Timeout: timeout}).ExtractErr())
}

// SetBootDevice sets a node's next boot device.
func (c *Client) SetBootDevice(ctx context.Context, ident, dev string, persistent bool) error {
	if err := c.negotiate(ctx); err != nil {
		return err
	}
	return apiError(nodes.SetBootDevice(ctx, c.sc, url.PathEscape(ident),
		nodes.BootDeviceOpts{BootDevice: dev, Persistent: persistent}).ExtractErr())
}

// BootDevice reads a node's next boot device ({"boot_device", "persistent"}).
func (c *Client) BootDevice(ctx context.Context, ident string) (map[string]any, error) {
	if err := c.negotiate(ctx); err != nil {
		return nil, err
	}
	r := nodes.GetBootDevice(ctx, c.sc, url.PathEscape(ident))
	if r.Err != nil {
		return nil, apiError(r.Err)
	}
	var out map[string]any
	return out, r.ExtractInto(&out)
}

// SetMaintenance turns maintenance on (with an optional reason) or off.
func (c *Client) SetMaintenance(ctx context.Context, ident string, on bool, reason string) error {
	if err := c.negotiate(ctx); err != nil {
		return err
	}
	if !on {
		return apiError(nodes.UnsetMaintenance(ctx, c.sc, url.PathEscape(ident)).ExtractErr())
	}
	return apiError(nodes.SetMaintenance(ctx, c.sc, url.PathEscape(ident), nodes.MaintenanceOpts{Reason: reason}).ExtractErr())
}

// Validate returns the node's per-interface validation as the API sent
// it (a result of null means "not used", which gophercloud's typed form
// would read as a failure).
func (c *Client) Validate(ctx context.Context, ident string) (map[string]map[string]any, error) {
	if err := c.negotiate(ctx); err != nil {
		return nil, err
	}
	r := nodes.Validate(ctx, c.sc, url.PathEscape(ident))
	if r.Err != nil {
		return nil, apiError(r.Err)
	}
	var out map[string]map[string]any
	return out, r.ExtractInto(&out)
}

// DeleteNode deletes a node.
func (c *Client) DeleteNode(ctx context.Context, ident string) error {
	if err := c.negotiate(ctx); err != nil {
		return err
	}
	return apiError(nodes.Delete(ctx, c.sc, url.PathEscape(ident)).ExtractErr())
}

// CreatePort creates a port for a node (name or UUID).
func (c *Client) CreatePort(ctx context.Context, mac, node string) (*Port, error) {
	n, err := c.GetNode(ctx, node)
	if err != nil {
		return nil, err
	}
	r := ports.Create(ctx, c.sc, ports.CreateOpts{Address: mac, NodeUUID: n.UUID})
	if r.Err != nil {
		return nil, apiError(r.Err)
	}
	doc, ok := r.Body.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("decode port: the answer is not a JSON object")
	}
	return portOf(doc)
}

func portOf(doc map[string]any) (*Port, error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("decode port: %w", err)
	}
	p := &Port{Raw: doc}
	if err := json.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("decode port: %w", err)
	}
	return p, nil
}

// ListPorts lists every port in detail, every page.
func (c *Client) ListPorts(ctx context.Context) ([]*Port, error) {
	if err := c.negotiate(ctx); err != nil {
		return nil, err
	}
	pages, err := ports.ListDetail(c.sc, nil).AllPages(ctx)
	if err != nil {
		return nil, apiError(err)
	}
	var docs []map[string]any
	if err := ports.ExtractPortsInto(pages, &docs); err != nil {
		return nil, fmt.Errorf("decode ports: %w", err)
	}
	out := make([]*Port, 0, len(docs))
	for _, d := range docs {
		p, err := portOf(d)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// DeletePort deletes a port by UUID.
func (c *Client) DeletePort(ctx context.Context, uuid string) error {
	if err := c.negotiate(ctx); err != nil {
		return err
	}
	return apiError(ports.Delete(ctx, c.sc, url.PathEscape(uuid)).ExtractErr())
}
