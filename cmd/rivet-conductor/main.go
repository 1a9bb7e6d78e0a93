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
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rivetmetal/rivet/conductor"
	"github.com/rivetmetal/rivet/conductor/cluster"
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
	metricsListen                          string
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
	fs.BoolVar(&o.automatedClean, "automated-clean", false, "clean nodes through the agent on provide and after undeploy (erase_devices_metadata)")
	fs.DurationVar(&o.cleanCallbackTimeout, "clean-callback-timeout", 1800*time.Second, "fail a cleaning waiting this long for an agent heartbeat")
	fs.BoolVar(&o.fastTrack, "fast-track", false, "reuse a running agent for the next deploy or cleaning instead of rebooting the node")
	fs.StringVar(&o.logsCollect, "deploy-logs-collect", provision.LogsOnFailure, "when to collect the agent's logs: on_failure, always or never")
	fs.StringVar(&o.defaultBootMode, "default-boot-mode", "uefi", "boot mode of nodes that set none: uefi or bios")
	fs.DurationVar(&o.progressPoll, "progress-poll-interval", 5*time.Second, "read a writing agent's progress this often between heartbeats (negative disables)")
	fs.StringVar(&o.pprofListen, "pprof-listen", "", "serve Go's profiling endpoints (/debug/pprof/) on this address, e.g. 127.0.0.1:6060 (off when empty)")
	fs.IntVar(&o.progressPollRate, "progress-poll-rate", 50, "at most this many progress polls per second over all nodes; with more writing nodes each is polled less often")
	fs.StringVar(&o.metricsListen, "metrics-listen", "", "also serve Prometheus /metrics on this loopback address, e.g. 127.0.0.1:9608 (the API serves /metrics in any case)")
	if err := fs.Parse(args); err != nil {
		return o, err
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
	if err := os.MkdirAll(o.stateDir, 0o750); err != nil {
		return fmt.Errorf("state dir: %w", err)
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
	return conductor.Run(ctx, conductor.Config{
		Listen:        o.listen,
		DBPath:        o.db,
		APIURL:        o.apiURL,
		ImageDir:      o.imageDir,
		ImageCacheDir: o.imageCacheDir,
		MetricsListen: o.metricsListen,
		Drivers:       drivers,
		Provision: provision.Config{
			DeployKernel:         o.deployKernel,
			DeployRamdisk:        o.deployRamdisk,
			HeartbeatTimeout:     o.heartbeatTimeout,
			CallbackTimeout:      o.callbackTimeout,
			CleanCallbackTimeout: o.cleanCallbackTimeout,
			StateDir:             filepath.Join(o.stateDir, "conductor"),
			AutomatedClean:       o.automatedClean,
			FastTrack:            o.fastTrack,
			LogsCollect:          o.logsCollect,
			DefaultBootMode:      o.defaultBootMode,
			ProgressPollInterval: o.progressPoll,
			ProgressPollRate:     o.progressPollRate,
		},
		Cluster: cluster.Config{
			Name:      o.conductorName,
			LeaseTTL:  o.leaseTTL,
			DeadAfter: o.leaseTTL,
			Interval:  o.leaseTTL / 6,
		},
		Logger: log,
	})
}

// buildDrivers is the conductor's driver list.
func buildDrivers(o options, log *slog.Logger) ([]power.Driver, error) {
	fk, err := fake.New(fake.Config{StateFile: filepath.Join(o.stateDir, "fake-power.json")})
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("qemu driver: find own executable for the relay: %w", err)
	}
	qm, err := qemu.New(qemu.Config{
		StateDir: filepath.Join(o.stateDir, "qemu"),
		Relay:    []string{self, "relay"},
		Logger:   log,
	})
	if err != nil {
		return nil, fmt.Errorf("qemu driver: %w", err)
	}
	rf := redfish.New(redfish.Config{Logger: log})
	im := ipmi.New(ipmi.Config{Logger: log})
	return []power.Driver{fk, qm, rf, im}, nil
}
