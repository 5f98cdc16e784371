#!/usr/bin/env bash
# Erlang-side tests: starts `cpg-node run --register echo --join svc --join svc`
# on a private EPMD
# port (it starts its own EPMD there) and runs the EUnit drivers in
# erl_test/ from a plain erl node against it. Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin cpg-node
EBIN=target/erl_test_ebin
mkdir -p "$EBIN"
erlc -o "$EBIN" erl_test/*.erl
export ERL_EPMD_PORT=$((20000 + RANDOM % 20000))
COOKIE="c$RANDOM$RANDOM$RANDOM"
HOST=$(hostname -s 2>/dev/null || cut -d. -f1 /proc/sys/kernel/hostname)
RNODE="erltest_rust_$$@$HOST"
./target/debug/cpg-node --name "$RNODE" --cookie "$COOKIE" run --register echo --join svc --join svc &
RPID=$!
cleanup() { kill "$RPID" 2>/dev/null || true; wait "$RPID" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  if ./target/debug/cpg-node --name "probe_$$" --cookie "$COOKIE" ping "$RNODE" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
RUST_NODE="$RNODE" RUST_OS_PID="$RPID" COOKIE="$COOKIE" \
  erl -sname "erltest_erl_$$" -setcookie "$COOKIE" -noshell -noinput -pa "$EBIN" \
  -eval 'case eunit:test([cpg_scope_tests, hidden_node_tests], [verbose]) of ok -> halt(0); _ -> halt(1) end.'
