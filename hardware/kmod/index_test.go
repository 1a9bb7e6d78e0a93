package kmod

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeIndex writes a modules directory with the given depmod files and an
// empty .ko file for every module in dep.
func writeIndex(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, line := range strings.Split(files["modules.dep"], "\n") {
		mod, _, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		p := filepath.Join(dir, mod)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("\x7fELF"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// testIndex is a small kernel: a virtio stack, a SCSI stack, an Intel NIC
// with a soft dependency and a module built in.
var testIndex = map[string]string{
	"modules.dep": `kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/scsi/scsi_mod.ko:
kernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/scsi/megaraid/megaraid_sas.ko: kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko: kernel/drivers/ptp/ptp.ko
kernel/drivers/ptp/ptp.ko:
kernel/lib/crc32c_generic.ko:
kernel/fs/fat/vfat.ko:
`,
	"modules.alias": `# Aliases extracted from modules themselves.
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias scsi:t-0x00* sd_mod
alias scsi:t-0x0E* sd_mod
alias pci:v00001000d00000079sv*sd*bc*sc*i* megaraid_sas
alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e
alias fs-vfat vfat
alias crypto-crc32c crc32c_generic
alias crc32c crc32c_generic
`,
	"modules.softdep": `# Soft dependencies extracted from modules themselves.
softdep e1000e pre: crc32c_generic post: vfat
softdep sd_mod pre: crc32c crct10dif
`,
	"modules.builtin": "kernel/drivers/block/loop.ko\nkernel/drivers/nvme/host/nvme-core.ko\n",
}

func TestLoadIndex(t *testing.T) {
	dir := writeIndex(t, testIndex)
	ix, err := LoadIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := ix.Deps("virtio_net"); !reflect.DeepEqual(got, []string{"net_failover", "failover", "virtio_ring", "virtio"}) {
		t.Errorf("Deps(virtio_net) = %v", got)
	}
	if got, want := ix.Path("megaraid_sas"), filepath.Join(dir, "kernel/drivers/scsi/megaraid/megaraid_sas.ko"); got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
	pre, post := ix.Softdeps("e1000e")
	if !reflect.DeepEqual(pre, []string{"crc32c_generic"}) || !reflect.DeepEqual(post, []string{"vfat"}) {
		t.Errorf("Softdeps(e1000e) = %v, %v", pre, post)
	}
	if !ix.Builtin("nvme_core") || ix.Builtin("sd_mod") {
		t.Error("Builtin: nvme_core should be built in, sd_mod not")
	}
	for alias, want := range map[string][]string{
		"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00": {"virtio_pci"},
		"virtio:d00000001v00001AF4":                             {"virtio_net"},
		"scsi:t-0x00":                                           {"sd_mod"},
		"scsi:t-0x05":                                           nil,
		"fs-vfat":                                               {"vfat"},
		"pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00": nil,
	} {
		if got := ix.Lookup(alias); !reflect.DeepEqual(got, want) {
			t.Errorf("Lookup(%s) = %v, want %v", alias, got, want)
		}
	}
	if got := ix.Resolve("virtio-net"); !reflect.DeepEqual(got, []string{"virtio_net"}) {
		t.Errorf("Resolve(virtio-net) = %v", got)
	}
	if got := ix.Resolve("fs-vfat"); !reflect.DeepEqual(got, []string{"vfat"}) {
		t.Errorf("Resolve(fs-vfat) = %v", got)
	}
}

func TestLoadIndexErrors(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"no modules.dep":     {"modules.alias": ""},
		"no modules.alias":   {"modules.dep": ""},
		"bad dep line":       {"modules.dep": "no colon here\n", "modules.alias": ""},
		"bad alias line":     {"modules.dep": "", "modules.alias": "alias onlypattern\n"},
		"bad softdep line":   {"modules.dep": "", "modules.alias": "", "modules.softdep": "softdep x a b\n"},
		"alias not an alias": {"modules.dep": "", "modules.alias": "options x y=1\n"},
		"line too long":      {"modules.dep": "a.ko: " + strings.Repeat("b", maxLine) + "\n", "modules.alias": ""},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := LoadIndex(writeIndex(t, files)); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/net/virtio_net.ko":            "virtio_net",
		"kernel/drivers/char/hw_random/virtio-rng.ko": "virtio_rng",
		"/lib/modules/6.1/x/e1000e.ko.xz":             "e1000e",
		"nvme-core.ko.zst":                            "nvme_core",
		"usb-storage":                                 "usb_storage",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}
