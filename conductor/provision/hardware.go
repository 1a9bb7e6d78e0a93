package provision

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/hardwaretype"
	"github.com/rivetmetal/rivet/conductor/power"
)

// Hardware answers what a node's BMC keeps beyond power and boot devices
// — BIOS settings, firmware versions, virtual media, event subscriptions —
// through the node's bios, firmware, management and vendor interfaces:
// the "redfish" implementations read and change them on the BMC, the
// no-op ones ("no-bios", "no-firmware", "fake") have none. Each call is
// synchronous and bounded by BMCTimeout, so that clients with a 30 s
// timeout (Metal3) get an answer.
type Hardware struct {
	machines *machines
	log      *slog.Logger
}

// BMCTimeout bounds each synchronous call to a BMC made for the API.
const BMCTimeout = 25 * time.Second

// errUnsupported is Ironic's UnsupportedDriverExtension.
func errUnsupported(driver, extension string) error {
	return errdefs.InvalidArgument("Driver %s does not support %s (disabled or not implemented).", driver, extension)
}

// iface is the node's implementation of an interface kind.
func (t *target) iface(kind string) string {
	return hardwaretype.Of(t.node.Driver, t.node.Interfaces)[hardwaretype.Field(kind)]
}

// overRedfish says whether an interface implementation talks Redfish to
// the BMC: Ironic's "redfish" ones and iDRAC's (the idrac hardware type
// runs over the redfish driver).
func overRedfish(impl string) bool { return impl == "redfish" || impl == "idrac-redfish" }

// BIOSSettings reads a node's BIOS settings (GET /v1/nodes/{id}/bios):
// from the BMC with bios_interface "redfish" or "idrac-redfish", none
// otherwise.
func (h *Hardware) BIOSSettings(ctx context.Context, ident string) ([]power.BIOSSetting, error) {
	t, err := h.machines.load(ctx, ident)
	if err != nil {
		return nil, err
	}
	r, ok := t.drv.(power.BIOSReader)
	if !overRedfish(t.iface("bios")) || !ok {
		return []power.BIOSSetting{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, BMCTimeout)
	defer cancel()
	s, err := r.BIOSSettings(ctx, t.powerNode())
	if err != nil {
		return nil, fmt.Errorf("node %s: read BIOS settings: %w", t.node.UUID, err)
	}
	slices.SortFunc(s, func(a, b power.BIOSSetting) int { return strings.Compare(a.Name, b.Name) })
	return s, nil
}

// FirmwareComponents reads a node's firmware versions (GET
// /v1/nodes/{id}/firmware): from the BMC with firmware_interface
// "redfish", none otherwise.
func (h *Hardware) FirmwareComponents(ctx context.Context, ident string) ([]power.FirmwareComponent, error) {
	t, err := h.machines.load(ctx, ident)
	if err != nil {
		return nil, err
	}
	r, ok := t.drv.(power.FirmwareReader)
	if !overRedfish(t.iface("firmware")) || !ok {
		return []power.FirmwareComponent{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, BMCTimeout)
	defer cancel()
	c, err := r.FirmwareComponents(ctx, t.powerNode())
	if err != nil {
		return nil, fmt.Errorf("node %s: read firmware components: %w", t.node.UUID, err)
	}
	return c, nil
}

// virtualMedia returns the node's virtual media driver: its management
// interface must be "redfish" and its driver able to.
func (h *Hardware) virtualMedia(ctx context.Context, ident string) (*target, power.VirtualMediaDriver, error) {
	t, err := h.machines.load(ctx, ident)
	if err != nil {
		return nil, nil, err
	}
	vm, ok := t.drv.(power.VirtualMediaDriver)
	if !overRedfish(t.iface("management")) || !ok {
		return nil, nil, errUnsupported(t.node.Driver, "virtual media")
	}
	return t, vm, nil
}

// VirtualMedia lists a node's virtual media devices (GET
// /v1/nodes/{id}/vmedia, 1.93).
func (h *Hardware) VirtualMedia(ctx context.Context, ident string) ([]power.VirtualMedia, error) {
	t, vm, err := h.virtualMedia(ctx, ident)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, BMCTimeout)
	defer cancel()
	l, err := vm.VirtualMedia(ctx, t.powerNode())
	if err != nil {
		return nil, fmt.Errorf("node %s: list virtual media: %w", t.node.UUID, err)
	}
	return l, nil
}

// AttachVirtualMedia inserts an image into a node's virtual media device
// of a type (POST /v1/nodes/{id}/vmedia, 1.89), unless an operation owns
// the node.
func (h *Hardware) AttachVirtualMedia(ctx context.Context, ident, deviceType, imageURL string) error {
	t, vm, err := h.virtualMedia(ctx, ident)
	if err != nil {
		return err
	}
	if err := lockedByOperation(t.node); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, BMCTimeout)
	defer cancel()
	if err := vm.InsertMedia(ctx, t.powerNode(), deviceType, imageURL); err != nil {
		return fmt.Errorf("node %s: attach virtual media: %w", t.node.UUID, err)
	}
	h.log.Info("virtual media attached", "node", t.node.UUID, "device_type", deviceType)
	return nil
}

