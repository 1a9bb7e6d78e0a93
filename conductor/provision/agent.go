package provision

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/hostpath"
	"github.com/rivetmetal/rivet/conductor/ironicjson"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// agents is the seam of calls to a node's ramdisk agent: every command,
// command list and poll the engine sends an agent goes through it, to the
// endpoint on record for the node; in a job, every request is fenced
// first (nodes.fenced), retries and polls included.
type agents struct {
	client Agent
	nodes  *nodes
	certs  *certificates
	cfg    *Config
	log    *slog.Logger
}

// endpoint is how the engine reaches a node's agent: its callback URL,
// its token, the certificate to verify it against (the one it sent, else a
// CA file named by driver_info.agent_verify_ca), and the lease check made
// before each request.
func (a *agents) endpoint(ctx context.Context, n *store.Node, info *internalinfo.Info) (agentclient.Endpoint, error) {
	uuid := n.UUID
	if err := a.nodes.fenced(ctx, uuid); err != nil {
		return agentclient.Endpoint{}, err
	}
	ep := agentclient.Endpoint{URL: info.Agent.URL, Token: info.Agent.Token,
		Guard: func() error { return a.nodes.fenced(ctx, uuid) }}
	if ep.URL == "" {
		return ep, fmt.Errorf("node %s: no agent URL recorded (no heartbeat since the last power off)", n.UUID)
	}
	if pemText := info.Agent.VerifyCAPEM; pemText != "" {
		ep.VerifyCA = []byte(pemText)
		a.certs.ensure(n.UUID, pemText)
		return ep, nil
	}
	if path, _ := n.DriverInfo["agent_verify_ca"].(string); path != "" && !isBoolString(path) {
		b, err := hostpath.ReadSmallFile(path, maxCAFile)
		if err != nil {
			return ep, fmt.Errorf("node %s: read driver_info agent_verify_ca: %w", n.UUID, err)
		}
		ep.VerifyCA = b
	}
	return ep, nil
}

func isBoolString(s string) bool {
	_, err := strconv.ParseBool(s)
	return err == nil
}

// execute runs a command on the node's agent; with wait the result is
// final.
func (a *agents) execute(ctx context.Context, n *store.Node, info *internalinfo.Info, name string, params any, wait bool) (*wire.CommandResult, error) {
	ep, err := a.endpoint(ctx, n, info)
	if err != nil {
		return nil, err
	}
	return a.client.Execute(ctx, ep, name, params, wait)
}

// commands lists the node's agent's commands, oldest first.
func (a *agents) commands(ctx context.Context, n *store.Node, info *internalinfo.Info) (*wire.CommandList, error) {
	ep, err := a.endpoint(ctx, n, info)
	if err != nil {
		return nil, err
	}
	return a.client.Commands(ctx, ep)
}

// wait polls the node's agent until its last command named short ends,
// CommandWaitInterval × CommandWaitAttempts at most.
func (a *agents) wait(ctx context.Context, n *store.Node, info *internalinfo.Info, short string) (*wire.CommandResult, error) {
	ep, err := a.endpoint(ctx, n, info)
	if err != nil {
		return nil, err
	}
	return a.client.Wait(ctx, ep, short, a.cfg.CommandWaitInterval, a.cfg.CommandWaitAttempts)
}

// succeeded runs a command to its end and returns its result, or an error
// when it did not succeed.
func (a *agents) succeeded(ctx context.Context, n *store.Node, info *internalinfo.Info, name string, params any) (*wire.CommandResult, error) {
	res, err := a.execute(ctx, n, info, name, params, true)
	if err != nil {
		return nil, err
	}
	if res.CommandStatus != wire.StatusSucceeded {
		return nil, fmt.Errorf("%s %s: %s", agentclient.ShortName(name), res.CommandStatus, res.CommandError.Text())
	}
	return res, nil
}

// maxCAFile caps a CA bundle named by driver_info.
const maxCAFile = 1 << 20

// nodeDoc and portDocs render the node and its ports as step commands
// carry them (contract §4.3). The config drive is masked in the node's
// instance_info: write_image carries it in its args, once.
func (a *agents) nodeDoc(n *store.Node) map[string]any {
	doc := ironicjson.AgentNode(n, a.cfg.Conductor)
	if ii, ok := doc["instance_info"].(map[string]any); ok {
		if v, ok := ii["configdrive"]; ok && v != nil && v != "" {
			ii["configdrive"] = wire.Masked
		}
	}
	return doc
}

func portDocs(ports []*store.Port) []map[string]any {
	out := make([]map[string]any, len(ports))
	for i, p := range ports {
		out[i] = ironicjson.AgentPort(p)
	}
	return out
}

// logsTimeout bounds a log collection: a failure path must not hang on it.
const logsTimeout = 60 * time.Second

// collectLogs asks the agent for its system logs (log.collect_system_logs)
// and keeps them in <state dir>/agent-logs/<node>_<time>_<label>.tar.gz;
// the path is recorded in driver_internal_info.agent_logs_path. It never
// fails the operation: problems are logged.
func (a *agents) collectLogs(ctx context.Context, n *store.Node, info *internalinfo.Info, label string) {
	if a.cfg.LogsCollect == LogsNever || info.Agent.URL == "" {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, logsTimeout)
	defer cancel()
	res, err := a.succeeded(cctx, n, info, "log.collect_system_logs", nil)
	var out wire.SystemLogs
	if err == nil {
		err = res.DecodeResult(&out)
	}
	var data []byte
	if err == nil {
		data, err = base64.StdEncoding.DecodeString(out.SystemLogs)
	}
	if err == nil && len(data) == 0 {
		err = errors.New("the agent sent no logs")
	}
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("collecting the agent's logs failed", "node", n.UUID, "error", err)
		}
		return
	}
	name := fmt.Sprintf("%s_%s_%s.tar.gz", n.UUID, a.nodes.now().Format("2006-01-02-15-04-05"), label)
	p := filepath.Join(a.cfg.StateDir, "agent-logs", name)
	if err := os.WriteFile(p, data, 0o640); err != nil {
		a.log.Warn("saving the agent's logs failed", "node", n.UUID, "path", p, "error", err)
		return
	}
	if _, _, err := a.nodes.update(ctx, n.UUID, "", func(_ store.Tx, _ *store.Node, info *internalinfo.Info) error {
		info.Agent.LogsPath = p
		return nil
	}); err != nil && ctx.Err() == nil {
		a.log.Warn("recording the agent log path failed", "node", n.UUID, "error", err)
	}
	a.log.Info("agent logs collected", "node", n.UUID, "path", p, "bytes", len(data))
}
