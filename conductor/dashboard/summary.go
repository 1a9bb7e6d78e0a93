package dashboard

import (
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/conductor/statemachine"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

// Where the engine keeps what the dashboard shows, in the node record
// (conductor/provision): the live write progress (wire.Progress as a JSON
// map) and the last deploy's per-phase timings (phase → seconds).
const (
	keyProgress = "deploy_progress"
	keyTimings  = "deploy_timings"
	keyInventry = "inspection_inventory"
)

// Summary is a node as the fleet table shows it.
type Summary struct {
	UUID                 string    `json:"uuid"`
	Name                 string    `json:"name,omitempty"`
	Driver               string    `json:"driver"`
	ProvisionState       string    `json:"provision_state"`
	TargetProvisionState string    `json:"target_provision_state,omitempty"`
	PowerState           string    `json:"power_state,omitempty"`
	Maintenance          bool      `json:"maintenance,omitempty"`
	MaintenanceReason    string    `json:"maintenance_reason,omitempty"`
	LastError            string    `json:"last_error,omitempty"`
	DeployStep           string    `json:"deploy_step,omitempty"`
	ProvisionUpdatedAt   time.Time `json:"provision_updated_at,omitzero"`
	// Progress is the image write's progress while the node deploys.
	Progress *Progress `json:"progress,omitempty"`
	// Deleted is set in a change when the node was deleted.
	Deleted bool `json:"deleted,omitempty"`
}

// Progress is a write's progress: image bytes received of the total
// (TotalBytes 0 when the source did not say), the average rate at which
// the image reaches the disk, and the agent's estimate of the time left
// (-1 unknown).
type Progress struct {
	Phase           string  `json:"phase"`
	BytesRead       int64   `json:"bytes_read"`
	BytesWritten    int64   `json:"bytes_written"`
	BytesSkipped    int64   `json:"bytes_skipped"`
	TotalBytes      int64   `json:"total_bytes"`
	RateBytesPerSec float64 `json:"rate_bytes_per_sec"`
	ETASeconds      float64 `json:"eta_seconds"`
	// UpdatedAt is the agent's time of the reading (Unix seconds).
	UpdatedAt float64 `json:"updated_at"`
}

// summarize is the Summary of n.
func summarize(n *store.Node) Summary {
	s := Summary{
		UUID: n.UUID, Name: n.Name, Driver: n.Driver,
		ProvisionState:       string(n.ProvisionState),
		TargetProvisionState: string(n.TargetProvisionState),
		PowerState:           n.PowerState,
		Maintenance:          n.Maintenance,
		MaintenanceReason:    n.MaintenanceReason,
		LastError:            n.LastError,
		ProvisionUpdatedAt:   n.ProvisionUpdatedAt,
	}
	if step, ok := n.DeployStep["step"].(string); ok {
		s.DeployStep = step
	}
	if writing(n.ProvisionState) {
		s.Progress = progressOf(n.DriverInternalInfo[keyProgress])
	}
	return s
}

// writing reports whether a node in state st may be writing its image.
func writing(st statemachine.State) bool {
	return st == statemachine.Deploying || st == statemachine.DeployWait
}

// progressOf reads a stored progress map; nil when absent or malformed.
func progressOf(v any) *Progress {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	p := &Progress{ETASeconds: -1}
	p.Phase, _ = m["phase"].(string)
	p.BytesRead = int64Of(m["bytes_read"])
	p.BytesWritten = int64Of(m["bytes_written"])
	p.BytesSkipped = int64Of(m["bytes_skipped"])
	p.TotalBytes = int64Of(m["total_bytes"])
	p.RateBytesPerSec = floatOf(m["rate_bytes_per_sec"])
	if eta, ok := m["eta_seconds"]; ok {
		p.ETASeconds = floatOf(eta)
	}
	p.UpdatedAt = floatOf(m["updated_at"])
	if p.Phase == "" && p.BytesRead == 0 && p.TotalBytes == 0 {
		return nil
	}
	return p
}

func floatOf(v any) float64 {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return 0
		}
		return x
	case int64:
		return float64(x)
	case int:
		return float64(x)
	}
	return 0
}

func int64Of(v any) int64 {
	f := floatOf(v)
	if f < 0 || f > math.MaxInt64/2 {
		return 0
	}
	return int64(f)
}

// Deploy is the per-phase timing of one deploy.
type Deploy struct {
	// FinishedAt is when the deploy was seen ending (zero when only the
	// node record's last deploy is known and the node is not active).
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Phases are the conductor's phases in deploy order, then the
	// agent's own breakdown of the write ("agent_…", in the write's
	// order: wire.AgentTimings), then "total".
	Phases []Phase `json:"phases"`
}

// Phase is one timed phase.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// phaseOrder is the order of the engine's deploy phases.
var phaseOrder = map[string]int{"boot_to_lookup": 0, "download_write": 1, "bootloader": 2, "power": 3}

// deployOf reads a node's last deploy timings; nil when it has none.
func deployOf(n *store.Node) *Deploy {
	tm, ok := n.DriverInternalInfo[keyTimings].(map[string]any)
	if !ok || len(tm) == 0 {
		return nil
	}
	d := &Deploy{}
	for k, v := range tm {
		d.Phases = append(d.Phases, Phase{Name: k, Seconds: floatOf(v)})
	}
	rank := func(name string) (int, string) {
		if o, ok := phaseOrder[name]; ok {
			return o, ""
		}
		if name == "total" {
			return 3000, ""
		}
		// The agent's own phases in the write's order, then unknown
		// agent_… and other phases, by name.
		if agent, ok := strings.CutPrefix(name, "agent_"); ok {
			if i := slices.Index(wire.AgentTimings, agent); i >= 0 {
				return 1000 + i, ""
			}
		}
		return 2000, name
	}
	sort.Slice(d.Phases, func(i, j int) bool {
		ri, ni := rank(d.Phases[i].Name)
		rj, nj := rank(d.Phases[j].Name)
		if ri != rj {
			return ri < rj
		}
		return ni < nj
	})
	return d
}

// sameDeploy reports whether two deploys have the same timings.
func sameDeploy(a, b *Deploy) bool {
	if a == nil || b == nil || len(a.Phases) != len(b.Phases) {
		return false
	}
	for i := range a.Phases {
		if a.Phases[i] != b.Phases[i] {
			return false
		}
	}
	return true
}
