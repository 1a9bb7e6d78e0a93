package qemu

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/rivetmetal/rivet/conductor/power"
)

// agentGuestPort is where the agent listens in the guest (IPA's default).
const agentGuestPort = 9999

// vmSpec is everything one QEMU run depends on.
type vmSpec struct {
	uuid      string
	set       settings
	paths     nodePaths
	boot      power.BootDevice
	agentPort int
	forwards  []forward
	guestHost string
	relay     []string
	// ovmfCode is the firmware for uefi mode ("" in bios mode); the
	// variable store is paths.vars.
	ovmfCode string
	// ramdisk is used for a "pxe" boot.
	ramdisk *ramdisk
}

// vmName is the QEMU -name of a node's VM; a process whose command line
// carries it belongs to that node.
func vmName(uuid string) string { return "rivet-" + uuid }

// qemuArgs returns QEMU's arguments (without the program name).
func qemuArgs(v vmSpec) ([]string, error) {
	args := []string{
		"-name", vmName(v.uuid),
		"-no-user-config", "-nodefaults",
		"-accel", "tcg",
		"-m", strconv.Itoa(v.set.memoryMB),
		"-smp", strconv.Itoa(v.set.cpus),
		"-display", "none",
		"-no-reboot",
		"-chardev", "socket,id=qmp,path=" + optValue(v.paths.qmp) + ",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-chardev", "file,id=console,path=" + optValue(v.paths.console) + ",append=on",
		"-serial", "chardev:console",
	}
	if _, err := uuid.Parse(v.uuid); err == nil {
		// The node's UUID as the SMBIOS system UUID, as on real hardware
		// enrolled by its BMC.
		args = append(args, "-uuid", v.uuid)
	}
	if v.set.bootMode == BootUEFI {
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+optValue(v.ovmfCode),
			"-drive", "if=pflash,format=raw,unit=1,file="+optValue(v.paths.vars))
	}
	netBoot := v.set.boot == BootNetwork
	nicBoot, diskBoot := 0, 1
	if netBoot && v.boot == power.BootPXE {
		// Network first, then the disk, as a server set to PXE.
		nicBoot, diskBoot = 1, 2
	}
	var netdev []string
	if v.set.bridge != "" {
		// QEMU creates the tap, runs the ifup script that puts it on the
		// bridge, and the tap disappears when QEMU exits.
		netdev = []string{"tap", "id=net0", "ifname=" + tapName(v.uuid), "script=" + optValue(v.paths.ifup), "downscript=no"}
	} else {
		netdev = []string{"user", "id=net0", "restrict=on",
			fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:%d", v.agentPort, agentGuestPort)}
		for _, f := range v.forwards {
			cmd := strings.Join(append(append([]string{}, v.relay...), f.Target, strconv.Itoa(f.Port)), " ")
			netdev = append(netdev, fmt.Sprintf("guestfwd=tcp:%s:%d-cmd:%s", v.guestHost, f.Port, cmd))
		}
	}
	args = append(args, "-netdev", strings.Join(netdev, ","))
	// Without network boot the NIC has no option ROM: the kernel shortcut
	// is the network boot, and a PXE attempt would only add timeouts.
	// With qemu_nic_rom none the firmware's own network stack boots it.
	nic, err := NICArgs(cmp.Or(v.set.nicModel, DefaultNICModel), "net0", v.set.mac, netBoot && !v.set.noNICROM, nicBoot)
	if err != nil {
		return nil, err
	}
	args = append(args, nic...)
	disk, err := DiskArgs(cmp.Or(v.set.diskBus, DefaultDiskBus), "disk0", v.set.disk, diskSerial(v.uuid), diskBoot)
	if err != nil {
		return nil, err
	}
	args = append(args, disk...)
	args = append(args,
		// Without a hardware RNG, getrandom blocks for minutes under TCG.
		"-object", "rng-random,id=rng0,filename=/dev/urandom",
		"-device", "virtio-rng-pci,rng=rng0",
	)
	if v.boot == power.BootPXE && !netBoot && v.ramdisk != nil {
		params := v.ramdisk.Params
		if v.set.bridge == "" {
			params = kernelParams(params, v.agentPort)
		} else {
			params = append(append([]string{}, params...), "console=ttyS0")
		}
		args = append(args,
			"-kernel", v.ramdisk.Kernel,
			"-initrd", v.ramdisk.Initramfs,
			"-append", strings.Join(params, " "))
	}
	return args, nil
}

// kernelParams are the conductor's parameters followed by the driver's:
// the serial console, and the address at which the conductor reaches the
// agent (the host side of the hostfwd), which the agent puts in its
// heartbeat callback URL.
func kernelParams(params []string, agentPort int) []string {
	return append(append([]string{}, params...),
		"console=ttyS0",
		"ipa-advertise-host=127.0.0.1",
		"ipa-advertise-port="+strconv.Itoa(agentPort))
}

// optValue escapes a value inside a QEMU option list (commas double).
func optValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }
