// Compiles every source in src/ with the pinned solc and writes artifacts/<Contract>.json
// (abi, creation bytecode, runtime bytecode). Run from this folder: `npm ci && node build.mjs`.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const solc = require("solc");
const here = path.dirname(fileURLToPath(import.meta.url));
const srcDir = path.join(here, "src");
const outDir = path.join(here, "artifacts");

const sources = {};
for (const file of fs.readdirSync(srcDir).filter((f) => f.endsWith(".sol")).sort()) {
  sources[file] = { content: fs.readFileSync(path.join(srcDir, file), "utf8") };
}

const input = {
  language: "Solidity",
  sources,
  settings: {
    evmVersion: "cancun",
    optimizer: { enabled: true, runs: 200 },
    // No metadata trailer: the bytecode depends on the sources and settings only.
    metadata: { bytecodeHash: "none", appendCBOR: false },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
let failed = false;
for (const err of output.errors ?? []) {
  console.error(err.formattedMessage);
  if (err.severity === "error") failed = true;
}
if (failed) process.exit(1);

fs.mkdirSync(outDir, { recursive: true });
for (const old of fs.readdirSync(outDir)) fs.rmSync(path.join(outDir, old));
const sizes = [];
for (const file of Object.keys(output.contracts).sort()) {
  for (const [name, c] of Object.entries(output.contracts[file]).sort()) {
    const runtime = c.evm.deployedBytecode.object;
    // Interfaces have no code; libraries of internal functions are inlined into their users.
    if (runtime.length === 0 || new RegExp(`\\blibrary\\s+${name}\\b`).test(sources[file].content)) continue;
    const artifact = {
      contractName: name,
      sourceName: `src/${file}`,
      compiler: `solc ${solc.version()}`,
      abi: c.abi,
      bytecode: `0x${c.evm.bytecode.object}`,
      deployedBytecode: `0x${runtime}`,
    };
    fs.writeFileSync(path.join(outDir, `${name}.json`), `${JSON.stringify(artifact, null, 2)}\n`);
    sizes.push([name, runtime.length / 2]);
  }
}
for (const [name, size] of sizes) console.log(`${name.padEnd(18)} ${String(size).padStart(6)} bytes runtime`);
