//go:build !linux

package agent

import (
	"log/slog"
)

type noPower struct{ log *slog.Logger }

// NewSystemPower returns a PowerController that only logs: power actions
// are supported on Linux only.
func NewSystemPower(log *slog.Logger) PowerController { return noPower{log} }

// InRamdisk is always false off Linux.
func InRamdisk() bool { return false }

func (noPower) Sync()             {}
func (p noPower) PowerOff() error { p.log.Warn("power off unsupported here"); return nil }
func (p noPower) Reboot() error   { p.log.Warn("reboot unsupported here"); return nil }
