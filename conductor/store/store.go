// Package store defines the conductor's persistent model (nodes, ports and
// node history) and the storage interface behind which the embedded SQLite
// store and PostgreSQL sit. Every provision-state change happens under a node
// lock, inside one transaction, through Node.Advance.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/rivetmetal/rivet/conductor/statemachine"
)

// Node is a bare-metal node. The JSON-valued fields hold Ironic's free-form
// dictionaries; nil and empty maps are equivalent.
type Node struct {
	// ID is the store's internal key (Ironic's "id").
	ID   int64
	UUID string
	// Name is the optional unique logical name; "" means none.
	Name   string
	Driver string

	// ProvisionState and TargetProvisionState change only through Advance
	// (and are set to enroll by CreateNode).
	ProvisionState       statemachine.State
	TargetProvisionState statemachine.State
	// ProvisionUpdatedAt is the time of the last provision-state change or
	// Touch; zero when never set.
	ProvisionUpdatedAt time.Time

	PowerState       string
	TargetPowerState string

	Maintenance       bool
	MaintenanceReason string
	LastError         string
	InstanceUUID      string
	ResourceClass     string
	Description       string
	Owner             string

	InstanceInfo       map[string]any
	DriverInfo         map[string]any
	DriverInternalInfo map[string]any
	Properties         map[string]any
	Extra              map[string]any
	// DeployStep is the deploy step in progress ({} when none).
	DeployStep map[string]any
	// NodeAttributes are the fields of later API versions, stored
	// together (see NodeAttributes).
	NodeAttributes

	CreatedAt time.Time
	// UpdatedAt is zero until the first update.
	UpdatedAt time.Time
}

// Advance applies event ev to the node's provision state: it is the one
// function that sets ProvisionState and TargetProvisionState, together, and
// it stamps ProvisionUpdatedAt.
func (n *Node) Advance(ev statemachine.Event, now time.Time) (statemachine.Move, error) {
	m, err := statemachine.Step(n.ProvisionState, n.TargetProvisionState, ev)
	if err != nil {
		return m, fmt.Errorf("node %s: %w", n.UUID, err)
	}
	n.ProvisionState = m.To
	n.TargetProvisionState = m.Target
	n.ProvisionUpdatedAt = now.UTC()
	return m, nil
}

// Touch records provisioning progress without a state change (Ironic's
// touch_provisioning), which resets the callback timeout.
func (n *Node) Touch(now time.Time) { n.ProvisionUpdatedAt = now.UTC() }

// InitNew sets what a store sets on a node it creates: a UUID when none
// was given, provision state enroll with no target, created at now (in the
// store's precision), never updated.
func (n *Node) InitNew(now time.Time) {
	if n.UUID == "" {
		n.UUID = uuid.NewString()
	}
	n.ProvisionState = statemachine.Enroll
	n.TargetProvisionState = statemachine.NoState
	n.CreatedAt = now
	n.UpdatedAt = time.Time{}
}

// InternalString returns driver_internal_info[key] as a string ("" when
// absent or not a string).
func (n *Node) InternalString(key string) string {
	s, _ := n.DriverInternalInfo[key].(string)
	return s
}

// SetInternal sets driver_internal_info[key]; a nil value deletes the key.
func (n *Node) SetInternal(key string, v any) {
	if v == nil {
		delete(n.DriverInternalInfo, key)
		return
	}
	if n.DriverInternalInfo == nil {
		n.DriverInternalInfo = map[string]any{}
	}
	n.DriverInternalInfo[key] = v
}

// CleanStep returns the clean step the node is on: the entry of
// driver_internal_info.clean_steps at clean_step_index ({} when the node is
// not cleaning). It is what Ironic shows as node.clean_step.
func (n *Node) CleanStep() map[string]any { return n.currentStep("clean") }

// ServiceStep returns the service step the node is on: the entry of
// driver_internal_info.service_steps at service_step_index ({} when the
// node is not being serviced). It is what Ironic shows as
// node.service_step.
func (n *Node) ServiceStep() map[string]any { return n.currentStep("service") }

