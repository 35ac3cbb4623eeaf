//! Background compilation: a pool of owned worker threads behind the [`Compiler`] interface.
//!
//! Every thread a pool starts is joined by [`WorkerPool::shutdown`] (also run on drop): the
//! pool stops taking jobs, drops the queued ones uncompiled, and waits for the compilations in
//! flight. A compilation cannot be interrupted inside LLVM, and LLVM's global state is destroyed
//! by `exit()`, so a process must not exit while one runs.

use crate::{helper::HelperFault, CompiledCode, RuntimeError};
use kiln_compiler::{CompileError, CompileOptions, Coverage};
use revm::primitives::{hardfork::SpecId, B256};
use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc, Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// One compilation to run.
#[derive(Clone, Debug)]
pub struct CompileRequest {
    /// keccak256 of `code`.
    pub hash: B256,
    /// The spec to compile for.
    pub spec: SpecId,
    /// The bytecode.
    pub code: Arc<[u8]>,
    /// Level, budgets and the rest.
    pub options: CompileOptions,
    /// The blocks to compile (profile-guided), or `None` for all of them.
    pub coverage: Option<Coverage>,
    /// PUSHes (by pc) the function reads from the running code, so that the members of the
    /// code's family share it ([`kiln_compiler::family`]); empty for a function of its own.
    pub params: Vec<u32>,
    /// A failure a compile helper process stages on purpose (tests of isolation only).
    #[doc(hidden)]
    pub helper_fault: Option<HelperFault>,
}

impl CompileRequest {
    /// A request to compile all of `code` with `options`.
    pub fn new(hash: B256, spec: SpecId, code: Arc<[u8]>, options: CompileOptions) -> Self {
        Self {
            hash,
            spec,
            code,
            options,
            coverage: None,
            params: Vec::new(),
            helper_fault: None,
        }
    }
}

/// Turns bytecode into compiled code. The pool's workers call it; an implementation may compile
/// in this process or have another process do it.
pub trait Compiler: Send + Sync + std::fmt::Debug {
    /// Compiles one request to a relocatable object whose entry symbol is `entry` (see
    /// [`kiln_compiler::link_jit_object`]), for linking here or keeping on disk.
    fn compile_object(
        &self,
        request: &CompileRequest,
        entry: &str,
    ) -> Result<Vec<u8>, RuntimeError>;

    /// For a compiler that runs helper processes: how many it restarted, and how many jobs
    /// timed out, so far.
    fn helper_counts(&self) -> Option<(u64, u64)> {
        None
    }

    /// Compiles one request into code linked in this process.
    fn compile(&self, request: &CompileRequest) -> Result<CompiledCode, RuntimeError> {
        let entry = kiln_compiler::next_entry_name();
        let object = self.compile_object(request, &entry)?;
        Ok(CompiledCode::Jit(kiln_compiler::link_jit_object(
            &object, &entry,
        )?))
    }
}

/// Compiles in this process with kiln's JIT.
#[derive(Clone, Copy, Debug, Default)]
pub struct InProcess;

impl Compiler for InProcess {
    fn compile_object(
        &self,
        request: &CompileRequest,
        entry: &str,
    ) -> Result<Vec<u8>, RuntimeError> {
        Ok(kiln_compiler::compile_object(
            &request.code,
            request.spec,
            &request.options,
            request.coverage.as_ref(),
            &request.params,
            entry,
        )?)
    }

    fn compile(&self, request: &CompileRequest) -> Result<CompiledCode, RuntimeError> {
        if !request.params.is_empty() {
            let entry = kiln_compiler::next_entry_name();
            let object = self.compile_object(request, &entry)?;
            return Ok(CompiledCode::Jit(kiln_compiler::link_jit_object(
                &object, &entry,
            )?));
        }
        Ok(CompiledCode::Jit(kiln_compiler::compile_jit(
            &request.code,
            request.spec,
            &request.options,
            request.coverage.as_ref(),
        )?))
    }
}