// DetachVirtualMedia ejects the images of a node's virtual media devices
// of the types (all when none; DELETE /v1/nodes/{id}/vmedia).
func (h *Hardware) DetachVirtualMedia(ctx context.Context, ident string, deviceTypes []string) error {
	t, vm, err := h.virtualMedia(ctx, ident)
	if err != nil {
		return err
	}
	if err := lockedByOperation(t.node); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, BMCTimeout)
	defer cancel()
	if err := vm.EjectMedia(ctx, t.powerNode(), deviceTypes); err != nil {
		return fmt.Errorf("node %s: detach virtual media: %w", t.node.UUID, err)
	}
	h.log.Info("virtual media detached", "node", t.node.UUID, "device_types", deviceTypes)
	return nil
}

// VendorMethod describes a vendor passthru method (GET
// /v1/nodes/{id}/vendor_passthru/methods).
type VendorMethod struct {
	HTTPMethods []string
	Async       bool
	Description string
	Attach      bool
	RequireLock bool
}

// redfishVendorMethods are the redfish vendor interface's methods.
var redfishVendorMethods = map[string]VendorMethod{
	"create_subscription":   {HTTPMethods: []string{"POST"}, Description: "Creates a subscription on a node. Required argument: a dictionary of {'destination': 'destination_url'}"},
	"delete_subscription":   {HTTPMethods: []string{"DELETE"}, Description: "Delete a subscription on a node. Required argument: a dictionary of {'id': 'subscription_bmc_id'}"},
	"get_all_subscriptions": {HTTPMethods: []string{"GET"}, Description: "Returns all subscriptions on the node."},
	"get_subscription":      {HTTPMethods: []string{"GET"}, Description: "Get a subscription on the node. Required argument: a dictionary of {'id': 'subscription_bmc_id'}"},
}

// VendorMethods lists a node's vendor passthru methods.
func (h *Hardware) VendorMethods(ctx context.Context, ident string) (map[string]VendorMethod, error) {
	t, err := h.machines.load(ctx, ident)
	if err != nil {
		return nil, err
	}
	if _, ok := t.drv.(power.EventSubscriber); ok && overRedfish(t.iface("vendor")) {
		return redfishVendorMethods, nil
	}
	return map[string]VendorMethod{}, nil
}

