#!/usr/bin/env bash
# Installs the Debian packages that building, the demo and the tests need.
# Idempotent: only missing packages are installed, and the package lists are
# refreshed only when something is missing. Package scripts are kept from
# starting services (there is no init system here; tests start what they need).
#
# Usage: scripts/install-deps.sh [group...]   groups: vm (default), test, ironic, postgres, netboot, rack, browser, bench
set -euo pipefail

groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(vm)

pkgs=()
for g in "${groups[@]}"; do
  case "$g" in
    # Building and booting the deploy ramdisk and the demo disk.
    # seabios and ipxe-qemu: BIOS and the NICs' option ROMs for qemu_boot=network;
    # iproute2: taps and bridges for qemu_bridge.
    vm) pkgs+=(qemu-system-x86 qemu-utils ovmf seabios ipxe-qemu iproute2 grub-efi-amd64-bin grub-common kmod
               e2fsprogs dosfstools util-linux zstd xz-utils ca-certificates curl python3) ;;
    # Real peers the test suite talks to; Apache's htpasswd (apache2-utils),
    # which writes the user files the conductor reads; the mkfs tools whose
    # output the disk-format readers are checked against; lldpd, the switch
    # side the agent's LLDP collector listens to (iproute2 for its namespaces),
    # and ironic-inspector, whose LLDP parser the conductor's is checked against;
    # nginx and stress-ng, which the load test's own tests start (the serving
    # bench's reference server on 127.0.0.1, the CPU-bound neighbour).
    test) pkgs+=(python3-ironicclient fuseiso apache2-utils xfsprogs btrfs-progs genisoimage gdisk lldpd iproute2
                 python3-ironic-inspector nginx stress-ng) ;;
    # The real Ironic (API + conductor) that drives rivet-agent in the
    # compatibility tests.
    ironic) pkgs+=(ironic-api ironic-conductor python3-ironicclient) ;;
    # The conductor's second store backend, started on loopback by the tests.
    postgres) pkgs+=(postgresql) ;;
    # Network boot and real BMCs: the iPXE binaries the boot services
    # serve, OpenIPMI's ipmi_sim as each test node's BMC, ipmitool and the
    # real DHCP/TFTP clients the boot services are tested with, iproute2
    # for the tests' network namespaces.
    netboot) pkgs+=(ipxe openipmi ipmitool udhcpc tftp-hpa iproute2) ;;
    # The virtual rack's BIOS partition image: GRUB's i386-pc modules and
    # grub-install/grub-mkconfig, copied (with the tools they run and their
    # libraries) into the image's root filesystem, where the agent runs
    # them in a chroot; mke2fs -d builds that filesystem without mounting.
    rack) pkgs+=(grub-pc-bin grub2-common grub-common e2fsprogs) ;;
    # Headless Chromium, driven over the DevTools protocol by the dashboard's
    # browser test, with a font so that its screenshots have legible text;
    # node and npm for `make dashboard` (npm ci of its pinned libraries).
    # A nodejs that bundles npm (NodeSource's) needs no separate npm.
    browser) pkgs+=(chromium fonts-dejavu-core nodejs)
             command -v npm >/dev/null || pkgs+=(npm) ;;
    # make bench only: the device limit (fio), the peers and stage limits it
    # measures against (curl, openssl, qemu-img, xz, zstd, losetup --direct-io);
    # make bench-serving's reference server (nginx, started by the bench on
    # 127.0.0.1 only) and make bench-conductor's CPU-bound neighbour (stress-ng).
    bench) pkgs+=(fio curl openssl qemu-utils xz-utils zstd e2fsprogs util-linux nginx stress-ng) ;;
    *) echo "install-deps: unknown group $g" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
# Keep maintainer scripts from starting daemons.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  created_policy=1
fi
trap '[ $created_policy = 1 ] && $SUDO rm -f '"$policy" EXIT
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
