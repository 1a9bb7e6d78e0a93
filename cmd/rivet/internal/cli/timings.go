package cli

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rivetmetal/rivet/wire"
)

// phaseOrder is the order the conductor's deploy phases are shown in;
// others follow, sorted.
var phaseOrder = []string{"power_off", "boot_ramdisk", "boot_to_lookup", "lookup_to_heartbeat",
	"download", "write", "download_write", "verify", "bootloader", "power", "tear_down", "boot_instance"}

// agentPhaseOrder is the order of the agent's own phases (imagewriter's),
// the decode phase's own timings beneath it.
var agentPhaseOrder = wire.AgentTimings

// agentPrefix marks the agent's own timings of the write: sub-phases of
// download_write, several of them concurrent (download, decode and
// write overlap), so they are never added up.
const agentPrefix = "agent_"

func (e *env) nodeTimings() *cobra.Command {
	return &cobra.Command{
		Use:   "timings NODE",
		Short: "Show the per-phase timings of the node's last deploy (Rivet)",
		Long: `Show the per-phase timings of the node's last deploy
(driver_internal_info.deploy_timings). The total is the one the conductor
recorded, from the deploy's request to active; the time not in any phase
is shown as "between phases". The agent's own timings of the image write
(agent_*) are shown under download_write, as parts of it: the download,
decode and write run at the same time, so they overlap and are not added.`,
		Args: exactArgs(1, "NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.api()
			if err != nil {
				return err
			}
			n, err := c.GetNode(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("timings of %s: %w", args[0], err)
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
			return e.printTimings(t)
		},
	}
}

// timingRow is one line of the timings table.
type timingRow struct {
	label   string
	seconds float64
	note    string
}

// timingRows lays timings out: the conductor's phases in order, the
// agent's under download_write, the time between phases, the total.
func timingRows(t map[string]float64) []timingRow {
	var top, agent []string
	for p := range t {
		switch {
		case p == "total":
		case strings.HasPrefix(p, agentPrefix):
			agent = append(agent, p)
		default:
			top = append(top, p)
		}
	}
	sortBy(top, phaseOrder, "")
	sortBy(agent, agentPhaseOrder, agentPrefix)
	var rows []timingRow
	var sum float64
	subs := func() {
		for i, p := range agent {
			note := ""
			if i == 0 {
				note = "agent's own timings, part of download_write (concurrent ones overlap)"
			}
			rows = append(rows, timingRow{label: "  ↳ " + p, seconds: t[p], note: note})
		}
		agent = nil
	}
	for _, p := range top {
		rows = append(rows, timingRow{label: p, seconds: t[p]})
		sum += t[p]
		if p == "download_write" {
			subs()
		}
	}
	subs()
	total, recorded := t["total"]
	switch {
	case !recorded:
		rows = append(rows, timingRow{label: "sum of phases", seconds: sum, note: "no total recorded: the deploy has not ended"})
	default:
		if between := total - sum; between >= 0.05 {
			rows = append(rows, timingRow{label: "between phases", seconds: between, note: "total minus the phases"})
		}
		rows = append(rows, timingRow{label: "total", seconds: total, note: "deploy requested → active"})
	}
	return rows
}

// sortBy sorts names by their place in order (after trimming prefix),
// the others after them, alphabetically.
func sortBy(names, order []string, prefix string) {
	rank := map[string]int{}
	for i, p := range order {
		rank[prefix+p] = i + 1
	}
	sort.Slice(names, func(i, j int) bool {
		ri, rj := rank[names[i]], rank[names[j]]
		switch {
		case ri != 0 && rj != 0:
			return ri < rj
		case ri != 0 || rj != 0:
			return ri != 0
		}
		return names[i] < names[j]
	})
}

func (e *env) printTimings(t map[string]float64) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tSECONDS\t")
	for _, r := range timingRows(t) {
		fmt.Fprintf(tw, "%s\t%7.1f\t%s\n", r.label, r.seconds, r.note)
	}
	return tw.Flush()
}
