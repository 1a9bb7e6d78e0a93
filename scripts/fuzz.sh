#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each and writes a
# summary (package, target, executions, new interesting inputs, result).
# Targets are discovered, not listed: any `func Fuzz...` in a _test.go file
# is picked up. A failing target leaves its crasher under the package's
# testdata/fuzz/<Target>/ (commit it as a regression input once fixed).
#
# Usage: scripts/fuzz.sh   (FUZZTIME=30s, FUZZ_SUMMARY=build/fuzz-summary.md)
set -uo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-30s}
SUMMARY=${FUZZ_SUMMARY:-build/fuzz-summary.md}
GO=${GO:-go}
mkdir -p "$(dirname "$SUMMARY")"
logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT

# Packages with a fuzz function in a test file.
pkgs=$(grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' --exclude-dir=build --exclude-dir=.git . |
  xargs -r -n1 dirname | sort -u)

failed=0
{
  echo "# Fuzzing: $(date -u +%Y-%m-%dT%H:%MZ), $FUZZTIME per target, $(nproc) CPUs"
  echo
  echo "| package | target | executions | new interesting | result |"
  echo "|---|---|---:|---:|---|"
} >"$SUMMARY"
for dir in $pkgs; do
  pkg=$($GO list "$dir") || continue
  for target in $($GO test -list '^Fuzz' "$dir" 2>/dev/null | grep -E '^Fuzz'); do
    log="$logdir/$target.log"
    echo "fuzz: $pkg $target ($FUZZTIME)" >&2
    if $GO test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$dir" >"$log" 2>&1; then
      result=ok
    else
      result="FAIL (see $dir/testdata/fuzz/$target)"
      failed=1
      tail -20 "$log" >&2
    fi
    # The last progress line has the totals: "execs: N (…/sec), new interesting: M (total: T)".
    execs=$(grep -oE 'execs: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
    interesting=$(grep -oE 'new interesting: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
    echo "| $pkg | $target | ${execs:-?} | ${interesting:-?} | $result |" >>"$SUMMARY"
  done
done
cat "$SUMMARY"
exit $failed
