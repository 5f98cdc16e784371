#!/usr/bin/env bash
# Benchmarks cpg-node against genuine cpg on BEAM and prints one table.
#
#   CPG_EBIN=/path/cpg/ebin:/path/trie/ebin:/path/quickrand/ebin bash scripts/bench.sh
#
# CPG_EBIN: the ebin directories of cpg and its dependencies (trie,
# quickrand), ':'-separated. Without it only our side runs and the rows it
# could not compare are listed. RUNS (default 5): runs of each figure; the
# table shows median [min-max]. PARTS (default all): a subset of
# "lookup pattern join scope quad mem remote quad30 msgs prop ingest state codec"
# (scope: our joins
# through a running scope process, on a node of ours; quad30, the 30k sizes of
# the quadratic paths, and remote run once, not RUNS times: BEAM takes tens
# of seconds there; msgs: messages per second and RSS after a burst,
# scripts/bench_msgs.sh, BEAM -> BEAM between two erl nodes as the
# baseline, which needs no CPG_EBIN; prop, ingest, state, codec:
# propagation of 100k joins, exchange ingest, a scope's state handed out
# (cpg_data) and the term codec, scripts/bench_cluster.sh, BEAM -> BEAM
# between two erl nodes as the baseline; codec needs no CPG_EBIN, the other
# three are skipped without it).
#
# Our side: examples/cpg_bench.rs (release build). BEAM side:
# bench/erl/cpg_bench.erl, compiled here with erlc into a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-5}"
PARTS="${PARTS:-lookup pattern join scope quad mem remote quad30 msgs prop ingest state codec}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

many=() once=() msgs="" cluster=()
for p in $PARTS; do
    case "$p" in
        msgs) msgs=1 ;;
        prop | ingest | state | codec) cluster+=("$p") ;;
        quad30 | remote) once+=("$p") ;;
        lookup | pattern | join | scope | quad | mem) many+=("$p") ;;
        *) echo "unknown part: $p" >&2; exit 2 ;;
    esac
done

