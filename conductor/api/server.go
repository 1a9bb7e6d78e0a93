// Package api is the conductor's REST API in Ironic's v1 dialect: version
// documents and microversion negotiation, nodes, ports, provision states,
// and the ramdisk endpoints (lookup, heartbeat), with Ironic's JSON shapes
// and error bodies. Handlers only decode, call the store or the provision
// engine, and encode; one function maps error classes to statuses.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/conductor/ironicjson"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/provision"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// Store is what the API needs of the store.
type Store interface {
	store.NodeReader
	store.NodeLocker
	HistoryReader
	CreateNode(ctx context.Context, n *store.Node) error
	CreatePort(ctx context.Context, p *store.Port) error
	DeletePort(ctx context.Context, uuid string) error
}

// Provisioner takes provision actions and validates nodes
// (provision.Provisioning). The API checks a request's shape and
// microversion; the Provisioner checks what the node's state allows.
type Provisioner interface {
	Provision(ctx context.Context, ident string, req provision.Request) error
	ManualClean(ctx context.Context, ident string, steps []wire.PlannedStep, disableRamdisk bool) error
	Service(ctx context.Context, ident string, steps []wire.PlannedStep, disableRamdisk bool) error
	ValidateNode(ctx context.Context, ident string) (map[string]provision.InterfaceValidation, error)
	DeleteNode(ctx context.Context, ident string) error
}

// PowerManager changes power states and boot devices (provision.Power).
type PowerManager interface {
	ChangePowerState(ctx context.Context, ident string, target power.State, timeout time.Duration) error
	SetNodeBootDevice(ctx context.Context, ident string, dev power.BootDevice, persistent bool) error
	NodeBootDevice(ctx context.Context, ident string) (power.BootDevice, bool, error)
	NodeSupportedBootDevices(ctx context.Context, ident string) ([]power.BootDevice, error)
}

// RamdiskEndpoints answers the deploy ramdisk's lookup and heartbeats
// (provision.Ramdisk).
type RamdiskEndpoints interface {
	Lookup(ctx context.Context, macs []string, nodeUUID string, withToken bool) (*store.Node, *string, error)
	// ReleaseToken takes back a token Lookup generated whose answer did
	// not reach the agent.
	ReleaseToken(ctx context.Context, nodeUUID, token string) error
	Heartbeat(ctx context.Context, ident string, hb wire.HeartbeatRequest) error
	HeartbeatTimeout() time.Duration
}

// Inspector takes the data an inspecting ramdisk posts
// (provision.Inspection).
type Inspector interface {
	ContinueInspection(ctx context.Context, nodeUUID string, data wire.InspectionData) (*store.Node, error)
}

// Drivers says which power drivers (hardware types) are enabled
// (provision.Engine).
type Drivers interface {
	HasDriver(name string) bool
	DriverNames() []string
}

// HostPathChecker checks the host paths a node names (deploy files,
// file:// image sources, its driver's files) when the API stores them, so
// that one outside the conductor's allowed directories is refused at once
// (provision.Provisioning: conductor/hostpath). prev is the node before
// the change, nil for a new node.
type HostPathChecker interface {
	CheckHostPaths(n, prev *store.Node) error
}

// PortUpdater is implemented by stores that can update a port in place
// (PATCH /v1/ports/{uuid}); without it the endpoint answers 501.
type PortUpdater interface {
	UpdatePort(ctx context.Context, p *store.Port) error
}

// Config configures the API.
type Config struct {
	Store       Store
	Provisioner Provisioner
	Power       PowerManager
	Ramdisk     RamdiskEndpoints
	Inspector   Inspector
	Drivers     Drivers
	// AgentLogs, when set, serves the Rivet routes of nodes' agent logs
	// (provision.AgentLogs).
	AgentLogs AgentLogReader
	// StreamsDone, when set, is closed when the conductor begins its
	// shutdown: streamed agent logs end then.
	StreamsDone <-chan struct{}
	// Hardware, when set, answers the BIOS, firmware, virtual media and
	// vendor passthru endpoints; without it they answer 501 (vendor
	// passthru: 400, no methods).
	Hardware NodeHardware
	// HostPaths, when set, checks the host paths of created and patched
	// nodes.
	HostPaths HostPathChecker
	// PublicURL is the base of links in documents; empty means the
	// request's own scheme and host.
	PublicURL string
	// Conductor is this conductor's host name.
	Conductor string
	// Images, when set, is served under /images/.
	Images http.Handler
	// AgentImages, when set, is served under /agent_images/: the
	// conductor's image cache (images.Cache).
	AgentImages http.Handler
	// Boot, when set, is served under /boot/: iPXE scripts and the deploy
	// kernel and ramdisk (boot.Handler).
	Boot http.Handler
	// Logger receives request errors (default slog.Default()).
	Logger *slog.Logger
}

// Server is the API's http.Handler.
type Server struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
}

