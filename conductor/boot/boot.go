// Package boot is the conductor's network boot interface for nodes that
// boot the deploy ramdisk through their firmware (ipmi, redfish): it
// serves an iPXE script per node MAC that loads the deploy kernel and
// initramfs with the agent's kernel parameters (ipa-api-url, BOOTIF) after
// the node's kernel_append_params (instance_info, then driver_info, as in
// Ironic; "%default%" stands for Config.KernelParams), and serves those
// two files over HTTP. A node that is not being provisioned
// gets a script that exits, so the firmware moves on to the local disk.
//
// Routes, relative to where the handler is mounted (/boot/ on the API):
//
//	GET boot.ipxe                   chains to ${mac}.ipxe (point DHCP's iPXE filename here)
//	GET {mac}.ipxe                  the node's script (aa:bb:cc:dd:ee:ff, dashes, or 01-… pxelinux form)
//	GET {uuid}/deploy_kernel        the node's deploy kernel
//	GET {uuid}/deploy_ramdisk       the node's deploy initramfs
//	GET firmware/{file}             Config.Firmware: network boot programs (UEFI HTTP boot)
package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"unicode"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/hostpath"
	"github.com/rivetmetal/rivet/conductor/images"
	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
)

// Nodes is what the handler reads of the store.
type Nodes interface {
	GetNode(ctx context.Context, ident string) (*store.Node, error)
	NodeByMACs(ctx context.Context, macs []string) (*store.Node, error)
}

// DefaultKernelParams are the parameters put before the agent's own, as
// Ironic's [pxe]kernel_append_params default.
var DefaultKernelParams = []string{"nofb", "nomodeset", "vga=normal"}

// Config configures the handler.
type Config struct {
	// Nodes finds nodes by MAC and UUID (required).
	Nodes Nodes
	// APIURL is the conductor API URL as nodes reach it (ipa-api-url);
	// empty means the base URL the script was requested from.
	APIURL string
	// BaseURL is the URL this handler is reachable at by nodes (e.g.
	// http://10.0.0.1:6385/boot); empty means the requested scheme, host
	// and "/boot".
	BaseURL string
	// DeployKernel and DeployRamdisk are the files (or http(s) URLs) used
	// when a node's driver_info has no deploy_kernel / deploy_ramdisk.
	// They are the operator's and served as they are.
	DeployKernel, DeployRamdisk string
	// Files opens the deploy files a node's driver_info names (paths or
	// file:// URLs), confined to the allowed directories; nil serves
	// none of them (only the conductor's defaults and http(s) URLs).
	Files *hostpath.Confiner
	// KernelParams come before the agent's parameters (nil means
	// DefaultKernelParams).
	KernelParams []string
	// Firmware, when set, serves the network boot programs (iPXE
	// binaries) under firmware/ for UEFI HTTP boot (conductor/netboot).
	Firmware http.Handler
	// Logger receives request logs (default slog.Default()).
	Logger *slog.Logger
}

// Handler serves iPXE scripts and deploy ramdisk files.
type Handler struct {
	cfg Config
	mux *http.ServeMux
}

