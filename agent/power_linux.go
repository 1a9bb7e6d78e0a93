package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// systemPower acts on the running kernel. It only does so inside the deploy
// ramdisk: run on an ordinary host (tests, local debugging) it logs what it
// would do, so a test can never power off the machine it runs on.
type systemPower struct {
	log     *slog.Logger
	enabled bool
}

// NewSystemPower returns the PowerController for this machine; it is live
// only when the root filesystem is the initramfs.
func NewSystemPower(log *slog.Logger) PowerController {
	return &systemPower{log: log, enabled: InRamdisk()}
}

// InRamdisk reports whether "/" is an initramfs (ramfs or tmpfs rootfs).
func InRamdisk() bool {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return false
	}
	return st.Type == unix.RAMFS_MAGIC || st.Type == unix.TMPFS_MAGIC
}

func (p *systemPower) Sync() {
	unix.Sync()
	if p.enabled {
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
			p.log.Warn("drop caches", "error", err)
		}
	}
}

func (p *systemPower) PowerOff() error {
	return p.act("power off", unix.LINUX_REBOOT_CMD_POWER_OFF, "o")
}

func (p *systemPower) Reboot() error {
	return p.act("reboot", unix.LINUX_REBOOT_CMD_RESTART, "b")
}

// act syncs, then calls reboot(2); if that fails it falls back to sysrq.
func (p *systemPower) act(what string, cmd int, sysrq string) error {
	unix.Sync()
	if !p.enabled {
		p.log.Warn("not in the deploy ramdisk: ignoring "+what, "action", what)
		return nil
	}
	p.log.Info(what + " now")
	// Give the log line a moment to reach the console.
	time.Sleep(200 * time.Millisecond)
	err := unix.Reboot(cmd)
	p.log.Error("reboot(2) failed; trying sysrq", "action", what, "error", err)
	if werr := os.WriteFile("/proc/sysrq-trigger", []byte(sysrq), 0); werr != nil {
		return fmt.Errorf("%s: %w", what, errors.Join(err, werr))
	}
	time.Sleep(10 * time.Second)
	return fmt.Errorf("%s: the machine is still running after reboot(2) and sysrq", what)
}
