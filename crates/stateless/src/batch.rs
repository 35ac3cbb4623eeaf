//! Many inputs at once: validated in parallel on one runtime (so they share its compiled code),
//! and their codes compiled ahead, so that a runtime that only looks code up runs no
//! compilation on a validation path.

use crate::{validate, StatelessError, StatelessInput, Validated};
use alloy_primitives::keccak256;
use kiln_node::{decode::decode_block, CancunSpec};
use kiln_runtime::{Entry, Runtime};
use rayon::prelude::*;
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

/// What [`precompile`] did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Precompiled {
    /// Distinct (code, spec) pairs in the inputs.
    pub codes: usize,
    /// Compiled now.
    pub compiled: usize,
    /// Refused or failed (they run on the interpreter).
    pub failed: usize,
    /// Already in the runtime's registry.
    pub present: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// Compiles every code of `inputs` (under the spec its block runs in) into `runtime`'s registry,
/// on `jobs` threads. Does nothing on an interpreter runtime.
pub fn precompile(runtime: &Runtime, inputs: &[StatelessInput], jobs: usize) -> Precompiled {
    let start = Instant::now();
    let mut stats = Precompiled::default();
    if !runtime.is_enabled() {
        return stats;
    }
    let mut codes = BTreeMap::new();
    for input in inputs {
        let (Ok(block), Ok(spec)) = (
            decode_block(&input.block),
            CancunSpec::from_genesis(&input.chain_config),
        ) else {
            continue;
        };
        let spec = alloy_evm::spec_by_timestamp_and_block_number(
            &spec,
            block.header.timestamp,
            block.header.number,
        );
        for code in &input.witness.codes {
            codes
                .entry((keccak256(code), spec))
                .or_insert_with(|| code.clone());
        }
    }
    stats.codes = codes.len();
    let todo: Vec<_> = codes
        .into_iter()
        .filter(|((hash, spec), _)| runtime.get(*hash, *spec).is_none())
        .collect();
    stats.present = stats.codes - todo.len();
    let results: Vec<bool> = pool(jobs).install(|| {
        todo.par_iter()
            .map(
                |((hash, spec), code)| match runtime.compile(*hash, *spec, code, None) {
                    Ok(compiled) => {
                        runtime.insert(*hash, *spec, Entry::Ready(Arc::new(compiled)));
                        true
                    }
                    Err(e) => {
                        runtime.insert(*hash, *spec, Entry::Failed(e.to_string().into()));
                        false
                    }
                },
            )
            .collect()
    });
    stats.compiled = results.iter().filter(|ok| **ok).count();
    stats.failed = results.len() - stats.compiled;
    stats.elapsed = start.elapsed();
    stats
}

/// Validates every input on `jobs` threads sharing `runtime`; results in input order, and the
/// wall time.
pub fn validate_all(
    inputs: &[StatelessInput],
    runtime: &Arc<Runtime>,
    jobs: usize,
) -> (Vec<Result<Validated, StatelessError>>, Duration) {
    let start = Instant::now();
    let results = pool(jobs).install(|| {
        inputs
            .par_iter()
            .map(|input| validate(input, runtime))
            .collect()
    });
    (results, start.elapsed())
}

fn pool(jobs: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .build()
        .unwrap_or_else(|_| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .expect("a one-thread pool")
        })
}