// New returns a handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Nodes == nil {
		return nil, errors.New("boot: no node reader")
	}
	if cfg.KernelParams == nil {
		cfg.KernelParams = DefaultKernelParams
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /boot.ipxe", h.chain)
	h.mux.HandleFunc("GET /{script}", h.script)
	h.mux.HandleFunc("GET /{uuid}/{file}", h.file)
	if cfg.Firmware != nil {
		// More specific than {uuid}/{file}, so it wins for firmware/*.
		h.mux.Handle("GET /firmware/{file}", http.StripPrefix("/firmware", cfg.Firmware))
	}
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) base(r *http.Request) string {
	if h.cfg.BaseURL != "" {
		return strings.TrimSuffix(h.cfg.BaseURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/boot"
}

func writeScript(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(s))
}

// chain serves boot.ipxe: fetch the per-MAC script, or fall through to the
// next boot device when there is none.
func (h *Handler) chain(w http.ResponseWriter, r *http.Request) {
	writeScript(w, "#!ipxe\n"+
		"# Rivet: load this machine's script by its MAC; without one, boot the next device.\n"+
		"chain "+h.base(r)+"/${mac}.ipxe || exit\n")
}

var macRE = regexp.MustCompile(`^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$`)

// ParseMAC reads a MAC in colon, dash or pxelinux ("01-" prefixed) form
// and returns it lower-case with colons.
func ParseMAC(s string) (string, bool) {
	s = strings.ToLower(s)
	if len(s) == 20 && strings.HasPrefix(s, "01-") {
		s = s[3:]
	}
	m := macRE.FindStringSubmatch(s)
	if m == nil {
		return "", false
	}
	return strings.Join(m[1:], ":"), true
}

// script serves {mac}.ipxe.
func (h *Handler) script(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("script"), ".ipxe")
	mac, valid := ParseMAC(name)
	if !ok || !valid {
		http.NotFound(w, r)
		return
	}
	n, err := h.cfg.Nodes.NodeByMACs(r.Context(), []string{mac})
	if err != nil {
		if !errors.Is(err, errdefs.ErrNotFound) {
			h.cfg.Logger.Error("boot script: node lookup failed", "mac", mac, "error", err)
			http.Error(w, "node lookup failed", http.StatusInternalServerError)
			return
		}
		h.cfg.Logger.Info("boot script requested by an unknown MAC", "mac", mac)
		http.NotFound(w, r)
		return
	}
	s, err := h.Script(n, mac, h.base(r))
	if err != nil {
		h.cfg.Logger.Error("boot script failed", "node", n.UUID, "error", err)
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	h.cfg.Logger.Info("serving boot script", "node", n.UUID, "mac", mac, "provision_state", string(n.ProvisionState))
	writeScript(w, s)
}

// Script renders the iPXE script of node n booting from the NIC with MAC
// mac; base is the URL this handler is reachable at by the node. A node
// outside the ramdisk states (deploying, cleaning, inspecting, rescuing
// and their waits) gets a script that exits to the next boot device.
func (h *Handler) Script(n *store.Node, mac, base string) (string, error) {
	if !statemachine.LookupAllowed[n.ProvisionState] {
		return fmt.Sprintf("#!ipxe\n# Rivet: node %s is %s, not being provisioned: boot the next device (the local disk).\nexit\n",
			n.UUID, n.ProvisionState), nil
	}
	kernel, ramdisk, err := h.files(n)
	if err != nil {
		return "", err
	}
	kURL, rURL := fileURL(base, n.UUID, "deploy_kernel", kernel), fileURL(base, n.UUID, "deploy_ramdisk", ramdisk)
	api := h.cfg.APIURL
	if api == "" {
		api = strings.TrimSuffix(base, "/boot")
	}
	extraParams, err := h.kernelParams(n)
	if err != nil {
		return "", err
	}
	params := append([]string{"selinux=0", "troubleshoot=0", "text"}, extraParams...)
	params = append(params, "ipa-api-url="+api, "BOOTIF="+mac)
	// Parameters the engine needs for this boot beyond those two (e.g.
	// the inspection callback URL), recorded while the ramdisk boots.
	if extra, ok := n.DriverInternalInfo["ramdisk_kernel_params"].([]any); ok {
		for _, p := range extra {
			if s, ok := p.(string); ok && s != "" && !strings.ContainsAny(s, " \n") {
				params = append(params, s)
			}
		}
	}
	params = append(params, "initrd=deploy_ramdisk")
	var b strings.Builder
	fmt.Fprintf(&b, "#!ipxe\n# Rivet deploy ramdisk for node %s\n", n.UUID)
	fmt.Fprintf(&b, "kernel --name deploy_kernel %s %s || goto fail\n", kURL, strings.Join(params, " "))
	fmt.Fprintf(&b, "initrd --name deploy_ramdisk %s || goto fail\n", rURL)
	b.WriteString("boot\n:fail\necho Rivet: loading the deploy ramdisk failed; retrying in 10 seconds\nsleep 10\nreboot\n")
	return b.String(), nil
}

// kernelParams are the parameters that come before the agent's own: the
// node's kernel_append_params, read from instance_info and then
// driver_info as Ironic does ("%default%" in it stands for the configured
// defaults), else the configured defaults.
func (h *Handler) kernelParams(n *store.Node) ([]string, error) {
	for _, where := range []struct {
		name string
		info map[string]any
	}{{"instance_info", n.InstanceInfo}, {"driver_info", n.DriverInfo}} {
		v, ok := where.info["kernel_append_params"]
		if !ok || v == nil {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return nil, errdefs.InvalidArgument("node %s: %s kernel_append_params is not a string", n.UUID, where.name)
		}
		if strings.ContainsFunc(s, unicode.IsControl) {
			return nil, errdefs.InvalidArgument("node %s: %s kernel_append_params contains control characters", n.UUID, where.name)
		}
		return strings.Fields(strings.ReplaceAll(s, "%default%", strings.Join(h.cfg.KernelParams, " "))), nil
	}
	return h.cfg.KernelParams, nil
}

// files returns the node's deploy kernel and ramdisk (paths or URLs).
func (h *Handler) files(n *store.Node) (kernel, ramdisk string, err error) {
	k, r, err := h.deployFiles(n)
	return k.value, r.value, err
}

// deployFile is a deploy file setting: its value and whether it came from
// the node (driver_info) rather than from the operator (the defaults).
type deployFile struct {
	value    string
	fromNode bool
}

func (h *Handler) deployFiles(n *store.Node) (kernel, ramdisk deployFile, err error) {
	pick := func(key, def string) deployFile {
		if v, _ := n.DriverInfo[key].(string); v != "" && v != def {
			return deployFile{value: v, fromNode: true}
		}
		return deployFile{value: def}
	}
	kernel, ramdisk = pick("deploy_kernel", h.cfg.DeployKernel), pick("deploy_ramdisk", h.cfg.DeployRamdisk)
	if kernel.value == "" || ramdisk.value == "" {
		return deployFile{}, deployFile{}, errdefs.InvalidArgument("node %s: no deploy_kernel/deploy_ramdisk in driver_info and no conductor default", n.UUID)
	}
	return kernel, ramdisk, nil
}

// open opens a deploy file: the operator's as it is, the node's through
// the allowed directories (again at each use: the check when it was set
// does not cover a file replaced since).
func (h *Handler) open(df deployFile) (*os.File, error) {
	path, local, err := hostpath.Local(df.value)
	switch {
	case err != nil:
		return nil, err
	case !local:
		return nil, fmt.Errorf("deploy file %q: not a path, file:// or http(s) URL", df.value)
	case !df.fromNode:
		return os.Open(path)
	case h.cfg.Files == nil:
		return nil, fmt.Errorf("deploy file %s: this conductor allows no host files from driver_info", path)
	default:
		return h.cfg.Files.Open(path)
	}
}

// fileURL is where the node fetches a deploy file: the URL itself when it
// is one, else this handler's route for it.
func fileURL(base, uuid, name, file string) string {
	if u, err := url.Parse(file); err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
		return file
	}
	return base + "/" + uuid + "/" + name
}

// file serves {uuid}/deploy_kernel and {uuid}/deploy_ramdisk: only the two
// files the node's settings name, never another path.
func (h *Handler) file(w http.ResponseWriter, r *http.Request) {
	which := r.PathValue("file")
	if which != "deploy_kernel" && which != "deploy_ramdisk" {
		http.NotFound(w, r)
		return
	}
	n, err := h.cfg.Nodes.GetNode(r.Context(), r.PathValue("uuid"))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	kernel, ramdisk, err := h.deployFiles(n)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	df := kernel
	if which == "deploy_ramdisk" {
		df = ramdisk
	}
	if u, err := url.Parse(df.value); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		http.Redirect(w, r, df.value, http.StatusFound)
		return
	}
	f, err := h.open(df)
	if err != nil {
		// The refusal is logged, not served: the firmware asking has no
		// credentials, and the path is the node's own setting.
		h.cfg.Logger.Warn("deploy file refused", "node", n.UUID, "file", which, "error", err)
		http.NotFound(w, r)
		return
	}
	h.cfg.Logger.Debug("serving deploy file", "node", n.UUID, "file", which, "range", r.Header.Get("Range"))
	images.ServeFile(w, r, f, which)
}
