#!/usr/bin/env bash
# The test suite: unit, differential and CLI tests, then the conformance suites on compiled code.
# With KILN_REQUIRE_FIXTURES=1 (CI), missing fixtures are a failure, never a silent pass.
set -euo pipefail
source "$(dirname "$0")/env.sh"
"$(dirname "$0")/setup.sh"
cd "$KILN_ROOT"
target="${CARGO_TARGET_DIR:-$KILN_ROOT/target}"
start=$(date +%s)

# Habits first: formatting, lints and docs fail the run before any test does.
cargo fmt --all --check
cargo clippy --release --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --release --workspace --no-deps
cargo test --release --workspace

# Block import (kiln-node): every BlockchainTests block through alloy-evm's block executor with
# kiln's EVM, on the interpreter, on JIT code compiled at first sight, and as a node runs
# (lookup-only runtime filled by the hot-code service; low thresholds and --jit.settle so that
# its compiled, verified code serves later blocks).
bct="$KILN_TESTS_DIR/BlockchainTests"
if [ -d "$bct" ]; then
  "$target/release/kiln" import "$bct" --mode interpreter
  "$target/release/kiln" import "$bct" --mode jit
  "$target/release/kiln" import "$bct" --mode tiered --jit.hot-threshold 1 \
    --jit.optimise-threshold 100000 --jit.verify-runs 1 --jit.settle
elif [ "${KILN_REQUIRE_FIXTURES:-0}" = 1 ]; then
  echo "test: fixtures required (KILN_REQUIRE_FIXTURES=1) but $bct does not exist" >&2
  exit 1
fi

gst="$KILN_TESTS_DIR/GeneralStateTests"
if [ ! -d "$gst" ]; then
  if [ "${KILN_REQUIRE_FIXTURES:-0}" = 1 ]; then
    echo "test: fixtures required (KILN_REQUIRE_FIXTURES=1) but $gst does not exist" >&2
    exit 1
  fi
  echo "test: skipped the conformance suites: no fixtures at $gst (set KILN_TESTS_DIR)" >&2
  exit 0
fi
# AOT on a folder (every artifact is compiled, linked with cc and loaded), the whole
# GeneralStateTests folder on baseline-tier JIT code (what a tiered runtime runs first), through
# the tiered runtime (baseline code promoted in the background, so later cases run either tier),
# then on JIT code at the default level; its summary line closes the run.
"$target/release/kiln" statetest "$gst/VMTests" "$gst/stMemoryTest" --mode aot
"$target/release/kiln" statetest "$gst" --mode jit --opt-level baseline
"$target/release/kiln" statetest "$gst" --mode jit --tiered
"$target/release/kiln" statetest "$gst" --mode jit
echo "test: finished in $(( $(date +%s) - start )) s" >&2
