//! kiln's hot-code service on a thread of its own.
//!
//! The service links compiled objects, hands jobs to its workers and replays transactions for
//! verification when it polls; none of that belongs on reth's async executor. One thread owns the
//! [`Service`], takes notifications from the ExEx over a channel (answering each with the height
//! it is done with), polls between them, publishes kiln's metrics, and on [`ServiceHandle::stop`]
//! shuts the service down: workers joined, heat ranking saved to the cache, runtime shut down.

use alloy_primitives::{Bytes, B256};
use kiln_evm::Runtime;
use kiln_exex::{
    CodeSource, FinishedHeight, Notification, Service, ServiceConfig, ServiceControl, SharedStatus,
    StatusSnapshot,
};
use std::{
    sync::{atomic::Ordering, mpsc, Arc, Mutex, OnceLock},
    thread::JoinHandle,
    time::{Duration, Instant},
};
use tokio::sync::oneshot;

/// Looks code up in the node's state; filled in once the node (and so its provider) exists.
#[derive(Default)]
pub struct LateCodeSource {
    lookup: OnceLock<Box<dyn Fn(B256) -> Option<Bytes> + Send + Sync>>,
}

impl LateCodeSource {
    /// Sets the lookup (the first call wins).
    pub fn set(&self, lookup: impl Fn(B256) -> Option<Bytes> + Send + Sync + 'static) {
        let _ = self.lookup.set(Box::new(lookup));
    }
}

impl CodeSource for LateCodeSource {
    fn code(&self, hash: B256) -> Option<Bytes> {
        self.lookup.get().and_then(|lookup| lookup(hash))
    }
}

enum Message {
    Notification(Notification, oneshot::Sender<Option<FinishedHeight>>),
    Stop,
}

/// The handle the node keeps: sends notifications to the service thread, and stops it.
pub struct ServiceHandle {
    sender: Mutex<mpsc::Sender<Message>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Where the service finds bytecode it did not see deployed.
    pub code_source: Arc<LateCodeSource>,
    /// The service's control handle.
    pub control: ServiceControl,
    /// The service's latest status (for `kiln_status`).
    pub status: SharedStatus,
}

impl std::fmt::Debug for ServiceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceHandle")
            .field("status", &self.status.get())
            .finish_non_exhaustive()
    }
}

/// Settings of the thread around the service.
#[derive(Clone, Copy, Debug)]
pub struct Driver {
    /// How often the service polls when no notification arrives.
    pub poll_interval: Duration,
    /// How often a summary line is logged (never if zero).
    pub log_interval: Duration,
}

impl ServiceHandle {
    /// Starts the service thread for `runtime` (the one the node's EVMs share). The service is
    /// created on the thread: with a cache directory it links the objects a previous run kept
    /// before this returns, so code that was hot runs natively from the first block.
    pub fn start(
        runtime: Arc<Runtime>,
        config: ServiceConfig,
        driver: Driver,
    ) -> eyre::Result<Arc<Self>> {
        let code_source = Arc::new(LateCodeSource::default());
        let status = SharedStatus::default();
        let (sender, receiver) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = {
            let code_source = code_source.clone();
            let status = status.clone();
            std::thread::Builder::new()
                .name("kiln-service".into())
                .spawn(move || {
                    let source: Arc<dyn CodeSource> = code_source;
                    let mut service = Service::new(runtime.clone(), config, Some(source));
                    service.set_status_sink(status);
                    let _ = ready_tx.send(service.control());
                    drive(&mut service, &runtime, receiver, driver);
                    // Stop the workers (the job in flight finishes), save the heat ranking, and
                    // only then let the runtime go.
                    service.shutdown();
                    let stats = service.stats().clone();
                    drop(service);
                    runtime.shutdown();
                    tracing::info!(
                        target: "kiln",
                        notifications = stats.notifications,
                        compiled_quick = stats.compiled_quick,
                        compiled_optimised = stats.compiled_optimised,
                        cache_loads = stats.cache_loads,
                        native_gas_share = format!("{:.1}%", 100.0 * stats.native_share()),
                        "kiln service stopped; heat ranking saved"
                    );
                })?
        };
        let control = ready_rx
            .recv()
            .map_err(|_| eyre::eyre!("kiln's service thread died while starting"))?;
        Ok(Arc::new(Self {
            sender: Mutex::new(sender),
            thread: Mutex::new(Some(thread)),
            code_source,
            control,
            status,
        }))
    }

    /// Hands `notification` to the service and waits for the height it is done with (`None`
    /// for an empty chain, or when the service has stopped).
    pub async fn notify(&self, notification: Notification) -> Option<FinishedHeight> {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Message::Notification(notification, tx));
        if sent.is_err() {
            return None;
        }
        rx.await.ok().flatten()
    }

    /// Stops the service thread and waits for it (idempotent).
    pub fn stop(&self) {
        let _ = self
            .sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Message::Stop);
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            if thread.join().is_err() {
                tracing::error!(target: "kiln", "kiln's service thread panicked");
            }
        }
    }
}

