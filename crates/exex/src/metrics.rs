//! The service's metrics, recorded through the [`metrics`] facade under the `kiln.`
//! prefix (a Prometheus exporter renders `kiln.queue_depth` as `kiln_queue_depth`). Nothing is
//! recorded anywhere until the node installs a recorder, for example with `install_prometheus`
//! (feature `prometheus`, on by default).
//!
//! Metrics labelled `tier` have the values `baseline` (the quick tier) and `optimised`.

use crate::status::installed_per_tier;
use kiln_runtime::{CodeKey, Tier};
use std::{collections::HashMap, hash::BuildHasher, time::Duration};

/// Counter: notifications processed.
pub const NOTIFICATIONS: &str = "kiln.notifications";
/// Counter, labelled `tier`: compilations installed.
pub const COMPILATIONS: &str = "kiln.compilations";
/// Counter, labelled `tier`: compilations that failed or were refused.
pub const COMPILE_FAILURES: &str = "kiln.compile_failures";
/// Histogram, labelled `tier`: time a compilation took on its worker, in seconds.
pub const COMPILE_SECONDS: &str = "kiln.compile_seconds";
/// Gauge: jobs waiting in the compile queue.
pub const QUEUE_DEPTH: &str = "kiln.queue_depth";
/// Gauge: compilations running on the workers.
pub const JOBS_IN_FLIGHT: &str = "kiln.jobs_in_flight";
/// Counter: jobs dropped from a full queue.
pub const DROPPED_JOBS: &str = "kiln.dropped_jobs";
/// Counter: EVM usage reports no canonical block claimed before they aged out.
pub const EXPIRED_REPORTS: &str = "kiln.expired_reports";
/// Gauge, labelled `tier`: codes the service has installed in the registry.
pub const INSTALLED_CODES: &str = "kiln.installed_codes";
/// Counter: compiled objects loaded from the object cache at start.
pub const CACHE_LOADS: &str = "kiln.cache_loads";
/// Counter: installed code evicted (idle, or over the memory budget).
pub const EVICTIONS: &str = "kiln.evictions";
/// Gauge: bytes of compiled code the service keeps resident.
pub const RESIDENT_BYTES: &str = "kiln.resident_bytes";

/// Counter, labelled `outcome` (`match`, `mismatch`, `inconclusive`): verification replays.
pub const VERIFICATIONS: &str = "kiln.verifications";
/// Gauge: compiled codes waiting for verification.
pub const VERIFYING_CODES: &str = "kiln.verifying_codes";
/// Counter: compile helpers restarted (after a crash, a kill or a timeout).
pub const HELPER_RESTARTS: &str = "kiln.helper_restarts";
/// Counter: compile jobs whose helper timed out.
pub const HELPER_TIMEOUTS: &str = "kiln.helper_timeouts";
/// Counter, per tier: jobs a sibling's family function served without a compilation.
pub const FAMILY_SHARES: &str = "kiln.family_shares";

/// The `tier` label's values.
const TIERS: [&str; 2] = ["baseline", "optimised"];

/// The `tier` label of a compilation.
fn tier_label(tier: Tier) -> &'static str {
    match tier {
        Tier::Optimised => TIERS[1],
        _ => TIERS[0],
    }
}

/// Gives every metric its description and unit in the installed recorder.
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(NOTIFICATIONS, "Notifications processed");
    describe_counter!(COMPILATIONS, "Compilations installed, per tier");
    describe_counter!(
        COMPILE_FAILURES,
        "Compilations that failed or were refused, per tier"
    );
    describe_histogram!(
        COMPILE_SECONDS,
        Unit::Seconds,
        "Time a compilation took on its worker, per tier"
    );
    describe_gauge!(QUEUE_DEPTH, "Jobs waiting in the compile queue");
    describe_gauge!(JOBS_IN_FLIGHT, "Compilations running on the workers");
    describe_counter!(DROPPED_JOBS, "Jobs dropped from a full compile queue");
    describe_counter!(
        EXPIRED_REPORTS,
        "EVM usage reports no canonical block claimed before they aged out"
    );
    describe_gauge!(INSTALLED_CODES, "Codes installed in the registry, per tier");
    describe_counter!(
        CACHE_LOADS,
        "Compiled objects loaded from the object cache at start"
    );
    describe_counter!(
        EVICTIONS,
        "Installed code evicted (idle, or over the memory budget)"
    );
    describe_counter!(
        VERIFICATIONS,
        "Verification replays of new compiled code, per outcome (match, mismatch, inconclusive)"
    );
    describe_gauge!(VERIFYING_CODES, "Compiled codes waiting for verification");
    describe_counter!(
        HELPER_RESTARTS,
        "Compile helpers restarted after a crash, a kill or a timeout"
    );
    describe_counter!(HELPER_TIMEOUTS, "Compile jobs whose helper timed out");
    describe_counter!(
        FAMILY_SHARES,
        "Jobs a sibling's family function served without a compilation, per tier"
    );
    describe_gauge!(
        RESIDENT_BYTES,
        Unit::Bytes,
        "Compiled code the service keeps resident"
    );
}

