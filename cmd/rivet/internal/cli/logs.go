package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rivetmetal/rivet/cmd/rivet/internal/client"
	"github.com/rivetmetal/rivet/internal/pause"
)

// Bounds of an archive the CLI reads.
const (
	maxArchive      = 256 << 20
	maxArchiveFiles = 4096
)

// defaultLogFiles are the files shown when none is asked for, in order:
// rivet-agent's log, then IPA's journal.
var defaultLogFiles = []string{"rivet-agent.log", "journal"}

func (e *env) nodeLogs() *cobra.Command {
	var (
		follow        bool
		timeout       time.Duration
		archive, file string
		save          string
		list          bool
	)
	cmd := &cobra.Command{
		Use:   "logs NODE [flags]",
		Short: "Show the agent logs the conductor collected, or follow a running agent's log (Rivet)",
		Long: `Show the agent logs the conductor collected from the node's deploy ramdisk
(on a failure, or always with --deploy-logs-collect always): the newest
archive by default, its files listed on stderr and the agent's log
(rivet-agent.log, or IPA's journal) printed. --file prints another file,
--list lists the archives and files only, --save writes the archive
(a .tar.gz).

--follow streams the log of the agent running on the node, through the
conductor, from what it kept in memory on: while a deploy, cleaning or
inspection waits for its agent it waits for the agent to come up, and
it ends when the agent stops (the node powers off or reboots).`,
		Example: `  rivet node logs n1
  rivet node logs n1 --file dmesg
  rivet node logs n1 --follow`,
		Args: exactArgs(1, "NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if follow && (archive != "" || file != "" || save != "" || list) {
				return usagef("node logs: --follow goes with none of --archive, --file, --save, --list")
			}
			if follow {
				return e.followLog(cmd.Context(), args[0], timeout)
			}
			return e.showArchive(cmd.Context(), args[0], archive, file, save, list)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "stream the running agent's log as it is written")
	f.DurationVar(&timeout, "timeout", 60*time.Minute, "how long --follow goes on (and waits for an agent)")
	f.StringVar(&archive, "archive", "", "the archive to show (default the newest); see --list")
	f.StringVar(&file, "file", "", "the file of the archive to print (default rivet-agent.log, else journal)")
	f.StringVar(&save, "save", "", "write the archive (.tar.gz) to this file")
	f.BoolVar(&list, "list", false, "list the node's archives and the files of the one shown, print none")
	return cmd
}

// archiveFile is one file of an archive.
type archiveFile struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
}

func (e *env) showArchive(ctx context.Context, ident, name, file, save string, list bool) error {
	c, err := e.api()
	if err != nil {
		return err
	}
	idx, err := c.AgentLogs(ctx, ident)
	if err != nil {
		return fmt.Errorf("agent logs of %s: %w%s", ident, err, rivetRouteHint(err))
	}
	if len(idx.Archives) == 0 {
		msg := fmt.Sprintf("%s: no agent logs collected (the conductor collects them when a deploy or cleaning fails, or always with --deploy-logs-collect always)", ident)
		if idx.AgentRunning {
			msg += "; its agent runs now: rivet node logs " + ident + " --follow"
		}
		return errors.New(msg)
	}
	chosen := idx.Archives[0]
	if name != "" {
		found := false
		for _, a := range idx.Archives {
			if a.Name == name {
				chosen, found = a, true
			}
		}
		if !found {
			return fmt.Errorf("%s: no agent log archive %q (see rivet node logs %s --list)", ident, name, ident)
		}
	}
	data, err := e.fetchArchive(ctx, c, ident, chosen.Name)
	if err != nil {
		return err
	}
	if save != "" {
		if err := os.WriteFile(save, data, 0o600); err != nil {
			return fmt.Errorf("save the archive: %w", err)
		}
		fmt.Fprintf(e.stderr, "rivet: saved %s (%s) to %s\n", chosen.Name, bytesIEC(int64(len(data))), save)
		if file == "" && !list {
			return nil
		}
	}
	files, err := archiveFiles(data)
	if err != nil {
		return fmt.Errorf("archive %s: %w", chosen.Name, err)
	}
	if e.output == "json" {
		return e.json(map[string]any{"archive": chosen, "archives": idx.Archives, "files": files, "agent_running": idx.AgentRunning})
	}
	if list {
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ARCHIVE\tLABEL\tCOLLECTED\tSIZE")
		for _, a := range idx.Archives {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Name, a.Label, e.timeOf(a.CollectedAt, false), bytesIEC(a.Bytes))
		}
		fmt.Fprintf(tw, "\nFILE (of %s)\tSIZE\t\t\n", chosen.Name)
		for _, f := range files {
			fmt.Fprintf(tw, "%s\t%s\t\t\n", f.Name, bytesIEC(f.Bytes))
		}
		return tw.Flush()
	}
	fmt.Fprintf(e.stderr, "rivet: %s: archive %s (%s, collected %s; %d archive(s) in all)\n", ident, chosen.Name,
		chosen.Label, e.timeOf(chosen.CollectedAt, false), len(idx.Archives))
	fmt.Fprint(e.stderr, "rivet: files:")
	for _, f := range files {
		fmt.Fprintf(e.stderr, " %s (%s)", f.Name, bytesIEC(f.Bytes))
	}
	fmt.Fprintln(e.stderr)
	want := []string{file}
	if file == "" {
		want = defaultLogFiles
	}
	for _, w := range want {
		for _, f := range files {
			if f.Name == w {
				fmt.Fprintf(e.stderr, "rivet: ---- %s ----\n", w)
				return printArchiveFile(data, w, e.stdout)
			}
		}
	}
	if file != "" {
		return fmt.Errorf("archive %s has no file %q", chosen.Name, file)
	}
	return fmt.Errorf("archive %s has neither %v: choose a file with --file", chosen.Name, defaultLogFiles)
}

