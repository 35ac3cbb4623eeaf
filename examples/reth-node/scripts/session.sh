#!/usr/bin/env bash
# A whole session on a fresh dev chain, on loopback only:
#   start kiln-reth --dev; deploy and call Workbench until kiln has compiled it;
#   reth_jit pause + clear (calls run on the interpreter, the job waits), unpause (compiled again);
#   Ctrl-C (exit status 0, cache flushed); restart on the same datadir (native from the first call).
#
# usage: scripts/session.sh [KILN_RETH_BINARY] [DATADIR]
#   defaults: ./target/release/kiln-reth and a fresh /tmp/kiln-reth-session
# Needs python3 with eth-account, and curl. Ports: 8545 (HTTP RPC), 8651 (auth), 9001 (metrics),
# 30399 (p2p, discovery off), all on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-./target/release/kiln-reth}
DATADIR=${2:-/tmp/kiln-reth-session}
LOGDIR=${LOGDIR:-$DATADIR-logs}
RPC=http://127.0.0.1:8545
METRICS=http://127.0.0.1:9001/
STATE=$LOGDIR/demo.json
demo() { python3 scripts/demo.py --rpc "$RPC" --metrics "$METRICS" --state "$STATE" "$@"; }
# The series a reader wants from `demo.py status`.
show() { demo status | grep -E 'kiln_status|frames|installed_codes\{|queue_depth|node_paused|native_gas_share|cache_loads' || true; }

rm -rf "$DATADIR" "$LOGDIR"
mkdir -p "$LOGDIR"

NODE_PID=
start_node() {
    "$BIN" node --dev --dev.block-time 1s --datadir "$DATADIR" --color never \
        --addr 127.0.0.1 --port 30399 --disable-discovery \
        --authrpc.addr 127.0.0.1 --authrpc.port 8651 --ipcdisable \
        --http --http.addr 127.0.0.1 --http.port 8545 --http.api eth,net,web3,reth \
        --metrics 127.0.0.1:9001 \
        --kiln.hot-threshold 100000 --kiln.optimise-threshold 1000000 --kiln.log-interval-secs 10 \
        > "$1" 2>&1 &
    NODE_PID=$!
    for _ in $(seq 1 120); do
        if curl -s -o /dev/null -H 'Content-Type: application/json' \
            -d '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}' "$RPC"; then
            return 0
        fi
        sleep 1
    done
    echo "node did not answer on $RPC; see $1" >&2
    kill -INT "$NODE_PID"
    exit 1
}
stop_node() {
    kill -INT "$NODE_PID"
    local status=0
    wait "$NODE_PID" || status=$?
    echo "== node exited with status $status"
    grep -E 'Received ctrl-c|kiln service stopped' "$1" | cut -c1-220
    echo "== cache: $(ls "$DATADIR/kiln" | tr '\n' ' ')"
    [ "$status" -eq 0 ]
}
trap '[ -n "$NODE_PID" ] && kill -INT "$NODE_PID" 2>/dev/null || true' EXIT

echo "== run 1: fresh chain"
start_node "$LOGDIR/run1.log"
demo run -n 10
sleep 2
show
grep -E 'compiled code installed' "$LOGDIR/run1.log" | cut -c1-220

echo "== reth_jit pause + clear, 6 calls"
demo jit pause
demo jit clear
demo call -n 6
sleep 2
show

echo "== reth_jit unpause, 6 calls"
demo jit unpause
demo call -n 6
sleep 2
show
stop_node "$LOGDIR/run1.log"

echo "== run 2: restart on the same datadir"
start_node "$LOGDIR/run2.log"
grep -E 'compiled code loaded from the cache' "$LOGDIR/run2.log" | cut -c1-220
demo call -n 4
sleep 2
show
stop_node "$LOGDIR/run2.log"
NODE_PID=
echo "== logs in $LOGDIR"
