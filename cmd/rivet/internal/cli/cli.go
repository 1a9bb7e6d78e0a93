// Package cli implements the rivet command line: node and port commands
// over the conductor API, table or JSON output, and a --wait mode that
// follows provision states and image write progress.
package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rivetmetal/rivet/cmd/rivet/internal/client"
)

// DefaultURL is the conductor URL when neither --url nor RIVET_URL is set.
const DefaultURL = "http://127.0.0.1:6385"

// ErrUsage marks command-line mistakes (exit status 2).
var ErrUsage = errors.New("usage error")

const usage = `usage: rivet [--url URL] [--username U --password P] [--cacert FILE] [-o table|json] COMMAND

  node create --name N --driver D [--driver-info k=v]... [--property k=v]...
  node list [--provision-state S] [--maintenance true|false] [--driver D]
  node show N
  node manage N [--wait] [--timeout D]
  node provide N [--wait] [--timeout D]
  node deploy N --image URL --checksum HASH [--os-hash-algo ALGO] [--disk-format F]
                [--download-source http] [--configdrive DATA] [--all-matching-disks]
                [--wait] [--timeout D]
  node rebuild N [--configdrive DATA] [--wait] [--timeout D]
  node undeploy N [--wait] [--timeout D]
  node clean N --step INTERFACE.STEP[=ARGS-JSON]... [--wait] [--timeout D]
  node inspect N [--wait] [--timeout D]
  node abort N
  node power N on|off|reboot|soft-off|soft-reboot [--power-timeout SECONDS]
  node boot-device N [pxe|disk|cdrom|bios [--persistent]]
  node maintenance N on [--reason TEXT] | off
  node validate N
  node watch N [--timeout D]
  node timings N
  node delete N
  port create MAC --node N
  port list
  port delete UUID

The conductor URL comes from --url, else $RIVET_URL, else ` + DefaultURL + `.
Credentials for a conductor with http_basic authentication come from
--username and --password, else $RIVET_USERNAME and $RIVET_PASSWORD (prefer
the environment: arguments are visible to other users in ps). --cacert (else
$RIVET_CACERT) is a PEM bundle of the CAs that verify an https:// conductor.
Exit status: 0 success, 1 error (API refusal, network), 2 usage error,
3 the node ended in a failure state (deploy failed, clean failed, ...),
4 a --wait or watch timed out.
`

// env is one invocation's settings and outputs.
type env struct {
	url          string
	username     string
	password     string
	cacert       string
	output       string
	pollInterval time.Duration
	stdout       io.Writer
	stderr       io.Writer
	c            *client.Client
}

// Run runs the rivet command line args (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	e := &env{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("rivet", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e.addCommon(fs)
	if err := fs.Parse(args); err != nil {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	rest := fs.Args()
	if len(rest) < 2 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: missing command", ErrUsage)
	}
	cmds := map[string]func(context.Context, []string) error{
		"node create":      e.nodeCreate,
		"node list":        e.nodeList,
		"node show":        e.nodeShow,
		"node manage":      e.simpleAction("manage", "manageable"),
		"node provide":     e.simpleAction("provide", "available"),
		"node deploy":      e.nodeDeploy,
		"node undeploy":    e.simpleAction("deleted", "available"),
		"node inspect":     e.simpleAction("inspect", "manageable"),
		"node abort":       e.nodeAbort,
		"node rebuild":     e.nodeRebuild,
		"node clean":       e.nodeClean,
		"node power":       e.nodePower,
		"node boot-device": e.nodeBootDevice,
		"node maintenance": e.nodeMaintenance,
		"node validate":    e.nodeValidate,
		"node watch":       e.nodeWatch,
		"node timings":     e.nodeTimings,
		"node delete":      e.nodeDelete,
		"port create":      e.portCreate,
		"port list":        e.portList,
		"port delete":      e.portDelete,
	}
	cmd, ok := cmds[rest[0]+" "+rest[1]]
	if !ok {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: unknown command %q", ErrUsage, strings.Join(rest[:2], " "))
	}
	return e.explain(cmd(ctx, rest[2:]))
}

