//! A point-in-time view of the service, for the `kiln_status` RPC method and for logs: queue
//! depth, jobs in flight, installed code per tier and the counters.

use crate::service::{Service, ServiceStats};
use kiln_runtime::{CodeKey, Tier};
use serde::Serialize;
use std::{
    collections::HashMap,
    hash::BuildHasher,
    sync::{Arc, Mutex},
};

/// The state of a [`Service`] when [`Service::status`] was called. Serialized in camelCase.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusSnapshot {
    /// Whether the service's compiled code is in the registry (false once disabled).
    pub serving: bool,
    /// The newest canonical block whose heat is counted.
    pub head: u64,
    /// Jobs waiting in the compile queue.
    pub queue_depth: usize,
    /// Compilations running on the workers.
    pub in_flight: usize,
    /// Codes installed at the quick (baseline) tier.
    pub installed_baseline: usize,
    /// Codes installed at the optimising tier.
    pub installed_optimised: usize,
    /// Codes that will not be compiled (failed, refused, too large or bytecode unknown).
    pub failed: usize,
    /// EVM usage reports waiting for their block to be committed.
    pub pending_reports: usize,
    /// The service's counters.
    #[serde(with = "StatsDef")]
    pub stats: ServiceStats,
}

/// How [`ServiceStats`] is serialized (camelCase), kept here so that the service's own types stay
/// free of serialization concerns.
#[derive(Serialize)]
#[serde(remote = "ServiceStats", rename_all = "camelCase")]
struct StatsDef {
    notifications: u64,
    compiled_quick: u64,
    compiled_optimised: u64,
    compile_failures: u64,
    compile_micros: u64,
    dropped_jobs: u64,
    expired_reports: u64,
    cache_loads: u64,
    evictions: u64,
    verify_matches: u64,
    verify_mismatches: u64,
    verify_inconclusive: u64,
    canonical_gas: u64,
    canonical_native_gas: u64,
    unused_compilations: u64,
    compile_micros_quick: u64,
    family_compilations: u64,
    family_shares: u64,
}

/// Codes installed at the baseline tier and at the optimising tier.
pub(crate) fn installed_per_tier<S: BuildHasher>(
    installed: &HashMap<CodeKey, Tier, S>,
) -> (usize, usize) {
    let optimised = installed
        .values()
        .filter(|t| **t == Tier::Optimised)
        .count();
    (installed.len() - optimised, optimised)
}

/// The latest [`StatusSnapshot`], shared between the thread that drives the [`Service`] and
/// readers such as the RPC server. Cheap to clone. Hand a clone to
/// [`Service::set_status_sink`] and the service publishes to it at the end of every
/// [`Service::poll`] (so after every notification too); [`SharedStatus::publish`] takes a snapshot
/// by hand.
#[derive(Clone, Debug, Default)]
pub struct SharedStatus(Arc<Mutex<StatusSnapshot>>);

impl SharedStatus {
    /// Replaces the snapshot.
    pub fn set(&self, snapshot: StatusSnapshot) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = snapshot;
    }

    /// Takes a fresh snapshot of `service`.
    pub fn publish(&self, service: &Service) {
        self.set(service.status());
    }

    /// The latest snapshot.
    pub fn get(&self) -> StatusSnapshot {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
