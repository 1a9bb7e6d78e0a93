// Command rivet-conductor runs the Rivet conductor: the Ironic-compatible
// API, the provision engine and the power drivers (fake-hardware, qemu,
// redfish, ipmi).
//
//	rivet-conductor --listen 127.0.0.1:6385 --db /var/lib/rivet/rivet.db [flags]
//	rivet-conductor relay HOST PORT
//
// The relay form copies stdin/stdout to and from HOST:PORT; QEMU's
// guestfwd runs it once per guest connection for the qemu driver.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rivetmetal/rivet/conductor"
	"github.com/rivetmetal/rivet/conductor/auth"
	"github.com/rivetmetal/rivet/conductor/cluster"
	"github.com/rivetmetal/rivet/conductor/history"
	"github.com/rivetmetal/rivet/conductor/images"
	"github.com/rivetmetal/rivet/conductor/inspectdata"
	"github.com/rivetmetal/rivet/conductor/netboot"
	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/fake"
	"github.com/rivetmetal/rivet/conductor/power/ipmi"
	"github.com/rivetmetal/rivet/conductor/power/qemu"
	"github.com/rivetmetal/rivet/conductor/power/redfish"
	"github.com/rivetmetal/rivet/conductor/provision"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "rivet-conductor:", err)
		}
		os.Exit(1)
	}
}

// options are the command-line settings.
type options struct {
	listen, db, apiURL, stateDir, imageDir string
	imageCacheDir                          string
	deployKernel, deployRamdisk            string
	heartbeatTimeout, callbackTimeout      time.Duration
	logLevel                               string
	conductorName                          string
	leaseTTL                               time.Duration
	automatedClean, fastTrack              bool
	cleanCallbackTimeout                   time.Duration
	logsCollect, defaultBootMode           string
	progressPoll                           time.Duration
	pprofListen                            string
	progressPollRate                       int
	netboot                                netbootFlags
	authStrategy, userFile, rolesFile      string
	insecureAllowNoAuth, requireAgentTLS   bool
	tlsCertFile, tlsKeyFile                string
	metricsListen                          string
	historyMax                             int
	historyCleanup                         time.Duration
	inspectionAddPorts                     string
	fakePowerCallLog                       string
	// fileURLAllowedPaths are the allowed host directories; the default
	// (flag not given) is <state-dir>/images and --image-dir.
	fileURLAllowedPaths    []string
	fileURLAllowedPathsSet bool
	imageCacheMaxSize      int64
	imageCacheTTL          time.Duration
	qemuFilesDir           string
}