// explain adds a hint to errors whose cure is a flag: missing
// credentials, an untrusted certificate.
func (e *env) explain(err error) error {
	var unknownCA x509.UnknownAuthorityError
	switch {
	case err == nil:
		return nil
	case client.IsUnauthorized(err) && (e.c == nil || !e.c.HasCredentials()):
		return fmt.Errorf("%w; the conductor requires credentials: set RIVET_USERNAME and RIVET_PASSWORD (or --username and --password)", err)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("%w; give the CA that signed the conductor's certificate with --cacert or RIVET_CACERT", err)
	}
	return err
}

// addCommon registers the flags every level accepts.
func (e *env) addCommon(fs *flag.FlagSet) {
	def := os.Getenv("RIVET_URL")
	if e.url != "" {
		def = e.url
	} else if def == "" {
		def = DefaultURL
	}
	out := e.output
	if out == "" {
		out = "table"
	}
	poll := e.pollInterval
	if poll == 0 {
		poll = time.Second
	}
	fs.StringVar(&e.url, "url", def, "conductor API URL")
	fs.StringVar(&e.username, "username", orEnv(e.username, "RIVET_USERNAME"), "user name for http_basic authentication")
	fs.StringVar(&e.password, "password", orEnv(e.password, "RIVET_PASSWORD"), "password for http_basic authentication (prefer $RIVET_PASSWORD)")
	fs.StringVar(&e.cacert, "cacert", orEnv(e.cacert, "RIVET_CACERT"), "PEM bundle of the CAs that verify the conductor's TLS certificate")
	fs.StringVar(&e.output, "o", out, "output format: table or json")
	fs.StringVar(&e.output, "output", out, "output format: table or json")
	fs.DurationVar(&e.pollInterval, "poll-interval", poll, "how often --wait polls")
}

// parse parses a subcommand's flags, which may come before or after its
// positional arguments, and checks the positional count.
func (e *env) parse(name string, fs *flag.FlagSet, args []string, npos int) ([]string, error) {
	return e.parseRange(name, fs, args, npos, npos)
}

// parseRange is parse for commands taking between minPos and maxPos
// positional arguments.
func (e *env) parseRange(name string, fs *flag.FlagSet, args []string, minPos, maxPos int) ([]string, error) {
	e.addCommon(fs)
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			fmt.Fprint(e.stderr, usage)
			return nil, fmt.Errorf("%w: %s: %v", ErrUsage, name, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < minPos || len(pos) > maxPos {
		fmt.Fprint(e.stderr, usage)
		want := fmt.Sprint(minPos)
		if maxPos != minPos {
			want = fmt.Sprintf("%d to %d", minPos, maxPos)
		}
		return nil, fmt.Errorf("%w: %s takes %s argument(s), got %d", ErrUsage, name, want, len(pos))
	}
	if e.output != "table" && e.output != "json" {
		return nil, fmt.Errorf("%w: unknown output format %q", ErrUsage, e.output)
	}
	c, err := client.New(e.url, client.Options{Username: e.username, Password: e.password, CACertFile: e.cacert})
	if err != nil {
		return nil, fmt.Errorf("--cacert: %w", err)
	}
	e.c = c
	if e.username != "" {
		e.warnPlainCredentials()
	}
	return pos, nil
}

// orEnv is the value set on an earlier level, else the environment's.
func orEnv(set, name string) string {
	if set != "" {
		return set
	}
	return os.Getenv(name)
}

// warnPlainCredentials warns when credentials would cross the network
// unencrypted: an http:// URL whose host is not loopback.
func (e *env) warnPlainCredentials() {
	u, err := url.Parse(e.url)
	if err != nil || u.Scheme != "http" {
		return
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return
	}
	fmt.Fprintf(e.stderr, "rivet: warning: sending credentials unencrypted to %s; use an https:// URL\n", u.Host)
}

// kvFlag collects repeated k=v flags; values that parse as JSON (numbers,
// booleans, objects) keep that type, others are strings.
type kvFlag map[string]any

// String implements flag.Value.
func (f kvFlag) String() string { return fmt.Sprint(map[string]any(f)) }

// Set implements flag.Value.
func (f kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not key=value", s)
	}
	var parsed any
	if err := json.Unmarshal([]byte(v), &parsed); err == nil {
		f[k] = parsed
	} else {
		f[k] = v
	}
	return nil
}