// Body size caps. Provision requests may carry a config drive (up to
// 64 MiB once decoded, base64 on the wire).
const (
	maxBody          = 1 << 20
	maxProvisionBody = 96 << 20
)

// New returns the API handler.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	m := s.mux
	m.HandleFunc("GET /{$}", s.root)
	m.HandleFunc("GET /v1", s.versioned(s.v1))

	m.HandleFunc("GET /v1/nodes", s.versioned(s.listNodes(false)))
	m.HandleFunc("GET /v1/nodes/detail", s.versioned(s.listNodes(true)))
	m.HandleFunc("POST /v1/nodes", s.versioned(s.createNode))
	m.HandleFunc("GET /v1/nodes/{ident}", s.versioned(s.getNode))
	m.HandleFunc("PATCH /v1/nodes/{ident}", s.versioned(s.patchNode))
	m.HandleFunc("DELETE /v1/nodes/{ident}", s.versioned(s.deleteNode))
	m.HandleFunc("GET /v1/nodes/{ident}/states", s.versioned(s.nodeStates))
	m.HandleFunc("PUT /v1/nodes/{ident}/states/provision", s.versioned(s.setProvisionState))
	m.HandleFunc("GET /v1/nodes/{ident}/ports", s.versioned(s.nodePorts))
	m.HandleFunc("PUT /v1/nodes/{ident}/states/power", s.versioned(s.setPowerState))
	m.HandleFunc("GET /v1/nodes/{ident}/management/boot_device", s.versioned(s.getBootDevice))
	m.HandleFunc("PUT /v1/nodes/{ident}/management/boot_device", s.versioned(s.setBootDevice))
	m.HandleFunc("GET /v1/nodes/{ident}/management/boot_device/supported", s.versioned(s.supportedBootDevices))
	m.HandleFunc("PUT /v1/nodes/{ident}/maintenance", s.versioned(s.setMaintenance(true)))
	m.HandleFunc("DELETE /v1/nodes/{ident}/maintenance", s.versioned(s.setMaintenance(false)))
	m.HandleFunc("GET /v1/nodes/{ident}/validate", s.versioned(s.validateNode))
	m.HandleFunc("GET /v1/nodes/{ident}/history", s.versioned(s.nodeHistory))
	m.HandleFunc("GET /v1/nodes/{ident}/history/{event}", s.versioned(s.nodeHistoryEvent))
	m.HandleFunc("GET "+agentLogsPath, s.versioned(s.agentLogIndex))
	m.HandleFunc("GET "+agentLogsPath+"/live", s.versioned(s.agentLogLive))
	m.HandleFunc("GET "+agentLogsPath+"/{name}", s.versioned(s.agentLogArchive))
	m.HandleFunc("PUT /v1/nodes/{ident}/states/raid", s.versioned(s.setTargetRAID))
	m.HandleFunc("GET /v1/nodes/{ident}/traits", s.versioned(s.nodeTraits))
	m.HandleFunc("PUT /v1/nodes/{ident}/traits", s.versioned(s.nodeTraits))
	m.HandleFunc("DELETE /v1/nodes/{ident}/traits", s.versioned(s.nodeTraits))
	m.HandleFunc("PUT /v1/nodes/{ident}/traits/{trait}", s.versioned(s.nodeTraits))
	m.HandleFunc("DELETE /v1/nodes/{ident}/traits/{trait}", s.versioned(s.nodeTraits))
	m.HandleFunc("GET /v1/nodes/{ident}/bios", s.versioned(s.nodeBIOS))
	m.HandleFunc("GET /v1/nodes/{ident}/bios/{setting}", s.versioned(s.nodeBIOS))
	m.HandleFunc("GET /v1/nodes/{ident}/firmware", s.versioned(s.nodeFirmware))
	m.HandleFunc("GET /v1/nodes/{ident}/vmedia", s.versioned(s.nodeVMedia))
	m.HandleFunc("POST /v1/nodes/{ident}/vmedia", s.versioned(s.nodeVMedia))
	m.HandleFunc("DELETE /v1/nodes/{ident}/vmedia", s.versioned(s.nodeVMedia))
	m.HandleFunc("GET /v1/nodes/{ident}/vendor_passthru/methods", s.versioned(s.vendorMethods))
	m.HandleFunc("/v1/nodes/{ident}/vendor_passthru", s.versioned(s.vendorPassthru))

	m.HandleFunc("GET /v1/drivers", s.versioned(s.listDrivers))
	m.HandleFunc("GET /v1/drivers/{name}", s.versioned(s.getDriver))
	m.HandleFunc("GET /v1/drivers/{name}/properties", s.versioned(s.driverProperties))
	m.HandleFunc("GET /v1/drivers/{name}/raid/logical_disk_properties", s.versioned(s.driverRAIDProperties))
	m.HandleFunc("GET /v1/drivers/{name}/vendor_passthru/methods", s.versioned(s.driverVendorMethods))

	m.HandleFunc("GET /v1/ports", s.versioned(s.listPorts(false)))
	m.HandleFunc("GET /v1/ports/detail", s.versioned(s.listPorts(true)))
	m.HandleFunc("POST /v1/ports", s.versioned(s.createPort))
	m.HandleFunc("GET /v1/ports/{uuid}", s.versioned(s.getPort))
	m.HandleFunc("PATCH /v1/ports/{uuid}", s.versioned(s.patchPort))
	m.HandleFunc("DELETE /v1/ports/{uuid}", s.versioned(s.deletePort))

	m.HandleFunc("GET /v1/lookup", s.versioned(s.lookup))
	m.HandleFunc("POST /v1/heartbeat/{ident}", s.versioned(s.heartbeat))
	m.HandleFunc("POST /v1/continue_inspection", s.versioned(s.continueInspection))
	m.HandleFunc("GET /v1/nodes/{ident}/inventory", s.versioned(s.nodeInventory))

	if cfg.Images != nil {
		m.Handle("/images/", http.StripPrefix("/images", cfg.Images))
	}
	if cfg.AgentImages != nil {
		m.Handle("/agent_images/", http.StripPrefix("/agent_images", cfg.AgentImages))
	}
	if cfg.Boot != nil {
		m.Handle("/boot/", http.StripPrefix("/boot", cfg.Boot))
	}
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errNotFoundPath())
	})
	return s
}

