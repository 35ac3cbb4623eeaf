//! Delta debugging over the generator's instruction lists.
//!
//! The predicate is "the interpreter and the compiled mode still disagree". Deletions happen at
//! the level of [`Insn`]s, never bytes, so every candidate assembles to well-formed code: a PUSH
//! keeps its immediate and jumps are re-resolved (a jump whose label was deleted becomes an
//! invalid jump, which is a legitimate program too).

use std::time::{Duration, Instant};

use alloy_primitives::U256;

use super::{
    exec::{diverges, ModeRuntime},
    program::{disassemble, shorten, Chunk, Insn, Program},
};
use crate::statetest::Fork;

/// Bounds on the work one minimization may do: a pathological case must not stall a campaign.
const MAX_TESTS: usize = 4_000;
const MAX_TIME: Duration = Duration::from_secs(120);

struct Oracle<'a> {
    fork: &'a Fork,
    rt: &'a ModeRuntime,
    tests: usize,
    started: Instant,
}

impl Oracle<'_> {
    fn exhausted(&self) -> bool {
        self.tests >= MAX_TESTS || self.started.elapsed() > MAX_TIME
    }

    fn test(&mut self, p: &Program) -> bool {
        if self.exhausted() {
            return false;
        }
        self.tests += 1;
        diverges(p, self.fork, self.rt)
    }
}

/// Classic ddmin: the smallest subsequence (1-minimal w.r.t. single deletions at the finest
/// granularity) for which `test` still holds.
fn ddmin<T: Clone>(items: Vec<T>, mut test: impl FnMut(&[T]) -> bool) -> Vec<T> {
    let mut items = items;
    if items.is_empty() {
        return items;
    }
    if test(&[]) {
        return Vec::new();
    }
    let mut n = 2usize;
    while items.len() >= 2 {
        let chunk = items.len().div_ceil(n);
        let mut reduced = false;
        let mut start = 0;
        while start < items.len() {
            let end = (start + chunk).min(items.len());
            let mut complement = items[..start].to_vec();
            complement.extend_from_slice(&items[end..]);
            if test(&complement) {
                items = complement;
                n = (n - 1).max(2);
                reduced = true;
                break;
            }
            start = end;
        }
        if !reduced {
            if n >= items.len() {
                break;
            }
            n = (n * 2).min(items.len());
        }
    }
    if items.len() == 1 && test(&[]) {
        items.clear();
    }
    items
}

/// The result of a minimization.
pub struct Minimized {
    /// The reduced program.
    pub program: Program,
    /// The kinds of the entry contract's chunks that survived chunk-level reduction (what the
    /// generator meant to exercise there).
    pub kinds: Vec<&'static str>,
    /// Predicate evaluations spent.
    pub tests: usize,
}

/// Shrinks `program` while it still diverges under `fork` in `rt`.
pub fn minimize(program: Program, fork: &Fork, rt: &ModeRuntime) -> Minimized {
    let mut o = Oracle {
        fork,
        rt,
        tests: 0,
        started: Instant::now(),
    };
    let mut p = program;
    let mut kinds = Vec::new();
    if !o.test(&p) {
        // Not reproducible in isolation (should not happen: execution is deterministic).
        return Minimized {
            program: p,
            kinds,
            tests: o.tests,
        };
    }

    // Helpers first: the fewer contracts, the cheaper every later test.
    for i in (1..p.contracts.len()).rev() {
        let mut candidate = p.clone();
        candidate.contracts.remove(i);
        if o.test(&candidate) {
            p = candidate;
            continue;
        }
        let mut candidate = p.clone();
        candidate.contracts[i].chunks.clear();
        if o.test(&candidate) {
            p = candidate;
        }
    }

    for round in 0..4 {
        let before = p.clone();
        for c in 0..p.contracts.len() {
            // Whole chunks.
            let chunks = p.contracts[c].chunks.clone();
            let kept = ddmin(chunks, |cs| {
                let mut candidate = p.clone();
                candidate.contracts[c].chunks = cs.to_vec();
                o.test(&candidate)
            });
            if round == 0 && c == 0 {
                kinds = kept.iter().map(|ch| ch.kind).collect();
            }
            // Single instructions, across chunk boundaries.
            let insns: Vec<Insn> = kept.iter().flat_map(|ch| ch.insns.clone()).collect();
            let kept = ddmin(insns, |is| {
                let mut candidate = p.clone();
                candidate.contracts[c].chunks = vec![Chunk {
                    kind: "minimized",
                    insns: is.to_vec(),
                }];
                o.test(&candidate)
            });
            p.contracts[c].chunks = vec![Chunk {
                kind: "minimized",
                insns: kept,
            }];
            simplify_pushes(&mut p, c, &mut o);
        }
        simplify_tx(&mut p, &mut o);
        if p == before || o.exhausted() {
            break;
        }
    }
    if o.exhausted() {
        tracing::warn!(
            tests = o.tests,
            "minimization budget exhausted; the reproducer may not be minimal"
        );
    }
    Minimized {
        program: p,
        kinds,
        tests: o.tests,
    }
}

