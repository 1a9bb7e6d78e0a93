package provision

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/conductor/agentclient"
	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/store"
)

// AgentLogs serves nodes' agent logs: the archives collected from their
// ramdisks (log.collect_system_logs, kept in <state dir>/agent-logs/ as
// <node>_<time>_<label>.tar.gz) and, while a ramdisk runs, its agent's log
// streamed through the conductor. Archives live on the disk of the
// conductor that collected them.
type AgentLogs struct {
	nodes  *nodes
	agents *agents
	dir    string
	log    *slog.Logger
}

// LogArchive is one collected archive of a node's agent logs.
type LogArchive struct {
	// Name is the archive's file name (<node>_<time>_<label>.tar.gz).
	Name string
	// CollectedAt is when the conductor collected it (to the second).
	CollectedAt time.Time
	// Label says why: "deploy-failed", "cleaning-failed", "deploy",
	// "cleaning", ...
	Label string
	// Size is its size in bytes.
	Size int64
}

// AgentLogIndex is what a node has: its archives, newest first, and
// whether an agent runs on it now (its log can be followed).
type AgentLogIndex struct {
	Archives     []LogArchive
	AgentRunning bool
}

// MaxListedArchives bounds the archives an index lists (the newest).
const MaxListedArchives = 100

// archiveTime is the time format of archive names.
const archiveTime = "2006-01-02-15-04-05"

// archiveName is an archive's file name; the node's UUID is checked apart.
var archiveName = regexp.MustCompile(`^([0-9a-f-]{36})_(\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d)_([a-z0-9-]{1,64})\.tar\.gz$`)

// parseArchive reads an archive's name; ok is false for a name that is
// not one of node's archives.
func parseArchive(node, name string) (LogArchive, bool) {
	m := archiveName.FindStringSubmatch(name)
	if m == nil || m[1] != node {
		return LogArchive{}, false
	}
	at, err := time.ParseInLocation(archiveTime, m[2], time.UTC)
	if err != nil {
		return LogArchive{}, false
	}
	return LogArchive{Name: name, CollectedAt: at, Label: m[3]}, true
}

// Index lists a node's archives (the newest MaxListedArchives) and says
// whether its agent runs.
func (l *AgentLogs) Index(ctx context.Context, ident string) (*AgentLogIndex, error) {
	n, info, err := l.nodes.read(ctx, ident)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(l.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("node %s: agent log archives: %w", n.UUID, err)
	}
	idx := &AgentLogIndex{Archives: []LogArchive{}, AgentRunning: info.Agent.URL != ""}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), n.UUID+"_") || !e.Type().IsRegular() {
			continue
		}
		a, ok := parseArchive(n.UUID, e.Name())
		if !ok {
			continue
		}
		if st, err := e.Info(); err == nil {
			a.Size = st.Size()
		}
		idx.Archives = append(idx.Archives, a)
	}
	sort.Slice(idx.Archives, func(i, j int) bool { return idx.Archives[i].Name > idx.Archives[j].Name })
	if len(idx.Archives) > MaxListedArchives {
		idx.Archives = idx.Archives[:MaxListedArchives]
	}
	return idx, nil
}

// OpenArchive opens one of a node's archives by name (errdefs.ErrNotFound
// for a name that is not one). The caller closes the file.
func (l *AgentLogs) OpenArchive(ctx context.Context, ident, name string) (*os.File, LogArchive, error) {
	n, err := l.nodes.st.GetNode(ctx, ident)
	if err != nil {
		return nil, LogArchive{}, err
	}
	a, ok := parseArchive(n.UUID, name)
	if !ok {
		return nil, LogArchive{}, errdefs.NotFound("Node %s has no agent log archive %q.", n.UUID, name)
	}
	root, err := os.OpenRoot(l.dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, LogArchive{}, errdefs.NotFound("Node %s has no agent log archive %q.", n.UUID, name)
		}
		return nil, LogArchive{}, fmt.Errorf("node %s: agent log archives: %w", n.UUID, err)
	}
	defer root.Close()
	f, err := root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, LogArchive{}, errdefs.NotFound("Node %s has no agent log archive %q.", n.UUID, name)
	}
	if err != nil {
		return nil, LogArchive{}, fmt.Errorf("node %s: agent log archive %s: %w", n.UUID, name, err)
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, LogArchive{}, errdefs.NotFound("Node %s has no agent log archive %q.", n.UUID, name)
	}
	a.Size = st.Size()
	return f, a, nil
}

// Follow opens the log of the agent running on a node, from offset on;
// with follow it goes on as the agent logs, until ctx ends or the agent
// stops. A node without a running agent (no heartbeat since its last
// power off) is errdefs.ErrConflict; an agent that cannot be reached,
// errdefs.ErrUnavailable. Any conductor can follow a node's agent: it
// only reads.
func (l *AgentLogs) Follow(ctx context.Context, ident string, offset int64, follow bool) (*agentclient.LogStream, error) {
	n, info, err := l.nodes.read(ctx, ident)
	if err != nil {
		return nil, err
	}
	if info.Agent.URL == "" {
		return nil, errdefs.Conflict("Node %s has no running agent (provision state %q; no heartbeat since its last power off).",
			n.UUID, n.ProvisionState)
	}
	s, err := l.agents.followLog(ctx, n, info, offset, follow)
	if err != nil {
		var apiErr *agentclient.APIError
		if errors.As(err, &apiErr) {
			return nil, errdefs.Unavailable("The agent of node %s refused its log: %s", n.UUID, apiErr.Error())
		}
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, errdefs.Unavailable("The agent of node %s cannot be reached: %v", n.UUID, err)
	}
	return s, nil
}

// LogFollower is what streaming an agent's log needs of the agent client
// (agentclient.Client).
type LogFollower interface {
	FollowLog(ctx context.Context, ep agentclient.Endpoint, offset int64, follow bool) (*agentclient.LogStream, error)
}

// followLog opens the node's agent's log (wire.AgentLogPath).
func (a *agents) followLog(ctx context.Context, n *store.Node, info *internalinfo.Info, offset int64, follow bool) (*agentclient.LogStream, error) {
	f, ok := a.client.(LogFollower)
	if !ok {
		return nil, errors.New("this conductor's agent client cannot stream logs")
	}
	ep, err := a.endpoint(ctx, n, info)
	if err != nil {
		return nil, err
	}
	s, err := f.FollowLog(ctx, ep, offset, follow)
	a.called(ctx, "log_stream", err)
	return s, err
}