// VendorPassthru calls a vendor method of a node (POST/GET/DELETE
// /v1/nodes/{id}/vendor_passthru?method=…): the redfish vendor
// interface's event subscription methods. args is the request body.
func (h *Hardware) VendorPassthru(ctx context.Context, ident, method, httpMethod string, args map[string]any) (any, error) {
	t, err := h.machines.load(ctx, ident)
	if err != nil {
		return nil, err
	}
	es, ok := t.drv.(power.EventSubscriber)
	m, known := redfishVendorMethods[method]
	if !ok || !overRedfish(t.iface("vendor")) || !known {
		return nil, errdefs.InvalidArgument("Unsupported method (%s) passed through to vendor extension of node %s.", method, t.node.UUID)
	}
	if !slices.Contains(m.HTTPMethods, httpMethod) {
		return nil, errdefs.InvalidArgument("Unsupported HTTP method %s for passthru method %s. Supported methods are %v.", httpMethod, method, m.HTTPMethods)
	}
	ctx, cancel := context.WithTimeout(ctx, BMCTimeout)
	defer cancel()
	pn := t.powerNode()
	str := func(k string) string { s, _ := args[k].(string); return s }
	switch method {
	case "create_subscription":
		sub, err := subscriptionArgs(args)
		if err != nil {
			return nil, err
		}
		got, err := es.CreateSubscription(ctx, pn, sub)
		if err != nil {
			return nil, fmt.Errorf("node %s: create event subscription: %w", t.node.UUID, err)
		}
		h.log.Info("event subscription created", "node", t.node.UUID, "id", got.ID)
		return subscriptionDoc(got), nil
	case "delete_subscription", "get_subscription":
		id := str("id")
		if id == "" {
			return nil, errdefs.InvalidArgument("The 'id' argument is required for %s.", method)
		}
		if method == "delete_subscription" {
			if err := es.DeleteSubscription(ctx, pn, id); err != nil {
				return nil, fmt.Errorf("node %s: delete event subscription %s: %w", t.node.UUID, id, err)
			}
			h.log.Info("event subscription deleted", "node", t.node.UUID, "id", id)
			return nil, nil
		}
		fallthrough
	default:
		subs, err := es.Subscriptions(ctx, pn)
		if err != nil {
			return nil, fmt.Errorf("node %s: list event subscriptions: %w", t.node.UUID, err)
		}
		if method == "get_subscription" {
			for _, s := range subs {
				if s.ID == str("id") {
					return subscriptionDoc(s), nil
				}
			}
			return nil, errdefs.NotFound("Subscription %s could not be found on node %s.", str("id"), t.node.UUID)
		}
		docs := make([]map[string]any, len(subs))
		for i, s := range subs {
			docs[i] = subscriptionDoc(s)
		}
		return map[string]any{"@odata.type": "#EventDestinationCollection.EventDestinationCollection",
			"Members": docs, "Members@odata.count": len(docs), "Name": "Event Subscriptions Collection"}, nil
	}
}

// subscriptionArgs reads create_subscription's arguments, in the Redfish
// spelling Metal3 uses (Destination, Context, HttpHeaders as a list of
// one-key objects, EventTypes, Protocol) or Ironic's lower-case one.
func subscriptionArgs(args map[string]any) (power.EventSubscription, error) {
	get := func(keys ...string) any {
		for _, k := range keys {
			if v, ok := args[k]; ok {
				return v
			}
		}
		return nil
	}
	var sub power.EventSubscription
	dest, _ := get("Destination", "destination").(string)
	if dest == "" {
		return sub, errdefs.InvalidArgument("The 'Destination' argument is required to create a subscription.")
	}
	sub.Destination = dest
	sub.Context, _ = get("Context", "context").(string)
	sub.Protocol, _ = get("Protocol", "protocol").(string)
	if sub.Protocol == "" {
		sub.Protocol = "Redfish"
	}
	if l, ok := get("EventTypes", "event_types").([]any); ok {
		for _, e := range l {
			s, ok := e.(string)
			if !ok {
				return sub, errdefs.InvalidArgument("EventTypes must be a list of strings.")
			}
			sub.EventTypes = append(sub.EventTypes, s)
		}
	}
	switch hs := get("HttpHeaders", "http_headers").(type) {
	case nil:
	case []any:
		sub.HTTPHeaders = map[string]string{}
		for _, e := range hs {
			m, ok := e.(map[string]any)
			if !ok {
				return sub, errdefs.InvalidArgument("HttpHeaders must be a list of objects.")
			}
			for k, v := range m {
				s, ok := v.(string)
				if !ok {
					return sub, errdefs.InvalidArgument("HttpHeaders values must be strings.")
				}
				sub.HTTPHeaders[k] = s
			}
		}
	case map[string]any:
		sub.HTTPHeaders = map[string]string{}
		for k, v := range hs {
			s, ok := v.(string)
			if !ok {
				return sub, errdefs.InvalidArgument("HttpHeaders values must be strings.")
			}
			sub.HTTPHeaders[k] = s
		}
	default:
		return sub, errdefs.InvalidArgument("HttpHeaders must be a list of objects.")
	}
	return sub, nil
}

// subscriptionDoc is a subscription as Ironic's redfish vendor passthru
// returns it (the headers, which may carry secrets, are never returned).
func subscriptionDoc(s power.EventSubscription) map[string]any {
	types := s.EventTypes
	if types == nil {
		types = []string{}
	}
	return map[string]any{"Id": s.ID, "Destination": s.Destination, "Context": s.Context,
		"Protocol": s.Protocol, "EventTypes": types}
}
