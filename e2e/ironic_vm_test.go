package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/internal/testimage/vmtest"
)

// guestIronic and guestProxy are where the VM reaches the host's Ironic API
// and the test's HTTP proxy (QEMU guestfwd; restrict=on allows nothing else).
const (
	guestIronic = "10.0.2.100"
	guestProxy  = "10.0.2.101"
)

// ironicRamdisk is the deploy ramdisk the VM boots: RIVET_IRONIC_RAMDISK,
// else build/initramfs-virtual.cpio.zst (make initramfs-virtual), which
// boots with build/kernel's cloud kernel.
func ironicRamdisk(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("RIVET_IRONIC_RAMDISK"); p != "" {
		return p
	}
	return vmtest.VirtualRamdisk(t)
}

// imageProxy is a forward HTTP proxy that only reaches the test's file
// server: the agent in the VM downloads the image through it, with the
// same URL Ironic validated from the host (driver_info.image_http_proxy).
func imageProxy(t *testing.T, allowedHost string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !r.URL.IsAbs() || r.URL.Host != allowedHost {
			http.Error(w, "this proxy only reaches "+allowedHost, http.StatusForbidden)
			return
		}
		out := r.Clone(r.Context())
		out.RequestURI = ""
		resp, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func portOf(t *testing.T, rawURL string) int {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testIronicQEMU deploys the test image onto a QEMU node (UEFI, OVMF,
// TCG) that boots the real deploy ramdisk, Ironic driving the agent inside
// the VM through QEMU's port forwards; then a manual clean (erase_devices)
// boots the ramdisk again and erases the node's two disks: the virtio disk
// with zeros, the NVMe namespace with an NVMe Format (QEMU's controller
// implements it).
func testIronicQEMU(t *testing.T, ir *ironic, img []byte, sum string) {
	vmtest.QEMU(t)
	kernel := vmtest.Kernel(t)
	ramdisk := ironicRamdisk(t)
	code, vars := vmtest.OVMF(t)
	relay := goBuild(t, t.TempDir(), "./scripts/ironic/relay")
	proxy := imageProxy(t, strings.TrimPrefix(ir.files.url, "http://"))

	const mac = "52:54:00:12:34:99"
	// Small disks, so the root device hint names the install disk (no
	// hint would want 4 GiB).
	id := ir.enroll(t, "rivet-qemu", mac, map[string]any{"image_http_proxy": "http://" + guestProxy + ":80"},
		map[string]any{"root_device": map[string]any{"name": "/dev/vda"}})
	ir.patch(t, id,
		map[string]any{"op": "add", "path": "/instance_info/image_source", "value": ir.files.url + "/images/disk.raw"},
		map[string]any{"op": "add", "path": "/instance_info/image_os_hash_algo", "value": "sha256"},
		map[string]any{"op": "add", "path": "/instance_info/image_os_hash_value", "value": sum},
	)
	dir := t.TempDir()
	disk := filepath.Join(dir, "vda.raw")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(disk, 256<<20)
	nvme := filepath.Join(dir, "nvme.raw")
	if err := os.WriteFile(nvme, bytes.Repeat([]byte{0xAB}, 64<<20), 0o644); err != nil {
		t.Fatal(err)
	}

	agentPort := freePort(t)
	netdev := strings.Join([]string{"user", "id=n0", "restrict=on",
		fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:9999", agentPort),
		fmt.Sprintf("guestfwd=tcp:%s:80-cmd:%s 127.0.0.1 %d", guestIronic, relay, portOf(t, ir.url)),
		fmt.Sprintf("guestfwd=tcp:%s:80-cmd:%s 127.0.0.1 %d", guestProxy, relay, portOf(t, proxy.URL)),
	}, ",")
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	// boot plays the BMC: fake power "powered the node on", so the test
	// boots the ramdisk, as PXE would.
	boot := func() *vmtest.VM {
		return vmtest.Start(ctx, t,
			"-m", "768", "-smp", "1",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars,
			"-netdev", netdev,
			"-device", "virtio-net-pci,netdev=n0,romfile=,mac="+mac,
			"-drive", "file="+disk+",if=none,id=d0,format=raw",
			"-device", "virtio-blk-pci,drive=d0",
			"-drive", "file="+nvme+",if=none,id=nv0,format=raw",
			"-device", "nvme,serial=rivet-nvme-0,drive=nv0",
			"-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0",
			"-kernel", kernel, "-initrd", ramdisk,
			"-append", fmt.Sprintf("console=ttyS0 ipa-api-url=http://%s:80 ipa-advertise-host=127.0.0.1 ipa-advertise-port=%d ipa-disk-wait-attempts=1",
				guestIronic, agentPort),
		)
	}

	start := time.Now()
	ir.provision(t, id, "active", nil)
	ir.waitState(t, id, "wait call-back", 2*time.Minute, nil)
	vm := boot()
	n := ir.waitState(t, id, "active", 6*time.Minute, nil)
	deployTime := time.Since(start)
	if n["last_error"] != nil {
		t.Errorf("last_error %v", n["last_error"])
	}
	// The agent powered the VM off itself (standby.power_off → reboot(2);
	// QEMU runs with -no-reboot).
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer wcancel()
	if _, err := vm.Wait(wctx); err != nil {
		t.Errorf("QEMU did not exit cleanly after the agent's power off: %v", err)
	}
	checkWholeDiskImage(t, disk, 256<<20, img)
	inv, _, err := vm.WaitFor(ctx, regexp.MustCompile(`hardware inventory collected" seconds=([0-9.e-]+)`))
	invSeconds := "?"
	if err != nil {
		t.Errorf("no inventory line on the console: %v", err)
	} else {
		invSeconds = inv[1]
	}
	// install_bootloader wrote the image's loader into OVMF's NVRAM
	// through efivarfs: the variable store file now names it.
	if b, err := os.ReadFile(vars); err != nil || !bytes.Contains(b, utf16le("ironic1")) {
		t.Errorf("no \"ironic1\" UEFI boot entry in OVMF's variables (%v)", err)
	} else {
		t.Logf("OVMF's variable store holds the agent's UEFI boot entry \"ironic1\"")
	}

	// Manual cleaning: undeploy (no automated clean), manage, then clean
	// with erase_devices; the node boots the ramdisk again.
	ir.provision(t, id, "deleted", nil)
	ir.waitState(t, id, "available", 2*time.Minute, nil)
	ir.provision(t, id, "manage", nil)
	ir.waitState(t, id, "manageable", time.Minute, nil)
	start = time.Now()
	ir.provision(t, id, "clean", map[string]any{"clean_steps": []map[string]any{{"interface": "deploy", "step": "erase_devices"}}})
	ir.waitState(t, id, "clean wait", 2*time.Minute, nil)
	vm = boot()
	ir.waitState(t, id, "manageable", 6*time.Minute, nil)
	cleanTime := time.Since(start)
	m, _, err := vm.WaitFor(ctx, regexp.MustCompile(`disk erased" device=/dev/nvme0n1 method=(\S+)`))
	if err != nil || m[1] != "nvme-format-user-data-erase" && m[1] != "nvme-format-crypto-erase" {
		t.Errorf("the NVMe namespace was not erased with an NVMe format: %v %v", m, err)
	}
	for _, f := range []string{nvme, disk} {
		b, _ := os.ReadFile(f)
		if i := bytes.IndexFunc(b, func(r rune) bool { return r != 0 }); i >= 0 {
			t.Errorf("%s not erased: non-zero byte at %d", filepath.Base(f), i)
		}
	}
	t.Logf("real Ironic + QEMU node: deploy → active %.1f s (VM boot included), agent inventory %s s; manual clean (erase_devices: NVMe format + zeros) → manageable %.1f s",
		deployTime.Seconds(), invSeconds, cleanTime.Seconds())
}

func utf16le(s string) []byte {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r), byte(r>>8))
	}
	return b
}
