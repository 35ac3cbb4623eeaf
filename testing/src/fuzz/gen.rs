//! The structure-aware program generator.
//!
//! Programs are built from chunks that know the abstract stack height, so almost everything the
//! generator emits runs instead of halting on the first instruction: operands are pushed before
//! the instruction that needs them, loop bodies and branch arms leave the stack as they found it,
//! and memory offsets are small unless a chunk deliberately asks for a huge one. Faults (bad
//! jumps, stack underflow and overflow, invalid and not-yet-activated opcodes, out-of-gas) are
//! generated on purpose, mostly inside data-dependent branches so the rest of the program still
//! runs on the other path.
//!
//! Everything is drawn from one seeded ChaCha stream, so `(seed, index)` names a program.

use alloy_primitives::{Address, U256};
use rand::{seq::IndexedRandom, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use revm::bytecode::opcode::{self as op, OpCode};

use super::program::{assemble, Chunk, Contract, Insn, Program, HELPERS};
use crate::difftest::{CALLER, TARGET};

/// Stack items above the floor a chunk may leave behind before it pops them.
const MAX_FREE: usize = 12;

/// Size knobs.
#[derive(Clone, Copy, Debug)]
pub struct GenConfig {
    /// Top-level chunks of the entry contract.
    pub entry_chunks: (usize, usize),
    /// Top-level chunks of each helper contract.
    pub helper_chunks: (usize, usize),
    /// Nesting depth of loops and branches.
    pub max_depth: u8,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self {
            entry_chunks: (3, 10),
            helper_chunks: (1, 5),
            max_depth: 2,
        }
    }
}

/// The RNG for program `index` of a campaign with `seed`: independent streams, so any program
/// can be regenerated on its own (`--start index --count 1`).
pub fn program_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&index.to_le_bytes());
    key[16..].copy_from_slice(b"kiln-fuzz-prog-1");
    ChaCha8Rng::from_seed(key)
}

/// Generates program `index` of the campaign `seed`.
pub fn generate(seed: u64, index: u64, cfg: &GenConfig) -> Program {
    let mut rng = program_rng(seed, index);
    let helpers = *[0usize, 1, 1, 2].choose(&mut rng).expect("non-empty");
    let mut labels = 0u32;
    let mut init_codes = Vec::new();
    let mut contracts = Vec::new();
    let addresses: Vec<Address> = std::iter::once(TARGET)
        .chain(HELPERS.iter().copied().take(helpers))
        .collect();
    for (i, &address) in addresses.iter().enumerate() {
        let role = if i == 0 { Role::Entry } else { Role::Helper };
        let range = if i == 0 {
            cfg.entry_chunks
        } else {
            cfg.helper_chunks
        };
        let mut g = Gen::new(&mut rng, &mut labels, role, helpers, cfg.max_depth);
        let n = g.rng.random_range(range.0..=range.1);
        let mut chunks = Vec::with_capacity(n + 1);
        for _ in 0..n {
            chunks.push(g.chunk());
        }
        chunks.push(g.terminal());
        init_codes.append(&mut g.init_codes);
        let storage = (0..g.rng.random_range(0..3u64))
            .map(|k| (U256::from(k), U256::from(g.rng.random_range(1..4u64))))
            .collect();
        let balance = U256::from(
            *[0u64, 1, 1_000_000, 10u64.pow(18)]
                .choose(g.rng)
                .expect("non-empty"),
        );
        contracts.push(Contract {
            address,
            balance,
            storage,
            chunks,
        });
    }
    let calldata_len = *[0usize, 4, 32, 32, 64, 100]
        .choose(&mut rng)
        .expect("non-empty");
    let calldata = (0..calldata_len).map(|_| rng.random()).collect();
    let value = if rng.random_bool(0.2) {
        U256::from(rng.random_range(1..1000u64))
    } else {
        U256::ZERO
    };
    let gas_limit = gas_limit(&mut rng);
    // Sometimes the entry code runs as the transaction's init code: top-level creation, code
    // deposit of whatever it returns.
    let create_tx = rng.random_bool(0.05);
    Program {
        contracts,
        calldata,
        value,
        gas_limit,
        init_codes,
        create_tx,
    }
}

/// A transaction gas limit: mostly enough to run a while, often tight enough to run out at
/// some point, sometimes exactly at or just over Osaka's 2^24 cap (EIP-7825), rarely below the
/// intrinsic cost.
fn gas_limit(rng: &mut ChaCha8Rng) -> u64 {
    const CAP: u64 = 1 << 24;
    match rng.random_range(0..100) {
        0..=1 => rng.random_range(20_000..21_100),
        // Tight, but above Prague's calldata floor (EIP-7623) for 100 bytes.
        2..=24 => rng.random_range(26_000..45_000),
        25..=74 => rng.random_range(45_000..400_000),
        75..=91 => rng.random_range(400_000..3_000_000),
        92..=95 => CAP,
        96..=97 => rng.random_range(3_000_000..CAP),
        _ => CAP + rng.random_range(1..1_000_000),
    }
}

/// A gas limit below what the reference run spent, to end the same program out of gas at
/// another point.
pub fn lower_gas_limit(seed: u64, index: u64, spent: u64) -> u64 {
    let mut rng = program_rng(seed ^ 0x6761_735f_6c6f_7765, index);
    rng.random_range(21_000.min(spent)..spent.max(21_001))
}

/// What the code being generated is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The transaction's target.
    Entry,
    /// A contract the entry calls.
    Helper,
    /// Init code run by CREATE/CREATE2.
    Init,
    /// Code deployed by init code.
    Runtime,
}

