#!/usr/bin/env bash
# Installs what kiln needs to build (Debian's LLVM 22) when it is missing, then builds kiln.
set -euo pipefail
source "$(dirname "$0")/env.sh"
if [ ! -x "$LLVM_SYS_221_PREFIX/bin/llvm-config" ]; then
  echo "setup: installing LLVM 22 from Debian (llvm-22-dev libpolly-22-dev libzstd-dev)" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq llvm-22-dev libpolly-22-dev libzstd-dev >/dev/null
fi
command -v cc >/dev/null || { echo "setup: a C compiler (cc) is needed to link AOT artifacts" >&2; exit 1; }
cd "$KILN_ROOT"
cargo build --release -p kiln
