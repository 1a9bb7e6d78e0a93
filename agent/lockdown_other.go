//go:build !linux

package agent

// linksDown is Linux only.
func (a *Agent) linksDown() {
	a.log.Warn("lockdown: network interfaces can only be brought down on Linux")
}