// currentStep is the entry of <kind>_steps at <kind>_step_index.
func (n *Node) currentStep(kind string) map[string]any {
	steps, _ := n.DriverInternalInfo[kind+"_steps"].([]any)
	var i int
	switch x := n.DriverInternalInfo[kind+"_step_index"].(type) {
	case int:
		i = x
	case int64:
		i = int(x)
	case float64:
		if x != float64(int(x)) {
			return map[string]any{}
		}
		i = int(x)
	default:
		return map[string]any{}
	}
	if i < 0 || i >= len(steps) {
		return map[string]any{}
	}
	step, ok := steps[i].(map[string]any)
	if !ok {
		return map[string]any{}
	}
	return step
}

// Port is a NIC of a node, identified by its MAC address.
type Port struct {
	ID     int64
	UUID   string
	NodeID int64
	// NodeUUID is filled in by reads.
	NodeUUID string
	// Address is the normalised (lower-case, colon-separated) MAC.
	Address             string
	PXEEnabled          bool
	PhysicalNetwork     string
	Extra               map[string]any
	LocalLinkConnection map[string]any
	InternalInfo        map[string]any
	// PortAttributes are the fields of later API versions (name,
	// description, vendor, category).
	PortAttributes
	CreatedAt time.Time
	UpdatedAt time.Time
}

// InitNew sets what a store sets on a port it creates: a UUID when none
// was given, the MAC address in lower case, created at now (in the store's
// precision).
func (p *Port) InitNew(now time.Time) {
	if p.UUID == "" {
		p.UUID = uuid.NewString()
	}
	p.Address = strings.ToLower(p.Address)
	p.CreatedAt = now
}

// NodeFilter selects nodes in ListNodes; zero fields do not filter.
type NodeFilter struct {
	ProvisionState statemachine.State
	Driver         string
	// Maintenance filters on the flag when non-nil.
	Maintenance *bool
	// ProvisionUpdatedBefore, when set, selects the nodes whose
	// provision_updated_at is unset or earlier. Stores may compare at
	// millisecond precision: a caller that needs the exact instant checks
	// the nodes returned again.
	ProvisionUpdatedBefore time.Time
}

// PortFilter selects ports in ListPorts; zero fields do not filter.
type PortFilter struct {
	NodeID  int64
	Address string
}

// NodeReader reads nodes and ports.
type NodeReader interface {
	// GetNode finds a node by UUID or name (errdefs.ErrNotFound if none).
	GetNode(ctx context.Context, ident string) (*Node, error)
	// ListNodes returns the matching nodes ordered by ID.
	ListNodes(ctx context.Context, f NodeFilter) ([]*Node, error)
	// NodeByMACs returns the one node owning ports with any of the
	// addresses (errdefs.ErrNotFound if none or if they span nodes).
	NodeByMACs(ctx context.Context, macs []string) (*Node, error)
	// GetPort finds a port by UUID.
	GetPort(ctx context.Context, uuid string) (*Port, error)
	// ListPorts returns the matching ports ordered by ID.
	ListPorts(ctx context.Context, f PortFilter) ([]*Port, error)
}

// Fence is the node lease a conductor's work on a node is done under:
// the conductor (its name in the cluster) and the lease's generation,
// which changes whenever the lease changes hands (conductor/cluster). A
// transaction checked against a fence commits only while that conductor
// still holds the lease, unexpired, with that generation, so a conductor
// that lost a node (paused past its lease, then resumed) writes nothing to
// it. The zero Fence is that of a conductor that runs alone.
type Fence struct {
	Owner      string
	Generation int64
}

// IsZero reports whether f is the zero Fence.
func (f Fence) IsZero() bool { return f == Fence{} }

// ErrFenced is returned (wrapped) by Tx.CheckFence when the lease is no
// longer held as the fence says; the transaction is then rolled back.
var ErrFenced = errors.New("node lease no longer held")

// Tx is a transaction on one locked node.
type Tx interface {
	// Node is the locked node, freshly read; changes made to it are saved
	// when the transaction commits.
	Node() *Node
	// CheckFence checks, inside the transaction, that the node's lease is
	// still held as f says, and keeps it so until the transaction ends: a
	// lease cannot change hands between the check and the commit. It
	// returns an error wrapping ErrFenced when the lease is gone. A store
	// only one conductor uses (SQLite) has no leases to check.
	CheckFence(ctx context.Context, f Fence) error
	// Ports lists the node's ports.
	Ports(ctx context.Context) ([]*Port, error)
	// DeleteNode deletes the node and its ports on commit.
	DeleteNode(ctx context.Context) error
	// AddHistory records an event of the node, saved when the
	// transaction commits (even if the node itself did not change) and
	// dropped with it when it rolls back.
	AddHistory(ev HistoryEvent)
}

