#!/usr/bin/env python3
"""Drives a `kiln-reth node --dev` over JSON-RPC: deploys kiln's demo `Workbench` contract
(crates/demo/contracts), calls it, switches kiln with `reth_jit`, and shows what kiln reports
(`kiln_status`, and the `kiln_*` series of reth's Prometheus endpoint).

Needs Python 3 and `eth-account` (pip install eth-account) to sign transactions. The sender is
the first prefunded account of reth's dev chain (the well-known test mnemonic's first key).

    demo.py deploy                 deploy Workbench, remember its address (--state FILE)
    demo.py call [-n N]            N transactions calling it (hash chains and sieves)
    demo.py jit ACTION             reth_jit enable|disable|pause|unpause|clear
    demo.py status                 kiln_status, and kiln's Prometheus series if --metrics is given
    demo.py run [-n N]             deploy (unless already deployed) + call + status
"""

import argparse
import json
import os
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ARTIFACT = os.path.join(HERE, "..", "..", "..", "crates", "demo", "contracts", "artifacts", "Workbench.json")
# reth --dev funds the accounts of the "test test ... junk" mnemonic; this is its first key.
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


class Rpc:
    def __init__(self, url):
        self.url = url
        self.next_id = 0

    def __call__(self, method, *params):
        self.next_id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": list(params)})
        req = urllib.request.Request(self.url, body.encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            answer = json.load(resp)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]


def account():
    try:
        from eth_account import Account
    except ImportError:
        sys.exit("demo.py needs eth-account: pip install eth-account")
    return Account.from_key(DEV_KEY)


def selector(signature):
    from eth_utils import keccak  # installed with eth-account

    return keccak(text=signature)[:4].hex()


def word(value):
    if isinstance(value, bytes):
        return value.rjust(32, b"\0").hex()
    return int(value).to_bytes(32, "big").hex()


def send(rpc, acct, to, data, gas):
    nonce = int(rpc("eth_getTransactionCount", acct.address, "pending"), 16)
    base = int(rpc("eth_getBlockByNumber", "latest", False)["baseFeePerGas"], 16)
    tx = {
        "type": 2,
        "chainId": int(rpc("eth_chainId"), 16),
        "nonce": nonce,
        "maxPriorityFeePerGas": 10**9,
        "maxFeePerGas": 2 * base + 10**9,
        "gas": gas,
        "value": 0,
        "data": "0x" + data,
    }
    if to is not None:
        from eth_utils import to_checksum_address

        tx["to"] = to_checksum_address(to)
    signed = acct.sign_transaction(tx)
    raw = getattr(signed, "raw_transaction", None) or signed.rawTransaction
    return rpc("eth_sendRawTransaction", "0x" + bytes(raw).hex())


def wait(rpc, tx_hash, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        receipt = rpc("eth_getTransactionReceipt", tx_hash)
        if receipt is not None:
            return receipt
        time.sleep(0.2)
    raise TimeoutError(f"no receipt for {tx_hash} after {timeout}s")


def load_state(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def deploy(rpc, args):
    with open(ARTIFACT) as f:
        artifact = json.load(f)
    acct = account()
    receipt = wait(rpc, send(rpc, acct, None, artifact["bytecode"].removeprefix("0x"), 3_000_000))
    if receipt["status"] != "0x1":
        sys.exit(f"deployment failed: {receipt}")
    address = receipt["contractAddress"]
    code = rpc("eth_getCode", address, "latest")
    print(f"Workbench deployed at {address} in block {int(receipt['blockNumber'], 16)} "
          f"({(len(code) - 2) // 2} bytes of code, gas {int(receipt['gasUsed'], 16)})")
    with open(args.state, "w") as f:
        json.dump({"address": address}, f)
    return address


def call(rpc, args):
    address = load_state(args.state).get("address")
    if not address:
        sys.exit(f"no contract in {args.state}: run `demo.py deploy` first")
    acct = account()
    hash_chain = selector("hashChain(bytes32,uint256)")
    sieve = selector("sieve(uint256)")
    total_gas = 0
    blocks = set()
    start = time.time()
    for i in range(args.count):
        if i % 2 == 0:
            data = hash_chain + word(i.to_bytes(32, "big")) + word(args.rounds)
        else:
            data = sieve + word(args.limit)
        receipt = wait(rpc, send(rpc, acct, address, data, 10_000_000))
        if receipt["status"] != "0x1":
            sys.exit(f"call {i} reverted: {receipt}")
        gas = int(receipt["gasUsed"], 16)
        total_gas += gas
        blocks.add(int(receipt["blockNumber"], 16))
        if args.verbose:
            print(f"  tx {i}: block {int(receipt['blockNumber'], 16)}, gas {gas}")
    print(f"{args.count} calls in {len(blocks)} blocks ({min(blocks)}..{max(blocks)}), "
          f"{total_gas} gas, {time.time() - start:.1f}s")


def status(rpc, args):
    s = rpc("kiln_status")
    print("kiln_status:", json.dumps(s, sort_keys=True))
    if args.metrics:
        with urllib.request.urlopen(args.metrics, timeout=10) as resp:
            text = resp.read().decode()
        # reth's recorder prefixes every series with `reth_`.
        lines = [l for l in text.splitlines() if l.startswith(("reth_kiln_", "kiln_"))]
        print(f"{args.metrics}: {len(lines)} reth_kiln_* samples")
        for line in lines:
            if any(k in line for k in ("frames", "native_gas_share", "compilations", "installed_codes",
                                       "notifications", "cache_loads", "verifications", "paused",
                                       "serving", "queue_depth", "node_pauses", "canonical_gas")):
                print("  " + line)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rpc", default="http://127.0.0.1:8545")
    p.add_argument("--metrics", default=None, help="reth's Prometheus endpoint, e.g. http://127.0.0.1:9001/")
    p.add_argument("--state", default=os.path.join("/tmp", "kiln-reth-demo.json"))
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("deploy")
    for name in ("call", "run"):
        c = sub.add_parser(name)
        c.add_argument("-n", "--count", type=int, default=20)
        c.add_argument("--rounds", type=int, default=2000, help="hashChain rounds")
        c.add_argument("--limit", type=int, default=3000, help="sieve limit")
        c.add_argument("-v", "--verbose", action="store_true")
    j = sub.add_parser("jit")
    j.add_argument("action", choices=["enable", "disable", "pause", "unpause", "clear"])
    sub.add_parser("status")
    args = p.parse_args()
    rpc = Rpc(args.rpc)
    if args.cmd == "deploy":
        deploy(rpc, args)
    elif args.cmd == "call":
        call(rpc, args)
    elif args.cmd == "jit":
        rpc("reth_jit", args.action)
        print(f"reth_jit {args.action}: ok")
    elif args.cmd == "status":
        status(rpc, args)
    elif args.cmd == "run":
        address = load_state(args.state).get("address")
        if not address or rpc("eth_getCode", address, "latest") in ("0x", "0x0"):
            deploy(rpc, args)
        call(rpc, args)
        status(rpc, args)


if __name__ == "__main__":
    main()
