package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/nodes"
	"github.com/spf13/cobra"

	"github.com/rivetmetal/rivet/cmd/rivet/internal/client"
)

// nodeCommands are the subcommands of "rivet node".
func (e *env) nodeCommands() []*cobra.Command {
	cmds := []*cobra.Command{
		e.nodeCreate(), e.nodeList(), e.nodeShow(), e.nodeDelete(),
		e.simpleAction("manage", "manage", "manageable", "Verify the node's driver settings: enroll → manageable"),
		e.simpleAction("provide", "provide", "available", "Make a manageable node available (cleaning it when automated cleaning is on)"),
		e.simpleAction("inspect", "inspect", "manageable", "Inspect the node's hardware through the deploy ramdisk"),
		e.simpleAction("undeploy", "deleted", "available", "Tear the node's instance down (and clean it)"),
		e.nodeDeploy(), e.nodeRebuild(), e.nodeClean(), e.nodeAbort(),
		e.nodePower(), e.nodeBootDevice(), e.nodeMaintenance(), e.nodeValidate(),
		e.nodeWatch(), e.nodeTimings(), e.nodeHistory(), e.nodeLogs(),
	}
	for _, c := range cmds {
		if c.Name() != "create" && c.Name() != "list" {
			if len(c.ValidArgs) > 0 {
				c.Annotations = map[string]string{wordsAnnotation: strings.Join(c.ValidArgs, " ")}
				c.ValidArgs = nil
			}
			c.ValidArgsFunction = e.completeNodes
		}
	}
	return cmds
}

// interfaceFlags are Ironic's hardware interface fields node create
// takes (a real Ironic needs them for hardware types with several).
var interfaceFlags = []string{"bios", "boot", "console", "deploy", "firmware", "inspect", "management",
	"network", "power", "raid", "rescue", "storage", "vendor"}

func (e *env) nodeCreate() *cobra.Command {
	var (
		name, driver, resourceClass string
		automatedClean              bool
		di, props                   = kvFlag{}, kvFlag{}
		ifaces                      = map[string]*string{}
	)
	cmd := &cobra.Command{
		Use:   "create --driver DRIVER [--name NAME] [flags]",
		Short: "Enroll a node",
		Example: `  rivet node create --name n1 --driver qemu --driver-info qemu_disk=/var/lib/n1.raw
  rivet node create --name n2 --driver manual-management --deploy-interface direct --power-interface fake`,
		Args: exactArgs(0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if driver == "" {
				return usagef("node create: --driver is required")
			}
			opts := nodes.CreateOpts{Name: name, Driver: driver, ResourceClass: resourceClass}
			if len(di) > 0 {
				opts.DriverInfo = di
			}
			if len(props) > 0 {
				opts.Properties = props
			}
			if cmd.Flags().Changed("automated-clean") {
				opts.AutomatedClean = &automatedClean
			}
			for k, v := range ifaces {
				setInterface(&opts, k, *v)
			}
			c, err := e.api()
			if err != nil {
				return err
			}
			n, err := c.CreateNode(cmd.Context(), opts)
			if err != nil {
				return fmt.Errorf("create node: %w", err)
			}
			return e.showNode(n)
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "node name")
	f.StringVar(&driver, "driver", "", "driver / hardware type (fake-hardware, qemu, redfish, ipmi; manual-management on Ironic)")
	f.Var(di, "driver-info", "driver_info key=value (repeatable)")
	f.Var(props, "property", "properties key=value (repeatable)")
	f.StringVar(&resourceClass, "resource-class", "", "resource class")
	f.BoolVar(&automatedClean, "automated-clean", false, "per-node automated cleaning (Ironic; sent only when given)")
	for _, k := range interfaceFlags {
		ifaces[k] = f.String(k+"-interface", "", k+" interface (sent only when given)")
	}
	return cmd
}

// setInterface sets one hardware interface of a create request.
func setInterface(o *nodes.CreateOpts, kind, name string) {
	if name == "" {
		return
	}
	switch kind {
	case "bios":
		o.BIOSInterface = name
	case "boot":
		o.BootInterface = name
	case "console":
		o.ConsoleInterface = name
	case "deploy":
		o.DeployInterface = name
	case "firmware":
		o.FirmwareInterface = name
	case "inspect":
		o.InspectInterface = name
	case "management":
		o.ManagementInterface = name
	case "network":
		o.NetworkInterface = name
	case "power":
		o.PowerInterface = name
	case "raid":
		o.RAIDInterface = name
	case "rescue":
		o.RescueInterface = name
	case "storage":
		o.StorageInterface = name
	case "vendor":
		o.VendorInterface = name
	}
}

func (e *env) nodeList() *cobra.Command {
	var state, maint, driver string
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "List nodes",
		Args:  exactArgs(0, "none"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := client.NodeFilter{ProvisionState: state, Driver: driver}
			switch maint {
			case "":
			case "true", "false":
				b := maint == "true"
				f.Maintenance = &b
			default:
				return usagef("node list: --maintenance %q is not true or false", maint)
			}
			c, err := e.api()
			if err != nil {
				return err
			}
			list, err := c.ListNodes(cmd.Context(), f)
			if err != nil {
				return fmt.Errorf("list nodes: %w", err)
			}
			if e.output == "json" {
				raw := make([]map[string]any, len(list))
				for i, n := range list {
					raw[i] = n.Raw
				}
				return e.json(raw)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "UUID\tNAME\tDRIVER\tPOWER\tPROVISION\tTARGET\tMAINTENANCE")
			for _, n := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%v\n", n.UUID, dash(n.Name), n.Driver, dash(n.PowerState),
					n.ProvisionState, dash(n.TargetProvisionState), n.Maintenance)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&state, "provision-state", "", "only nodes in this provision state")
	cmd.Flags().StringVar(&maint, "maintenance", "", "only nodes with maintenance true or false")
	cmd.Flags().StringVar(&driver, "driver", "", "only nodes of this driver")
	return cmd
}

