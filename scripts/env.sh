# Sourced by the other scripts: where LLVM 22 lives and where fixtures are.
export LLVM_SYS_221_PREFIX="${LLVM_SYS_221_PREFIX:-/usr/lib/llvm-22}"
case ":$PATH:" in *":$LLVM_SYS_221_PREFIX/bin:"*) ;; *) export PATH="$LLVM_SYS_221_PREFIX/bin:$PATH" ;; esac
KILN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KILN_TESTS_DIR="${KILN_TESTS_DIR:-$KILN_ROOT/../shared/fixtures/ethereum-tests}"
