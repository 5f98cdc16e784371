#!/usr/bin/env bash
# Erlang-side tests: starts `cpg-node run --start-epmd false --register echo
# --join svc --join svc --pg-join svc --pg-join svc`
# on a private EPMD port (it runs its own EPMD there, in its process, so
# that nothing outlives the run) and runs the EUnit
# drivers in erl_test/ from a plain erl node against it. Stops everything it
# started. The binary is the one cargo builds (CARGO_TARGET_DIR honoured).
set -euo pipefail
cd "$(dirname "$0")/.."

# Ask cargo where it put the binary rather than guessing the target folder.
# The binary is the one `cargo test` builds for the integration tests, so
# after scripts/test.sh's cargo test nothing is compiled again.
BIN=$(cargo test --test cluster --no-run --message-format=json-render-diagnostics \
  | grep '"kind":\["bin"\]' \
  | sed -n 's/.*"executable":"\([^"]*cpg-node\)".*/\1/p' | tail -n 1)
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
  echo "erl_tests.sh: cargo built no cpg-node binary (looked for it in cargo's build output)" >&2
  exit 1
fi
WORK=$(mktemp -d)
EBIN="$WORK/ebin"
mkdir -p "$EBIN"
erlc -o "$EBIN" erl_test/*.erl
COOKIE="c$RANDOM$RANDOM$RANDOM"
HOST=$(hostname -s 2>/dev/null || cut -d. -f1 /proc/sys/kernel/hostname)
RNODE="erltest_rust_$$@$HOST"
RPID=""
cleanup() {
  if [ -n "$RPID" ]; then
    kill "$RPID" 2>/dev/null || true
    wait "$RPID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
# The node starts its own EPMD on a random port below Linux's ephemeral
# range (32768-60999, where an outgoing connection of any other program may
# hold the port); a port some other program holds anyway is tried again
# with another one.
up=no
for attempt in 1 2 3 4 5; do
  export ERL_EPMD_PORT=$((20000 + RANDOM % 12000))
  "$BIN" --name "$RNODE" --cookie "$COOKIE" run --start-epmd false --register echo --join svc --join svc --pg-join svc --pg-join svc &
  RPID=$!
  for _ in $(seq 1 100); do
    # Up once the Rust node is listed by the EPMD it started and answers a
    # ping (the probe, a one-shot command, never starts an EPMD of its own:
    # before 400fbbb one run too early did, the Rust node registered with
    # it and lost it when the probe exited).
    if epmd -port "$ERL_EPMD_PORT" -names 2>/dev/null | grep -q "^name ${RNODE%@*} " &&
      "$BIN" --name "probe_$$" --cookie "$COOKIE" ping "$RNODE" >/dev/null 2>&1; then up=yes; break; fi
    if ! kill -0 "$RPID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  [ "$up" = yes ] && break
  kill "$RPID" 2>/dev/null || true
  wait "$RPID" 2>/dev/null || true
  RPID=""
  echo "erl_tests.sh: the Rust node did not come up with EPMD port $ERL_EPMD_PORT (attempt $attempt of 5)" >&2
done
if [ "$up" != yes ]; then
  echo "erl_tests.sh: the Rust node $RNODE ($BIN) did not answer a ping; not running the EUnit tests" >&2
  exit 1
fi
# hidden_node_tests last: its final test stops the Rust node.
RUST_NODE="$RNODE" RUST_OS_PID="$RPID" COOKIE="$COOKIE" \
  erl -sname "erltest_erl_$$" -setcookie "$COOKIE" -noshell -noinput -pa "$EBIN" \
  -eval 'case eunit:test([cpg_scope_tests, pg_peer_tests, hidden_node_tests], [verbose]) of ok -> halt(0); _ -> halt(1) end.'
