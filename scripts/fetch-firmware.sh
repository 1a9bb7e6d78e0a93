#!/usr/bin/env bash
# Fetches the firmware files the hardware ramdisk's modules ask for, from
# Debian's non-free-firmware packages, downloaded and unpacked, not
# installed. Only the requested files are kept, with a manifest saying
# which package each came from and which module asks for it.
#
# Usage: scripts/fetch-firmware.sh KERNEL_DIR [OUT_DIR]
#   KERNEL_DIR  made by scripts/fetch-kernel.sh -f hardware (its
#               firmware-requests.tsv lists module<TAB>file)
#   OUT_DIR     default build/firmware:
#     OUT_DIR/tree/lib/firmware/...  the files (a tree to copy to the ramdisk's /)
#     OUT_DIR/manifest.tsv           file<TAB>package<TAB>version<TAB>bytes<TAB>modules
#                                    (package "-" for a file no package has),
#                                    also in the tree as lib/firmware/rivet-firmware-manifest.tsv
#
# The machine's apt sources are never changed: the non-free-firmware
# component of the same Debian archive and release is read through a
# private apt configuration (sources, lists and cache under OUT_DIR/apt).
# initramfs/firmware-manifest.tsv is the committed copy of the manifest;
# a difference is reported, not fatal (the archive moves).
set -euo pipefail

kdir=${1:?usage: fetch-firmware.sh KERNEL_DIR [OUT_DIR]}
out=${2:-build/firmware}
req="$kdir/firmware-requests.tsv"
[ -f "$req" ] || { echo "fetch-firmware: $req missing (run scripts/fetch-kernel.sh -f hardware)" >&2; exit 1; }

# The packages that carry what the shipped modules request (docs/ramdisk.md):
# bnx2 → firmware-bnx2; bnx2x → firmware-bnx2x; tg3 (tigon/) and ice
# (intel/ice/ddp) → firmware-misc-nonfree; qed/qede → firmware-qlogic.
packages="firmware-misc-nonfree firmware-bnx2 firmware-bnx2x firmware-qlogic"

stamp="$(sha256sum "$req" | cut -d' ' -f1) $(echo $packages)"
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] && [ -f "$out/manifest.tsv" ]; then
  exit 0
fi

# The Debian archive and release the machine already uses (not the
# security archive), from apt's own view of its sources.
read -r uri suite < <(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' |
  awk '$3 == "main" && $2 !~ /-/ {print $1, $2; exit}') || true
if [ -z "${uri:-}" ]; then
  echo "fetch-firmware: no Debian main archive in the apt sources (apt-get update?)" >&2
  exit 1
fi
mkdir -p "$out/apt/lists/partial" "$out/apt/cache/archives/partial"
apt=$(cd "$out/apt" && pwd)
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb [signed-by=$keyring] $uri $suite non-free-firmware" > "$apt/sources.list"
aptopts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
         -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
         -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "APT::Get::List-Cleanup=0")
echo "fetch-firmware: $suite non-free-firmware: $packages"
apt-get "${aptopts[@]}" update -qq >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get "${aptopts[@]}" download -qq $packages >/dev/null 2>&1) ||
  { echo "fetch-firmware: apt-get download $packages failed" >&2; exit 1; }
declare -A version
for deb in "$work"/*.deb; do
  p=$(dpkg-deb -f "$deb" Package)
  version[$p]=$(dpkg-deb -f "$deb" Version)
  mkdir -p "$work/x/$p"
  dpkg-deb -x "$deb" "$work/x/$p"
done

rm -rf "$out/tree"
mkdir -p "$out/tree/lib/firmware"
manifest="$out/manifest.tsv.new"
printf '# file\tpackage\tversion\tbytes\tmodules\n' > "$manifest"
# One line per file, the modules that request it joined with commas.
sort -t$'\t' -k2,2 -k1,1 "$req" | awk -F'\t' '
  $2 != f { if (f != "") print f "\t" m; f = $2; m = $1; next }
  { m = m "," $1 }
  END { if (f != "") print f "\t" m }' |
while IFS=$'\t' read -r file mods; do
  found=""
  for p in $packages; do
    src="$work/x/$p/lib/firmware/$file"
    [ -e "$src" ] || continue
    # Follow links inside the package only.
    real=$(readlink -f "$src")
    case "$real" in "$work/x/$p/"*) ;; *) continue ;; esac
    mkdir -p "$out/tree/lib/firmware/$(dirname "$file")"
    cp "$real" "$out/tree/lib/firmware/$file"
    printf '%s\t%s\t%s\t%s\t%s\n' "$file" "$p" "${version[$p]}" "$(stat -c %s "$real")" "$mods" >> "$manifest"
    found=1
    break
  done
  if [ -z "$found" ]; then
    printf '%s\t-\t-\t0\t%s\n' "$file" "$mods" >> "$manifest"
    echo "fetch-firmware: warning: no package in ($packages) has $file (asked for by $mods)" >&2
  fi
done
mv "$manifest" "$out/manifest.tsv"
# The ramdisk carries its manifest too, for whoever looks at a machine.
cp "$out/manifest.tsv" "$out/tree/lib/firmware/rivet-firmware-manifest.tsv"
echo "$stamp" > "$out/stamp"
committed="$(dirname "$0")/../initramfs/firmware-manifest.tsv"
if [ -f "$committed" ] && ! diff -q <(cut -f1,2,5 "$committed") <(cut -f1,2,5 "$out/manifest.tsv") >/dev/null; then
  echo "fetch-firmware: note: $out/manifest.tsv differs from initramfs/firmware-manifest.tsv (file, package or module); update the committed copy:" >&2
  diff <(cut -f1,2,5 "$committed") <(cut -f1,2,5 "$out/manifest.tsv") >&2 || true
fi
n=$(grep -vc '^#' "$out/manifest.tsv")
echo "fetch-firmware: $n files, $(du -sh "$out/tree" | cut -f1) in $out/tree"