pub(crate) fn notification() {
    ::metrics::counter!(NOTIFICATIONS).increment(1);
}

pub(crate) fn compiled(tier: Tier) {
    ::metrics::counter!(COMPILATIONS, "tier" => tier_label(tier)).increment(1);
}

pub(crate) fn compile_failed(tier: Tier) {
    ::metrics::counter!(COMPILE_FAILURES, "tier" => tier_label(tier)).increment(1);
}

pub(crate) fn family_share(tier: Tier) {
    ::metrics::counter!(FAMILY_SHARES, "tier" => tier_label(tier)).increment(1);
}

pub(crate) fn compile_time(tier: Tier, elapsed: Duration) {
    ::metrics::histogram!(COMPILE_SECONDS, "tier" => tier_label(tier)).record(elapsed);
}

pub(crate) fn dropped_job() {
    ::metrics::counter!(DROPPED_JOBS).increment(1);
}

pub(crate) fn cache_load() {
    ::metrics::counter!(CACHE_LOADS).increment(1);
}

pub(crate) fn evicted() {
    ::metrics::counter!(EVICTIONS).increment(1);
}

pub(crate) fn resident_bytes(bytes: u64) {
    ::metrics::gauge!(RESIDENT_BYTES).set(bytes as f64);
}

pub(crate) fn verification(outcome: &'static str) {
    ::metrics::counter!(VERIFICATIONS, "outcome" => outcome).increment(1);
}

pub(crate) fn verifying(codes: usize) {
    ::metrics::gauge!(VERIFYING_CODES).set(codes as f64);
}

/// Sets the helper counters to the totals the helper keeps.
pub(crate) fn helper(restarts: u64, timeouts: u64) {
    ::metrics::counter!(HELPER_RESTARTS).absolute(restarts);
    ::metrics::counter!(HELPER_TIMEOUTS).absolute(timeouts);
}

pub(crate) fn expired_reports(count: usize) {
    ::metrics::counter!(EXPIRED_REPORTS).increment(count as u64);
}

/// Sets the gauges: queue depth, jobs in flight and installed codes per tier.
pub(crate) fn state<S: BuildHasher>(
    queue_depth: usize,
    in_flight: usize,
    installed: &HashMap<CodeKey, Tier, S>,
) {
    ::metrics::gauge!(QUEUE_DEPTH).set(queue_depth as f64);
    ::metrics::gauge!(JOBS_IN_FLIGHT).set(in_flight as f64);
    let (baseline, optimised) = installed_per_tier(installed);
    ::metrics::gauge!(INSTALLED_CODES, "tier" => TIERS[0]).set(baseline as f64);
    ::metrics::gauge!(INSTALLED_CODES, "tier" => TIERS[1]).set(optimised as f64);
}

/// Why the Prometheus exporter could not start.
#[cfg(feature = "prometheus")]
pub type PrometheusError = metrics_exporter_prometheus::BuildError;

/// Installs a Prometheus recorder as the process's global recorder, serving the scrape endpoint
/// over HTTP on `addr` (use a loopback address such as [`DEFAULT_PROMETHEUS_ADDR`] unless the
/// scraper is remote), and describes the service's metrics. The listener runs on the current
/// Tokio runtime, or on a runtime of its own on a background thread when there is none. Fails
/// if a global recorder is already installed or the address cannot be bound.
#[cfg(feature = "prometheus")]
pub fn install_prometheus(addr: std::net::SocketAddr) -> Result<(), PrometheusError> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            // The exporter matches the name it renders (dots become underscores).
            Matcher::Full(COMPILE_SECONDS.replace('.', "_")),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )?
        .install()?;
    describe();
    Ok(())
}

/// A loopback address for the Prometheus scrape endpoint.
pub const DEFAULT_PROMETHEUS_ADDR: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9101),
);
