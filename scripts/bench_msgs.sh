#!/usr/bin/env bash
# Messages per second over the distribution: BEAM -> BEAM (two erl nodes,
# the baseline), BEAM -> Rust and Rust -> BEAM, small and 1 KiB messages,
# over loopback; then the RSS of our node around a burst of 200k 1 KiB
# messages each way. Needs erl and erlc; no cpg.
#
#   bash scripts/bench_msgs.sh [BEAM_OUT OURS_OUT]
#
# With two files, appends `key value` lines to them (BEAM figures, ours),
# as scripts/bench.sh merges them into its table; alone, prints the lines.
# MSGS (default 100000): messages per run; RUNS (default 5): runs.
set -euo pipefail
cd "$(dirname "$0")/.."
MSGS="${MSGS:-100000}"
RUNS="${RUNS:-5}"
# shellcheck source=scripts/bench_lib.sh
. scripts/bench_lib.sh
bench_prepare msg_bench
echo "messages: $MSGS x $RUNS runs each way..." >&2
"$bin" "$tmp" "$MSGS" "$RUNS" >"$tmp/out.txt"
bench_output "$tmp/out.txt" "$@"
