package agent

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"
)

// ensureEFIVars mounts efivarfs in the ramdisk when the machine booted
// through UEFI and nothing mounted it, loading the module if the kernel
// has it as one (Debian's kernels do). Without it no UEFI boot entry can
// be written, which install_bootloader then reports.
func (a *Agent) ensureEFIVars() {
	if !InRamdisk() {
		return
	}
	efi := filepath.Join(a.cfg.SysRoot, "sys/firmware/efi")
	if _, err := os.Stat(efi); err != nil {
		return // BIOS boot
	}
	if a.efiStore().Available() {
		return
	}
	dir := filepath.Join(efi, "efivars")
	mount := func() error {
		return unix.Mount("efivarfs", dir, "efivarfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	}
	err := mount()
	if errors.Is(err, unix.ENODEV) {
		if perr := kmodule.Probe("efivarfs", ""); perr != nil {
			a.log.Warn("efivarfs is not in this kernel nor among the ramdisk's modules: UEFI boot entries cannot be written (add efivarfs.ko to the ramdisk)",
				"error", perr)
			return
		}
		err = mount()
	}
	if err != nil && !errors.Is(err, unix.EBUSY) {
		a.log.Warn("cannot mount efivarfs: UEFI boot entries cannot be written", "dir", dir, "error", err)
		return
	}
	a.log.Info("efivarfs mounted", "dir", dir)
}