func (e *env) nodeShow() *cobra.Command {
	return &cobra.Command{
		Use:   "show NODE",
		Short: "Show a node (-o json: every field)",
		Args:  exactArgs(1, "NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.api()
			if err != nil {
				return err
			}
			n, err := c.GetNode(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("show node %s: %w", args[0], err)
			}
			return e.showNode(n)
		},
	}
}

func (e *env) showNode(n *client.Node) error {
	if e.output == "json" {
		return e.json(n.Raw)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("uuid", n.UUID)
	row("name", dash(n.Name))
	row("driver", n.Driver)
	row("power_state", dash(n.PowerState))
	row("provision_state", n.ProvisionState)
	row("target_provision_state", dash(n.TargetProvisionState))
	row("maintenance", n.Maintenance)
	row("last_error", dash(n.LastError))
	if step, _ := n.DeployStep["step"].(string); step != "" {
		row("deploy_step", step)
	}
	if src, _ := n.InstanceInfo["image_source"].(string); src != "" {
		row("image_source", src)
	}
	if p := n.Progress(); p != nil {
		row("image_write", formatProgress(p))
	}
	row("provision_updated_at", dash(n.ProvisionUpdatedAt))
	return tw.Flush()
}

func (e *env) nodeDelete() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NODE",
		Short: "Delete a node (and its ports)",
		Args:  exactArgs(1, "NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.api()
			if err != nil {
				return err
			}
			if err := c.DeleteNode(cmd.Context(), args[0]); err != nil {
				return fmt.Errorf("delete node %s: %w", args[0], err)
			}
			fmt.Fprintf(e.stdout, "deleted node %s\n", args[0])
			return nil
		},
	}
}

// waitFlags adds --wait and --timeout.
func waitFlags(cmd *cobra.Command, target string, def time.Duration) (*bool, *time.Duration) {
	wait := cmd.Flags().Bool("wait", false, "wait for the node to reach "+target+", showing each state and the image write progress")
	timeout := cmd.Flags().Duration("timeout", def, "how long --wait waits")
	return wait, timeout
}

