# shellcheck shell=bash
# Shared by scripts/bench_msgs.sh and scripts/bench_cluster.sh (sourced from
# the repository's root).

# bench_prepare NAME: sets tmp (a temporary folder, removed on exit) holding
# bench/erl/NAME.erl compiled, and bin (examples/NAME, built in release).
bench_prepare() {
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    command -v erlc >/dev/null || { echo "$1: erlc is missing" >&2; exit 1; }
    erlc -o "$tmp" "bench/erl/$1.erl"
    echo "building examples/$1 (release)..." >&2
    cargo build --release --no-default-features --example "$1" >&2
    bin="${CARGO_TARGET_DIR:-target}/release/examples/$1"
}

# bench_output OUT [BEAM_OUT OURS_OUT]: appends OUT's `beam.` lines to
# BEAM_OUT and its `ours.` lines to OURS_OUT, prefixes removed (as
# scripts/bench.sh merges them); without the two files, prints OUT.
bench_output() {
    if [ $# -eq 3 ]; then
        sed -n 's/^beam\.//p' "$1" >>"$2"
        sed -n 's/^ours\.//p' "$1" >>"$3"
    else
        cat "$1"
    fi
}
