// Package cli implements the rivet command line on spf13/cobra: node and
// port commands over an Ironic-style API (the Rivet conductor, or a real
// Ironic for the commands Ironic has), table or JSON output, --wait and
// watch modes that follow provision states and image write progress, node
// history, agent logs, per-command --help and shell completion (bash,
// zsh, fish, with node names completed from the API).
package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rivetmetal/rivet/cmd/rivet/internal/client"
)

// DefaultURL is the conductor URL when neither --url nor RIVET_URL is set.
const DefaultURL = "http://127.0.0.1:6385"

// ErrUsage marks command-line mistakes (exit status 2).
var ErrUsage = errors.New("usage error")

// Exit statuses beyond 0 (success), 1 (error) and 2 (usage).
const (
	// ExitNodeFailed: the node ended in a failure state (deploy failed,
	// clean failed, ...) or settled somewhere other than the target.
	ExitNodeFailed = 3
	// ExitTimeout: a --wait, watch or logs --follow ran out of time.
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

// usagef is a command-line mistake.
func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
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

const rootHelp = `rivet drives an Ironic-style bare-metal API: the Rivet conductor, or a
real Ironic for the commands Ironic has (node and port commands; history
needs API 1.78; timings, watch progress and agent logs are Rivet's).

The API URL comes from --url, else $RIVET_URL, else ` + DefaultURL + `.
Credentials for http_basic authentication come from --username and
--password, else $RIVET_USERNAME and $RIVET_PASSWORD (prefer the
environment: arguments are visible to other users in ps). --cacert (else
$RIVET_CACERT) is a PEM bundle of the CAs that verify an https:// API.
The microversion is the lower of the server's maximum and ` + client.MaxVersion + `.

Exit status: 0 success, 1 error (API refusal, network), 2 usage error,
3 the node ended in a failure state (deploy failed, clean failed, ...),
4 a --wait, watch or logs --follow timed out.

Shell completion: rivet completion bash|zsh|fish --help.`

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
	// started is set once a command's own code runs: an error before
	// that is cobra's (flags, arguments, unknown command), a usage error.
	started bool
}

// Run runs the rivet command line args (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	e := &env{stdout: stdout, stderr: stderr}
	root := e.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil && !e.started && !errors.Is(err, ErrUsage) {
		err = fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if errors.Is(err, ErrUsage) && cmd != nil {
		fmt.Fprint(stderr, cmd.UsageString())
	}
	return e.explain(err)
}

// rootCommand builds the command tree.
func (e *env) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "rivet",
		Short:         "The Rivet operator CLI (and a client of Ironic's API)",
		Long:          rootHelp,
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE:          groupRun,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			e.started = true
			if e.output != "table" && e.output != "json" {
				return usagef("unknown output format %q (table or json)", e.output)
			}
			return nil
		},
	}
	def := os.Getenv("RIVET_URL")
	if def == "" {
		def = DefaultURL
	}
	pf := root.PersistentFlags()
	pf.StringVar(&e.url, "url", def, "API URL ($RIVET_URL)")
	pf.StringVar(&e.username, "username", os.Getenv("RIVET_USERNAME"), "user name for http_basic authentication ($RIVET_USERNAME)")
	// The password's default is read later: help shows flag defaults.
	pf.StringVar(&e.password, "password", "", "password for http_basic authentication (prefer $RIVET_PASSWORD)")
	pf.StringVar(&e.cacert, "cacert", os.Getenv("RIVET_CACERT"), "PEM bundle of the CAs that verify the API's TLS certificate ($RIVET_CACERT)")
	pf.StringVarP(&e.output, "output", "o", "table", "output format: table or json")
	pf.DurationVar(&e.pollInterval, "poll-interval", time.Second, "how often --wait and watch poll")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fmt.Errorf("%w: %v", ErrUsage, err) })

	node := &cobra.Command{Use: "node", Short: "Enroll nodes and drive them through their provision states", RunE: groupRun}
	node.AddCommand(e.nodeCommands()...)
	port := &cobra.Command{Use: "port", Short: "Enroll the NICs nodes are found by", RunE: groupRun}
	port.AddCommand(e.portCommands()...)
	root.AddCommand(node, port)
	root.CompletionOptions.HiddenDefaultCmd = false
	return root
}

// groupRun answers a command that only groups others: a usage error
// naming what is missing or unknown.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return usagef("%s: missing command", cmd.CommandPath())
	}
	return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
}

// api returns the API client, made on first use.
func (e *env) api() (*client.Client, error) {
	if e.c != nil {
		return e.c, nil
	}
	if e.password == "" {
		e.password = os.Getenv("RIVET_PASSWORD")
	}
	c, err := client.New(e.url, client.Options{Username: e.username, Password: e.password, CACertFile: e.cacert})
	if err != nil {
		return nil, fmt.Errorf("--cacert: %w", err)
	}
	if e.username != "" {
		e.warnPlainCredentials()
	}
	e.c = c
	return c, nil
}

// explain adds a hint to errors whose cure is a flag: missing
// credentials, an untrusted certificate.
func (e *env) explain(err error) error {
	var unknownCA x509.UnknownAuthorityError
	switch {
	case err == nil:
		return nil
	case client.IsUnauthorized(err) && (e.c == nil || !e.c.HasCredentials()):
		return fmt.Errorf("%w; the API requires credentials: set RIVET_USERNAME and RIVET_PASSWORD (or --username and --password)", err)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("%w; give the CA that signed the API's certificate with --cacert or RIVET_CACERT", err)
	}
	return err
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

// exactArgs is cobra.ExactArgs with a usage error naming the arguments.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return rangeArgs(n, n, names)
}

// rangeArgs accepts between min and max positional arguments.
func rangeArgs(min, max int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || len(args) > max {
			want := fmt.Sprint(min)
			if max != min {
				want = fmt.Sprintf("%d to %d", min, max)
			}
			return usagef("%s takes %s argument(s) (%s), got %d", cmd.CommandPath(), want, names, len(args))
		}
		return nil
	}
}

// wordsAnnotation holds, space-separated, the words a command takes
// after its NODE argument, for completion.
const wordsAnnotation = "rivet_words"

// completeNodes completes the first argument with the API's node names
// (and the UUIDs of nameless nodes; nothing when the API cannot be read),
// the second with the command's words (its ValidArgs, moved into
// Annotations[wordsAnnotation] by nodeCommands: cobra uses either
// ValidArgs or ValidArgsFunction, never both).
func (e *env) completeNodes(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		var out []string
		for _, v := range strings.Fields(cmd.Annotations[wordsAnnotation]) {
			if len(args) == 1 && strings.HasPrefix(v, prefix) {
				out = append(out, v)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := e.api()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
	defer cancel()
	nodes, err := c.ListNodes(ctx, client.NodeFilter{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, n := range nodes {
		if l := n.Label(); strings.HasPrefix(l, prefix) {
			out = append(out, l+"\t"+n.ProvisionState)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// kvFlag collects repeated k=v flags; values that parse as JSON (numbers,
// booleans, objects) keep that type, others are strings.
type kvFlag map[string]any

// String implements pflag.Value.
func (f kvFlag) String() string {
	if len(f) == 0 {
		return ""
	}
	return fmt.Sprint(map[string]any(f))
}

// Set implements pflag.Value.
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

// Type implements pflag.Value.
func (f kvFlag) Type() string { return "key=value" }

func (e *env) json(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (e *env) statusf(format string, args ...any) {
	fmt.Fprintf(e.stdout, format+"\n", args...)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orDash(v any) any {
	if v == nil {
		return "-"
	}
	return v
}