/// The service thread's loop: notifications when they come, a poll at least every
/// `poll_interval`, metrics and the occasional summary.
fn drive(
    service: &mut Service,
    runtime: &Runtime,
    receiver: mpsc::Receiver<Message>,
    driver: Driver,
) {
    let mut last_log = Instant::now();
    let mut last = service.status();
    let mut paused = false;
    loop {
        match receiver.recv_timeout(driver.poll_interval) {
            Ok(Message::Notification(notification, reply)) => {
                let (kind, first, tip) = describe(&notification);
                let finished = service.on_notification(&notification);
                let _ = reply.send(finished);
                tracing::debug!(target: "kiln", kind, first, tip, "notification processed");
            }
            Ok(Message::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => service.poll(),
        }
        let now = service.status();
        report_changes(&last, &now);
        let control = service.control();
        if control.is_paused() != paused {
            paused = control.is_paused();
            tracing::debug!(target: "kiln", paused, "compilations {}", if paused { "paused" } else { "resumed" });
        }
        record_metrics(runtime, &now, paused);
        if !driver.log_interval.is_zero() && last_log.elapsed() >= driver.log_interval {
            log_summary(runtime, &now);
            last_log = Instant::now();
        }
        last = now;
    }
}

fn describe(notification: &Notification) -> (&'static str, u64, u64) {
    let range = |c: &kiln_exex::Chain| {
        (
            c.first().map_or(0, |b| b.number),
            c.tip().map_or(0, |b| b.number),
        )
    };
    match notification {
        Notification::Committed { new } => ("committed", range(new).0, range(new).1),
        Notification::Reorged { new, .. } => ("reorged", range(new).0, range(new).1),
        Notification::Reverted { old } => ("reverted", range(old).0, range(old).1),
    }
}

/// Logs what changed since the last look: code installed or removed, failures.
fn report_changes(last: &StatusSnapshot, now: &StatusSnapshot) {
    let (s0, s1) = (&last.stats, &now.stats);
    if s1.compiled_quick > s0.compiled_quick || s1.compiled_optimised > s0.compiled_optimised {
        tracing::info!(
            target: "kiln",
            head = now.head,
            baseline = now.installed_baseline,
            optimised = now.installed_optimised,
            compile_secs = format!("{:.3}", s1.compile_secs()),
            "compiled code installed (verified against the interpreter)"
        );
    }
    if (now.installed_baseline + now.installed_optimised)
        < (last.installed_baseline + last.installed_optimised)
    {
        tracing::info!(
            target: "kiln",
            baseline = now.installed_baseline,
            optimised = now.installed_optimised,
            serving = now.serving,
            "compiled code removed"
        );
    }
    if s1.compile_failures > s0.compile_failures {
        tracing::info!(target: "kiln", failures = s1.compile_failures, "a compilation failed or was refused; that code stays on the interpreter");
    }
    if s1.verify_mismatches > s0.verify_mismatches {
        tracing::error!(target: "kiln", "compiled code disagreed with the interpreter; it is banned (see the reproducer named above)");
    }
}

/// kiln's gauges and counters beyond the service's own (`kiln.*`), for reth's Prometheus
/// endpoint.
fn record_metrics(runtime: &Runtime, status: &StatusSnapshot, paused: bool) {
    let stats = &runtime.stats;
    metrics::counter!("kiln.node.frames", "kind" => "compiled")
        .absolute(stats.compiled_frames.load(Ordering::Relaxed));
    metrics::counter!("kiln.node.frames", "kind" => "interpreted")
        .absolute(stats.interpreted_frames.load(Ordering::Relaxed));
    metrics::counter!("kiln.node.canonical_gas", "kind" => "all")
        .absolute(status.stats.canonical_gas);
    metrics::counter!("kiln.node.canonical_gas", "kind" => "native")
        .absolute(status.stats.canonical_native_gas);
    metrics::gauge!("kiln.node.native_gas_share").set(status.stats.native_share());
    metrics::gauge!("kiln.node.head").set(status.head as f64);
    metrics::gauge!("kiln.node.serving").set(if status.serving { 1.0 } else { 0.0 });
    metrics::gauge!("kiln.node.paused").set(if paused { 1.0 } else { 0.0 });
}

fn log_summary(runtime: &Runtime, status: &StatusSnapshot) {
    let stats = &runtime.stats;
    tracing::info!(
        target: "kiln",
        head = status.head,
        frames_compiled = stats.compiled_frames.load(Ordering::Relaxed),
        frames_interpreted = stats.interpreted_frames.load(Ordering::Relaxed),
        native_gas_share = format!("{:.1}%", 100.0 * status.stats.native_share()),
        baseline = status.installed_baseline,
        optimised = status.installed_optimised,
        queue = status.queue_depth,
        in_flight = status.in_flight,
        serving = status.serving,
        "kiln status"
    );
}
