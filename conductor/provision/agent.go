package provision

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/ironicjson"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// driver_internal_info keys the engine owns beyond Ironic's own.
const (
	// keyVerifyCAPEM holds the agent's certificate itself, so that any
	// conductor (one that takes the node over included) can verify the
	// agent; agent_verify_ca holds the path of its file copy, as in Ironic.
	keyVerifyCAPEM = "agent_verify_ca_pem"
	// keyHeartbeatPending marks a heartbeat recorded but not processed
	// yet (by this or the owning conductor).
	keyHeartbeatPending = "agent_heartbeat_pending"
	// keyLogsPath is the path of the agent logs last collected.
	keyLogsPath = "agent_logs_path"
)

// endpoint is how the engine reaches a node's agent: its callback URL,
// its token, and the certificate to verify it against (the one it sent,
// else a CA file named by driver_info.agent_verify_ca).
func (e *Engine) endpoint(n *store.Node) (agentclient.Endpoint, error) {
	ep := agentclient.Endpoint{URL: n.InternalString("agent_url"), Token: n.InternalString("agent_secret_token")}
	if ep.URL == "" {
		return ep, fmt.Errorf("node %s: no agent URL recorded (no heartbeat since the last power off)", n.UUID)
	}
	if pemText := n.InternalString(keyVerifyCAPEM); pemText != "" {
		ep.VerifyCA = []byte(pemText)
		e.ensureCAFile(n.UUID, pemText)
		return ep, nil
	}
	if path, _ := n.DriverInfo["agent_verify_ca"].(string); path != "" && !isBoolString(path) {
		b, err := os.ReadFile(path)
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

// caPath is where a node's agent certificate is kept (Ironic's
// [agent]certificates_path/<uuid>.crt).
func (e *Engine) caPath(uuid string) string {
	return filepath.Join(e.cfg.StateDir, "certificates", uuid+".crt")
}

// ensureCAFile writes the certificate file if this conductor has none
// (it took the node over, or the heartbeat reached another conductor).
func (e *Engine) ensureCAFile(uuid, pemText string) {
	p := e.caPath(uuid)
	if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == strings.TrimSpace(pemText) {
		return
	}
	if err := os.WriteFile(p, []byte(pemText), 0o640); err != nil {
		e.log.Warn("saving the agent certificate failed", "node", uuid, "path", p, "error", err)
	}
}

// removeCAFile deletes a node's certificate file after the agent went away.
func (e *Engine) removeCAFile(uuid string) {
	if err := os.Remove(e.caPath(uuid)); err != nil && !errors.Is(err, os.ErrNotExist) {
		e.log.Warn("removing the agent certificate failed", "node", uuid, "error", err)
	}
}

// pinAgentCA records the certificate a heartbeat carries and refuses a
// different one until the next power off (contract §1.7): Ironic's 400
// "Detected change in ramdisk provided "agent_verify_ca"".
func (e *Engine) pinAgentCA(n *store.Node, pemText string) error {
	if pemText == "" {
		return nil
	}
	if old := n.InternalString(keyVerifyCAPEM); old != "" {
		if strings.TrimSpace(old) != strings.TrimSpace(pemText) {
			e.log.Error("heartbeat with a different agent certificate; not processed", "node", n.UUID)
			return errdefs.InvalidArgument(`Detected change in ramdisk provided "agent_verify_ca"`)
		}
		return nil
	}
	block, _ := pem.Decode([]byte(pemText))
	if block == nil || block.Type != "CERTIFICATE" {
		return errdefs.InvalidArgument("Invalid agent_verify_ca: not a PEM certificate")
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return errdefs.InvalidArgument("Invalid agent_verify_ca: %v", err)
	}
	n.SetInternal(keyVerifyCAPEM, pemText)
	n.SetInternal("agent_verify_ca", e.caPath(n.UUID))
	return nil
}

// heartbeatPending reports whether a node has a heartbeat recorded but
// not processed.
func heartbeatPending(n *store.Node) bool {
	_, ok := n.DriverInternalInfo[keyHeartbeatPending]
	return ok
}

// wipeAgent forgets the agent of the last ramdisk boot (Ironic's
// wipe_internal_info_on_power_off): its URL, token, cached steps and
// certificate. A pre-generated token survives.
func wipeAgent(n *store.Node) {
	n.SetInternal("agent_url", nil)
	if pre, _ := n.DriverInternalInfo["agent_secret_token_pregenerated"].(bool); !pre {
		n.SetInternal("agent_secret_token", nil)
	}
	for _, k := range []string{"agent_cached_deploy_steps", "agent_cached_clean_steps",
		"agent_cached_deploy_steps_refreshed", "agent_cached_clean_steps_refreshed",
		"agent_verify_ca", keyVerifyCAPEM, keyHeartbeatPending} {
		n.SetInternal(k, nil)
	}
}

// agentNode and agentPorts render the node and its ports as step commands
// carry them (contract §4.3).
func (e *Engine) agentNode(n *store.Node) map[string]any {
	doc := ironicjson.AgentNode(n, e.cfg.Conductor)
	if idx, ok := n.DriverInternalInfo["clean_step_index"]; ok {
		if steps, _ := n.DriverInternalInfo["clean_steps"].([]any); steps != nil {
			if i, ok := asInt(idx); ok && i >= 0 && i < len(steps) {
				doc["clean_step"] = steps[i]
			}
		}
	}
	return doc
}

func agentPorts(ports []*store.Port) []map[string]any {
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
func (e *Engine) collectLogs(ctx context.Context, n *store.Node, label string) {
	if e.cfg.LogsCollect == LogsNever {
		return
	}
	ep, err := e.endpoint(n)
	if err != nil {
		e.log.Warn("agent logs not collected", "node", n.UUID, "reason", err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, logsTimeout)
	defer cancel()
	res, err := e.agent.Execute(cctx, ep, "log.collect_system_logs", nil, true)
	if err == nil && res.CommandStatus != wire.StatusSucceeded {
		err = fmt.Errorf("collect_system_logs %s: %s", res.CommandStatus, res.CommandError.Text())
	}
	var out struct {
		SystemLogs string `json:"system_logs"`
	}
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
			e.log.Warn("collecting the agent's logs failed", "node", n.UUID, "error", err)
		}
		return
	}
	name := fmt.Sprintf("%s_%s_%s.tar.gz", n.UUID, e.now().Format("2006-01-02-15-04-05"), label)
	p := filepath.Join(e.cfg.StateDir, "agent-logs", name)
	if err := os.WriteFile(p, data, 0o640); err != nil {
		e.log.Warn("saving the agent's logs failed", "node", n.UUID, "path", p, "error", err)
		return
	}
	if _, err := e.update(ctx, n.UUID, "", func(_ store.Tx, n *store.Node) error {
		n.SetInternal(keyLogsPath, p)
		return nil
	}); err != nil && ctx.Err() == nil {
		e.log.Warn("recording the agent log path failed", "node", n.UUID, "error", err)
	}
	e.log.Info("agent logs collected", "node", n.UUID, "path", p, "bytes", len(data))
}

// stepStatus is where an in-band step stands according to the agent's
// command list.
type stepStatus int

const (
	stepNotStarted stepStatus = iota // the agent never ran it (freshly booted, or lost it)
	stepRunning                      // still running, or another command runs
	stepDone                         // finished with the step we asked for
	stepFailed                       // failed
	stepMismatch                     // the agent's step version differs
	stepUnknown                      // an unknown status
)

// agentStep looks at the last command of list the way Ironic's
// _get_completed_command does: exec is "execute_deploy_step" or
// "execute_clean_step", resultKey "deploy_step" or "clean_step", and step
// the node's current step. started says the agent accepted the step.
func agentStep(list *wire.CommandList, exec, resultKey string, step map[string]any, started bool) (stepStatus, *wire.CommandResult) {
	cmd := list.Last()
	if cmd == nil || freshlyBooted(list) {
		return stepNotStarted, cmd
	}
	if cmd.CommandName != exec {
		if !started {
			return stepNotStarted, cmd
		}
		return stepRunning, cmd // another command (an out-of-band step's) runs
	}
	switch {
	case cmd.CommandStatus == wire.StatusRunning:
		return stepRunning, cmd
	case cmd.CommandStatus == wire.StatusFailed:
		return stepFailed, cmd
	case cmd.CommandStatus.IsVersionMismatch():
		return stepMismatch, cmd
	case cmd.CommandStatus == wire.StatusSucceeded:
		var res map[string]json.RawMessage
		_ = cmd.DecodeResult(&res)
		var got struct {
			Step      string `json:"step"`
			Interface string `json:"interface"`
		}
		_ = json.Unmarshal(res[resultKey], &got)
		if got.Step == stepName(step) && got.Interface == stepIface(step) {
			return stepDone, cmd
		}
		if !started {
			return stepNotStarted, cmd
		}
		return stepRunning, cmd // an earlier step's result: ours has not started yet
	}
	return stepUnknown, cmd
}

// freshlyBooted reports whether the agent has run nothing but the
// get_*_steps commands.
func freshlyBooted(l *wire.CommandList) bool {
	for _, c := range l.Commands {
		if c.CommandName != "get_deploy_steps" && c.CommandName != "get_clean_steps" {
			return false
		}
	}
	return true
}

// Steps are kept as the JSON objects Ironic stores; these read them.

func stepName(s map[string]any) string  { v, _ := s["step"].(string); return v }
func stepIface(s map[string]any) string { v, _ := s["interface"].(string); return v }
func stepPriority(s map[string]any) int { v, _ := asInt(s["priority"]); return v }

// sortSteps orders steps as Ironic runs them: highest priority first, ties
// broken by the interface's rank in ifacePriority, otherwise kept in order.
func sortSteps(steps []map[string]any, ifacePriority map[string]int) {
	sort.SliceStable(steps, func(i, j int) bool {
		pi, pj := stepPriority(steps[i]), stepPriority(steps[j])
		if pi != pj {
			return pi > pj
		}
		return ifacePriority[stepIface(steps[i])] > ifacePriority[stepIface(steps[j])]
	})
}

func asInt(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case int64:
		return int(x), true
	case float64:
		return int(x), x == float64(int(x))
	case json.Number:
		i, err := x.Int64()
		return int(i), err == nil
	case string:
		i, err := strconv.Atoi(strings.TrimSpace(x))
		return i, err == nil
	}
	return 0, false
}

// stepList reads a list of steps from driver_internal_info.
func stepList(v any) []map[string]any {
	raw, _ := v.([]any)
	out := make([]map[string]any, 0, len(raw))
	for _, s := range raw {
		if m, ok := s.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// anyList converts steps back to the []any a node stores.
func anyList(steps []map[string]any) []any {
	out := make([]any, len(steps))
	for i, s := range steps {
		out[i] = s
	}
	return out
}

// cachedAgentSteps flattens the agent's steps cached by interface
// (agent_cached_*_steps).
func cachedAgentSteps(v any) []map[string]any {
	byIface, _ := v.(map[string]any)
	ifaces := make([]string, 0, len(byIface))
	for k := range byIface {
		ifaces = append(ifaces, k)
	}
	sort.Strings(ifaces)
	var out []map[string]any
	for _, k := range ifaces {
		out = append(out, stepList(byIface[k])...)
	}
	return out
}

// pyRepr renders a step as Ironic's messages show it (a Python dict).
func pyRepr(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	order := map[string]int{"step": 0, "priority": 1, "interface": 2, "args": 3, "reboot_requested": 4, "abortable": 5, "requires_ramdisk": 6}
	sort.Slice(keys, func(i, j int) bool {
		oi, iok := order[keys[i]]
		oj, jok := order[keys[j]]
		switch {
		case iok && jok:
			return oi < oj
		case iok != jok:
			return iok
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "'%s': %s", k, pyValue(m[k]))
	}
	b.WriteByte('}')
	return b.String()
}

func pyValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case string:
		return "'" + x + "'"
	case map[string]any:
		return pyRepr(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = pyValue(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	if i, ok := asInt(v); ok {
		return strconv.Itoa(i)
	}
	return fmt.Sprint(v)
}

// toMap converts a value to its JSON object form.
func toMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return m, nil
}

// lastError is a failure whose text is the node's last_error verbatim
// (Ironic's wording).
type lastError string

// Error implements error.
func (e lastError) Error() string { return string(e) }
