#!/usr/bin/env bash
# Propagation of joins, exchange ingest and the term codec, against genuine
# cpg on erl nodes over loopback (examples/cluster_bench.rs and
# bench/erl/cluster_bench.erl):
#   prop    100k groups x 1 and 10k x 10 joined on one node, until another
#           node's scope holds them: BEAM -> BEAM (the baseline),
#           BEAM -> Rust, Rust -> BEAM
#   ingest  a node whose scope holds them (or 100k x 10) is connected to;
#           time until the receiving scope holds them, and lookups
#           meanwhile: BEAM -> BEAM vs BEAM -> Rust
#   state   a scope holding 100k groups hands out its state (the cpg_data
#           call), then every group's name (which_groups), to another
#           node: BEAM -> BEAM vs ours -> BEAM
#   codec   encode/decode of four messages: term_to_binary/binary_to_term
#           vs the crate's term codec
# prop, ingest and state need genuine cpg (CPG_EBIN: its ebin folders and those of
# trie and quickrand, ':'-separated) and are skipped without it; codec needs
# only erl. The erl nodes use an EPMD embedded in the bench (random port)
# and a random cookie, and are killed when it ends.
#
#   bash scripts/bench_cluster.sh [BEAM_OUT OURS_OUT]
#
# With two files, appends `key value` lines to them (BEAM figures, ours),
# as scripts/bench.sh merges them into its table; alone, prints the lines.
# PARTS (default "prop ingest state codec"), RUNS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS="${PARTS:-prop ingest state codec}"
RUNS="${RUNS:-3}"
# shellcheck source=scripts/bench_lib.sh
. scripts/bench_lib.sh
bench_prepare cluster_bench
: >"$tmp/out.txt"
cluster=()
for p in $PARTS; do
    case "$p" in
        prop | ingest | state) cluster+=("$p") ;;
        codec)
            echo "codec: BEAM x $RUNS..." >&2
            # not distributed: the pids are built from bytes
            erl -noshell -pa "$tmp" -s cluster_bench codec "$RUNS" -s init stop |
                sed 's/^/beam./' >>"$tmp/out.txt"
            cluster+=(codec)
            ;;
        *) echo "bench_cluster: unknown part $p" >&2; exit 2 ;;
    esac
done
if [ ${#cluster[@]} -gt 0 ]; then
    echo "${cluster[*]}: x $RUNS runs (BEAM -> BEAM first, then through our node)..." >&2
    CPG_EBIN="${CPG_EBIN:-}" "$bin" "$tmp" "$RUNS" "${cluster[@]}" \
        >>"$tmp/out.txt"
fi
bench_output "$tmp/out.txt" "$@"
