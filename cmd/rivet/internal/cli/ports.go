package cli

import (
	"fmt"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/rivetmetal/rivet/cmd/rivet/internal/client"
)

// portCommands are the subcommands of "rivet port".
func (e *env) portCommands() []*cobra.Command {
	var node string
	create := &cobra.Command{
		Use:   "create MAC --node NODE",
		Short: "Enroll a NIC of a node by its MAC address",
		Args:  exactArgs(1, "MAC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if node == "" {
				return usagef("port create: --node is required")
			}
			c, err := e.api()
			if err != nil {
				return err
			}
			p, err := c.CreatePort(cmd.Context(), args[0], node)
			if err != nil {
				return fmt.Errorf("create port %s: %w", args[0], err)
			}
			if e.output == "json" {
				return e.json(p.Raw)
			}
			return e.portTable([]*client.Port{p})
		},
	}
	create.Flags().StringVar(&node, "node", "", "node name or UUID")
	_ = create.RegisterFlagCompletionFunc("node", e.completeNodes)
	list := &cobra.Command{
		Use:   "list",
		Short: "List ports",
		Args:  exactArgs(0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.api()
			if err != nil {
				return err
			}
			ports, err := c.ListPorts(cmd.Context())
			if err != nil {
				return fmt.Errorf("list ports: %w", err)
			}
			if e.output == "json" {
				raw := make([]map[string]any, len(ports))
				for i, p := range ports {
					raw[i] = p.Raw
				}
				return e.json(raw)
			}
			return e.portTable(ports)
		},
	}
	del := &cobra.Command{
		Use:   "delete UUID",
		Short: "Delete a port",
		Args:  exactArgs(1, "UUID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.api()
			if err != nil {
				return err
			}
			if err := c.DeletePort(cmd.Context(), args[0]); err != nil {
				return fmt.Errorf("delete port %s: %w", args[0], err)
			}
			fmt.Fprintf(e.stdout, "deleted port %s\n", args[0])
			return nil
		},
	}
	return []*cobra.Command{create, list, del}
}

func (e *env) portTable(ports []*client.Port) error {
	sort.SliceStable(ports, func(i, j int) bool { return ports[i].NodeUUID < ports[j].NodeUUID })
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UUID\tADDRESS\tNODE")
	for _, p := range ports {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.UUID, p.Address, p.NodeUUID)
	}
	return tw.Flush()
}