// netbootFlags are the network boot services' settings.
type netbootFlags struct {
	iface, mode, dhcpRange, router, dns, serverAddr string
	ipxeDir, biosFile, uefiFile                     string
	leaseTime                                       time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("rivet-conductor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:6385", "API listen address")
	fs.StringVar(&o.db, "db", "", "SQLite database file (default <state-dir>/rivet.db), or a postgres:// URL that several conductors share")
	fs.StringVar(&o.apiURL, "api-url", "", "API URL as nodes should use it (default http://<listen address>)")
	fs.StringVar(&o.stateDir, "state-dir", "/var/lib/rivet", "directory for driver state (qemu VMs, fake power states)")
	fs.StringVar(&o.imageDir, "image-dir", "", "directory served read-only under /images/ (off when empty)")
	fs.StringVar(&o.imageCacheDir, "image-cache-dir", "", "image cache for file:// sources and image_download_source=http (default <state-dir>/image-cache; \"none\" disables it)")
	fs.StringVar(&o.deployKernel, "deploy-kernel", "", "deploy kernel used when driver_info has no deploy_kernel")
	fs.StringVar(&o.deployRamdisk, "deploy-ramdisk", "", "deploy ramdisk used when driver_info has no deploy_ramdisk")
	fs.DurationVar(&o.heartbeatTimeout, "ramdisk-heartbeat-timeout", 300*time.Second, "heartbeat timeout given to agents at lookup")
	fs.DurationVar(&o.callbackTimeout, "deploy-callback-timeout", 1800*time.Second, "fail a deploy waiting this long for an agent heartbeat")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.conductorName, "conductor-name", "", "this conductor's unique, stable name among those sharing a PostgreSQL store (default the host name)")
	fs.DurationVar(&o.leaseTTL, "cluster-lease-ttl", 30*time.Second, "with PostgreSQL: node lease lifetime; a dead conductor's nodes are taken over after about this long")
	fs.BoolVar(&o.automatedClean, "automated-clean", true, "clean nodes through the agent on provide and after undeploy (erase_devices_metadata), so no tenant's data reaches the next; --automated-clean=false turns it off")
	fs.DurationVar(&o.cleanCallbackTimeout, "clean-callback-timeout", 1800*time.Second, "fail a cleaning waiting this long for an agent heartbeat")
	fs.BoolVar(&o.fastTrack, "fast-track", false, "reuse a running agent for the next deploy or cleaning instead of rebooting the node")
	fs.StringVar(&o.logsCollect, "deploy-logs-collect", provision.LogsOnFailure, "when to collect the agent's logs: on_failure, always or never")
	fs.StringVar(&o.defaultBootMode, "default-boot-mode", "uefi", "boot mode of nodes that set none: uefi or bios")
	fs.DurationVar(&o.progressPoll, "progress-poll-interval", 5*time.Second, "read a writing agent's progress this often between heartbeats (negative disables)")
	fs.StringVar(&o.pprofListen, "pprof-listen", "", "serve Go's profiling endpoints (/debug/pprof/) on this address, e.g. 127.0.0.1:6060 (off when empty)")
	fs.IntVar(&o.progressPollRate, "progress-poll-rate", 50, "at most this many progress polls per second over all nodes; with more writing nodes each is polled less often")
	fs.StringVar(&o.netboot.iface, "boot-interface", "", "serve network boot (DHCP, TFTP, UEFI HTTP boot) on this interface (off when empty); see docs/netboot.md")
	fs.StringVar(&o.netboot.mode, "dhcp-mode", "proxy", "with --boot-interface: proxy (an existing DHCP server hands out addresses; Rivet adds boot options) or full (Rivet leases --dhcp-range)")
	fs.StringVar(&o.netboot.dhcpRange, "dhcp-range", "", "with --dhcp-mode full: the leased addresses, START,END")
	fs.StringVar(&o.netboot.router, "dhcp-router", "", "with --dhcp-mode full: the router given with leases")
	fs.StringVar(&o.netboot.dns, "dhcp-dns", "", "with --dhcp-mode full: DNS servers given with leases, comma-separated")
	fs.DurationVar(&o.netboot.leaseTime, "dhcp-lease-time", time.Hour, "with --dhcp-mode full: lease duration")
	fs.StringVar(&o.netboot.serverAddr, "boot-server-address", "", "the conductor's IPv4 address on the boot interface (default: the interface's first)")
	fs.StringVar(&o.netboot.ipxeDir, "ipxe-dir", netboot.DefaultIPXEDir, "directory of the iPXE binaries served over TFTP and HTTP (Debian package ipxe)")
	fs.StringVar(&o.netboot.biosFile, "ipxe-bios-file", netboot.DefaultBIOSFile, "iPXE binary for BIOS PXE clients")
	fs.StringVar(&o.netboot.uefiFile, "ipxe-uefi-file", netboot.DefaultUEFIFile, "iPXE binary for UEFI PXE and UEFI HTTP boot clients")
	fs.StringVar(&o.authStrategy, "auth-strategy", "", "API authentication: noauth or http_basic (default: http_basic unless --listen is a loopback address)")
	fs.StringVar(&o.userFile, "http-basic-auth-user-file", "", "Apache htpasswd file of the API's users (bcrypt entries only, htpasswd -B); re-read when it changes and on SIGHUP")
	fs.StringVar(&o.rolesFile, "http-basic-auth-roles-file", "", "USER:ROLE lines (admin or reader) giving the users their roles; unnamed users are readers (without it every user is an admin)")
	fs.BoolVar(&o.insecureAllowNoAuth, "insecure-allow-noauth", false, "permit --auth-strategy noauth on a listen address that is not loopback (anyone reaching it can then deploy, power off or delete nodes)")
	fs.StringVar(&o.tlsCertFile, "tls-cert-file", "", "serve the API over HTTPS with this PEM certificate (chain); re-read on SIGHUP")
	fs.StringVar(&o.tlsKeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file; re-read on SIGHUP")
	fs.BoolVar(&o.requireAgentTLS, "require-agent-tls", false, "refuse agent heartbeats whose callback URL is not https:// (Ironic's [agent]require_tls)")
	fs.StringVar(&o.fakePowerCallLog, "fake-power-call-log", "", "append a JSON line to this file for every fake-hardware driver call that reaches a node (for tests)")
	fs.StringVar(&o.metricsListen, "metrics-listen", "", "also serve Prometheus /metrics on this loopback address, e.g. 127.0.0.1:9608 (the API serves /metrics in any case)")
	fs.StringVar(&o.inspectionAddPorts, "inspection-add-ports", "pxe", "which NICs in-band inspection adds as ports: pxe (the one the node booted from), all, active (those with an address) or disabled (Ironic's [inspector]add_ports)")
	fs.Func("file-url-allowed-paths", "comma-separated absolute directories in which the API may name host files: file:// image sources and driver_info deploy_kernel/deploy_ramdisk (Ironic's [conductor]file_url_allowed_paths); \"\" allows none (default <state-dir>/images and --image-dir)", func(v string) error {
		o.fileURLAllowedPathsSet = true
		o.fileURLAllowedPaths = nil
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				if !filepath.IsAbs(p) {
					return fmt.Errorf("%q is not an absolute path", p)
				}
				o.fileURLAllowedPaths = append(o.fileURLAllowedPaths, filepath.Clean(p))
			}
		}
		return nil
	})
	o.imageCacheMaxSize = images.DefaultMaxSize
	fs.Func("image-cache-max-size", "the image cache's size cap: a number of MiB (as Ironic's [pxe]image_cache_size) or a size with a unit, e.g. 20GiB (default 20GiB)", func(v string) error {
		n, err := parseSize(v)
		if err != nil {
			return err
		}
		o.imageCacheMaxSize = n
		return nil
	})
	fs.DurationVar(&o.imageCacheTTL, "image-cache-ttl", images.DefaultTTL, "remove cached images unused this long (Ironic's [pxe]image_cache_ttl); 0 never")
	fs.StringVar(&o.qemuFilesDir, "qemu-files-dir", "", "directory in which qemu nodes' driver_info may name files: qemu_disk and qemu_console_log (default <state-dir>/qemu/files)")
	fs.IntVar(&o.historyMax, "node-history-max-entries", 300, "node history events kept per node (Ironic's [conductor]node_history_max_entries); older ones are pruned")
	fs.DurationVar(&o.historyCleanup, "node-history-cleanup-interval", 24*time.Hour, "how often node history is pruned to --node-history-max-entries (Ironic's node_history_cleanup_interval)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.historyMax < 1 {
		return o, fmt.Errorf("--node-history-max-entries: %d is not a positive number", o.historyMax)
	}
	if o.imageCacheTTL == 0 {
		o.imageCacheTTL = -1 // never
	}
	// The defaults derive from --state-dir and --image-dir, which may be
	// relative (make demo passes build/testimage); allowed roots are
	// absolute.
	if !o.fileURLAllowedPathsSet {
		o.fileURLAllowedPaths = []string{filepath.Join(o.stateDir, "images")}
		if o.imageDir != "" {
			o.fileURLAllowedPaths = append(o.fileURLAllowedPaths, o.imageDir)
		}
		for i, p := range o.fileURLAllowedPaths {
			abs, err := filepath.Abs(p)
			if err != nil {
				return o, fmt.Errorf("--file-url-allowed-paths default %s: %w", p, err)
			}
			o.fileURLAllowedPaths[i] = abs
		}
	}
	if o.qemuFilesDir == "" {
		o.qemuFilesDir = filepath.Join(o.stateDir, "qemu", "files")
	}
	if (o.tlsCertFile == "") != (o.tlsKeyFile == "") {
		return o, errors.New("--tls-cert-file and --tls-key-file go together")
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.db == "" {
		o.db = filepath.Join(o.stateDir, "rivet.db")
	}
	switch o.imageCacheDir {
	case "":
		o.imageCacheDir = filepath.Join(o.stateDir, "image-cache")
	case "none":
		o.imageCacheDir = ""
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "relay" {
		if len(args) != 3 {
			return errors.New("usage: rivet-conductor relay HOST PORT")
		}
		return qemu.RunRelay(ctx, args[1], args[2], stdin, stdout)
	}
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	tuneGC(log)
	if err := os.MkdirAll(o.stateDir, 0o750); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if !o.fileURLAllowedPathsSet {
		// The default allowed directory, made for the operator's images.
		if err := os.MkdirAll(o.fileURLAllowedPaths[0], 0o750); err != nil {
			return fmt.Errorf("--file-url-allowed-paths: %w", err)
		}
	}
	if o.pprofListen != "" {
		stopProfiling, err := serveProfiling(ctx, o.pprofListen, log)
		if err != nil {
			return err
		}
		defer stopProfiling()
	}
	drivers, err := buildDrivers(o, log)
	if err != nil {
		return err
	}
	netBoot, err := o.netboot.config()
	if err != nil {
		return err
	}
	c, err := conductor.New(ctx, conductor.Config{
		NetBoot:             netBoot,
		Listen:              o.listen,
		DBPath:              o.db,
		APIURL:              o.apiURL,
		ImageDir:            o.imageDir,
		ImageCacheDir:       o.imageCacheDir,
		ImageCacheMaxSize:   o.imageCacheMaxSize,
		ImageCacheTTL:       o.imageCacheTTL,
		FileURLAllowedPaths: o.fileURLAllowedPaths,
		ProtectedPaths:      []string{filepath.Join(o.stateDir, "qemu"), filepath.Join(o.stateDir, "fake-power.json"), o.qemuFilesDir},
		MetricsListen:       o.metricsListen,
		History:             history.Config{MaxEntries: o.historyMax, CleanupInterval: o.historyCleanup},
		Drivers:             drivers,
		Auth: auth.Config{
			Strategy:            auth.Strategy(o.authStrategy),
			UserFile:            o.userFile,
			RolesFile:           o.rolesFile,
			AllowInsecureNoAuth: o.insecureAllowNoAuth,
		},
		TLSCertFile: o.tlsCertFile,
		TLSKeyFile:  o.tlsKeyFile,
		Provision: provision.Config{
			DeployKernel:          o.deployKernel,
			DeployRamdisk:         o.deployRamdisk,
			HeartbeatTimeout:      o.heartbeatTimeout,
			CallbackTimeout:       o.callbackTimeout,
			CleanCallbackTimeout:  o.cleanCallbackTimeout,
			StateDir:              filepath.Join(o.stateDir, "conductor"),
			DisableAutomatedClean: !o.automatedClean,
			FastTrack:             o.fastTrack,
			LogsCollect:           o.logsCollect,
			DefaultBootMode:       o.defaultBootMode,
			ProgressPollInterval:  o.progressPoll,
			ProgressPollRate:      o.progressPollRate,
			RequireAgentTLS:       o.requireAgentTLS,
			InspectionAddPorts:    inspectdata.AddPorts(o.inspectionAddPorts),
		},
		Cluster: cluster.Config{
			Name:      o.conductorName,
			LeaseTTL:  o.leaseTTL,
			DeadAfter: o.leaseTTL,
			Interval:  o.leaseTTL / 6,
		},
		Logger: log,
	})
	if err != nil {
		return err
	}
	stopReload := reloadOnSIGHUP(c, log)
	defer stopReload()
	return c.Run(ctx)
}

// reloadOnSIGHUP makes SIGHUP re-read the API's TLS certificate and user
// files (errors are logged by Reload; what was in use stays) until the
// returned function is called.
func reloadOnSIGHUP(c *conductor.Conductor, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-hup:
				log.Info("SIGHUP: reloading the API's TLS certificate and user files")
				_ = c.Reload()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		<-finished
	}
}