/// What a worker calls with a job's result and its compile time.
pub type OnDone = Box<dyn FnOnce(Result<CompiledCode, RuntimeError>, Duration) + Send>;

/// Work for a worker: given the pool's compiler, it compiles and delivers its result itself.
type Job = Box<dyn FnOnce(&dyn Compiler) + Send>;

/// The pool's channel and threads, behind one lock.
#[derive(Default)]
struct Threads {
    sender: Option<mpsc::Sender<Job>>,
    receiver: Option<Arc<Mutex<mpsc::Receiver<Job>>>>,
    handles: Vec<JoinHandle<()>>,
    stopped: bool,
}

/// Counters shared with the workers.
#[derive(Debug, Default)]
struct Shared {
    /// Set by shutdown: workers drop the jobs still queued.
    stopping: AtomicBool,
    queued: AtomicUsize,
    in_flight: AtomicUsize,
}

/// Worker threads that run [`Compiler`] jobs off the execution path. Threads start with the
/// first job; results go to each job's callback, on the worker thread.
pub struct WorkerPool {
    compiler: Arc<dyn Compiler>,
    name: &'static str,
    size: usize,
    threads: Mutex<Threads>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("compiler", &self.compiler)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// The pool has been shut down and takes no more jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the compile workers have been shut down")]
pub struct ShutDown;

impl WorkerPool {
    /// A pool of `size` threads (at least one) named `name`, compiling with `compiler`.
    pub fn new(compiler: Arc<dyn Compiler>, size: usize, name: &'static str) -> Self {
        Self {
            compiler,
            name,
            size: size.max(1),
            threads: Mutex::default(),
            shared: Arc::default(),
        }
    }