/// Generation state for one code: the abstract stack and where a chunk may consume from.
struct Gen<'a> {
    rng: &'a mut ChaCha8Rng,
    labels: &'a mut u32,
    role: Role,
    helpers: usize,
    max_depth: u8,
    depth: u8,
    /// Stack height at this point of the code (as generated; the minimizer may break it).
    h: usize,
    /// Items at or below this height belong to an enclosing loop or branch: never consumed.
    floor: usize,
    out: Vec<Insn>,
    init_codes: Vec<Vec<u8>>,
}

impl<'a> Gen<'a> {
    fn new(
        rng: &'a mut ChaCha8Rng,
        labels: &'a mut u32,
        role: Role,
        helpers: usize,
        max_depth: u8,
    ) -> Self {
        Self {
            rng,
            labels,
            role,
            helpers,
            max_depth,
            depth: 0,
            h: 0,
            floor: 0,
            out: Vec::new(),
            init_codes: Vec::new(),
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn label(&mut self) -> u32 {
        *self.labels += 1;
        *self.labels
    }

    fn free(&self) -> usize {
        self.h - self.floor
    }

    // ---- emission with stack tracking ----

    fn op(&mut self, o: u8) {
        let (i, n) = OpCode::new(o).map_or((0, 0), |c| (c.inputs() as usize, c.outputs() as usize));
        self.out.push(Insn::Op(o));
        self.h = self.h.saturating_sub(i) + n;
    }

    fn push(&mut self, insn: Insn) {
        self.out.push(insn);
        self.h += 1;
    }

    fn push_u64(&mut self, v: u64) {
        self.push(Insn::push_u64(v));
    }

    fn pop_to(&mut self, level: usize) {
        while self.h > level.max(self.floor) {
            self.op(op::POP);
        }
    }

    /// Keeps the number of free items bounded so deep code does not drift towards overflow.
    fn trim(&mut self) {
        if self.free() > MAX_FREE {
            let keep = self.rng.random_range(0..4);
            self.pop_to(self.floor + keep);
        }
    }

    /// An interesting 256-bit value.
    fn value(&mut self) -> U256 {
        match self.rng.random_range(0..10) {
            0..=3 => U256::from(self.rng.random_range(0..=40u64)),
            4..=5 => *[
                U256::ZERO,
                U256::from(1),
                U256::from(2),
                U256::from(31),
                U256::from(32),
                U256::from(255),
                U256::from(256),
                U256::MAX,
                U256::MAX - U256::from(1),
                U256::from(1) << 255,
                (U256::from(1) << 255) - U256::from(1),
                U256::from(1) << 128,
                U256::from(u64::MAX),
                U256::from(u64::MAX) + U256::from(1),
            ]
            .choose(self.rng)
            .expect("non-empty"),
            _ => {
                let n = self.rng.random_range(1..=32);
                let mut b = [0u8; 32];
                self.rng.fill(&mut b[32 - n..]);
                U256::from_be_bytes(b)
            }
        }
    }

    fn push_value(&mut self) {
        let v = self.value();
        // PUSH0 only for some zeros, so that PUSH1 0 also appears.
        if v.is_zero() && self.chance(0.5) {
            self.push(Insn::Push(vec![0]));
        } else {
            self.push(Insn::push_u256(v));
        }
    }

    /// An operand: a fresh value or a copy of something computed earlier.
    fn operand(&mut self) {
        if self.h > 0 && self.chance(0.45) {
            let k = self.rng.random_range(1..=self.h.min(16));
            self.op(op::DUP1 + k as u8 - 1);
        } else if self.chance(0.15) {
            self.env_value();
        } else {
            self.push_value();
        }
    }

    /// A memory offset or size: small, sometimes medium, rarely huge (out of gas, or memory
    /// limits).
    fn offset(&mut self, small: u64) {
        match self.rng.random_range(0..300) {
            0..=1 => {
                let v = *[
                    U256::from(1u64 << 32),
                    U256::from(u64::MAX),
                    U256::MAX,
                    U256::from(1) << 255,
                ]
                .choose(self.rng)
                .expect("non-empty");
                self.push(Insn::push_u256(v));
            }
            2..=16 => {
                let v = self.rng.random_range(0..40_000);
                self.push_u64(v);
            }
            _ => {
                let v = self.rng.random_range(0..=small);
                self.push_u64(v);
            }
        }
    }

    fn address(&mut self) {
        let helpers = self.helpers;
        match self.rng.random_range(0..100) {
            0..=29 if helpers > 0 => {
                let a = HELPERS[self.rng.random_range(0..helpers)];
                self.push(Insn::push_addr(a));
            }
            0..=37 => self.push(Insn::push_addr(TARGET)),
            38..=64 => {
                let p = self.precompile();
                self.push_u64(p);
            }
            65..=72 => self.push(Insn::push_addr(CALLER)),
            73..=80 => self.op(op::ADDRESS),
            81..=84 => self.op(op::CALLER),
            85..=87 => self.op(op::ORIGIN),
            _ => {
                // An account that does not exist (value transfers create it).
                let v = 0xdead_0000 + self.rng.random_range(0..4u64);
                self.push_u64(v);
            }
        }
    }

    fn precompile(&mut self) -> u64 {
        // 0x01..=0x11 through Osaka's BLS12-381 set, plus P256VERIFY (EIP-7951) at 0x100.
        if self.chance(0.06) {
            0x100
        } else {
            self.rng.random_range(1..=0x11)
        }
    }

    fn env_value(&mut self) {
        let o = *[
            op::ADDRESS,
            op::ORIGIN,
            op::CALLER,
            op::CALLVALUE,
            op::CALLDATASIZE,
            op::CODESIZE,
            op::GASPRICE,
            op::RETURNDATASIZE,
            op::COINBASE,
            op::TIMESTAMP,
            op::NUMBER,
            op::DIFFICULTY,
            op::GASLIMIT,
            op::CHAINID,
            op::SELFBALANCE,
            op::BASEFEE,
            op::BLOBBASEFEE,
            op::GAS,
            op::PC,
            op::MSIZE,
        ]
        .choose(self.rng)
        .expect("non-empty");
        self.op(o);
    }

    /// Appends `bytes` to memory at `at` with PUSH32/MSTORE pairs.
    fn store_bytes(&mut self, bytes: &[u8], at: u64) {
        for (i, word) in bytes.chunks(32).enumerate() {
            let mut w = [0u8; 32];
            w[..word.len()].copy_from_slice(word);
            self.push(Insn::push_u256(U256::from_be_bytes(w)));
            self.push_u64(at + 32 * i as u64);
            self.op(op::MSTORE);
        }
    }

    // ---- chunks ----

    fn take(&mut self, kind: &'static str) -> Chunk {
        self.trim();
        Chunk {
            kind,
            insns: std::mem::take(&mut self.out),
        }
    }

    /// One chunk of the kind drawn from the role's weights.
    fn chunk(&mut self) -> Chunk {
        let nested_ok = self.depth < self.max_depth;
        let creates_ok = matches!(self.role, Role::Entry | Role::Helper) && self.depth == 0;
        let calls_ok = self.role != Role::Runtime;
        // (weight, kind)
        let table: [(u32, &'static str); 22] = [
            (16, "arith"),
            (5, "env"),
            (7, "stack"),
            (9, "memory"),
            (7, "storage"),
            (4, "transient"),
            (3, "keccak"),
            (4, "log"),
            (if calls_ok { 7 } else { 0 }, "call"),
            (if calls_ok { 4 } else { 0 }, "precompile"),
            (if creates_ok { 3 } else { 0 }, "create"),
            (if calls_ok { 3 } else { 0 }, "returndata"),
            (if nested_ok { 5 } else { 0 }, "loop"),
            (if nested_ok { 7 } else { 0 }, "branch"),
            (2, "dynjump"),
            (1, "badjump"),
            (3, "anyop"),
            (2, "forkop"),
            (1, "stacklimit"),
            (5, "observe"),
            (2, "gas"),
            (1, "block"),
        ];
        let total: u32 = table.iter().map(|(w, _)| w).sum();
        let mut pick = self.rng.random_range(0..total);
        let kind = table
            .iter()
            .find(|(w, _)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map(|(_, k)| *k)
            .expect("weights cover the range");
        match kind {
            "arith" => self.arith(),
            "env" => self.env(),
            "stack" => self.stack(),
            "memory" => self.memory(),
            "storage" => self.storage(),
            "transient" => self.transient(),
            "keccak" => self.keccak(),
            "log" => self.log(),
            "call" => self.call(),
            "precompile" => self.precompile_call(),
            "create" => self.create(),
            "returndata" => self.returndata(),
            "loop" => self.loop_(),
            "branch" => self.branch(),
            "dynjump" => self.dynjump(),
            "badjump" => self.badjump(),
            "anyop" => {
                if self.chance(0.5) {
                    self.guarded(|g| g.anyop(false));
                } else {
                    self.anyop(false);
                }
            }
            "forkop" => {
                if self.chance(0.7) {
                    self.guarded(|g| g.anyop(true));
                } else {
                    self.anyop(true);
                }
            }
            "stacklimit" => self.stacklimit(),
            "observe" => self.observe(),
            "gas" => self.gas(),
            _ => self.block(),
        }
        self.take(kind)
    }

    /// Nested code (loop body, branch arm) that leaves the stack as it found it.
    fn body(&mut self, max_chunks: usize) {
        let saved_floor = self.floor;
        self.floor = self.h;
        self.depth += 1;
        let n = self.rng.random_range(1..=max_chunks);
        for _ in 0..n {
            let chunk = self.chunk();
            self.out.extend(chunk.insns);
        }
        self.pop_to(self.floor);
        self.depth -= 1;
        self.floor = saved_floor;
    }

    fn arith(&mut self) {
        const BIN: [u8; 21] = [
            op::ADD,
            op::MUL,
            op::SUB,
            op::DIV,
            op::SDIV,
            op::MOD,
            op::SMOD,
            op::EXP,
            op::LT,
            op::GT,
            op::SLT,
            op::SGT,
            op::EQ,
            op::AND,
            op::OR,
            op::XOR,
            op::BYTE,
            op::SHL,
            op::SHR,
            op::SAR,
            op::SIGNEXTEND,
        ];
        for _ in 0..self.rng.random_range(1..=6) {
            match self.rng.random_range(0..10) {
                0..=6 => {
                    self.operand();
                    self.operand();
                    let o = *BIN.choose(self.rng).expect("non-empty");
                    self.op(o);
                }
                7..=8 => {
                    self.operand();
                    // CLZ (Osaka) halts every earlier fork's run that reaches it: rarely here,
                    // more often on a guarded path through `forkop`.
                    let o = if self.chance(0.05) {
                        op::CLZ
                    } else {
                        *[op::ISZERO, op::NOT].choose(self.rng).expect("non-empty")
                    };
                    self.op(o);
                }
                _ => {
                    self.operand();
                    self.operand();
                    self.operand();
                    let o = *[op::ADDMOD, op::MULMOD]
                        .choose(self.rng)
                        .expect("non-empty");
                    self.op(o);
                }
            }
        }
    }

    fn env(&mut self) {
        for _ in 0..self.rng.random_range(1..=3) {
            match self.rng.random_range(0..10) {
                0..=4 => self.env_value(),
                5 => {
                    self.offset(64);
                    self.op(op::CALLDATALOAD);
                }
                6 => {
                    self.address();
                    let o = *[op::BALANCE, op::EXTCODESIZE, op::EXTCODEHASH]
                        .choose(self.rng)
                        .expect("non-empty");
                    self.op(o);
                }
                7 => {
                    let n = *[0u64, 1, 2, 256, 257].choose(self.rng).expect("non-empty");
                    self.push_u64(n);
                    self.op(op::BLOCKHASH);
                }
                8 => {
                    let i = self.rng.random_range(0..3);
                    self.push_u64(i);
                    self.op(op::BLOBHASH);
                }
                _ => {
                    self.operand();
                    self.op(op::CALLDATALOAD);
                }
            }
        }
    }

    /// DUP/SWAP shuffles, down to depth 16 (the chunk first makes the stack deep enough).
    fn stack(&mut self) {
        if self.chance(0.4) {
            while self.free() < 17 {
                self.push_value();
            }
        }
        for _ in 0..self.rng.random_range(2..=8) {
            let free = self.free();
            if self.chance(0.5) && self.h > 0 {
                let k = self.rng.random_range(1..=self.h.min(16));
                self.op(op::DUP1 + k as u8 - 1);
            } else if free >= 2 {
                // SWAPs stay within the free items: the floor belongs to an enclosing loop.
                let k = self.rng.random_range(1..=(free - 1).min(16));
                self.op(op::SWAP1 + k as u8 - 1);
            } else {
                self.push_value();
            }
        }
    }

    fn memory(&mut self) {
        for _ in 0..self.rng.random_range(1..=4) {
            match self.rng.random_range(0..10) {
                0..=1 => {
                    self.operand();
                    self.offset(200);
                    self.op(op::MSTORE);
                }
                9 => self.memory_run(),
                2 => {
                    self.operand();
                    self.offset(200);
                    self.op(op::MSTORE8);
                }
                3 => {
                    self.offset(200);
                    self.op(op::MLOAD);
                }
                4 => {
                    self.offset(96);
                    self.offset(200);
                    self.offset(200);
                    self.op(op::MCOPY);
                }
                5 => self.op(op::MSIZE),
                6 => {
                    self.offset(96);
                    self.offset(100);
                    self.offset(200);
                    let o = *[op::CALLDATACOPY, op::CODECOPY]
                        .choose(self.rng)
                        .expect("non-empty");
                    self.op(o);
                }
                7 => {
                    self.offset(64);
                    self.offset(64);
                    self.offset(200);
                    self.address();
                    self.op(op::EXTCODECOPY);
                }
                _ => {
                    // Store a computed value and read it back through another width.
                    self.operand();
                    self.push_u64(0);
                    self.op(op::MSTORE);
                    let at = self.rng.random_range(0..32);
                    self.push_u64(at);
                    self.op(op::MLOAD);
                }
            }
        }
    }

    /// Accesses at `base + k` for one base the compiler cannot know (a struct filled field by
    /// field): the compiler grows memory once for such a run, which must stay invisible to gas,
    /// MSIZE and halts, also with GAS, MSIZE or a constant-offset access inside the run.
    fn memory_run(&mut self) {
        self.offset(300);
        self.push_u64(1);
        self.op(op::MUL);
        for _ in 0..self.rng.random_range(2..=5) {
            self.op(op::DUP1);
            let k = self.rng.random_range(0..6) * 32
                + *[0, 0, 0, 1, 31].choose(self.rng).expect("non-empty");
            self.push_u64(k);
            self.op(op::ADD);
            match self.rng.random_range(0..4) {
                0..=1 => {
                    self.operand();
                    self.op(op::SWAP1);
                    self.op(op::MSTORE);
                }
                2 => {
                    self.operand();
                    self.op(op::SWAP1);
                    self.op(op::MSTORE8);
                }
                _ => {
                    self.op(op::MLOAD);
                    self.op(op::POP);
                }
            }
            match self.rng.random_range(0..8) {
                0 => {
                    self.op(op::GAS);
                    self.op(op::POP);
                }
                1 => {
                    self.op(op::MSIZE);
                    self.op(op::POP);
                }
                2 => {
                    self.offset(200);
                    self.op(op::MLOAD);
                    self.op(op::POP);
                }
                _ => {}
            }
        }
        self.op(op::POP);
    }

    fn slot(&mut self) {
        if self.chance(0.85) {
            let k = self.rng.random_range(0..6);
            self.push_u64(k);
        } else {
            self.operand();
        }
    }

    fn storage(&mut self) {
        for _ in 0..self.rng.random_range(1..=3) {
            match self.rng.random_range(0..6) {
                0..=1 => {
                    self.slot();
                    self.op(op::SLOAD);
                }
                2..=3 => {
                    // Zero, a small value (so later writes flip between original, zero and
                    // dirty values: every EIP-2200/3529 refund case) or a computed one.
                    match self.rng.random_range(0..3) {
                        0 => self.push_u64(0),
                        1 => {
                            let v = self.rng.random_range(1..4);
                            self.push_u64(v);
                        }
                        _ => self.operand(),
                    }
                    self.slot();
                    self.op(op::SSTORE);
                }
                4 => {
                    // Write, then restore: the refund path for resetting to the original.
                    let k = self.rng.random_range(0..4);
                    let v = self.rng.random_range(0..4);
                    self.push_u64(v);
                    self.push_u64(k);
                    self.op(op::SSTORE);
                    self.push_u64(k);
                    self.op(op::SLOAD);
                    self.push_u64(k);
                    self.op(op::SSTORE);
                    self.push_u64(0);
                    self.push_u64(k);
                    self.op(op::SSTORE);
                }
                _ => {
                    self.slot();
                    self.op(op::SLOAD);
                    self.push_u64(1);
                    self.op(op::ADD);
                    self.slot();
                    self.op(op::SSTORE);
                }
            }
        }
    }

    fn transient(&mut self) {
        for _ in 0..self.rng.random_range(1..=3) {
            if self.chance(0.5) {
                self.operand();
                self.slot();
                self.op(op::TSTORE);
            } else {
                self.slot();
                self.op(op::TLOAD);
            }
        }
    }

    fn keccak(&mut self) {
        self.offset(96);
        self.offset(128);
        self.op(op::KECCAK256);
    }

    fn log(&mut self) {
        let n = self.rng.random_range(0..=4u8);
        for _ in 0..n {
            self.operand();
        }
        self.offset(96);
        self.offset(128);
        self.op(op::LOG0 + n);
    }

    fn call_gas(&mut self) {
        match self.rng.random_range(0..10) {
            0..=4 => self.op(op::GAS),
            5..=7 => {
                let g = self.rng.random_range(0..60_000);
                self.push_u64(g);
            }
            8 => self.push_u64(2300),
            _ => self.push(Insn::push_u256(U256::MAX)),
        }
    }

    /// CALL, CALLCODE, DELEGATECALL or STATICCALL: pushes the success flag.
    fn call_with(&mut self, target: impl FnOnce(&mut Self), args: (u64, u64)) {
        let o = *[
            op::CALL,
            op::CALL,
            op::STATICCALL,
            op::DELEGATECALL,
            op::CALLCODE,
        ]
        .choose(self.rng)
        .expect("non-empty");
        self.offset(64); // ret size
        self.offset(128); // ret offset
        let (args_off, args_len) = args;
        self.push_u64(args_len);
        self.push_u64(args_off);
        if matches!(o, op::CALL | op::CALLCODE) {
            if self.chance(0.7) {
                self.push_u64(0);
            } else {
                let v = *[1u64, 7, 1_000_000_000]
                    .choose(self.rng)
                    .expect("non-empty");
                self.push_u64(v);
            }
        }
        target(self);
        self.call_gas();
        self.op(o);
    }

    fn after_call(&mut self) {
        match self.rng.random_range(0..4) {
            0 => self.op(op::POP),
            1 => {
                let k = self.rng.random_range(0..6);
                self.push_u64(k);
                self.op(op::SSTORE);
            }
            _ => {} // the flag stays on the stack for later chunks
        }
    }

    fn call(&mut self) {
        let len = self.rng.random_range(0..=68);
        let off = self.rng.random_range(0..=64);
        self.call_with(|g| g.address(), (off, len));
        self.after_call();
        if self.chance(0.4) {
            self.returndata();
        }
    }

    /// A precompile call with an input of the precompile's expected shape (mostly invalid
    /// contents, sometimes the exact length, sometimes not).
    fn precompile_call(&mut self) {
        let p = self.precompile();
        let len: u64 = match p {
            1 => 128,
            5 => {
                // MODEXP header: three small lengths, then base, exponent and modulus.
                let (b, e, m) = (
                    self.rng.random_range(0..40u8),
                    self.rng.random_range(0..40u8),
                    self.rng.random_range(0..40u8),
                );
                let mut w = [0u8; 96];
                w[31] = b;
                w[63] = e;
                w[95] = m;
                self.store_bytes(&w, 0);
                96 + b as u64 + e as u64 + m as u64
            }
            6 => 128,
            7 => 96,
            8 => *[0u64, 192, 384].choose(self.rng).expect("non-empty"),
            9 => {
                // BLAKE2F: a small round count in the first four bytes.
                let mut w = [0u8; 32];
                w[3] = self.rng.random_range(0..24);
                self.store_bytes(&w, 0);
                if self.chance(0.8) {
                    213
                } else {
                    212
                }
            }
            0x0a => 192,
            0x100 => 160,
            _ => *[0u64, 32, 64, 128, 160, 256, 288]
                .choose(self.rng)
                .expect("non-empty"),
        };
        // Random words above the header so inputs differ between programs.
        let header = if matches!(p, 5 | 9) { 96 } else { 0 };
        let words = len.saturating_sub(header).div_ceil(32).min(9);
        for i in 0..words {
            self.push_value();
            self.push_u64(header + 32 * i);
            self.op(op::MSTORE);
        }
        let len = if self.chance(0.15) {
            self.rng.random_range(0..=len + 8)
        } else {
            len
        };
        self.call_with(|g| g.push_u64(p), (0, len));
        self.after_call();
        if self.chance(0.5) {
            self.returndata();
        }
    }

    fn returndata(&mut self) {
        match self.rng.random_range(0..4) {
            0 => self.op(op::RETURNDATASIZE),
            1..=2 => {
                // In bounds: copy all of it.
                self.op(op::RETURNDATASIZE);
                self.push_u64(0);
                self.offset(128);
                self.op(op::RETURNDATACOPY);
            }
            _ => self.guarded(|g| {
                // Out of bounds: one byte past the end (halts the frame).
                g.push_u64(1);
                g.op(op::RETURNDATASIZE);
                g.op(op::ADD);
                g.push_u64(0);
                g.push_u64(0);
                g.op(op::RETURNDATACOPY);
            }),
        }
    }

    /// Generates standalone code of `role` and returns its bytes.
    fn sub_code(&mut self, role: Role, chunks: usize) -> Vec<u8> {
        let helpers = self.helpers;
        let max_depth = self.max_depth.min(1);
        let mut g = Gen::new(self.rng, self.labels, role, helpers, max_depth);
        let mut insns = Vec::new();
        for _ in 0..chunks {
            insns.extend(g.chunk().insns);
        }
        insns.extend(g.terminal().insns);
        self.init_codes.append(&mut g.init_codes);
        assemble(insns.iter())
    }

    fn create(&mut self) {
        let n = self.rng.random_range(0..=2);
        let init = self.sub_code(Role::Init, n);
        self.init_codes.push(init.clone());
        let at = self.rng.random_range(0..64u64);
        self.store_bytes(&init, at);
        let create2 = self.chance(0.5);
        if create2 {
            let salt = self.rng.random_range(0..3);
            self.push_u64(salt);
        }
        // Sometimes the size is off by a few bytes (truncated init code or trailing zeros).
        let len = (init.len() as u64).saturating_add_signed(if self.chance(0.1) {
            self.rng.random_range(-3..=3)
        } else {
            0
        });
        self.push_u64(len);
        self.push_u64(at);
        if self.chance(0.8) {
            self.push_u64(0);
        } else {
            let v = self.rng.random_range(1..100);
            self.push_u64(v);
        }
        self.op(if create2 { op::CREATE2 } else { op::CREATE });
        // The new address (or zero): call it, look at it, or keep it.
        match self.rng.random_range(0..4) {
            0 => {
                self.op(op::DUP1);
                self.op(op::EXTCODESIZE);
            }
            1 => {
                self.push_u64(0);
                self.push_u64(0);
                self.push_u64(0);
                self.push_u64(0);
                self.push_u64(0);
                self.op(op::DUP6);
                self.op(op::GAS);
                self.op(op::CALL);
            }
            2 => self.op(op::POP),
            _ => {}
        }
        if self.chance(0.3) {
            self.returndata();
        }
    }

    /// A loop with a bounded, sometimes data-dependent counter.
    fn loop_(&mut self) {
        if self.chance(0.5) {
            let n = self.rng.random_range(1..=4);
            self.push_u64(n);
        } else {
            // 1..=4 iterations chosen by the calldata.
            let at = self.rng.random_range(0..40);
            self.push_u64(at);
            self.op(op::CALLDATALOAD);
            self.push_u64(3);
            self.op(op::AND);
            self.push_u64(1);
            self.op(op::ADD);
        }
        let head = self.label();
        self.out.push(Insn::Label(head));
        self.body(2);
        self.push_u64(1);
        self.op(op::SWAP1);
        self.op(op::SUB);
        self.op(op::DUP1);
        self.out.push(Insn::PushLabel(head, 0));
        self.h += 1;
        self.op(op::JUMPI);
        self.op(op::POP);
    }

    /// A condition computed from the data: calldata bits, earlier results, storage, gas.
    fn condition(&mut self) {
        match self.rng.random_range(0..6) {
            0..=1 => {
                let at = self.rng.random_range(0..40);
                self.push_u64(at);
                self.op(op::CALLDATALOAD);
                let mask = 1u64 << self.rng.random_range(0..8);
                self.push_u64(mask);
                self.op(op::AND);
            }
            2 if self.h > 0 => {
                let k = self.rng.random_range(1..=self.h.min(16));
                self.op(op::DUP1 + k as u8 - 1);
                let o = *[
                    op::ISZERO,
                    op::NOT,
                    op::ISZERO,
                    op::NOT,
                    op::ISZERO,
                    op::NOT,
                    op::CLZ,
                ]
                .choose(self.rng)
                .expect("non-empty");
                self.op(o);
            }
            3 => {
                self.operand();
                self.operand();
                let o = *[op::LT, op::GT, op::SLT, op::SGT, op::EQ, op::AND]
                    .choose(self.rng)
                    .expect("non-empty");
                self.op(o);
            }
            4 => {
                self.slot();
                self.op(op::SLOAD);
            }
            _ => {
                let g = self.rng.random_range(20_000..200_000);
                self.push_u64(g);
                self.op(op::GAS);
                self.op(op::LT);
            }
        }
    }

    /// if/else on a computed condition; both arms leave the stack as it was.
    fn branch(&mut self) {
        self.condition();
        let (else_, end) = (self.label(), self.label());
        self.out.push(Insn::PushLabel(else_, 0));
        self.h += 1;
        self.op(op::JUMPI);
        self.body(2);
        if self.chance(0.15) {
            // A fault on one path only: the other path runs on.
            self.fault();
        }
        self.out.push(Insn::PushLabel(end, 0));
        self.h += 1;
        self.op(op::JUMP);
        self.out.push(Insn::Label(else_));
        self.body(2);
        self.out.push(Insn::Label(end));
    }

    /// A jump whose target is not a constant pushed right before it (the compiler's dynamic
    /// path), sometimes choosing between two adjacent JUMPDESTs by a calldata bit.
    fn dynjump(&mut self) {
        let (a, b) = (self.label(), self.label());
        if self.chance(0.5) {
            self.out.push(Insn::PushLabel(a, 0));
            self.h += 1;
            self.push_u64(0);
            self.op(op::ADD);
        } else {
            let at = self.rng.random_range(0..40);
            self.push_u64(at);
            self.op(op::CALLDATALOAD);
            self.push_u64(1);
            self.op(op::AND);
            self.out.push(Insn::PushLabel(a, 0));
            self.h += 1;
            self.op(op::ADD);
        }
        self.op(op::JUMP);
        // Skipped code: never runs, but the compiler still has to handle it.
        self.push_value();
        self.op(op::POP);
        self.out.push(Insn::Label(a));
        self.out.push(Insn::Label(b));
    }

    fn badjump(&mut self) {
        self.condition();
        let skip = self.label();
        self.op(op::ISZERO);
        self.out.push(Insn::PushLabel(skip, 0));
        self.h += 1;
        self.op(op::JUMPI);
        self.fault_jump();
        self.out.push(Insn::Label(skip));
    }

    fn fault_jump(&mut self) {
        match self.rng.random_range(0..4) {
            0 => {
                // Into PUSH data that looks like a JUMPDEST.
                let m = self.label();
                self.out.push(Insn::Mark(m));
                self.push(Insn::Push(vec![op::JUMPDEST, op::JUMPDEST]));
                self.op(op::POP);
                self.out.push(Insn::PushLabel(m, 1));
                self.h += 1;
                self.op(op::JUMP);
            }
            1 => {
                self.push_u64(0xffff);
                self.op(op::JUMP);
            }
            2 => {
                let t = self.rng.random_range(0..64);
                self.push_u64(1);
                self.push_u64(t);
                self.op(op::JUMPI);
            }
            _ => {
                self.push(Insn::push_u256(U256::MAX));
                self.op(op::JUMP);
            }
        }
    }

    /// Runs `snippet` only when a data-dependent condition holds; on both paths the stack is
    /// as before (whatever the snippet leaves is popped on its path).
    fn guarded(&mut self, snippet: impl FnOnce(&mut Self)) {
        self.condition();
        let skip = self.label();
        self.out.push(Insn::PushLabel(skip, 0));
        self.h += 1;
        self.op(op::JUMPI);
        let (saved_h, saved_floor) = (self.h, self.floor);
        self.floor = self.h;
        snippet(self);
        if self.h < saved_h {
            // The snippet consumed enclosing items: it halts (underflow) or the path is dead.
            self.h = saved_h;
        }
        self.pop_to(saved_h);
        self.floor = saved_floor;
        self.out.push(Insn::Label(skip));
    }

    /// Something that halts the frame: a bad jump, a stack fault, an invalid opcode.
    fn fault(&mut self) {
        let saved = self.h;
        match self.rng.random_range(0..5) {
            0 => self.fault_jump(),
            1 => self.underflow(),
            2 => self.overflow(),
            3 => self.op(op::INVALID),
            _ => {
                let o = *[0x0c, 0x21, 0x4f, 0xa5, 0xef, 0xf6, 0xfc]
                    .choose(self.rng)
                    .expect("non-empty");
                self.out.push(Insn::Op(o));
            }
        }
        // Generation continues as if the fault had not halted (the code after it is what the
        // other path of the branch, or the minimizer, may reach).
        self.h = saved;
    }

    fn underflow(&mut self) {
        let saved_floor = self.floor;
        self.floor = 0;
        self.pop_to(0);
        self.floor = saved_floor;
        let o = *[op::POP, op::ADD, op::SWAP1, op::DUP2, op::MSTORE, op::CALL]
            .choose(self.rng)
            .expect("non-empty");
        self.out.push(Insn::Op(o));
    }

    fn overflow(&mut self) {
        if self.chance(0.5) {
            // A loop pushing until the stack overflows at 1025 items.
            let l = self.label();
            self.out.push(Insn::Label(l));
            self.out.push(Insn::Op(
                *[op::PUSH0, op::ADDRESS, op::DUP1, op::GAS]
                    .choose(self.rng)
                    .expect("non-empty"),
            ));
            self.out.push(Insn::PushLabel(l, 0));
            self.out.push(Insn::Op(op::JUMP));
        } else {
            // Straight-line: exactly to the limit, then one more (DUPs of a PUSH32, so the
            // compiled section's growth check is what stops it).
            self.out.push(Insn::push_u256(U256::MAX));
            for _ in 0..(1024usize.saturating_sub(self.h)) {
                self.out.push(Insn::Op(op::DUP1));
            }
        }
    }

    fn stacklimit(&mut self) {
        // On a data-dependent path most of the time, so the program usually runs on.
        let underflow = self.chance(0.5);
        let snippet = move |g: &mut Self| {
            let saved = g.h;
            if underflow {
                g.underflow();
            } else {
                g.overflow();
            }
            g.h = saved;
        };
        if self.chance(0.85) {
            self.guarded(snippet);
        } else {
            snippet(self);
        }
    }

    /// Any opcode byte with small operands; `fork_sensitive` restricts the choice to opcodes
    /// whose validity or behaviour depends on the fork.
    fn anyop(&mut self, fork_sensitive: bool) {
        const FORK_OPS: [u8; 20] = [
            op::PUSH0,
            op::MCOPY,
            op::TLOAD,
            op::TSTORE,
            op::BLOBHASH,
            op::BLOBBASEFEE,
            op::CLZ,
            op::BASEFEE,
            op::DIFFICULTY,
            op::SELFBALANCE,
            op::SHL,
            op::SAR,
            op::EXTCODEHASH,
            op::CREATE2,
            0x4b, // SLOTNUM (Amsterdam)
            0xe6, // DUPN (Amsterdam)
            0xe7, // SWAPN
            0xe8, // EXCHANGE
            op::CHAINID,
            op::SELFDESTRUCT,
        ];
        let o = if fork_sensitive {
            *FORK_OPS.choose(self.rng).expect("non-empty")
        } else if self.chance(0.75) {
            // A defined opcode (undefined ones halt, which the 25 % covers).
            loop {
                let o: u8 = self.rng.random();
                if OpCode::new(o).is_some() {
                    break o;
                }
            }
        } else {
            self.rng.random()
        };
        match o {
            op::PUSH1..=op::PUSH32 => {
                let n = (o - op::PUSH1 + 1) as usize;
                let mut imm = vec![0u8; n];
                self.rng.fill(&mut imm[..]);
                self.push(Insn::Push(imm));
            }
            0xe6..=0xe8 => {
                let imm: u8 = self.rng.random();
                self.out.push(Insn::Raw(vec![o, imm]));
            }
            _ => {
                let inputs = OpCode::new(o).map_or(0, |c| c.inputs() as usize);
                for _ in 0..inputs {
                    let v = self.rng.random_range(0..=64);
                    self.push_u64(v);
                }
                self.op(o);
            }
        }
    }

    /// Makes computed values observable: into storage, memory, logs or the stack's top.
    fn observe(&mut self) {
        if self.free() == 0 {
            self.arith();
        }
        match self.rng.random_range(0..3) {
            0 => {
                let k = self.rng.random_range(0..6);
                self.push_u64(k);
                self.op(op::SSTORE);
            }
            1 => {
                let at = 32 * self.rng.random_range(0..4);
                self.push_u64(at);
                self.op(op::MSTORE);
            }
            _ => {
                self.push_u64(32);
                self.push_u64(0);
                self.op(op::LOG1);
            }
        }
    }

    fn gas(&mut self) {
        self.op(op::GAS);
        match self.rng.random_range(0..3) {
            0 => {
                let k = self.rng.random_range(0..6);
                self.push_u64(k);
                self.op(op::SSTORE);
            }
            1 => {
                self.push_u64(0);
                self.op(op::MSTORE);
            }
            _ => {}
        }
    }

    /// Straight-line code mixing everything cheap: what most real contracts are made of.
    fn block(&mut self) {
        for _ in 0..self.rng.random_range(2..=5) {
            match self.rng.random_range(0..3) {
                0 => self.arith(),
                1 => self.stack(),
                _ => self.memory(),
            }
        }
    }

    /// How the code ends.
    fn terminal(&mut self) -> Chunk {
        if self.role == Role::Init {
            return self.init_terminal();
        }
        match self.rng.random_range(0..100) {
            0..=29 => self.op(op::STOP),
            30..=84 => {
                // RETURN (mostly) or REVERT of up to three computed words, plus a few bytes of
                // never-written memory.
                let ret = self.chance(0.7);
                let words = self.free().min(3);
                for i in 0..words {
                    self.push_u64(32 * i as u64);
                    self.op(op::MSTORE);
                }
                let len = 32 * words as u64 + self.rng.random_range(0..8);
                self.push_u64(len);
                self.push_u64(0);
                self.op(if ret { op::RETURN } else { op::REVERT });
            }
            85..=89 => self.op(op::INVALID),
            90..=94 => {
                self.address();
                self.op(op::SELFDESTRUCT);
            }
            _ => {} // falls off the end: STOP
        }
        Chunk {
            kind: "terminal",
            insns: std::mem::take(&mut self.out),
        }
    }

    /// Init code's ending: deploy generated runtime code, or revert, or fail the deployment.
    fn init_terminal(&mut self) -> Chunk {
        match self.rng.random_range(0..100) {
            0..=69 => {
                let n = self.rng.random_range(1..=2);
                let runtime = self.sub_code(Role::Runtime, n);
                self.store_bytes(&runtime, 0);
                self.push_u64(runtime.len() as u64);
                self.push_u64(0);
                self.op(op::RETURN);
            }
            70..=79 => {
                let len = self.rng.random_range(0..40);
                self.push_u64(len);
                self.push_u64(0);
                self.op(op::REVERT);
            }
            80..=87 => self.op(op::STOP),
            88..=93 => {
                // EIP-3541: code starting with 0xEF is rejected.
                self.store_bytes(&[0xef, 0x00], 0);
                self.push_u64(2);
                self.push_u64(0);
                self.op(op::RETURN);
            }
            _ => {
                // EIP-170: more than 24,576 bytes of code is rejected.
                self.push_u64(24_577);
                self.push_u64(0);
                self.op(op::RETURN);
            }
        }
        Chunk {
            kind: "terminal",
            insns: std::mem::take(&mut self.out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_per_seed_and_index() {
        let cfg = GenConfig::default();
        let a = generate(7, 3, &cfg);
        let b = generate(7, 3, &cfg);
        let c = generate(7, 4, &cfg);
        assert_eq!(a.contracts[0].code(), b.contracts[0].code());
        assert_eq!(a.gas_limit, b.gas_limit);
        assert_ne!(a.contracts[0].code(), c.contracts[0].code());
    }

    #[test]
    fn programs_stay_small() {
        let cfg = GenConfig::default();
        let sizes: Vec<usize> = (0..300).map(|i| generate(1, i, &cfg).code_size()).collect();
        let avg = sizes.iter().sum::<usize>() / sizes.len();
        let mut sorted = sizes.clone();
        sorted.sort_unstable();
        eprintln!(
            "program code sizes: average {avg}, median {}, p90 {}, max {}",
            sorted[150], sorted[270], sorted[299]
        );
        assert!(avg < 1500, "average program size {avg} bytes");
    }
}