func (e *env) nodeCreate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("node create", flag.ContinueOnError)
	name := fs.String("name", "", "node name")
	driver := fs.String("driver", "", "power driver (fake-hardware, qemu)")
	di, props := kvFlag{}, kvFlag{}
	fs.Var(di, "driver-info", "driver_info key=value (repeatable)")
	fs.Var(props, "property", "properties key=value (repeatable)")
	if _, err := e.parse("node create", fs, args, 0); err != nil {
		return err
	}
	if *driver == "" {
		return fmt.Errorf("%w: node create: --driver is required", ErrUsage)
	}
	fields := map[string]any{"driver": *driver}
	if *name != "" {
		fields["name"] = *name
	}
	if len(di) > 0 {
		fields["driver_info"] = map[string]any(di)
	}
	if len(props) > 0 {
		fields["properties"] = map[string]any(props)
	}
	n, err := e.c.CreateNode(ctx, fields)
	if err != nil {
		return fmt.Errorf("create node: %w", err)
	}
	return e.showNode(n)
}

func (e *env) nodeList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("node list", flag.ContinueOnError)
	state := fs.String("provision-state", "", "only nodes in this provision state")
	maint := fs.String("maintenance", "", "only nodes with maintenance true or false")
	driver := fs.String("driver", "", "only nodes of this driver")
	if _, err := e.parse("node list", fs, args, 0); err != nil {
		return err
	}
	filters := url.Values{}
	for k, v := range map[string]string{"provision_state": *state, "maintenance": *maint, "driver": *driver} {
		if v != "" {
			filters.Set(k, v)
		}
	}
	nodes, err := e.c.ListNodes(ctx, filters)
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	if e.output == "json" {
		raw := make([]map[string]any, len(nodes))
		for i, n := range nodes {
			raw[i] = n.Raw
		}
		return e.json(raw)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UUID\tNAME\tDRIVER\tPOWER\tPROVISION\tTARGET\tMAINTENANCE")
	for _, n := range nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%v\n", n.UUID, dash(n.Name), n.Driver, dash(n.PowerState),
			n.ProvisionState, dash(n.TargetProvisionState), n.Maintenance)
	}
	return tw.Flush()
}

func (e *env) nodeShow(ctx context.Context, args []string) error {
	pos, err := e.parse("node show", flag.NewFlagSet("node show", flag.ContinueOnError), args, 1)
	if err != nil {
		return err
	}
	n, err := e.c.GetNode(ctx, pos[0])
	if err != nil {
		return fmt.Errorf("show node %s: %w", pos[0], err)
	}
	return e.showNode(n)
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

func (e *env) nodeDelete(ctx context.Context, args []string) error {
	pos, err := e.parse("node delete", flag.NewFlagSet("node delete", flag.ContinueOnError), args, 1)
	if err != nil {
		return err
	}
	if err := e.c.DeleteNode(ctx, pos[0]); err != nil {
		return fmt.Errorf("delete node %s: %w", pos[0], err)
	}
	fmt.Fprintf(e.stdout, "deleted node %s\n", pos[0])
	return nil
}

// simpleAction is a provision verb with an optional wait for its stable
// target.
func (e *env) simpleAction(verb, target string) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		name := "node " + verb
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		wait := fs.Bool("wait", false, "wait for the node to reach "+target)
		timeout := fs.Duration("timeout", 30*time.Minute, "how long --wait waits")
		pos, err := e.parse(name, fs, args, 1)
		if err != nil {
			return err
		}
		if err := e.c.SetProvisionState(ctx, pos[0], verb, nil); err != nil {
			return fmt.Errorf("%s %s: %w", verb, pos[0], err)
		}
		if !*wait {
			fmt.Fprintf(e.stdout, "%s: %s requested\n", pos[0], verb)
			return nil
		}
		return e.waitFor(ctx, pos[0], target, *timeout)
	}
}

