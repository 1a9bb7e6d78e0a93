package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rivetmetal/rivet/cmd/rivet/internal/client"
	"github.com/rivetmetal/rivet/wire"
)

// Exit statuses beyond 0 (success), 1 (error) and 2 (usage).
const (
	// ExitNodeFailed: the node ended in a failure state (deploy failed,
	// clean failed, ...) or settled somewhere other than the target.
	ExitNodeFailed = 3
	// ExitTimeout: a --wait or watch ran out of time.
	ExitTimeout = 4
)

// ExitError carries the exit status a command ended with.
type ExitError struct {
	Code int
	Err  error
}

// Error implements error.
func (e *ExitError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *ExitError) Unwrap() error { return e.Err }

func exitf(code int, format string, args ...any) error {
	return &ExitError{Code: code, Err: fmt.Errorf(format, args...)}
}

// ExitCode is the process exit status for err: 0 for nil, 2 for usage
// errors, the ExitError code when there is one, else 1.
func ExitCode(err error) int {
	var ee *ExitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	case errors.As(err, &ee):
		return ee.Code
	default:
		return 1
	}
}

// nodeAbort aborts the node's current operation.
func (e *env) nodeAbort(ctx context.Context, args []string) error {
	pos, err := e.parse("node abort", flag.NewFlagSet("node abort", flag.ContinueOnError), args, 1)
	if err != nil {
		return err
	}
	if err := e.c.SetProvisionState(ctx, pos[0], "abort", nil); err != nil {
		return fmt.Errorf("abort %s: %w", pos[0], err)
	}
	fmt.Fprintf(e.stdout, "%s: abort requested\n", pos[0])
	return nil
}

// nodeRebuild redeploys an active node's image.
func (e *env) nodeRebuild(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("node rebuild", flag.ContinueOnError)
	configdrive := fs.String("configdrive", "", "config drive: gzipped, base64-encoded ISO, or its URL")
	wait := fs.Bool("wait", false, "wait for the node to be active again, showing progress")
	timeout := fs.Duration("timeout", 30*time.Minute, "how long --wait waits")
	pos, err := e.parse("node rebuild", fs, args, 1)
	if err != nil {
		return err
	}
	var cd any
	if *configdrive != "" {
		cd = *configdrive
	}
	if err := e.c.SetProvisionState(ctx, pos[0], "rebuild", cd); err != nil {
		return fmt.Errorf("rebuild %s: %w", pos[0], err)
	}
	if !*wait {
		fmt.Fprintf(e.stdout, "%s: rebuild requested\n", pos[0])
		return nil
	}
	return e.waitFor(ctx, pos[0], "active", *timeout)
}

// stepFlag collects --step INTERFACE.STEP[=ARGS-JSON] values.
type stepFlag []map[string]any

// String implements flag.Value.
func (f *stepFlag) String() string { return fmt.Sprint(*f) }

// Set implements flag.Value.
func (f *stepFlag) Set(s string) error {
	name, args, hasArgs := strings.Cut(s, "=")
	iface, step, ok := strings.Cut(name, ".")
	if !ok || iface == "" || step == "" {
		return fmt.Errorf("%q is not INTERFACE.STEP[=ARGS-JSON]", s)
	}
	st := map[string]any{"interface": iface, "step": step}
	if hasArgs {
		var a map[string]any
		if err := json.Unmarshal([]byte(args), &a); err != nil {
			return fmt.Errorf("step %s: arguments are not a JSON object: %v", name, err)
		}
		st["args"] = a
	}
	*f = append(*f, st)
	return nil
}

// nodeClean runs manual cleaning with the given steps.
func (e *env) nodeClean(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("node clean", flag.ContinueOnError)
	var steps stepFlag
	fs.Var(&steps, "step", "clean step INTERFACE.STEP[=ARGS-JSON] (repeatable, run in order)")
	wait := fs.Bool("wait", false, "wait for cleaning to end")
	timeout := fs.Duration("timeout", 60*time.Minute, "how long --wait waits")
	pos, err := e.parse("node clean", fs, args, 1)
	if err != nil {
		return err
	}
	if len(steps) == 0 {
		return fmt.Errorf("%w: node clean: at least one --step is required", ErrUsage)
	}
	list := make([]any, len(steps))
	for i, s := range steps {
		list[i] = s
	}
	if err := e.c.Provision(ctx, pos[0], map[string]any{"target": "clean", "clean_steps": list}); err != nil {
		return fmt.Errorf("clean %s: %w", pos[0], err)
	}
	if !*wait {
		fmt.Fprintf(e.stdout, "%s: clean requested\n", pos[0])
		return nil
	}
	return e.waitFor(ctx, pos[0], "manageable", *timeout)
}

