package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rivetmetal/rivet/cmd/rivet/internal/client"
	"github.com/rivetmetal/rivet/wire"
)

// jsonObject decodes s, which must be a JSON object, into v.
func jsonObject(s string, v *map[string]any) error {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return err
	}
	if *v == nil {
		return fmt.Errorf("null is not an object")
	}
	return nil
}

// powerTargets maps the CLI's power words onto Ironic's targets.
var powerTargets = map[string]string{"on": "power on", "off": "power off", "reboot": "rebooting",
	"soft-off": "soft power off", "soft-reboot": "soft rebooting"}

func (e *env) nodePower() *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:       "power NODE on|off|reboot|soft-off|soft-reboot",
		Short:     "Change a node's power state",
		Args:      exactArgs(2, "NODE and on, off, reboot, soft-off or soft-reboot"),
		ValidArgs: []string{"on", "off", "reboot", "soft-off", "soft-reboot"},
		RunE: func(cmd *cobra.Command, args []string) error {
			target, ok := powerTargets[args[1]]
			if !ok {
				return usagef("node power: %q is not on, off, reboot, soft-off or soft-reboot", args[1])
			}
			c, err := e.api()
			if err != nil {
				return err
			}
			if err := c.SetPowerState(cmd.Context(), args[0], target, timeout); err != nil {
				return fmt.Errorf("power %s %s: %w", args[0], args[1], err)
			}
			fmt.Fprintf(e.stdout, "%s: %s requested\n", args[0], target)
			return nil
		},
	}
	cmd.Flags().IntVar(&timeout, "power-timeout", 0, "seconds the conductor waits for the new state (0: its default)")
	return cmd
}

func (e *env) nodeBootDevice() *cobra.Command {
	var persistent bool
	cmd := &cobra.Command{
		Use:   "boot-device NODE [pxe|disk|cdrom|bios [--persistent]]",
		Short: "Show (one argument) or set (two) the device a node boots from next",
		Args:  rangeArgs(1, 2, "NODE and an optional device"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.api()
			if err != nil {
				return err
			}
			if len(args) == 2 {
				if err := c.SetBootDevice(cmd.Context(), args[0], args[1], persistent); err != nil {
					return fmt.Errorf("set boot device of %s: %w", args[0], err)
				}
				fmt.Fprintf(e.stdout, "%s: boot device %s (persistent: %v)\n", args[0], args[1], persistent)
				return nil
			}
			bd, err := c.BootDevice(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("boot device of %s: %w", args[0], err)
			}
			if e.output == "json" {
				return e.json(bd)
			}
			fmt.Fprintf(e.stdout, "boot_device\t%v\npersistent\t%v\n", orDash(bd["boot_device"]), orDash(bd["persistent"]))
			return nil
		},
	}
	cmd.Flags().BoolVar(&persistent, "persistent", false, "keep the device for every boot, not only the next")
	return cmd
}

func (e *env) nodeMaintenance() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:       "maintenance NODE on [--reason TEXT] | off",
		Short:     "Turn a node's maintenance mode on or off",
		Args:      exactArgs(2, "NODE and on or off"),
		ValidArgs: []string{"on", "off"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[1] != "on" && args[1] != "off" {
				return usagef("node maintenance: %q is not on or off", args[1])
			}
			c, err := e.api()
			if err != nil {
				return err
			}
			if err := c.SetMaintenance(cmd.Context(), args[0], args[1] == "on", reason); err != nil {
				return fmt.Errorf("maintenance %s %s: %w", args[0], args[1], err)
			}
			fmt.Fprintf(e.stdout, "%s: maintenance %s\n", args[0], args[1])
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the node is in maintenance")
	return cmd
}

func (e *env) nodeValidate() *cobra.Command {
	return &cobra.Command{
		Use:   "validate NODE",
		Short: "Validate a node's interfaces (exit status 1 when one fails)",
		Args:  exactArgs(1, "NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.api()
			if err != nil {
				return err
			}
			res, err := c.Validate(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("validate %s: %w", args[0], err)
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
				return fmt.Errorf("%s: validation failed for %s", args[0], strings.Join(failed, ", "))
			}
			return nil
		},
	}
}

func (e *env) nodeWatch() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "watch NODE [--timeout D]",
		Short: "Follow a node until it rests in a stable state, with a live progress bar of its image write",
		Long: `Follow a node until it rests in a stable state, drawing a live progress bar
of its image write (state, bytes, rate, ETA). Exit status 0 on a stable
state, 3 on a failure state, 4 on timeout.`,
		Args: exactArgs(1, "NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.watch(cmd.Context(), args[0], timeout)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Minute, "give up after this long")
	return cmd
}

// watch follows a node until it rests in a stable state.
func (e *env) watch(ctx context.Context, ident string, timeout time.Duration) error {
	c, err := e.api()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tty := isTerminal(e.stdout)
	tick := time.NewTicker(e.pollInterval)
	defer tick.Stop()
	var last string
	for {
		n, err := c.GetNode(ctx, ident)
		if err != nil {
			if ctx.Err() != nil {
				return exitf(ExitTimeout, "%s: watch timed out after %s", ident, timeout)
			}
			return fmt.Errorf("watch %s: %w", ident, err)
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
			return exitf(ExitTimeout, "%s: watch timed out after %s (now %s)", n.Label(), timeout, n.ProvisionState)
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
