// Package boot is the conductor's network boot interface for nodes that
// boot the deploy ramdisk through their firmware (ipmi, redfish): it
// serves an iPXE script per node MAC that loads the deploy kernel and
// initramfs with the agent's kernel parameters (ipa-api-url, BOOTIF), and
// serves those two files over HTTP. A node that is not being provisioned
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

	"github.com/rivetmetal/rivet/conductor/errdefs"
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
	DeployKernel, DeployRamdisk string
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
	params := append([]string{"selinux=0", "troubleshoot=0", "text"}, KernelAppendParams(n.DriverInfo, h.cfg.KernelParams)...)
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

// KernelAppendParams are the kernel parameters a node's deploy ramdisk
// boots with before the agent's own: driver_info.kernel_append_params
// when set, with "%default%" standing for defaults (Ironic's
// [pxe]kernel_append_params), else defaults. Parameters are separated by
// whitespace; one holding a control character or a quote is dropped.
func KernelAppendParams(driverInfo map[string]any, defaults []string) []string {
	s, _ := driverInfo["kernel_append_params"].(string)
	if strings.TrimSpace(s) == "" {
		return append([]string(nil), defaults...)
	}
	s = strings.ReplaceAll(s, "%default%", strings.Join(defaults, " "))
	var out []string
	for _, p := range strings.Fields(s) {
		if strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '"' || r == '\'' }) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// files returns the node's deploy kernel and ramdisk (paths or URLs).
func (h *Handler) files(n *store.Node) (kernel, ramdisk string, err error) {
	kernel, _ = n.DriverInfo["deploy_kernel"].(string)
	ramdisk, _ = n.DriverInfo["deploy_ramdisk"].(string)
	if kernel == "" {
		kernel = h.cfg.DeployKernel
	}
	if ramdisk == "" {
		ramdisk = h.cfg.DeployRamdisk
	}
	if kernel == "" || ramdisk == "" {
		return "", "", errdefs.InvalidArgument("node %s: no deploy_kernel/deploy_ramdisk in driver_info and no conductor default", n.UUID)
	}
	return kernel, ramdisk, nil
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
	kernel, ramdisk, err := h.files(n)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	path := kernel
	if which == "deploy_ramdisk" {
		path = ramdisk
	}
	if u, err := url.Parse(path); err == nil && u.Scheme != "" && u.Scheme != "file" {
		http.Redirect(w, r, path, http.StatusFound)
		return
	}
	path = strings.TrimPrefix(path, "file://")
	f, err := os.Open(path)
	if err != nil {
		h.cfg.Logger.Error("deploy file unavailable", "node", n.UUID, "file", which, "path", path, "error", err)
		http.NotFound(w, r)
		return
	}
	h.cfg.Logger.Debug("serving deploy file", "node", n.UUID, "file", which, "range", r.Header.Get("Range"))
	images.ServeFile(w, r, f, which)
}
