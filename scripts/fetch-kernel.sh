#!/usr/bin/env bash
# Fetches a Debian kernel for a deploy-ramdisk flavour, without installing
# it: apt-get download + dpkg-deb -x. The ABI number moves with the security
# archive, so the package is resolved through the meta-package.
#
# Usage: scripts/fetch-kernel.sh [-f virtual|hardware] [DIR]
#
#   virtual  (default; DIR defaults to build/kernel) Debian's cloud kernel
#            and the few modules a QEMU node needs (virtio, efivarfs, vfat):
#            the lean ramdisk of make demo and most e2e tests.
#   hardware (DIR defaults to build/kernel-generic) Debian's generic kernel
#            and the drivers of real servers (docs/ramdisk.md): NICs,
#            storage controllers, USB, md/dm, IPMI, with every module they
#            depend on (modprobe --show-depends on the whole tree).
#
# Output:
#   DIR/vmlinuz            the kernel
#   DIR/version            e.g. 6.1.0-57-amd64
#   DIR/package            the exact package, version and module list used
#   DIR/modules/lib/modules/<kver>/...  the chosen modules with modules.dep,
#                          modules.alias, modules.softdep and modules.builtin
#                          (a tree to copy to the ramdisk's /)
#   DIR/firmware-requests.tsv  one line per firmware file a shipped module
#                          asks for (modinfo -F firmware): module<TAB>file
set -euo pipefail

flavour=virtual
if [ "${1:-}" = "-f" ]; then
  flavour=${2:?fetch-kernel: -f needs virtual or hardware}
  shift 2
fi

case "$flavour" in
  virtual)
    dir=${1:-build/kernel}
    meta=linux-image-cloud-amd64
    # The drivers a QEMU node needs (virtio is modular in Debian's kernels)
    # and what a UEFI deploy needs: efivarfs for boot entries, FAT and its
    # code pages to mount an EFI system partition.
    modules="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
             failover net_failover virtio_net virtio_blk virtio-rng
             efivarfs fat vfat nls_cp437 nls_ascii"
    ;;
  hardware)
    dir=${1:-build/kernel-generic}
    meta=linux-image-amd64
    # Server NICs, then what QEMU emulates (e1000, vmxnet3, rtl8139),
    # storage controllers and disks, USB (host controllers, storage, HID),
    # md/dm, IPMI (the BMC's address read in-band), virtio, filesystems of
    # a UEFI deploy, and the usual root filesystems of partition images,
    # which the agent mounts to run the image's grub-install (ext4, which
    # covers ext2/3, and xfs: about 1.2 MiB of the ramdisk; the generic
    # kernel builds neither in, and the kernel asks the ramdisk's modprobe
    # for them on mount; btrfs would add 1.1 MiB more). Their dependencies
    # are added below.
    modules="e1000e igb igc ixgbe i40e ice mlx4_en mlx5_core bnxt_en tg3 bnx2 bnx2x qede be2net
             virtio_net e1000 vmxnet3 8139cp 8139too
             ahci nvme megaraid_sas mpt3sas mptsas smartpqi hpsa aacraid virtio_blk virtio_scsi
             sd_mod sr_mod
             xhci_pci ehci_pci ohci_pci uhci_hcd usb-storage uas usbhid hid_generic
             md_mod raid0 raid1 raid10 raid456 dm_mod
             ipmi_si ipmi_devintf
             virtio_pci virtio_rng
             efivarfs vfat nls_cp437 nls_ascii
             ext4 xfs"
    ;;
  *)
    echo "fetch-kernel: unknown flavour $flavour (want virtual or hardware)" >&2
    exit 2
    ;;
esac

pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ]; then
  echo "fetch-kernel: cannot resolve $meta (apt-get update?)" >&2
  exit 1
fi
pkgver=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
stamp="$pkg $pkgver $(echo $modules)"
if [ -f "$dir/package" ] && [ "$(cat "$dir/package")" = "$stamp" ] && [ -f "$dir/vmlinuz" ]; then
  exit 0
fi
kver=${pkg#linux-image-}
echo "fetch-kernel: $flavour: $pkg $pkgver"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -qq "$pkg" >/dev/null 2>&1) || { echo "fetch-kernel: apt-get download $pkg failed" >&2; exit 1; }
deb=$(ls "$work"/*.deb)
dpkg-deb -x "$deb" "$work/x"
src="$work/x/lib/modules/$kver"
# The .deb has no modules.dep (it is made at install time): make one for
# the whole tree, so that modprobe can list each module's dependencies.
depmod -b "$work/x" "$kver"
files=$(for m in $modules; do
  out=$(modprobe -d "$work/x" -S "$kver" --show-depends "$m" 2>&1) || {
    echo "fetch-kernel: module $m: $out" >&2; exit 1; }
  # "builtin NAME" lines need no file; "insmod PATH [params]" do.
  echo "$out" | awk '$1 == "insmod" {print $2}'
done | sort -u)
[ -n "$files" ] || { echo "fetch-kernel: no module files resolved" >&2; exit 1; }

rm -rf "$dir"
mods="$dir/modules/lib/modules/$kver"
mkdir -p "$mods"
cp "$work/x/boot/vmlinuz-$kver" "$dir/vmlinuz"
: > "$dir/firmware-requests.tsv"
for f in $files; do
  rel=${f#"$src"/}
  mkdir -p "$mods/$(dirname "$rel")"
  cp "$f" "$mods/$rel"
  name=$(basename "$f"); name=${name%%.ko*}
  modinfo -F firmware "$f" | while read -r fw; do
    [ -n "$fw" ] && printf '%s\t%s\n' "$name" "$fw"
  done >> "$dir/firmware-requests.tsv"
done
cp "$src/modules.builtin" "$src/modules.builtin.modinfo" "$src/modules.order" "$mods/" 2>/dev/null || true
depmod -b "$dir/modules" "$kver"
# The ramdisk's loader reads the text files; the binary indexes and the
# symbol tables only take space.
rm -f "$mods"/*.bin "$mods/modules.symbols" "$mods/modules.builtin.modinfo"
echo "$kver" > "$dir/version"
echo "$stamp" > "$dir/package"
n=$(echo "$files" | wc -l)
echo "fetch-kernel: $(du -h "$dir/vmlinuz" | cut -f1) vmlinuz, $n modules ($(du -sh "$mods" | cut -f1)) in $mods"
