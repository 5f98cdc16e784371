#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each. cargo-fuzz needs
# nightly flags; on a stable-only machine RUSTC_BOOTSTRAP=1 enables them.
#   cargo install cargo-fuzz && bash scripts/fuzz.sh 600
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
SECS=${1:-60}
for t in term control handshake epmd cpg_wire; do
  mkdir -p "corpus/$t"
  echo "== $t for ${SECS}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$SECS" -rss_limit_mb=2048 2>&1 \
    | grep -E "^#[0-9]+.*(DONE|pulse)|Done|ERROR|panicked" | tail -2
done