// powerTargets maps the CLI's power words onto Ironic's targets.
var powerTargets = map[string]string{"on": "power on", "off": "power off", "reboot": "rebooting",
	"soft-off": "soft power off", "soft-reboot": "soft rebooting"}

// nodePower changes a node's power state.
func (e *env) nodePower(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("node power", flag.ContinueOnError)
	timeout := fs.Int("power-timeout", 0, "seconds the conductor waits for the new state (0: its default)")
	pos, err := e.parse("node power", fs, args, 2)
	if err != nil {
		return err
	}
	target, ok := powerTargets[pos[1]]
	if !ok {
		return fmt.Errorf("%w: node power: %q is not on, off, reboot, soft-off or soft-reboot", ErrUsage, pos[1])
	}
	if err := e.c.SetPowerState(ctx, pos[0], target, *timeout); err != nil {
		return fmt.Errorf("power %s %s: %w", pos[0], pos[1], err)
	}
	fmt.Fprintf(e.stdout, "%s: %s requested\n", pos[0], target)
	return nil
}

// nodeBootDevice shows (one argument) or sets (two) the boot device.
func (e *env) nodeBootDevice(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("node boot-device", flag.ContinueOnError)
	persistent := fs.Bool("persistent", false, "keep the device for every boot, not only the next")
	pos, err := e.parseRange("node boot-device", fs, args, 1, 2)
	if err != nil {
		return err
	}
	if len(pos) == 2 {
		if err := e.c.SetBootDevice(ctx, pos[0], pos[1], *persistent); err != nil {
			return fmt.Errorf("set boot device of %s: %w", pos[0], err)
		}
		fmt.Fprintf(e.stdout, "%s: boot device %s (persistent: %v)\n", pos[0], pos[1], *persistent)
		return nil
	}
	bd, err := e.c.BootDevice(ctx, pos[0])
	if err != nil {
		return fmt.Errorf("boot device of %s: %w", pos[0], err)
	}
	if e.output == "json" {
		return e.json(bd)
	}
	fmt.Fprintf(e.stdout, "boot_device\t%v\npersistent\t%v\n", orDash(bd["boot_device"]), orDash(bd["persistent"]))
	return nil
}

// nodeMaintenance turns maintenance on or off.
func (e *env) nodeMaintenance(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("node maintenance", flag.ContinueOnError)
	reason := fs.String("reason", "", "why the node is in maintenance")
	pos, err := e.parse("node maintenance", fs, args, 2)
	if err != nil {
		return err
	}
	if pos[1] != "on" && pos[1] != "off" {
		return fmt.Errorf("%w: node maintenance: %q is not on or off", ErrUsage, pos[1])
	}
	if err := e.c.SetMaintenance(ctx, pos[0], pos[1] == "on", *reason); err != nil {
		return fmt.Errorf("maintenance %s %s: %w", pos[0], pos[1], err)
	}
	fmt.Fprintf(e.stdout, "%s: maintenance %s\n", pos[0], pos[1])
	return nil
}

// nodeValidate shows the per-interface validation; a failed interface
// makes the exit status 1.
func (e *env) nodeValidate(ctx context.Context, args []string) error {
	pos, err := e.parse("node validate", flag.NewFlagSet("node validate", flag.ContinueOnError), args, 1)
	if err != nil {
		return err
	}
	res, err := e.c.Validate(ctx, pos[0])
	if err != nil {
		return fmt.Errorf("validate %s: %w", pos[0], err)
	}
	var failed []string
	for iface, r := range res {
		if r["result"] == false {
			failed = append(failed, iface)
		}
	}
	sort.Strings(failed)
	if e.output == "json" {
		if err := e.json(res); err != nil {
			return err
		}
	} else {
		ifaces := make([]string, 0, len(res))
		for k := range res {
			ifaces = append(ifaces, k)
		}
		sort.Strings(ifaces)
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "INTERFACE\tRESULT\tREASON")
		for _, k := range ifaces {
			fmt.Fprintf(tw, "%s\t%v\t%v\n", k, orDash(res[k]["result"]), orDash(res[k]["reason"]))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s: validation failed for %s", pos[0], strings.Join(failed, ", "))
	}
	return nil
}

// phaseOrder is the order deploy phases are shown in; others follow,
// sorted.
var phaseOrder = []string{"power_off", "boot_ramdisk", "boot_to_lookup", "lookup_to_heartbeat",
	"download", "write", "download_write", "verify", "bootloader", "power", "tear_down", "boot_instance"}

