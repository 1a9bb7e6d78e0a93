// Command rivet-loadtest runs the conductor load benchmark (make
// bench-conductor): for each fleet size, a rivet-conductor on SQLite with
// that many simulated deploy ramdisks, and one line of results.
//
//	rivet-loadtest -conductor build/bin/rivet-conductor -n 1000,5000 -heartbeat-timeout 30s -duration 60s
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rivetmetal/rivet/conductor/loadtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "rivet-loadtest:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rivet-loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("conductor", "build/bin/rivet-conductor", "rivet-conductor binary under test")
	sizes := fs.String("n", "1000,5000", "comma-separated numbers of simulated agents, one run each")
	hbTimeout := fs.Duration("heartbeat-timeout", 30*time.Second, "ramdisk heartbeat timeout; agents beat every 0.3–0.6 × this")
	window := fs.Duration("duration", 60*time.Second, "measured window of each run")
	dashSubs := fs.Int("dashboard-subscribers", 0, "keep this many dashboard event streams open through the window and time probe writes until they arrive (0: none)")
	var extra []string
	fs.Func("conductor-arg", "an extra flag for the conductor, e.g. -conductor-arg=--pprof-listen=127.0.0.1:6060 (repeatable)", func(s string) error {
		extra = append(extra, s)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("-n: bad size %q", s)
		}
		ns = append(ns, n)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	var reports []*loadtest.Report
	for _, n := range ns {
		rep, err := loadtest.Run(ctx, loadtest.Config{Conductor: *bin, ConductorArgs: extra, Agents: n,
			HeartbeatTimeout: *hbTimeout, Duration: *window, DashboardSubscribers: *dashSubs, Logger: log})
		if err != nil {
			return fmt.Errorf("%d agents: %w", n, err)
		}
		reports = append(reports, rep)
		if rep.Heartbeats.FirstError != "" || rep.Lookups.FirstError != "" {
			log.Warn("errors seen", "agents", n, "heartbeat", rep.Heartbeats.FirstError, "lookup", rep.Lookups.FirstError)
		}
	}
	fmt.Fprintf(stdout, "\nConductor load (SQLite, fake-hardware nodes in wait call-back, image writes running; "+
		"heartbeat_timeout %s → one heartbeat per agent every %s–%s; %s window once every agent writes its image)\n\n",
		*hbTimeout, *hbTimeout*3/10, *hbTimeout*6/10, *window)
	fmt.Fprintln(stdout, "| agents | heartbeats/s | hb p50 | hb p99 | hb max | hb errors | lookups | lookup p50 | lookup p99 | lookup errors | agent polls/s | conductor CPU | machine CPU | load1 | RSS | failed nodes |")
	fmt.Fprintln(stdout, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range reports {
		fmt.Fprintf(stdout, "| %d | %.0f | %s | %s | %s | %d | %d | %s | %s | %d | %.0f | %.0f%% of a core | %.0f%% of %d cores | %.2f | %d MiB | %d |\n",
			r.Agents, r.Heartbeats.Rate, ms(r.Heartbeats.P50), ms(r.Heartbeats.P99), ms(r.Heartbeats.Max), r.Heartbeats.Errors,
			r.Lookups.Count, ms(r.Lookups.P50), ms(r.Lookups.P99), r.Lookups.Errors,
			float64(r.Polls)/r.Window.Seconds(), 100*r.ConductorCPU, 100*r.MachineCPU, r.Cores, r.Load1,
			r.ConductorRSS>>20, r.Stuck)
	}
	fmt.Fprintf(stdout, "\nBoot storm (agents boot over %s, look up, heartbeat; ends when every agent writes its image)\n\n", *hbTimeout*45/100)
	fmt.Fprintln(stdout, "| agents | every agent writing after | heartbeats | hb p50 | hb p99 | hb max | hb errors | lookup p50 | lookup p99 |")
	fmt.Fprintln(stdout, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range reports {
		fmt.Fprintf(stdout, "| %d | %.1f s | %d | %s | %s | %s | %d | %s | %s |\n",
			r.Agents, r.BootStorm.Seconds(), r.BootHeartbeats.Count, ms(r.BootHeartbeats.P50), ms(r.BootHeartbeats.P99),
			ms(r.BootHeartbeats.Max), r.BootHeartbeats.Errors, ms(r.Lookups.P50), ms(r.Lookups.P99))
	}
	if *dashSubs > 0 {
		fmt.Fprintf(stdout, "\nDashboard (%d event streams open through the window; a probe write every second, timed until every stream has it)\n\n", *dashSubs)
		fmt.Fprintln(stdout, "| agents | streams | probes | update p50 | update p99 | update max | missed | re-snapshots | stream bytes/s | probe write p50 |")
		fmt.Fprintln(stdout, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, r := range reports {
			d := r.Dashboard
			fmt.Fprintf(stdout, "| %d | %d | %d | %s | %s | %s | %d | %d | %.0f | %s |\n", r.Agents, d.Subscribers, d.Probes,
				ms(d.Latency.P50), ms(d.Latency.P99), ms(d.Latency.Max), d.Latency.Errors, d.Snapshots, d.BytesPerSec, ms(d.Writes.P50))
		}
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