    /// Queues a compilation; `on_done` gets its result (and compile time) unless the pool is
    /// shut down first. A panic inside the compiler becomes an error.
    pub fn submit(&self, request: CompileRequest, on_done: OnDone) -> Result<(), ShutDown> {
        self.submit_with(Box::new(move |compiler: &dyn Compiler| {
            let start = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| compiler.compile(&request)))
                .unwrap_or_else(|_| {
                    Err(CompileError::Internal("the compilation panicked".into()).into())
                });
            on_done(result, start.elapsed());
        }))
    }

    /// Queues work that drives the compiler itself (to keep the object it makes, say). It must
    /// not panic: a panic ends nothing but is logged, and the work's result is lost.
    pub fn submit_with(&self, job: Job) -> Result<(), ShutDown> {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        if threads.stopped {
            return Err(ShutDown);
        }
        if threads.sender.is_none() {
            let (tx, rx) = mpsc::channel();
            threads.sender = Some(tx);
            threads.receiver = Some(Arc::new(Mutex::new(rx)));
        }
        if threads.handles.len() < self.size {
            self.spawn(&mut threads);
        }
        if threads.handles.is_empty() {
            return Err(ShutDown);
        }
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        let sent = threads
            .sender
            .as_ref()
            .is_some_and(|tx| tx.send(job).is_ok());
        if !sent {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(ShutDown);
        }
        Ok(())
    }

    fn spawn(&self, threads: &mut Threads) {
        let Some(rx) = threads.receiver.clone() else {
            return;
        };
        let (compiler, shared) = (self.compiler.clone(), self.shared.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("{}-{}", self.name, threads.handles.len()))
            .spawn(move || work(&*compiler, &rx, &shared));
        match spawned {
            Ok(handle) => threads.handles.push(handle),
            Err(e) => tracing::warn!(error = %e, pool = self.name, "cannot start a compile worker"),
        }
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// Compilations running now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Stops taking jobs, drops the queued ones, waits for the compilations in flight and joins
    /// every worker. Idempotent.
    pub fn shutdown(&self) {
        let handles = {
            let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
            threads.stopped = true;
            self.shared.stopping.store(true, Ordering::Release);
            // Workers leave their loop once the channel is closed and drained.
            threads.sender = None;
            threads.receiver = None;
            std::mem::take(&mut threads.handles)
        };
        for handle in handles {
            if handle.join().is_err() {
                tracing::warn!(pool = self.name, "a compile worker panicked");
            }
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A worker's loop: one job at a time until the channel closes.
fn work(compiler: &dyn Compiler, rx: &Mutex<mpsc::Receiver<Job>>, shared: &Shared) {
    loop {
        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(job) = job else {
            return;
        };
        shared.queued.fetch_sub(1, Ordering::Relaxed);
        if shared.stopping.load(Ordering::Acquire) {
            continue;
        }
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        if catch_unwind(AssertUnwindSafe(|| job(compiler))).is_err() {
            tracing::error!("a compile job panicked");
        }
        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    /// Blocks each compilation until released, and counts what it compiled.
    #[derive(Debug, Default)]
    struct Gate {
        open: Mutex<bool>,
        cv: std::sync::Condvar,
        compiled: AtomicUsize,
    }

    impl Compiler for Arc<Gate> {
        fn compile_object(&self, r: &CompileRequest, _: &str) -> Result<Vec<u8>, RuntimeError> {
            self.compile(r).map(|_| Vec::new())
        }

        fn compile(&self, _: &CompileRequest) -> Result<CompiledCode, RuntimeError> {
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.cv.wait(open).unwrap();
            }
            self.compiled.fetch_add(1, Ordering::SeqCst);
            Err(CompileError::Empty.into())
        }
    }

    fn request() -> CompileRequest {
        CompileRequest::new(
            B256::ZERO,
            SpecId::CANCUN,
            Arc::from(&[0u8][..]),
            CompileOptions::default(),
        )
    }

    #[test]
    fn shutdown_waits_for_the_job_in_flight_and_drops_the_queue() {
        let gate = Arc::new(Gate::default());
        let pool = Arc::new(WorkerPool::new(Arc::new(gate.clone()), 1, "test-pool"));
        let (tx, rx) = channel();
        for _ in 0..3 {
            let tx = tx.clone();
            pool.submit(
                request(),
                Box::new(move |r, _| tx.send(r.is_err()).unwrap()),
            )
            .unwrap();
        }
        while pool.in_flight() == 0 {
            std::thread::yield_now();
        }
        let stopper = {
            let pool = pool.clone();
            std::thread::spawn(move || pool.shutdown())
        };
        // Shutdown cannot finish while the job in flight is blocked.
        std::thread::sleep(Duration::from_millis(50));
        assert!(!stopper.is_finished());
        *gate.open.lock().unwrap() = true;
        gate.cv.notify_all();
        stopper.join().unwrap();
        assert_eq!(
            gate.compiled.load(Ordering::SeqCst),
            1,
            "queued jobs are dropped"
        );
        assert_eq!(rx.try_iter().count(), 1, "only the job in flight answered");
        assert_eq!(pool.submit(request(), Box::new(|_, _| {})), Err(ShutDown));
    }

    #[test]
    fn a_panicking_compiler_answers_with_an_error() {
        #[derive(Debug)]
        struct Panics;
        impl Compiler for Panics {
            fn compile_object(&self, _: &CompileRequest, _: &str) -> Result<Vec<u8>, RuntimeError> {
                panic!("boom")
            }

            fn compile(&self, _: &CompileRequest) -> Result<CompiledCode, RuntimeError> {
                panic!("boom")
            }
        }
        let pool = WorkerPool::new(Arc::new(Panics), 1, "test-panics");
        let (tx, rx) = channel();
        pool.submit(request(), Box::new(move |r, _| tx.send(r.err()).unwrap()))
            .unwrap();
        let err = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        assert!(matches!(
            err,
            Some(RuntimeError::Compile(CompileError::Internal(_)))
        ));
        pool.shutdown();
    }
}
