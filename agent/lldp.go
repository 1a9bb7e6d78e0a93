package agent

import (
	"github.com/rivetmetal/rivet/hardware/inventory"
	"github.com/rivetmetal/rivet/hardware/lldp"
)

// lldpListener is the inventory's LLDP listener when ipa-collect-lldp is
// on (every NIC, for ipa-lldp-timeout), nil otherwise.
func (a *Agent) lldpListener() inventory.LLDPListener {
	if !a.cfg.CollectLLDP {
		return nil
	}
	return lldp.Listener{Timeout: a.cfg.LLDPTimeout, Logger: a.log}
}