// config turns the flags into the boot services' configuration; nil when
// --boot-interface is not set.
func (f netbootFlags) config() (*netboot.Config, error) {
	if f.iface == "" {
		if f.mode == string(netboot.FullDHCP) || f.dhcpRange != "" {
			return nil, errors.New("--dhcp-mode full and --dhcp-range need --boot-interface")
		}
		return nil, nil
	}
	c := &netboot.Config{Interface: f.iface, Mode: netboot.DHCPMode(f.mode), IPXEDir: f.ipxeDir,
		BIOSFile: f.biosFile, UEFIFile: f.uefiFile, LeaseTime: f.leaseTime}
	ipv4 := func(flag, s string) (net.IP, error) {
		ip := net.ParseIP(strings.TrimSpace(s))
		if ip == nil || ip.To4() == nil {
			return nil, fmt.Errorf("--%s: %q is not an IPv4 address", flag, s)
		}
		return ip.To4(), nil
	}
	var err error
	if f.serverAddr != "" {
		if c.ServerIP, err = ipv4("boot-server-address", f.serverAddr); err != nil {
			return nil, err
		}
	}
	switch c.Mode {
	case netboot.ProxyDHCP:
		if f.dhcpRange != "" || f.router != "" || f.dns != "" {
			return nil, errors.New("--dhcp-range, --dhcp-router and --dhcp-dns need --dhcp-mode full")
		}
		return c, nil
	case netboot.FullDHCP:
	default:
		return nil, fmt.Errorf("--dhcp-mode: %q is not proxy or full", f.mode)
	}
	start, end, ok := strings.Cut(f.dhcpRange, ",")
	if !ok {
		return nil, fmt.Errorf("--dhcp-range: %q is not START,END", f.dhcpRange)
	}
	if c.RangeStart, err = ipv4("dhcp-range", start); err != nil {
		return nil, err
	}
	if c.RangeEnd, err = ipv4("dhcp-range", end); err != nil {
		return nil, err
	}
	if f.router != "" {
		if c.Router, err = ipv4("dhcp-router", f.router); err != nil {
			return nil, err
		}
	}
	if f.dns != "" {
		for _, d := range strings.Split(f.dns, ",") {
			ip, err := ipv4("dhcp-dns", d)
			if err != nil {
				return nil, err
			}
			c.DNS = append(c.DNS, ip)
		}
	}
	return c, nil
}

