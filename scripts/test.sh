#!/usr/bin/env bash
# Runs every test: formatting and lints, unit and property tests, the
# integration tests against real erl nodes, and the Erlang-side EUnit
# tests. Installs Erlang/OTP and Elixir from Debian first when `erl` or
# `elixir` is missing.
#
# Tests against genuine cpg are `#[ignore]`d unless CPG_EBIN names the ebin
# folders of a cpg, trie and quickrand you built yourself; then they run too.
# PHOENIX_PUBSUB_EBIN (the ebin folder of a Phoenix.PubSub you built) has
# the Phoenix.PubSub tests drive it instead of the project's model.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v erl >/dev/null 2>&1 || ! command -v erlc >/dev/null 2>&1; then
  echo "== installing Erlang/OTP from Debian"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq erlang-nox erlang-dev >/dev/null
fi

if ! command -v elixir >/dev/null 2>&1; then
  echo "== installing Elixir from Debian (the Phoenix.PubSub tests run on an Elixir node)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq elixir >/dev/null
fi

IGNORED=()
if [ -n "${CPG_EBIN:-}" ]; then
  echo "== CPG_EBIN is set: the tests against genuine cpg run too"
  IGNORED=(--include-ignored)
else
  echo "== CPG_EBIN is not set: the tests against genuine cpg are reported as ignored (the project's own erl_test driver scopes still run)"
fi

if [ -n "${PHOENIX_PUBSUB_EBIN:-}" ]; then
  echo "== PHOENIX_PUBSUB_EBIN is set: the Phoenix.PubSub tests drive Phoenix.PubSub itself"
else
  echo "== PHOENIX_PUBSUB_EBIN is not set: the Phoenix.PubSub tests run against the project's model of it (erl_test/phoenix_pubsub_model.erl)"
fi

echo "== cargo fmt / clippy / doc"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet

# One profile (dev) for the tests and the binary that erl_tests.sh starts,
# so the tree is compiled once for both.
echo "== cargo test (unit, property, integration against real erl nodes)"
CI=${CI:-} cargo test --all-targets -- ${IGNORED[@]+"${IGNORED[@]}"} 2>&1

# The fuzz targets (fuzz/, run with scripts/fuzz.sh) build against the
# library's API; checking them here keeps them from falling behind it.
# libfuzzer-sys compiles libFuzzer (C++) in its build script.
if command -v c++ >/dev/null 2>&1; then
  echo "== fuzz targets compile (cargo check)"
  cargo check --quiet --manifest-path fuzz/Cargo.toml --bins
else
  echo "== fuzz targets not checked: no C++ compiler (c++) for libfuzzer-sys"
fi

echo "== Erlang-side EUnit tests (erl_test/)"
bash scripts/erl_tests.sh