// nodeTimings prints the per-phase timings of the node's last deploy
// (driver_internal_info.deploy_timings, phase → seconds).
func (e *env) nodeTimings(ctx context.Context, args []string) error {
	pos, err := e.parse("node timings", flag.NewFlagSet("node timings", flag.ContinueOnError), args, 1)
	if err != nil {
		return err
	}
	n, err := e.c.GetNode(ctx, pos[0])
	if err != nil {
		return fmt.Errorf("timings of %s: %w", pos[0], err)
	}
	t := n.Timings()
	if e.output == "json" {
		if t == nil {
			t = map[string]float64{}
		}
		return e.json(t)
	}
	if len(t) == 0 {
		return fmt.Errorf("%s: no deploy timings recorded (driver_internal_info.deploy_timings)", n.Label())
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PHASE\tSECONDS\t")
	var total float64
	for _, p := range orderedPhases(t) {
		fmt.Fprintf(tw, "%s\t%.1f\t\n", p, t[p])
		total += t[p]
	}
	fmt.Fprintf(tw, "total\t%.1f\t\n", total)
	return tw.Flush()
}

func orderedPhases(t map[string]float64) []string {
	var out, rest []string
	known := map[string]bool{}
	for _, p := range phaseOrder {
		known[p] = true
		if _, ok := t[p]; ok {
			out = append(out, p)
		}
	}
	for p := range t {
		if !known[p] {
			rest = append(rest, p)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// nodeWatch follows a node until it rests in a stable state, drawing a
// live progress bar of its image write (state, bytes, rate, ETA). It
// exits 0 on a stable non-failure state, 3 on a failure state and 4 on
// timeout.
func (e *env) nodeWatch(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("node watch", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 60*time.Minute, "give up after this long")
	pos, err := e.parse("node watch", fs, args, 1)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	tty := isTerminal(e.stdout)
	tick := time.NewTicker(e.pollInterval)
	defer tick.Stop()
	var last string
	for {
		n, err := e.c.GetNode(ctx, pos[0])
		if err != nil {
			if ctx.Err() != nil {
				return exitf(ExitTimeout, "%s: watch timed out after %s", pos[0], *timeout)
			}
			return fmt.Errorf("watch %s: %w", pos[0], err)
		}
		line := watchLine(n)
		if tty {
			fmt.Fprintf(e.stdout, "\r\033[K%s", line)
		} else if line != last {
			fmt.Fprintln(e.stdout, line)
		}
		last = line
		if n.TargetProvisionState == "" {
			if tty {
				fmt.Fprintln(e.stdout)
			}
			if failureStates[n.ProvisionState] {
				return exitf(ExitNodeFailed, "%s: %s: %s", n.Label(), n.ProvisionState, dash(n.LastError))
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(e.stdout)
			}
			return exitf(ExitTimeout, "%s: watch timed out after %s (now %s)", n.Label(), *timeout, n.ProvisionState)
		case <-tick.C:
		}
	}
}

// watchLine renders one status line: state, and while an image is being
// written a bar with bytes, rate and ETA.
func watchLine(n *client.Node) string {
	state := n.ProvisionState
	if n.TargetProvisionState != "" {
		state += " → " + n.TargetProvisionState
	}
	s := fmt.Sprintf("%s: %s", n.Label(), state)
	p := n.Progress()
	if p == nil || (n.TargetProvisionState != "active" && n.ProvisionState != "active") {
		return s
	}
	return s + " " + progressBar(p, 24) + " " + formatProgress(p)
}

// progressBar draws [#####.....] for the written fraction (an empty bar
// when the total is unknown).
func progressBar(p *wire.Progress, width int) string {
	filled := int(float64(width) * progressFraction(p))
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "]"
}

// isTerminal reports whether w is a character device (a terminal), where
// the watch redraws one line instead of printing a line per change.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func orDash(v any) any {
	if v == nil {
		return "-"
	}
	return v
}

// portDelete deletes a port.
func (e *env) portDelete(ctx context.Context, args []string) error {
	pos, err := e.parse("port delete", flag.NewFlagSet("port delete", flag.ContinueOnError), args, 1)
	if err != nil {
		return err
	}
	if err := e.c.DeletePort(ctx, pos[0]); err != nil {
		return fmt.Errorf("delete port %s: %w", pos[0], err)
	}
	fmt.Fprintf(e.stdout, "deleted port %s\n", pos[0])
	return nil
}
