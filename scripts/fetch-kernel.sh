#!/usr/bin/env bash
# Fetches the Debian cloud kernel for the deploy ramdisk and the demo OS, without
# installing it: apt-get download + dpkg-deb -x. The ABI number moves with the
# security archive, so the package is resolved through the meta-package.
#
# Output (DIR defaults to build/kernel):
#   DIR/vmlinuz            the kernel
#   DIR/version            e.g. 6.1.0-56-cloud-amd64
#   DIR/package            the exact package name and version that was used
#   DIR/modules/lib/modules/<kver>/...  the virtio modules the ramdisk needs, with
#                          modules.dep (a tree to copy to the ramdisk's /)
set -euo pipefail

dir=${1:-build/kernel}
meta=linux-image-cloud-amd64
pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ]; then
  echo "fetch-kernel: cannot resolve $meta (apt-get update?)" >&2
  exit 1
fi
pkgver=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
# The drivers a QEMU node needs (virtio is modular in Debian's kernels) and
# what a UEFI deploy needs: efivarfs for boot entries, FAT and its code
# pages to mount an EFI system partition.
modules="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
         failover net_failover virtio_net virtio_blk virtio-rng
         efivarfs fat vfat nls_cp437 nls_ascii"
stamp="$pkg $pkgver $(echo $modules)"
if [ -f "$dir/package" ] && [ "$(cat "$dir/package")" = "$stamp" ] && [ -f "$dir/vmlinuz" ]; then
  exit 0
fi
kver=${pkg#linux-image-}
echo "fetch-kernel: $pkg $pkgver"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -qq "$pkg" >/dev/null 2>&1) || { echo "fetch-kernel: apt-get download $pkg failed" >&2; exit 1; }
deb=$(ls "$work"/*.deb)
dpkg-deb -x "$deb" "$work/x"
rm -rf "$dir"
mods="$dir/modules/lib/modules/$kver"
mkdir -p "$mods"
cp "$work/x/boot/vmlinuz-$kver" "$dir/vmlinuz"
src="$work/x/lib/modules/$kver"
for m in $modules; do
  f=$(find "$src/kernel" -name "$m.ko*" | head -1)
  if [ -z "$f" ]; then echo "fetch-kernel: module $m not found" >&2; exit 1; fi
  rel=${f#$src/}
  mkdir -p "$mods/$(dirname "$rel")"
  cp "$f" "$mods/$rel"
done
cp "$src/modules.builtin" "$src/modules.order" "$mods/" 2>/dev/null || true
depmod -b "$dir/modules" "$kver"
echo "$kver" > "$dir/version"
echo "$stamp" > "$dir/package"
echo "fetch-kernel: $(du -h "$dir/vmlinuz" | cut -f1) vmlinuz, modules in $mods"
