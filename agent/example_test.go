package agent_test

import (
	"context"
	"fmt"

	"github.com/rivetmetal/rivet/agent"
	"github.com/rivetmetal/rivet/hardware/manager"
)

// siteManager stands in for a vendor's or site's hardware manager (see
// docs/hardware-managers.md for one that does something).
type siteManager struct{}

func (siteManager) Identity() manager.Identity {
	return manager.Identity{Class: "SiteHardwareManager", Name: "site_hardware_manager", Version: "1.0"}
}

func (siteManager) Support(context.Context) manager.Level { return manager.ServiceProvider }

// ExampleOptions shows how cmd/rivet-agent adds hardware managers next to
// the generic one, which is always there: they are listed in
// Options.Managers, and Run selects those that support the machine.
func ExampleOptions() {
	cfg := agent.DefaultConfig()
	cfg.Standalone = true
	a, err := agent.New(cfg, agent.Options{Managers: []manager.Manager{siteManager{}}})
	fmt.Println(a != nil, err)
	// Output: true <nil>
}
