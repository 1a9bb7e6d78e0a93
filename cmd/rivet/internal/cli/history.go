package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rivetmetal/rivet/cmd/rivet/internal/client"
)

func (e *env) nodeHistory() *cobra.Command {
	var limit int
	var utc bool
	cmd := &cobra.Command{
		Use:   "history NODE [EVENT]",
		Short: "Show a node's history: state changes, failures and operator actions (API 1.78)",
		Long: `Show a node's history, oldest first: every provision-state change, failure
(with its error), power and maintenance change and operator action, with
its time, severity, type, the user who asked for it and the conductor
that recorded it (Ironic's node history, API 1.78; a real Ironic records
mostly errors). With EVENT, show that one event. The conductor keeps the
newest 300 events of each node by default.`,
		Args: rangeArgs(1, 2, "NODE and an optional EVENT UUID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.api()
			if err != nil {
				return err
			}
			if len(args) == 2 {
				ev, err := c.HistoryEvent(cmd.Context(), args[0], args[1])
				if err != nil {
					return fmt.Errorf("history event %s of %s: %w", args[1], args[0], err)
				}
				if e.output == "json" {
					return e.json(ev.Raw)
				}
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				for _, kv := range [][2]string{{"uuid", ev.UUID}, {"created_at", e.timeOf(ev.CreatedAt, utc)},
					{"severity", ev.Severity}, {"event_type", ev.EventType}, {"user", dash(ev.User)},
					{"conductor", dash(ev.Conductor)}, {"event", ev.Event}} {
					fmt.Fprintf(tw, "%s\t%s\n", kv[0], kv[1])
				}
				return tw.Flush()
			}
			evs, err := c.History(cmd.Context(), args[0], 0)
			if err != nil {
				return fmt.Errorf("history of %s: %w", args[0], err)
			}
			if limit > 0 && len(evs) > limit {
				evs = evs[len(evs)-limit:]
			}
			if e.output == "json" {
				raw := make([]map[string]any, len(evs))
				for i, ev := range evs {
					raw[i] = ev.Raw
				}
				return e.json(raw)
			}
			return e.printHistory(evs, utc)
		},
	}
	cmd.Flags().IntVar(&limit, "last", 0, "show only the newest N events")
	cmd.Flags().BoolVar(&utc, "utc", false, "show times in UTC (default: local time)")
	return cmd
}

// timeOf formats an event's time.
func (e *env) timeOf(t time.Time, utc bool) string {
	if t.IsZero() {
		return "-"
	}
	if utc {
		return t.UTC().Format("2006-01-02 15:04:05Z")
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func (e *env) printHistory(evs []client.HistoryEvent, utc bool) error {
	if len(evs) == 0 {
		fmt.Fprintln(e.stdout, "no history recorded")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSEVERITY\tTYPE\tUSER\tEVENT")
	for _, ev := range evs {
		// One line per event: a multi-line error keeps its first line
		// here (rivet node history NODE EVENT shows it all).
		text, _, more := strings.Cut(ev.Event, "\n")
		if more {
			text += " …"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.timeOf(ev.CreatedAt, utc), ev.Severity, dash(ev.EventType), dash(ev.User), text)
	}
	return tw.Flush()
}