// fetchArchive downloads an archive, at most maxArchive bytes.
func (e *env) fetchArchive(ctx context.Context, c *client.Client, ident, name string) ([]byte, error) {
	body, err := c.AgentLogArchive(ctx, ident, name)
	if err != nil {
		return nil, fmt.Errorf("agent log archive %s of %s: %w", name, ident, err)
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, maxArchive+1))
	if err != nil {
		return nil, fmt.Errorf("agent log archive %s of %s: %w", name, ident, err)
	}
	if len(data) > maxArchive {
		return nil, fmt.Errorf("agent log archive %s of %s: larger than %s", name, ident, bytesIEC(maxArchive))
	}
	return data, nil
}

// archiveFiles lists the regular files of a tar.gz.
func archiveFiles(data []byte) ([]archiveFile, error) {
	var out []archiveFile
	err := eachFile(data, func(h *tar.Header, _ io.Reader) (bool, error) {
		if len(out) == maxArchiveFiles {
			return false, fmt.Errorf("more than %d files", maxArchiveFiles)
		}
		out = append(out, archiveFile{Name: h.Name, Bytes: h.Size})
		return true, nil
	})
	return out, err
}

// printArchiveFile copies one file of a tar.gz to w.
func printArchiveFile(data []byte, name string, w io.Writer) error {
	return eachFile(data, func(h *tar.Header, r io.Reader) (bool, error) {
		if h.Name != name {
			return true, nil
		}
		_, err := io.Copy(w, r)
		return false, err
	})
}

// eachFile calls fn on each regular file of a tar.gz until it returns
// false or an error.
func eachFile(data []byte, fn func(*tar.Header, io.Reader) (bool, error)) error {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not a gzip archive: %w", err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		more, err := fn(h, tr)
		if err != nil || !more {
			return err
		}
	}
}

// followLog streams the node's running agent's log until it ends, ctx
// ends or timeout passes; it waits for an agent while the node's
// operation waits for one.
func (e *env) followLog(ctx context.Context, ident string, timeout time.Duration) error {
	c, err := e.api()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	waiting := false
	for {
		body, from, err := c.FollowAgentLog(ctx, ident, 0, true)
		if err == nil {
			if from > 0 {
				fmt.Fprintf(e.stderr, "rivet: the agent's first %s of log are gone; showing the rest\n", bytesIEC(from))
			}
			_, cerr := io.Copy(e.stdout, body)
			body.Close()
			if ctx.Err() != nil {
				return exitf(ExitTimeout, "%s: stopped following the agent's log after %s", ident, timeout)
			}
			if cerr != nil {
				fmt.Fprintf(e.stderr, "rivet: the agent's log stream broke: %v\n", cerr)
			} else {
				fmt.Fprintf(e.stderr, "rivet: the agent's log stream ended (the agent stopped)\n")
			}
			return nil
		}
		if ctx.Err() != nil {
			return exitf(ExitTimeout, "%s: no agent came up within %s", ident, timeout)
		}
		if client.StatusOf(err) != http.StatusConflict {
			return fmt.Errorf("follow the agent log of %s: %w", ident, err)
		}
		// No agent runs: wait for one while an operation waits for it.
		n, nerr := c.GetNode(ctx, ident)
		if nerr != nil {
			return fmt.Errorf("follow the agent log of %s: %w", ident, nerr)
		}
		if n.TargetProvisionState == "" {
			return fmt.Errorf("%s: no agent runs on the node (provision state %s); its collected logs: rivet node logs %s", ident, n.ProvisionState, ident)
		}
		if !waiting {
			fmt.Fprintf(e.stderr, "rivet: %s: waiting for its agent (%s → %s)\n", ident, n.ProvisionState, n.TargetProvisionState)
			waiting = true
		}
		if err := pause.For(ctx, e.pollInterval); err != nil {
			return exitf(ExitTimeout, "%s: no agent came up within %s", ident, timeout)
		}
	}
}

// rivetRouteHint explains an answer a plain Ironic gives to Rivet's own
// agent-log routes (it has none: 404, 405 or a 500 from its router); a
// missing node or refused credentials need no hint.
func rivetRouteHint(err error) string {
	var ae *client.Error
	if !errors.As(err, &ae) || ae.Status == 401 || ae.Status == 403 ||
		ae.Status == 404 && strings.HasPrefix(ae.Message, "Node ") && strings.Contains(ae.Message, "could not be found") {
		return ""
	}
	if ae.Status == 404 || ae.Status == 405 || ae.Status >= 500 {
		return " (agent logs are a route of the Rivet conductor; a plain Ironic keeps them in its [agent]deploy_logs_local_path)"
	}
	return ""
}
