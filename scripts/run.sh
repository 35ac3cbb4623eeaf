#!/usr/bin/env bash
# The main job: set up, build, and run the Ethereum state tests on JIT-compiled code
# (or, without ../shared, a small embedded example).
set -euo pipefail
source "$(dirname "$0")/env.sh"
"$(dirname "$0")/setup.sh"
cd "$KILN_ROOT"
target="${CARGO_TARGET_DIR:-$KILN_ROOT/target}"
if [ -d "$KILN_TESTS_DIR/GeneralStateTests" ]; then
  exec "$target/release/kiln" statetest "$KILN_TESTS_DIR/GeneralStateTests" --mode jit "$@"
else
  echo "run: no fixtures at $KILN_TESTS_DIR; running the embedded example instead" >&2
  exec "$target/release/kiln" statetest "$KILN_ROOT/bin/kiln/tests/data/valid" --mode jit "$@"
fi