// buildDrivers is the conductor's driver list.
func buildDrivers(o options, log *slog.Logger) ([]power.Driver, error) {
	fk, err := fake.New(fake.Config{StateFile: filepath.Join(o.stateDir, "fake-power.json"), CallLog: o.fakePowerCallLog})
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("qemu driver: find own executable for the relay: %w", err)
	}
	qm, err := qemu.New(qemu.Config{
		StateDir: filepath.Join(o.stateDir, "qemu"),
		FilesDir: o.qemuFilesDir,
		Relay:    []string{self, "relay"},
		Logger:   log,
	})
	if err != nil {
		return nil, fmt.Errorf("qemu driver: %w", err)
	}
	rf := redfish.New(redfish.Config{Logger: log})
	idrac := redfish.New(redfish.Config{Logger: log, Name: redfish.IDRACName})
	im := ipmi.New(ipmi.Config{Logger: log})
	return []power.Driver{fk, qm, rf, idrac, im}, nil
}

// parseSize reads a size: a plain number of MiB, or a number with a unit
// (B, KiB, MiB, GiB, TiB; K, M, G, T and KB, MB, GB, TB taken as the
// binary units).
func parseSize(v string) (int64, error) {
	v = strings.TrimSpace(v)
	i := strings.IndexFunc(v, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := v, ""
	if i >= 0 {
		num, unit = v[:i], strings.ToLower(strings.TrimSpace(v[i:]))
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("%q is not a positive size", v)
	}
	mult := map[string]float64{"": 1 << 20, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
		"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
		"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("%q: unknown unit %q", v, unit)
	}
	if f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is too large", v)
	}
	return int64(f * mult), nil
}
