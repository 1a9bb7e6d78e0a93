package qemu

import (
	"slices"
	"strings"
	"testing"

	"github.com/rivetmetal/rivet/conductor/power"
)

// argAfter returns the argument following the first occurrence of flag
// whose value has the given prefix.
func argAfter(args []string, flag, prefix string) (string, bool) {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && strings.HasPrefix(args[i+1], prefix) {
			return args[i+1], true
		}
	}
	return "", false
}

func TestQemuArgs(t *testing.T) {
	const id = "0b2c8a52-7f0e-4c1e-9a2c-1d1f0f6f7a10"
	base := vmSpec{
		uuid: id,
		set:  settings{disk: "/disks/a,b.raw", memoryMB: 1024, cpus: 1, bootMode: BootUEFI, mac: testMAC},
		paths: nodePaths{qmp: "/s/" + id + "/qmp.sock", console: "/s/" + id + "/console.log",
			vars: "/s/" + id + "/OVMF_VARS.fd"},
		agentPort: 41000,
		forwards:  []forward{{Port: 6385, Target: "127.0.0.1"}, {Port: 8080, Target: "::1"}},
		guestHost: "10.0.2.100",
		relay:     []string{"/usr/bin/rivet-conductor", "relay"},
		ovmfCode:  "/usr/share/OVMF/OVMF_CODE_4M.fd",
		ramdisk:   &ramdisk{Kernel: "/s/k", Initramfs: "/s/i", Params: []string{"ipa-api-url=http://10.0.2.100:6385"}},
	}

	t.Run("pxe uefi", func(t *testing.T) {
		v := base
		v.boot = power.BootPXE
		args, err := qemuArgs(v)
		if err != nil {
			t.Fatal(err)
		}
		netdev, _ := argAfter(args, "-netdev", "user,")
		for _, want := range []string{
			"restrict=on",
			"hostfwd=tcp:127.0.0.1:41000-:9999",
			"guestfwd=tcp:10.0.2.100:6385-cmd:/usr/bin/rivet-conductor relay 127.0.0.1 6385",
			"guestfwd=tcp:10.0.2.100:8080-cmd:/usr/bin/rivet-conductor relay ::1 8080",
		} {
			if !slices.Contains(strings.Split(netdev, ","), want) {
				t.Errorf("netdev %q lacks %q", netdev, want)
			}
		}
		if got, _ := argAfter(args, "-append", ""); got != "ipa-api-url=http://10.0.2.100:6385 console=ttyS0 ipa-advertise-host=127.0.0.1 ipa-advertise-port=41000" {
			t.Errorf("-append %q", got)
		}
		for flag, want := range map[string]string{
			"-kernel": "/s/k", "-initrd": "/s/i", "-name": "rivet-" + id, "-uuid": id, "-accel": "tcg",
			"-m": "1024", "-smp": "1", "-serial": "chardev:console", "-display": "none",
		} {
			if got, ok := argAfter(args, flag, ""); !ok || got != want {
				t.Errorf("%s %q, want %q", flag, got, want)
			}
		}
		for flag, want := range map[string]string{
			"-device":  "virtio-net-pci,netdev=net0,mac=" + testMAC + ",romfile=",
			"-drive":   "file=/disks/a,,b.raw,if=none,id=disk0,format=raw",
			"-chardev": "file,id=console,path=/s/" + id + "/console.log,append=on",
		} {
			if _, ok := argAfter(args, flag, want); !ok {
				t.Errorf("no %s %s in %q", flag, want, args)
			}
		}
		for _, want := range []string{"virtio-blk-pci,drive=disk0,serial=RVT0b2c8a527f0e4c1e,bootindex=1", "virtio-rng-pci,rng=rng0"} {
			if _, ok := argAfter(args, "-device", want); !ok {
				t.Errorf("no -device %s", want)
			}
		}
		if _, ok := argAfter(args, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"); !ok {
			t.Error("uefi without OVMF code")
		}
		if _, ok := argAfter(args, "-drive", "if=pflash,format=raw,unit=1,file=/s/"+id+"/OVMF_VARS.fd"); !ok {
			t.Error("uefi without the node's OVMF vars")
		}
		for _, a := range []string{"-no-reboot", "-nodefaults"} {
			if !slices.Contains(args, a) {
				t.Errorf("no %s", a)
			}
		}
	})

	t.Run("disk bios", func(t *testing.T) {
		v := base
		v.boot = power.BootDisk
		v.set.bootMode = BootBIOS
		v.uuid = "not-a-uuid"
		args, err := qemuArgs(v)
		if err != nil {
			t.Fatal(err)
		}
		for _, flag := range []string{"-kernel", "-initrd", "-append", "-uuid"} {
			if slices.Contains(args, flag) {
				t.Errorf("%s in a disk boot of a non-UUID node", flag)
			}
		}
		if _, ok := argAfter(args, "-drive", "if=pflash"); ok {
			t.Error("pflash in bios mode")
		}
	})

	t.Run("network boot bridge", func(t *testing.T) {
		v := base
		v.boot = power.BootPXE
		v.set.boot = BootNetwork
		v.set.bridge = "br-rack0"
		v.set.nicModel = "e1000e"
		v.set.diskBus = DiskNVMe
		v.paths.ifup = "/s/" + id + "/ifup"
		args, err := qemuArgs(v)
		if err != nil {
			t.Fatal(err)
		}
		for _, flag := range []string{"-kernel", "-initrd", "-append"} {
			if slices.Contains(args, flag) {
				t.Errorf("%s in a network boot", flag)
			}
		}
		if got, _ := argAfter(args, "-netdev", ""); got != "tap,id=net0,ifname="+tapName(id)+",script=/s/"+id+"/ifup,downscript=no" {
			t.Errorf("-netdev %q", got)
		}
		// Network first (with the iPXE option ROM), then the disk.
		if _, ok := argAfter(args, "-device", "e1000e,netdev=net0,mac="+testMAC+",bootindex=1"); !ok {
			t.Errorf("no bootable e1000e in %q", args)
		}
		if _, ok := argAfter(args, "-device", "nvme,drive=disk0,serial=RVT0b2c8a527f0e4c1e,bootindex=2"); !ok {
			t.Errorf("no nvme disk second in the boot order in %q", args)
		}
		// qemu_nic_rom none: the same NIC without its option ROM, still
		// first in the boot order (the firmware's own PXE client boots it).
		v.set.noNICROM = true
		args, err = qemuArgs(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := argAfter(args, "-device", "e1000e,netdev=net0,mac="+testMAC+",romfile=,bootindex=1"); !ok {
			t.Errorf("no ROM-less bootable e1000e in %q", args)
		}
		v.set.noNICROM = false
		v.boot = power.BootDisk
		args, _ = qemuArgs(v)
		if _, ok := argAfter(args, "-device", "e1000e,netdev=net0,mac="+testMAC); !ok || slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "e1000e") && strings.Contains(a, "bootindex") }) {
			t.Errorf("disk boot: NIC should not be in the boot order: %q", args)
		}
	})

	t.Run("kernel shortcut on a bridge", func(t *testing.T) {
		v := base
		v.boot = power.BootPXE
		v.set.bridge = "br0"
		v.set.diskBus = DiskMegaSAS
		args, err := qemuArgs(v)
		if err != nil {
			t.Fatal(err)
		}
		// No forwards and no advertise address: the node is on a real
		// network.
		if got, _ := argAfter(args, "-append", ""); got != "ipa-api-url=http://10.0.2.100:6385 console=ttyS0" {
			t.Errorf("-append %q", got)
		}
		if _, ok := argAfter(args, "-device", "megasas-gen2,id=disk0-ctl"); !ok {
			t.Errorf("no megasas controller in %q", args)
		}
	})

	t.Run("bad model", func(t *testing.T) {
		v := base
		v.set.nicModel = "ne2k"
		if _, err := qemuArgs(v); err == nil {
			t.Error("no error")
		}
	})
}
