#!/usr/bin/env bash
# Runs a standalone Ironic (Debian's ironic-api + ironic-conductor, installed
# by `scripts/install-deps.sh ironic`) on 127.0.0.1 until it is signalled:
# writes STATE_DIR/ironic.conf from ironic.conf.in, creates the SQLite schema,
# then starts the conductor and the API as child processes. Their logs go to
# STATE_DIR/conductor.log and STATE_DIR/api.log. SIGTERM/SIGINT stop both.
#
# Usage: run-ironic.sh STATE_DIR API_PORT RPC_PORT HTTP_URL [BOOT_MODE] [HEARTBEAT_TIMEOUT]
#   HTTP_URL   where deploy kernels/ramdisks are served ([deploy]http_url)
#   BOOT_MODE  uefi (default) or bios
set -euo pipefail

if [ $# -lt 4 ]; then
  sed -n '2,11p' "$0" >&2
  exit 2
fi
state=$1 api_port=$2 rpc_port=$3 http_url=$4 boot_mode=${5:-uefi} hb_timeout=${6:-10}
here=$(cd "$(dirname "$0")" && pwd)

for bin in ironic-api ironic-conductor ironic-dbsync; do
  command -v "$bin" >/dev/null || { echo "run-ironic: $bin not installed (scripts/install-deps.sh ironic)" >&2; exit 3; }
done

mkdir -p "$state"/{httpboot,tftpboot/master_images,master_images,images,locks,deploy-logs}
sed -e "s|@STATE_DIR@|$state|g" -e "s|@API_PORT@|$api_port|g" -e "s|@RPC_PORT@|$rpc_port|g" \
    -e "s|@HTTP_URL@|$http_url|g" -e "s|@BOOT_MODE@|$boot_mode|g" -e "s|@HEARTBEAT_TIMEOUT@|$hb_timeout|g" \
    "$here/ironic.conf.in" > "$state/ironic.conf"
conf=(--config-file "$state/ironic.conf")

ironic-dbsync "${conf[@]}" create_schema > "$state/dbsync.log" 2>&1 ||
  { cat "$state/dbsync.log" >&2; exit 4; }

pids=()
stop() {
  trap - TERM INT EXIT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait || true
}
trap stop TERM INT EXIT

ironic-conductor "${conf[@]}" > "$state/conductor.log" 2>&1 &
pids+=($!)
ironic-api "${conf[@]}" > "$state/api.log" 2>&1 &
pids+=($!)
echo "run-ironic: conductor pid ${pids[0]}, api pid ${pids[1]}, API http://127.0.0.1:$api_port"

# Stay until signalled, or until either child dies (then fail).
wait -n "${pids[@]}" || true
echo "run-ironic: a child exited; stopping" >&2
exit 1
