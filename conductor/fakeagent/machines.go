package fakeagent

import (
	"context"
	"sync"

	"github.com/rivetmetal/rivet/conductor/power"
	"github.com/rivetmetal/rivet/conductor/power/fake"
)

// Machines turns fake-hardware nodes into machines that run a fake agent:
// it installs hooks on the driver so that powering a node on (or
// rebooting it) with boot device pxe boots a new agent, any power change
// kills the running one, and the agent's standby.power_off powers the node
// off.
type Machines struct {
	drv    *fake.Driver
	cfg    Config
	apiURL func() string

	mu      sync.Mutex
	running []*Agent
	booted  []*Agent
}

// NewMachines hooks drv. cfg is the template of every agent booted (APIURL,
// MACs and OnPowerOff are filled in); apiURL gives the conductor URL at
// boot time.
func NewMachines(drv *fake.Driver, cfg Config, apiURL func() string) *Machines {
	m := &Machines{drv: drv, cfg: cfg, apiURL: apiURL}
	drv.SetHooks(fake.Hooks{OnPowerState: m.onPower})
	return m
}

// SetConfig replaces the template for agents booted from now on.
func (m *Machines) SetConfig(cfg Config) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg = cfg
}

func (m *Machines) onPower(n power.Node, st power.State) error {
	m.stopRunning()
	dev, _ := m.drv.BootDevice(n.UUID)
	if (st != power.On && st != power.Reboot && st != power.SoftReboot) || dev != power.BootPXE {
		return nil
	}
	m.mu.Lock()
	cfg := m.cfg
	m.mu.Unlock()
	cfg.APIURL = m.apiURL()
	cfg.MACs = n.MACs
	uuid := n.UUID
	cfg.OnPowerOff = func() { m.drv.Force(uuid, power.Off) }
	a, err := Start(context.Background(), cfg)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.running = append(m.running, a)
	m.booted = append(m.booted, a)
	m.mu.Unlock()
	return nil
}

func (m *Machines) stopRunning() {
	m.mu.Lock()
	running := m.running
	m.running = nil
	m.mu.Unlock()
	for _, a := range running {
		a.Stop()
	}
}

// Last is the agent booted last (nil if none).
func (m *Machines) Last() *Agent {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.booted) == 0 {
		return nil
	}
	return m.booted[len(m.booted)-1]
}

// Close stops every running agent.
func (m *Machines) Close() { m.stopRunning() }
