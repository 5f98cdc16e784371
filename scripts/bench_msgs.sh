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
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
command -v erlc >/dev/null || { echo "bench_msgs: erlc is missing" >&2; exit 1; }
erlc -o "$tmp" bench/erl/msg_bench.erl
echo "building examples/msg_bench (release)..." >&2
cargo build --release --no-default-features --example msg_bench >&2
target="${CARGO_TARGET_DIR:-target}"
echo "messages: $MSGS x $RUNS runs each way..." >&2
"$target/release/examples/msg_bench" "$tmp" "$MSGS" "$RUNS" >"$tmp/out.txt"
if [ $# -eq 2 ]; then
    sed -n 's/^beam\.//p' "$tmp/out.txt" >>"$1"
    sed -n 's/^ours\.//p' "$tmp/out.txt" >>"$2"
else
    cat "$tmp/out.txt"
fi