func (e *env) nodeDeploy(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("node deploy", flag.ContinueOnError)
	image := fs.String("image", "", "image URL (http or https)")
	checksum := fs.String("checksum", "", "image checksum (or URL of a checksum file)")
	algo := fs.String("os-hash-algo", "", "hash algorithm of --checksum (sha256, sha512, ...); legacy checksum when empty")
	diskFormat := fs.String("disk-format", "", "image disk format (raw, qcow2, ...)")
	downloadSource := fs.String("download-source", "", `"http" makes the conductor cache the image and serve it to the node`)
	configdrive := fs.String("configdrive", "", "config drive: gzipped, base64-encoded ISO, or its URL")
	allMatching := fs.Bool("all-matching-disks", false, "write the whole-disk image to every disk the root device hints match (instance_info rivet_target_disks)")
	wait := fs.Bool("wait", false, "wait for the deploy to end, showing progress")
	timeout := fs.Duration("timeout", 30*time.Minute, "how long --wait waits")
	pos, err := e.parse("node deploy", fs, args, 1)
	if err != nil {
		return err
	}
	if *image == "" || *checksum == "" {
		return fmt.Errorf("%w: node deploy: --image and --checksum are required", ErrUsage)
	}
	ident := pos[0]
	n, err := e.c.GetNode(ctx, ident)
	if err != nil {
		return fmt.Errorf("deploy %s: %w", ident, err)
	}
	ii := map[string]any{}
	for k, v := range n.InstanceInfo {
		if !strings.HasPrefix(k, "image_") && k != "configdrive" && k != "rivet_target_disks" {
			ii[k] = v
		}
	}
	ii["image_source"] = *image
	if *allMatching {
		ii["rivet_target_disks"] = "all_matching"
	}
	if *algo != "" {
		ii["image_os_hash_algo"], ii["image_os_hash_value"] = *algo, *checksum
	} else {
		ii["image_checksum"] = *checksum
	}
	if *diskFormat != "" {
		ii["image_disk_format"] = *diskFormat
	}
	if *downloadSource != "" {
		ii["image_download_source"] = *downloadSource
	}
	if _, err := e.c.PatchNode(ctx, ident, []client.PatchOp{{Op: "add", Path: "/instance_info", Value: ii}}); err != nil {
		return fmt.Errorf("deploy %s: set instance_info: %w", ident, err)
	}
	var cd any
	if *configdrive != "" {
		cd = *configdrive
	}
	if err := e.c.SetProvisionState(ctx, ident, "active", cd); err != nil {
		return fmt.Errorf("deploy %s: %w", ident, err)
	}
	if !*wait {
		fmt.Fprintf(e.stdout, "%s: deploy requested\n", ident)
		return nil
	}
	return e.waitFor(ctx, ident, "active", *timeout)
}

func (e *env) portCreate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("port create", flag.ContinueOnError)
	node := fs.String("node", "", "node name or UUID")
	pos, err := e.parse("port create", fs, args, 1)
	if err != nil {
		return err
	}
	if *node == "" {
		return fmt.Errorf("%w: port create: --node is required", ErrUsage)
	}
	p, err := e.c.CreatePort(ctx, pos[0], *node)
	if err != nil {
		return fmt.Errorf("create port %s: %w", pos[0], err)
	}
	if e.output == "json" {
		return e.json(p.Raw)
	}
	return e.portTable([]*client.Port{p})
}

func (e *env) portList(ctx context.Context, args []string) error {
	if _, err := e.parse("port list", flag.NewFlagSet("port list", flag.ContinueOnError), args, 0); err != nil {
		return err
	}
	ports, err := e.c.ListPorts(ctx)
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

func (e *env) json(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
