#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS (default 60) each,
# one after the other, at the lowest priority. cargo-fuzz needs nightly
# flags; on a stable-only machine RUSTC_BOOTSTRAP=1 enables them.
#   cargo install cargo-fuzz && bash scripts/fuzz.sh 600
#   bash scripts/fuzz.sh 600 scope_ops control
# A crash leaves its input in fuzz/artifacts/TARGET/; minimise it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz tmin TARGET fuzz/artifacts/TARGET/crash-...
# and keep it as fuzz/regressions/TARGET-what-it-is (cargo test replays it).
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
SECS=${1:-60}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(epmd epmd_server handshake cpg_wire scope_ops control term pg_wire)
fi
status=0
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t"
  # Valid messages of each kind to start from (fuzz/seeds/gen.py).
  SEEDS=()
  [ -d "seeds/$t" ] && SEEDS=("seeds/$t")
  echo "== $t for ${SECS}s"
  RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz run "$t" "corpus/$t" ${SEEDS[@]+"${SEEDS[@]}"} -- \
    -max_total_time="$SECS" -rss_limit_mb=2048 2>&1 \
    | grep -E "^#[0-9]+.*(DONE|pulse)|^Done|ERROR|panicked|Test unit written" | tail -3
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
done
exit $status
