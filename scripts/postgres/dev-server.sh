#!/usr/bin/env bash
# Runs a throwaway PostgreSQL server for trying several conductors by hand:
# a new cluster in DIR (created if missing), listening on 127.0.0.1:PORT
# only, its unix socket in DIR, trust authentication for the "postgres"
# user. Runs in the foreground until interrupted. As root, the server runs
# as the postgres user (PostgreSQL refuses root).
#
# Usage: scripts/postgres/dev-server.sh DIR [PORT]   (PORT defaults to 5433)
# Then:  rivet-conductor --db postgres://postgres@127.0.0.1:PORT/postgres …
set -euo pipefail

dir=${1:?usage: $0 DIR [PORT]}
port=${2:-5433}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
if [ -z "$bindir" ]; then
  echo "dev-server: no PostgreSQL server binaries; run scripts/install-deps.sh postgres" >&2
  exit 1
fi

as_server=()
mkdir -p "$dir"
if [ "$(id -u)" -eq 0 ]; then
  chown postgres:postgres "$dir"
  as_server=(runuser -u postgres --)
fi
if [ ! -f "$dir/data/PG_VERSION" ]; then
  "${as_server[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust \
    --encoding=UTF8 --no-locale >/dev/null
fi
exec "${as_server[@]}" "$bindir/postgres" -D "$dir/data" \
  -c listen_addresses=127.0.0.1 -c port="$port" -c unix_socket_directories="$dir"
