// Command rivet-loadtest runs the conductor load benchmark (make
// bench-conductor): for each fleet size, a rivet-conductor on SQLite with
// that many simulated deploy ramdisks, and one line of results.
//
//	rivet-loadtest -conductor build/bin/rivet-conductor -n 1000,5000 -heartbeat-timeout 30s -duration 60s
//
// With -serving it runs the image-serving benchmark instead (make
// bench-serving): one cached image downloaded by many clients at once
// from the conductor and from nginx, rotated, several rounds.
//
//	rivet-loadtest -serving -conductor build/bin/rivet-conductor -serve-size 1GiB -serve-clients 50 -serve-rounds 3
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
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rivetmetal/rivet/conductor/loadtest"
)

// loadGCPercent is the load generator's own garbage collector target
// unless GOGC sets one (the conductor under test keeps its own default):
// the simulated agents share the machine's cores with the conductor, and
// every CPU-second they spend collecting is one the conductor, whose
// agents would run on other machines, does not get.
const loadGCPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(loadGCPercent)
	}
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
	boot := fs.Duration("boot", 0, "boot storm: every agent boots (first lookup) within this window (default 0.45 × -heartbeat-timeout)")
	stormTimeout := fs.Duration("storm-timeout", 10*time.Minute, "fail the run if the boot storm is not over this long after the boot window")
	agentTimeout := fs.Duration("agent-timeout", 30*time.Second, "each simulated agent request's timeout (a lookup answered after it strands the agent: its token was handed out)")
	neighbour := fs.Int("neighbour", 0, "run a CPU-bound process (stress-ng --cpu N) on N cores beside the conductor from the boot storm on (0: none)")
	stressNG := fs.String("stress-ng", "", "stress-ng binary for -neighbour (default stress-ng on PATH)")
	dashSubs := fs.Int("dashboard-subscribers", 0, "keep this many dashboard event streams open through the window and time probe writes until they arrive (0: none)")
	serving := fs.Bool("serving", false, "run the image-serving benchmark (conductor vs nginx) instead of the load test")
	serveSize := fs.String("serve-size", "1GiB", "-serving: image size (bytes, or with a unit: MiB, GiB)")
	serveClients := fs.Int("serve-clients", 50, "-serving: concurrent downloaders")
	serveRounds := fs.Int("serve-rounds", 3, "-serving: rounds (each server once per round, the order alternating)")
	nginx := fs.String("nginx", "", "-serving: nginx binary (default nginx on PATH or /usr/sbin/nginx)")
	cpuProfile := fs.String("cpuprofile", "", "write the load generator's own CPU profile (the whole run) to this file")
	var extra []string
	fs.Func("conductor-arg", "an extra flag for the conductor, e.g. -conductor-arg=--pprof-listen=127.0.0.1:6060 (repeatable)", func(s string) error {
		extra = append(extra, s)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if *serving {
		size, err := parseSize(*serveSize)
		if err != nil {
			return fmt.Errorf("-serve-size: %w", err)
		}
		rep, err := loadtest.RunServing(ctx, loadtest.ServingConfig{Conductor: *bin, Nginx: *nginx, Size: size,
			Clients: *serveClients, Rounds: *serveRounds, Logger: log})
		if err != nil {
			return err
		}
		printServing(stdout, rep)
		return nil
	}
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("-n: bad size %q", s)
		}
		ns = append(ns, n)
	}
	var reports []*loadtest.Report
	for _, n := range ns {
		rep, err := loadtest.Run(ctx, loadtest.Config{Conductor: *bin, ConductorArgs: extra, Agents: n,
			HeartbeatTimeout: *hbTimeout, Boot: *boot, StormTimeout: *stormTimeout, AgentTimeout: *agentTimeout, Duration: *window, Neighbour: *neighbour, StressNG: *stressNG,
			DashboardSubscribers: *dashSubs, Logger: log})
		if err != nil {
			return fmt.Errorf("%d agents: %w", n, err)
		}
		reports = append(reports, rep)
		if rep.Heartbeats.FirstError != "" || rep.Lookups.FirstError != "" {
			log.Warn("errors seen", "agents", n, "heartbeat", rep.Heartbeats.FirstError, "lookup", rep.Lookups.FirstError)
		}
	}
	bootWindow := *boot
	if bootWindow <= 0 {
		bootWindow = *hbTimeout * 45 / 100
	}
	fmt.Fprintf(stdout, "\nConductor load, steady phase (SQLite, fake-hardware nodes in wait call-back, image writes running; "+
		"heartbeat_timeout %s → one heartbeat per agent every %s–%s; %s window once every agent writes its image; "+
		"neighbour: cores busy with stress-ng beside the conductor; agents' CPU: the load generator's own)\n\n",
		*hbTimeout, *hbTimeout*3/10, *hbTimeout*6/10, *window)
	fmt.Fprintln(stdout, "| agents | neighbour | heartbeats/s | hb p50 | hb p99 | hb max | hb errors | agent polls/s | conductor CPU | agents' CPU | machine CPU | load1 | RSS (peak) | failed nodes |")
	fmt.Fprintln(stdout, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range reports {
		fmt.Fprintf(stdout, "| %d | %d | %.0f | %s | %s | %s | %d | %.0f | %.0f%% of a core | %.0f%% of a core | %.0f%% of %d cores | %.2f | %d MiB (%d MiB) | %d |\n",
			r.Agents, r.Neighbour, r.Heartbeats.Rate, ms(r.Heartbeats.P50), ms(r.Heartbeats.P99), ms(r.Heartbeats.Max), r.Heartbeats.Errors,
			float64(r.Polls)/r.Window.Seconds(), 100*r.ConductorCPU, 100*r.AgentsCPU, 100*r.MachineCPU, r.Cores, r.Load1,
			r.ConductorRSS>>20, r.ConductorPeakRSS>>20, r.Stuck)
	}
	fmt.Fprintf(stdout, "\nBoot storm (every agent boots within %s: lookup, heartbeat, deploy steps; ends when every agent writes its image)\n\n", bootWindow)
	fmt.Fprintln(stdout, "| agents | neighbour | every agent writing after | heartbeats | hb p50 | hb p99 | hb max | hb errors | lookups | lookup p50 | lookup p99 | lookup max | lookup errors | conductor CPU | agents' CPU | load1 at end | GC cycles | GC CPU (runtime's estimate) |")
	fmt.Fprintln(stdout, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range reports {
		b, l := r.BootHeartbeats, r.BootLookups
		fmt.Fprintf(stdout, "| %d | %d | %.1f s | %d | %s | %s | %s | %d | %d | %s | %s | %s | %d | %.0f%% of a core | %.0f%% of a core | %.2f | %s |\n",
			r.Agents, r.Neighbour, r.BootStorm.Seconds(), b.Count, ms(b.P50), ms(b.P99), ms(b.Max), b.Errors,
			l.Count, ms(l.P50), ms(l.P99), ms(l.Max), l.Errors, 100*r.BootConductorCPU, 100*r.BootAgentsCPU, r.BootLoad1, gcCells(r))
	}
	fmt.Fprintln(stdout, "\nBoot storm: where the requests' times went (p99 as the histogram bucket holding it: the conductor's handlers, from the request read to the answer written; goroutines' waits, ready, for a CPU)")
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, "| agents | neighbour | lookup p99 (agents) | lookup p99 (conductor's handler) | hb p99 (agents) | hb p99 (conductor's handler) | conductor's goroutines' wait to run, p99 | load generator's, p99 |")
	fmt.Fprintln(stdout, "|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range reports {
		lh, hh, cs, gs := "n/a", "n/a", "n/a", "n/a"
		if x := r.BootWaits; x != nil {
			lh, hh, cs, gs = x.LookupHandler.String(), x.HeartbeatHandler.String(), x.ConductorSched.String(), x.GeneratorSched.String()
		}
		fmt.Fprintf(stdout, "| %d | %d | %s | %s | %s | %s | %s | %s |\n", r.Agents, r.Neighbour,
			ms(r.BootLookups.P99), lh, ms(r.BootHeartbeats.P99), hh, cs, gs)
	}
	fmt.Fprintln(stdout, "\nBoot storm: who used the machine's CPU (cores; the processes' own times, the rest of the processes' time as other processes; "+
		"interrupts, hard and soft, are charged to no process and carry the loopback network's packets; stolen: given by the hypervisor to another machine; "+
		"core probe: a fixed piece of conductor-like work on one core just before the storm, the machine otherwise idle, fastest of three: longer means slower cores)")
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, "| agents | neighbour | machine busy | conductor | load generator | neighbour's processes | other processes | interrupts | stolen | core probe |")
	fmt.Fprintln(stdout, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range reports {
		m := r.BootMachine
		fmt.Fprintf(stdout, "| %d | %d | %.2f of %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s |\n", r.Agents, r.Neighbour,
			m.Busy, m.Cores, m.Conductor, m.Generator, m.Neighbour, m.Others, m.Interrupts, m.Steal, ms(r.CoreProbe))
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(stdout, "\nload average (1, 5, 15 min) at the end: %s\n", strings.Join(strings.Fields(string(la))[:3], ", "))
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

// gcCells are the storm table's garbage-collection cells: cycles, and
// the runtime's estimate of their CPU with its share of the conductor's
// CPU over the storm ("n/a" when the conductor's /metrics did not say).
func gcCells(r *loadtest.Report) string {
	if r.BootGC == nil {
		return "n/a | n/a"
	}
	share := ""
	if cpu := r.BootConductorCPU * r.BootStorm.Seconds(); cpu > 0 {
		share = fmt.Sprintf(" (%.0f%% of the conductor's)", 100*r.BootGC.CPU.Seconds()/cpu)
	}
	return fmt.Sprintf("%d | %.1f s%s", r.BootGC.Cycles, r.BootGC.CPU.Seconds(), share)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// parseSize reads a byte count, optionally with a KiB, MiB or GiB unit.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

// printServing writes the serving benchmark's tables: every run, then
// the medians and the ratio.
func printServing(w io.Writer, r *loadtest.ServingReport) {
	fmt.Fprintf(w, "\nImage serving (one cached %d MiB image, %d concurrent downloaders on loopback, each server once per round, order alternating)\n\n",
		r.Size>>20, r.Clients)
	fmt.Fprintln(w, "| round | server | aggregate MiB/s | took | server CPU | server CPU s per GiB | downloaders' CPU | machine CPU | load1 before |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|")
	row := func(label string, x loadtest.ServingRun) {
		gib := float64(x.Bytes) / (1 << 30)
		perGiB := 0.0
		if gib > 0 {
			perGiB = x.ServerCPU.Seconds() / gib
		}
		fmt.Fprintf(w, "| %s | %s | %.0f | %.1f s | %.1f s | %.3f | %.1f s | %.0f%% of %d cores | %.2f |\n", label, x.Server,
			x.Throughput()/(1<<20), x.Took.Seconds(), x.ServerCPU.Seconds(), perGiB, x.ClientCPU.Seconds(),
			100*x.MachineCPU, r.Cores, x.Load1)
	}
	for _, x := range r.Runs {
		row(strconv.Itoa(x.Round), x)
	}
	rv, ng := r.Median(loadtest.ServerRivet), r.Median(loadtest.ServerNginx)
	row("median", rv)
	row("median", ng)
	if ng.Throughput() > 0 {
		fmt.Fprintf(w, "\nrivet-conductor / nginx (medians): %.2f\n", rv.Throughput()/ng.Throughput())
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(w, "load average (1, 5, 15 min) at the end: %s\n", strings.Join(strings.Fields(string(la))[:3], ", "))
	}
}