// provision asks for a provision target and, with wait, waits for target.
func (e *env) provision(cmd *cobra.Command, ident string, opts nodes.ProvisionStateOpts, what, target string, wait bool, timeout time.Duration) error {
	c, err := e.api()
	if err != nil {
		return err
	}
	if err := c.SetProvisionState(cmd.Context(), ident, opts); err != nil {
		return fmt.Errorf("%s %s: %w", what, ident, err)
	}
	if !wait {
		fmt.Fprintf(e.stdout, "%s: %s requested\n", ident, what)
		return nil
	}
	return e.waitFor(cmd.Context(), ident, target, timeout)
}

// simpleAction is a provision verb with an optional wait for its stable
// target.
func (e *env) simpleAction(name, verb, target, short string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   name + " NODE [--wait [--timeout D]]",
		Short: short,
		Args:  exactArgs(1, "NODE"),
	}
	wait, timeout := waitFlags(cmd, target, 30*time.Minute)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return e.provision(cmd, args[0], nodes.ProvisionStateOpts{Target: nodes.TargetProvisionState(verb)}, verb, target, *wait, *timeout)
	}
	return cmd
}

func (e *env) nodeDeploy() *cobra.Command {
	var image, checksum, algo, diskFormat, downloadSource, configdrive, imageType string
	var allMatching bool
	var rootGB int
	extra := kvFlag{}
	cmd := &cobra.Command{
		Use:   "deploy NODE --image URL --checksum HASH [flags]",
		Short: "Deploy an image to an available node",
		Example: `  rivet node deploy n1 --image http://images/disk.raw --checksum $(sha256sum disk.raw | cut -d' ' -f1) \
      --os-hash-algo sha256 --wait
  rivet node deploy n2 --image http://images/root.img --checksum ... --os-hash-algo sha256 \
      --image-type partition --root-gb 10 --instance-info kernel_append_params="%default% console=ttyS0"`,
		Args: exactArgs(1, "NODE"),
	}
	wait, timeout := waitFlags(cmd, "active", 30*time.Minute)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if image == "" || checksum == "" {
			return usagef("node deploy: --image and --checksum are required")
		}
		ident := args[0]
		c, err := e.api()
		if err != nil {
			return err
		}
		n, err := c.GetNode(cmd.Context(), ident)
		if err != nil {
			return fmt.Errorf("deploy %s: %w", ident, err)
		}
		ii := map[string]any{}
		for k, v := range n.InstanceInfo {
			if !strings.HasPrefix(k, "image_") && k != "configdrive" && k != "rivet_target_disks" {
				ii[k] = v
			}
		}
		ii["image_source"] = image
		if allMatching {
			ii["rivet_target_disks"] = "all_matching"
		}
		if algo != "" {
			ii["image_os_hash_algo"], ii["image_os_hash_value"] = algo, checksum
		} else {
			ii["image_checksum"] = checksum
		}
		if diskFormat != "" {
			ii["image_disk_format"] = diskFormat
		}
		if downloadSource != "" {
			ii["image_download_source"] = downloadSource
		}
		if imageType != "" {
			ii["image_type"] = imageType
		}
		if rootGB > 0 {
			ii["root_gb"] = rootGB
		}
		for k, v := range extra {
			ii[k] = v
		}
		if _, err := c.PatchNode(cmd.Context(), ident, nodes.UpdateOpts{
			nodes.UpdateOperation{Op: nodes.AddOp, Path: "/instance_info", Value: ii}}); err != nil {
			return fmt.Errorf("deploy %s: set instance_info: %w", ident, err)
		}
		opts := nodes.ProvisionStateOpts{Target: nodes.TargetActive}
		if configdrive != "" {
			opts.ConfigDrive = configdrive
		}
		return e.provision(cmd, ident, opts, "deploy", "active", *wait, *timeout)
	}
	f := cmd.Flags()
	f.StringVar(&image, "image", "", "image URL (http or https)")
	f.StringVar(&checksum, "checksum", "", "image checksum (or URL of a checksum file)")
	f.StringVar(&algo, "os-hash-algo", "", "hash algorithm of --checksum (sha256, sha512, ...); legacy checksum when empty")
	f.StringVar(&diskFormat, "disk-format", "", "image disk format (raw, qcow2, ...)")
	f.StringVar(&downloadSource, "download-source", "", `"http" makes the conductor cache the image and serve it to the node`)
	f.StringVar(&configdrive, "configdrive", "", "config drive: gzipped, base64-encoded ISO, or its URL")
	f.BoolVar(&allMatching, "all-matching-disks", false, "write the whole-disk image to every disk the root device hints match (instance_info rivet_target_disks)")
	f.StringVar(&imageType, "image-type", "", `"whole-disk" (default) or "partition" (needs --root-gb; the agent partitions the disk and installs the boot loader)`)
	f.IntVar(&rootGB, "root-gb", 0, "size of the root partition in GiB, for --image-type partition")
	f.Var(extra, "instance-info", "any other instance_info key=value (repeatable; applied last), e.g. swap_mb=512 or kernel_append_params=...")
	return cmd
}