// unversioned are the v1 resources also served without the /v1 prefix,
// as Ironic's root controller routes them (Metal3's Ironic-CR mode uses
// such an endpoint).
var unversioned = map[string]bool{"nodes": true, "ports": true, "drivers": true,
	"lookup": true, "heartbeat": true, "continue_inspection": true}

// V1Path maps an unversioned resource path ("/nodes/x") onto its /v1
// path; other paths are returned as they are.
func V1Path(p string) string {
	first, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	if unversioned[first] {
		return "/v1" + p
	}
	return p
}

// ServeHTTP routes a request: an unversioned resource path goes to its v1
// route, and a trailing slash is ignored as pecan does (except under the
// file trees /images/, /agent_images/ and /boot/).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := V1Path(r.URL.Path)
	if len(p) > 1 && strings.HasSuffix(p, "/") && strings.HasPrefix(p, "/v1") {
		p = strings.TrimRight(p, "/")
	}
	// A client waits for the request's writes: the store commits them
	// before the engine's background work (store.Urgent).
	ctx := store.Urgent(r.Context())
	in := r
	if p != r.URL.Path {
		r = r.Clone(ctx)
		r.URL.Path = p
		r.URL.RawPath = ""
	} else {
		r = r.WithContext(ctx)
	}
	s.mux.ServeHTTP(w, r)
	// Like a ServeMux, leave the matched pattern on the request it was
	// handed, for the handlers around this one (the metrics' routes).
	in.Pattern = r.Pattern
}

// baseURL is the public base URL for links.
func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return strings.TrimSuffix(s.cfg.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) opts(r *http.Request, v version) ironicjson.Options {
	return ironicjson.Options{BaseURL: s.baseURL(r), Minor: v.minor, Conductor: s.cfg.Conductor}
}

// root serves GET /: the version document.
func (s *Server) root(w http.ResponseWriter, r *http.Request) {
	v := s.versionDoc(r)
	writeJSON(w, http.StatusOK, wire.RootDocument{
		Name:           "OpenStack Ironic API",
		Description:    "Ironic is an OpenStack project which enables the provision and management of baremetal machines.",
		DefaultVersion: v,
		Versions:       []wire.APIVersion{v},
	})
}

func (s *Server) versionDoc(r *http.Request) wire.APIVersion {
	return wire.APIVersion{
		ID:         "v1",
		Links:      []wire.Link{{Href: s.baseURL(r) + "/v1/", Rel: "self"}},
		Status:     "CURRENT",
		MinVersion: minVersion.String(),
		Version:    maxVersion.String(),
	}
}

// v1 serves GET /v1: the v1 document with its resource links.
func (s *Server) v1(w http.ResponseWriter, r *http.Request, v version) {
	base := s.baseURL(r)
	res := func(name string) []wire.Link {
		return []wire.Link{{Href: base + "/v1/" + name + "/", Rel: "self"}, {Href: base + "/" + name + "/", Rel: "bookmark"}}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": "v1",
		"links": []wire.Link{
			{Href: base + "/v1/", Rel: "self"},
			{Href: "https://docs.openstack.org/ironic/latest/contributor/webapi.html", Rel: "describedby", Type: "text/html"},
		},
		"media_types": map[string]string{"base": "application/json", "type": "application/vnd.openstack.ironic.v1+json"},
		"nodes":       res("nodes"),
		"ports":       res("ports"),
		"drivers":     res("drivers"),
		"lookup":      res("lookup"),
		"heartbeat":   res("heartbeat"),
		"version":     s.versionDoc(r),
	})
}