if [ ${#many[@]} -gt 0 ] || [ ${#once[@]} -gt 0 ]; then
    echo "building examples/cpg_bench (release)..." >&2
    cargo build --release --no-default-features --example cpg_bench >&2
fi
target="${CARGO_TARGET_DIR:-target}"
ours="$target/release/examples/cpg_bench"

only() { for p in "$@"; do printf -- '--only %s ' "$p"; done; }

if [ -n "${CPG_EBIN:-}" ]; then
    command -v erlc >/dev/null || { echo "CPG_EBIN is set but erlc is missing" >&2; exit 1; }
    erlc -o "$tmp" bench/erl/cpg_bench.erl
    pa=()
    IFS=: read -r -a dirs <<<"$CPG_EBIN"
    for d in "${dirs[@]}"; do pa+=(-pa "$d"); done
    # The BEAM node registers with an EPMD of its own port, stopped at the
    # end (an erl node on the default port would leave a system EPMD
    # daemon running after the bench).
    epmd_port=$((20000 + RANDOM % 20000))
    trap 'epmd -port "$epmd_port" -kill >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
    beam() {
        # a distributed node (for the remote part's peer); no output but ours
        ERL_EPMD_PORT="$epmd_port" erl +P 2000000 -noshell "${pa[@]}" -pa "$tmp" \
            -sname "cpg_bench_$$" -s cpg_bench main "$@" -s init stop
    }
    if [ ${#many[@]} -gt 0 ]; then
        echo "BEAM: ${many[*]} x $RUNS..." >&2
        beam "$RUNS" "${many[@]}" >"$tmp/beam.txt"
    fi
    if [ ${#once[@]} -gt 0 ]; then
        echo "BEAM: ${once[*]} x 1..." >&2
        beam 1 "${once[@]}" >>"$tmp/beam.txt"
    fi
else
    : >"$tmp/beam.txt"
fi

if [ ${#many[@]} -gt 0 ]; then
    echo "cpg-node: ${many[*]} x $RUNS..." >&2
    # shellcheck disable=SC2046
    "$ours" --runs "$RUNS" $(only "${many[@]}") >"$tmp/ours.txt"
else
    : >"$tmp/ours.txt"
fi
if [ ${#once[@]} -gt 0 ]; then
    echo "cpg-node: ${once[*]} x 1..." >&2
    # shellcheck disable=SC2046
    "$ours" --runs 1 $(only "${once[@]}") >>"$tmp/ours.txt"
fi
if [ -n "$msgs" ]; then
    RUNS="$RUNS" bash scripts/bench_msgs.sh "$tmp/beam.txt" "$tmp/ours.txt"
fi
if [ ${#cluster[@]} -gt 0 ]; then
    RUNS="$RUNS" PARTS="${cluster[*]}" CPG_EBIN="${CPG_EBIN:-}" \
        bash scripts/bench_cluster.sh "$tmp/beam.txt" "$tmp/ours.txt"
fi

CPG_EBIN="${CPG_EBIN:-}" python3 - "$tmp/beam.txt" "$tmp/ours.txt" <<'EOF'
import os, statistics, sys

def load(path):
    d = {}
    for line in open(path):
        parts = line.split()
        if len(parts) == 2:
            try:
                d.setdefault(parts[0], []).append(float(parts[1]))
            except ValueError:
                pass
    return d

beam, ours = load(sys.argv[1]), load(sys.argv[2])

# (label, BEAM key, our key, unit, higher is better)
rows = []
ops = [("closest", "get_closest_pid"), ("random", "get_random_pid"),
       ("members", "get_members"), ("oldest", "get_oldest_pid"),
       ("newest", "get_newest_pid")]
for r in (1, 8):
    for op, fn in ops:
        for n in (1, 10, 1000):
            k = f"lookup.{op}.{n}.r{r}"
            rows.append((f"{fn}, group of {n}, {r} reader(s) [cpg_data]", k, k, "ns", False))
for r in (1, 8):
    for n in (1, 10, 1000):
        rows.append((f"get_members then copied into a Vec (to_vec), group of {n}, {r} reader(s) [vs cpg_data get_members]",
                     f"lookup.members.{n}.r{r}", f"lookup.members_vec.{n}.r{r}", "ns", False))
for r in (1, 8):
    for n in (1, 10, 1000):
        rows.append((f"get_members borrowed under the read lock (get_members_ref), group of {n}, {r} reader(s) [vs cpg_data get_members]",
                     f"lookup.members.{n}.r{r}", f"lookup.members_ref.{n}.r{r}", "ns", False))
for r in (1, 8):
    for op, fn in ops:
        for n in (1, 10, 1000):
            rows.append((f"{fn}, group of {n}, {r} reader(s) [gen_server]",
                         f"call.{op}.{n}.r{r}", f"lookup.{op}.{n}.r{r}", "ns", False))
for n in (1000, 100000):
    for r in (1, 8):
        k = f"pattern.{n}.r{r}"
        rows.append((f"pattern get_closest_pid, {n} pattern groups, {r} reader(s) [cpg_data]", k, k, "ns", False))
    rows.append((f"pattern get_closest_pid, {n} pattern groups, 1 reader [gen_server]",
                 f"pattern_call.{n}.r1", f"pattern.{n}.r1", "ns", False))
    k = f"pattern_unique.{n}.r1"
    rows.append((f"pattern get_closest_pid of 100k names in turn (none repeated soon), {n} pattern groups, 1 reader [cpg_data]",
                 k, k, "ns", False))
for n in (10000, 100000):
    for what, unit in (("join.dg_dp", "joins/s"), ("leave.dg_dp", "leaves/s"), ("join.g1_dp", "joins/s")):
        k = f"{what}.{n}"
        rows.append((f"local {what.replace('.', ' ')}, {n}", k, k, unit, True))
for n in (10000, 100000):
    for what in ("dg_dp", "g1_dp"):
        rows.append((f"local join {what}, {n} [ours through the scope process]",
                     f"join.{what}.{n}", f"join_scope.{what}.{n}", "joins/s", True))
for n in (10000, 30000):
    for k, label in (("quad.dg_1p_join", "one pid joins N groups (dg_1p)"),
                     ("quad.g1_dp_leave", "N pids leave one group (g1_dp)"),
                     ("quad.remote_down_g1", "N remote members of one group die")):
        rows.append((f"{label}, N={n}", f"{k}.{n}", f"{k}.{n}", "ms total", False))
rows.append(("memory per membership, 100k groups x 1", "mem.dg_dp.100000", "mem.dg_dp.100000", "bytes", False))
rows.append(("memory per membership, 10k groups x 100", "mem.g100.10000", "mem.g100.10000", "bytes", False))
msg_paths = (("rust_beam", "Rust→BEAM"), ("beam_rust", "BEAM→Rust"),
             ("beam_rust_at_once", "BEAM→Rust, read coalescing off (read_hold: None)"))
for size, what in (("small", "{m, 1}"), ("1k", "{m, <<_:1024/binary>>}")):
    for path, label in msg_paths:
        rows.append((f"messages {what}, {label} [vs BEAM→BEAM]", f"msgs.beam_beam.{size}",
                     f"msgs.{path}.{size}", "msgs/s", True))
    if size == "1k":
        for path, label in msg_paths:
            rows.append((f"payload throughput 1 KiB, {label} [vs BEAM→BEAM]", f"mb.beam_beam.1k",
                         f"mb.{path}.1k", "MB/s", True))
for n in (10, 100):
    for path, label in msg_paths[1:]:
        rows.append((f"gen_server:calls a second from {n} callers at once, each in a loop, {label} [vs BEAM→BEAM]",
                     f"callers.beam_beam.{n}", f"callers.{path}.{n}", "calls/s", True))
for load, lload in (("idle", "nothing else on the connection"),
                    ("stream", "100 × 1 KiB a ms streamed to the same process")):
    for stat in ("p50", "p99"):
        for path, label in msg_paths[1:]:
            rows.append((f"gen_server:call round trip {stat}, {label}, {lload} [vs BEAM→BEAM]",
                         f"call_{stat}.beam_beam.{load}", f"call_{stat}.{path}.{load}", "µs", False))
shapes = (("100000x1", "100k groups × 1"), ("10000x10", "10k groups × 10"))
for key, label in shapes:
    for path, plabel in (("beam_rust", "BEAM→Rust"), ("rust_beam", "Rust→BEAM")):
        rows.append((f"propagation of {label} joins, {plabel} [vs BEAM→BEAM]",
                     f"prop.beam_beam.{key}", f"prop.{path}.{key}", "ms", False))
        rows.append((f"of which after the last join returned, {plabel} [vs BEAM→BEAM]",
                     f"prop_lag.beam_beam.{key}", f"prop_lag.{path}.{key}", "ms", False))
for part, title, during in (("ingest", "exchange ingest of {}", "that ingest"),
                           ("nodedown", "node down: its {} gone", "that node down")):
    for key, label in shapes + (("100000x10", "100k groups × 10 (1M memberships)"),):
        rows.append((f"{title.format(label)}, BEAM→Rust [vs BEAM→BEAM]",
                     f"{part}.beam_beam.{key}", f"{part}.beam_rust.{key}", "ms", False))
        # a node down blocks BEAM's scope throughout: its median is its max
        for what in ("max", "median") if part == "ingest" else ("max",):
            rows.append((f"get_closest_pid latency during {during}, {what}",
                         f"{part}_lookup_{what}_us.beam_beam.{key}",
                         f"{part}_lookup_{what}_us.beam_rust.{key}", "µs", False))
        rows.append((f"lookups answered during {during} (one a ms)",
                     f"{part}_lookups.beam_beam.{key}", f"{part}_lookups.beam_rust.{key}",
                     "lookups", True))
for key, label in shapes + (("100000x10", "100k groups × 10 (1M memberships)"),):
    rows.append((f"memory of the whole receiving node per membership after the ingest of {label} "
                 "[erlang:memory(total) vs bytes allocated less freed]",
                 f"ingest_mem.{key}", f"ingest_mem.{key}", "bytes", False))
rows.append(("the scope's state handed out to another node, 100k groups × 1 (a cpg_data call, "
             "cpg_data:get_groups/1; the caller's decode included) [vs BEAM→BEAM]",
             "state.100000x1", "state.100000x1", "ms", False))
rows.append(("every group's name handed out to another node, 100k groups × 1 (a which_groups "
             "call; the caller's decode included) [vs BEAM→BEAM]",
             "which_groups.100000x1", "which_groups.100000x1", "ms", False))
for msg, what in (("join", "{'$gen_cast', {join, \"group/name\", Pid}}"),
                  ("exchange", "{'$gen_cast', {exchange, Node, 1000 × {\"group/I\", [Pid]}}}"),
                  ("bin1k", "{m, <<_:1024/binary>>}"), ("small", "{m, 1}")):
    rows.append((f"encode {what} [term_to_binary vs control::put_term]",
                 f"codec.{msg}.encode", f"codec.{msg}.encode", "ns", False))
    rows.append((f"decode {what} [binary_to_term vs term::decode]",
                 f"codec.{msg}.decode", f"codec.{msg}.decode", "ns", False))
    rows.append((f"decode {what} as a received SEND, control tuple and payload "
                 "[binary_to_term of each vs control::decode_message]",
                 f"codec.{msg}.decode_msg", f"codec.{msg}.decode_msg", "ns", False))
for when in ("before_burst", "after_burst", "idle_3s_after"):
    # ours only (no BEAM key): not listed as "not compared"
    rows.append((f"RSS of our node, {when.replace('_', ' ')} (200k × 1 KiB each way)",
                 None, f"rss.{when}", "MB", False))

def fmt(v):
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"

def cell(vals):
    if not vals:
        return "—"
    m = statistics.median(vals)
    if len(vals) == 1:
        return f"{fmt(m)} (1 run)"
    return f"{fmt(m)} [{fmt(min(vals))}–{fmt(max(vals))}]"

print("Ratio: BEAM / cpg-node for times and bytes, cpg-node / BEAM for rates:")
print("> 1 means cpg-node is faster (or smaller). Cells: median [min–max] of the runs.")
print()
print("| figure | unit | BEAM cpg | cpg-node | ratio |")
print("|---|---|---|---|---|")
missing = []
for label, bk, ok_, unit, higher in rows:
    b, o = beam.get(bk) if bk else None, ours.get(ok_)
    if not b and not o:
        continue
    if b and o:
        bm, om = statistics.median(b), statistics.median(o)
        ratio = (om / bm) if higher else (bm / om if om else float("inf"))
        r = f"{ratio:,.1f}×" if ratio >= 10 else f"{ratio:.2f}×"
    else:
        r = "—"
        if o and not b and bk:
            missing.append(label)
    print(f"| {label} | {unit} | {cell(b)} | {cell(o)} | {r} |")
if missing:
    print()
    why = "CPG_EBIN unset" if not os.environ.get("CPG_EBIN") else "no BEAM figure"
    print(f"Not compared ({why}): " + "; ".join(missing))
EOF