/// Replaces PUSH immediates by smaller ones (`PUSH0`, `PUSH1 1`, the value's shortest
/// encoding) where the divergence survives.
fn simplify_pushes(p: &mut Program, c: usize, o: &mut Oracle<'_>) {
    let n = p.contracts[c].chunks.first().map_or(0, |ch| ch.insns.len());
    for i in 0..n {
        let Insn::Push(imm) = p.contracts[c].chunks[0].insns[i].clone() else {
            continue;
        };
        let skip = imm.iter().take_while(|b| **b == 0).count();
        let shortest = imm[skip..].to_vec();
        for replacement in [vec![], vec![1], shortest] {
            if replacement == imm || replacement.len() > imm.len() {
                continue;
            }
            let mut candidate = p.clone();
            candidate.contracts[c].chunks[0].insns[i] = Insn::Push(replacement);
            if o.test(&candidate) {
                *p = candidate;
                break;
            }
        }
    }
}

/// Keeps `change` if the divergence survives it.
fn attempt(p: &mut Program, o: &mut Oracle<'_>, change: impl FnOnce(&mut Program)) {
    let mut candidate = p.clone();
    change(&mut candidate);
    if candidate != *p && o.test(&candidate) {
        *p = candidate;
    }
}

/// Calldata, value, pre-state storage and balances, gas limit: the simplest values that keep
/// the divergence.
fn simplify_tx(p: &mut Program, o: &mut Oracle<'_>) {
    attempt(p, o, |c| c.calldata.clear());
    if !p.calldata.is_empty() {
        let data = p.calldata.clone();
        let kept = ddmin(data, |d| {
            let mut candidate = p.clone();
            candidate.calldata = d.to_vec();
            o.test(&candidate)
        });
        p.calldata = kept;
    }
    attempt(p, o, |c| c.value = U256::ZERO);
    for i in 0..p.contracts.len() {
        attempt(p, o, |c| c.contracts[i].storage.clear());
        attempt(p, o, |c| c.contracts[i].balance = U256::ZERO);
    }
    for limit in [100_000u64, 1_000_000] {
        if limit < p.gas_limit {
            attempt(p, o, |c| c.gas_limit = limit);
            if p.gas_limit == limit {
                break;
            }
        }
    }
}

/// Where the divergence first shows: the shortest prefix of the entry contract's code (the rest
/// cut off, i.e. STOP) that still diverges. Returns the culprit instruction's neighbourhood, e.g.
/// `PUSH0 DUP1 [ADD] STOP`, or `None` when no prefix alone diverges (the divergence needs a
/// helper's or the deployed code's cooperation).
pub fn neighbourhood(p: &Program, fork: &Fork, rt: &ModeRuntime) -> Option<(usize, String)> {
    let insns: Vec<Insn> = p
        .contracts
        .first()?
        .chunks
        .iter()
        .flat_map(|c| c.insns.clone())
        .collect();
    let mut o = Oracle {
        fork,
        rt,
        tests: 0,
        started: Instant::now(),
    };
    let culprit = (1..=insns.len()).find(|&k| {
        let mut candidate = p.clone();
        candidate.contracts[0].chunks = vec![Chunk {
            kind: "prefix",
            insns: insns[..k].to_vec(),
        }];
        o.test(&candidate)
    })?;
    let code = p.contracts[0].code();
    let pc: usize = super::program::assemble(insns[..culprit - 1].iter()).len();
    let listing = disassemble(&code);
    let at = listing
        .iter()
        .position(|(p, _)| *p >= pc)
        .unwrap_or(listing.len().saturating_sub(1));
    let lo = at.saturating_sub(4);
    let hi = (at + 3).min(listing.len());
    let text = listing[lo..hi]
        .iter()
        .enumerate()
        .map(|(i, (_, t))| {
            if lo + i == at {
                format!("[{}]", shorten(t))
            } else {
                shorten(t)
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    Some((pc, text))
}

#[cfg(test)]
mod tests {
    use super::ddmin;

    #[test]
    fn ddmin_finds_the_needed_items() {
        let items: Vec<u32> = (0..40).collect();
        let kept = ddmin(items, |s| s.contains(&7) && s.contains(&31));
        assert_eq!(kept, vec![7, 31]);
    }

    #[test]
    fn ddmin_keeps_order_dependent_pairs() {
        let items: Vec<u32> = (0..10).collect();
        let kept = ddmin(items, |s| s.windows(2).any(|w| w == [3, 4]));
        assert_eq!(kept, vec![3, 4]);
    }
}