func (e *env) nodeRebuild() *cobra.Command {
	var configdrive string
	cmd := &cobra.Command{
		Use:   "rebuild NODE [flags]",
		Short: "Redeploy an active node's image",
		Args:  exactArgs(1, "NODE"),
	}
	wait, timeout := waitFlags(cmd, "active", 30*time.Minute)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		opts := nodes.ProvisionStateOpts{Target: nodes.TargetRebuild}
		if configdrive != "" {
			opts.ConfigDrive = configdrive
		}
		return e.provision(cmd, args[0], opts, "rebuild", "active", *wait, *timeout)
	}
	cmd.Flags().StringVar(&configdrive, "configdrive", "", "config drive: gzipped, base64-encoded ISO, or its URL")
	return cmd
}

// stepFlag collects --step INTERFACE.STEP[=ARGS-JSON] values.
type stepFlag []nodes.CleanStep

// String implements pflag.Value.
func (f *stepFlag) String() string {
	var names []string
	for _, s := range *f {
		names = append(names, string(s.Interface)+"."+s.Step)
	}
	return strings.Join(names, ",")
}

// Set implements pflag.Value.
func (f *stepFlag) Set(s string) error {
	name, args, hasArgs := strings.Cut(s, "=")
	iface, step, ok := strings.Cut(name, ".")
	if !ok || iface == "" || step == "" {
		return fmt.Errorf("%q is not INTERFACE.STEP[=ARGS-JSON]", s)
	}
	st := nodes.CleanStep{Interface: nodes.StepInterface(iface), Step: step}
	if hasArgs {
		if err := jsonObject(args, &st.Args); err != nil {
			return fmt.Errorf("step %s: arguments are not a JSON object: %v", name, err)
		}
	}
	*f = append(*f, st)
	return nil
}

// Type implements pflag.Value.
func (f *stepFlag) Type() string { return "INTERFACE.STEP[=ARGS]" }

func (e *env) nodeClean() *cobra.Command {
	var steps stepFlag
	cmd := &cobra.Command{
		Use:     "clean NODE --step INTERFACE.STEP[=ARGS-JSON]... [flags]",
		Short:   "Clean a manageable node with the given steps, in order",
		Example: `  rivet node clean n1 --step deploy.erase_devices_metadata --wait`,
		Args:    exactArgs(1, "NODE"),
	}
	wait, timeout := waitFlags(cmd, "manageable", 60*time.Minute)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(steps) == 0 {
			return usagef("node clean: at least one --step is required")
		}
		return e.provision(cmd, args[0], nodes.ProvisionStateOpts{Target: nodes.TargetClean, CleanSteps: steps},
			"clean", "manageable", *wait, *timeout)
	}
	cmd.Flags().Var(&steps, "step", "clean step INTERFACE.STEP[=ARGS-JSON] (repeatable, run in order)")
	return cmd
}

func (e *env) nodeAbort() *cobra.Command {
	return &cobra.Command{
		Use:   "abort NODE",
		Short: "Abort the node's deploy, cleaning or inspection while it waits for its agent",
		Args:  exactArgs(1, "NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.provision(cmd, args[0], nodes.ProvisionStateOpts{Target: nodes.TargetAbort}, "abort", "", false, 0)
		},
	}
}
