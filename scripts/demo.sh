#!/usr/bin/env bash
# The Rivet demo: a conductor on loopback with its embedded SQLite store, a
# QEMU node booting the Rivet deploy ramdisk, a real bootable image deployed
# onto the node's disk, the node going `active` and booting that disk.
# Run it through `make demo`, which builds what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=build/bin
image=build/testimage/disk.raw
for f in $bin/rivet-conductor $bin/rivet build/kernel/vmlinuz build/initramfs-virtual.cpio.zst "$image"; do
  [ -e "$f" ] || { echo "demo: $f is missing; run 'make demo'" >&2; exit 1; }
done

# QEMU's control socket path must stay short, so state lives under /tmp.
state=$(mktemp -d /tmp/rivet-demo.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 6385)
url="http://127.0.0.1:$port"
export RIVET_URL=$url
rivet() { "$bin/rivet" "$@"; }

cleanup() {
  rivet node undeploy demo --wait --timeout 2m >/dev/null 2>&1 || true
  [ -n "${cpid:-}" ] && kill "$cpid" 2>/dev/null && wait "$cpid" 2>/dev/null || true
  echo "demo: state and logs kept in $state"
}
trap cleanup EXIT

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "Starting rivet-conductor on $url (SQLite at $state/rivet.db)"
"$bin/rivet-conductor" --listen "127.0.0.1:$port" --state-dir "$state" \
  --image-dir "$(dirname "$image")" \
  --deploy-kernel build/kernel/vmlinuz --deploy-ramdisk build/initramfs-virtual.cpio.zst \
  --ramdisk-heartbeat-timeout 30s \
  --automated-clean=false >"$state/conductor.log" 2>&1 &
# Automated cleaning (on by default) is turned off explicitly: it would cost
# the demo a whole extra ramdisk boot on provide, and its fresh disk holds
# no one's data. Keep it on for real fleets.
cpid=$!
for _ in $(seq 1 100); do curl -sf "$url/v1" >/dev/null && break; sleep 0.1; done
curl -sf "$url/v1" >/dev/null || { cat "$state/conductor.log"; exit 1; }

say "Enrolling a QEMU node with a 5 GiB disk"
# The qemu driver's files directory (--qemu-files-dir) is the only place
# driver_info may name a disk; a relative qemu_disk is taken from it.
truncate -s 5G "$state/qemu/files/node-disk.raw"
rivet node create --name demo --driver qemu --driver-info "qemu_disk=node-disk.raw" --driver-info qemu_memory_mb=768
rivet port create 52:54:00:12:34:56 --node demo
rivet node manage demo --wait
rivet node provide demo --wait
uuid=$(rivet -o json node show demo | python3 -c 'import json,sys; print(json.load(sys.stdin)["uuid"])')
console="$state/qemu/$uuid/console.log"

sum=$(sha256sum "$image" | cut -d' ' -f1)
say "Deploying $(basename "$image") ($(du -h --apparent-size "$image" | cut -f1), sha256 ${sum:0:16}…)"
start=$(date +%s.%N)
rivet node deploy demo --image "$url/images/$(basename "$image")" --checksum "$sum" --os-hash-algo sha256 --wait --timeout 10m
active=$(date +%s.%N)

say "The node boots its own disk (console: $console)"
marker=""
for _ in $(seq 1 240); do
  marker=$(grep -a -m1 'RIVET-TESTIMAGE-BOOTED' "$console" 2>/dev/null || true)
  [ -n "$marker" ] && break
  sleep 0.5
done
[ -n "$marker" ] || { echo "demo: the deployed disk did not boot; see $console" >&2; exit 1; }
booted=$(date +%s.%N)
echo "    $marker"
rivet node show demo

say "Summary"
rss=$(grep -a -o 'agent_peak_rss_mib=[0-9]*' "$console" | head -1 | cut -d= -f2)
python3 - "$start" "$active" "$booted" "${rss:-?}" <<'PY'
import sys
start, active, booted, rss = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print(f"    deploy -> active:          {active-start:6.1f} s")
print(f"    deploy -> OS booted:       {booted-start:6.1f} s")
print(f"    agent peak RSS:            {rss:>6} MiB")
PY
printf '    deploy ramdisk:            %6s MiB (zstd)\n' "$(python3 -c "import os; print(f'{os.path.getsize(\"build/initramfs-virtual.cpio.zst\")/2**20:.1f}')")"