// NodeLocker runs changes to one node under its exclusive lock.
type NodeLocker interface {
	// WithNodeLock takes the node's lock (waiting for it, bounded by ctx),
	// opens a transaction, reads the node and calls fn. If fn returns nil,
	// the node (when changed) is saved and the transaction committed;
	// otherwise it is rolled back and fn's error returned as is.
	WithNodeLock(ctx context.Context, ident string, fn func(Tx) error) error
}

// CommittedNodeLocker is implemented by stores that keep the nodes they
// commit as read-only snapshots: WithNodeLockCommitted is WithNodeLock
// that also returns, when the transaction saved the node, the node as
// committed, shared with the store's other readers (nil when nothing was
// saved). It must never be modified; a change feed publishes it instead of
// a copy of its own.
type CommittedNodeLocker interface {
	WithNodeLockCommitted(ctx context.Context, ident string, fn func(Tx) error) (*Node, error)
}

// NodeViewer is implemented by stores that keep read-only snapshots of
// their nodes: ViewNode calls fn with the node ident names (as GetNode
// finds it), shared with the store's other readers instead of copied. fn
// must neither modify the node nor keep it, or anything it holds, past its
// return.
type NodeViewer interface {
	ViewNode(ctx context.Context, ident string, fn func(*Node) error) error
}

// ViewNode calls fn with the node ident names: r's shared snapshot when r
// is a NodeViewer, else a copy GetNode reads for the call. fn is bound by
// NodeViewer's rules either way.
func ViewNode(ctx context.Context, r NodeReader, ident string, fn func(*Node) error) error {
	if v, ok := r.(NodeViewer); ok {
		return v.ViewNode(ctx, ident, fn)
	}
	n, err := r.GetNode(ctx, ident)
	if err != nil {
		return err
	}
	return fn(n)
}

// urgentKey marks a context whose writes a client waits for.
type urgentKey struct{}

// Urgent returns ctx marked as carrying writes a client waits for (an API
// request: an agent's lookup, an operator's change), which a store that
// queues its writes commits before the others (the engine's background
// work). It changes no outcome, only the order of commits.
func Urgent(ctx context.Context) context.Context { return context.WithValue(ctx, urgentKey{}, true) }

// IsUrgent reports whether ctx was marked by Urgent.
func IsUrgent(ctx context.Context) bool {
	u, _ := ctx.Value(urgentKey{}).(bool)
	return u
}

// NodeNamer is implemented by stores that can name the node owning ports
// with any of a set of MAC addresses without reading the node: a caller
// that goes on to lock the node (a lookup handing out a token) then reads
// it once, in its transaction.
type NodeNamer interface {
	// NodeUUIDByMACs is NodeByMACs answering with the node's UUID.
	NodeUUIDByMACs(ctx context.Context, macs []string) (string, error)
}

// NodeUUIDByMACs returns the UUID of the one node owning ports with any
// of the addresses (errdefs.ErrNotFound if none or if they span nodes),
// without reading the node when r is a NodeNamer.
func NodeUUIDByMACs(ctx context.Context, r NodeReader, macs []string) (string, error) {
	if nn, ok := r.(NodeNamer); ok {
		return nn.NodeUUIDByMACs(ctx, macs)
	}
	n, err := r.NodeByMACs(ctx, macs)
	if err != nil {
		return "", err
	}
	return n.UUID, nil
}

// PortUpdater is implemented by stores that update ports in place:
// UpdatePort saves a port's node (NodeID), address, PXE flag, physical
// network, dictionaries and attributes (found by UUID), stamps UpdatedAt
// and reads the port back. The address must be unused by other ports.
type PortUpdater interface {
	UpdatePort(ctx context.Context, p *Port) error
}

// Store is the whole storage interface.
type Store interface {
	NodeReader
	NodeLocker
	HistoryStore
	// CreateNode inserts a node in enroll; it fills ID, UUID (when empty)
	// and the timestamps.
	CreateNode(ctx context.Context, n *Node) error
	// CreatePort inserts a port; it fills ID, UUID (when empty) and the
	// timestamps. The node must exist; the address must be unused.
	CreatePort(ctx context.Context, p *Port) error
	// DeletePort deletes a port by UUID.
	DeletePort(ctx context.Context, uuid string) error
	// Close releases the store.
	Close() error
}
