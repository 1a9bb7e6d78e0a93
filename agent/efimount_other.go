//go:build !linux

package agent

// ensureEFIVars is Linux only.
func (a *Agent) ensureEFIVars() {}
