//! Compilation in a helper process: the child turns bytecode into a relocatable object, the
//! node links the object into its own JIT. An LLVM crash, hang or memory blow-up then costs one
//! job: the child dies or is killed, the job fails with the reason, and the next job gets a
//! fresh child. The node never goes down with it.
//!
//! The child is any program that calls [`serve_stdio`] (the `kiln compile-helper` subcommand,
//! or the `kiln-compile-helper` binary of this crate). Requests and answers are frames on its
//! stdin and stdout: a little-endian `u32` length, then the bytes. A request is two frames (a
//! JSON header, then the code); an answer is one tag byte (0: object, 1: compile error) and
//! one frame (the object, or the error's text).

use crate::{workers::CompileRequest, Compiler, RuntimeError};
use kiln_compiler::{CompileOptions, Coverage};
use revm::primitives::{hardfork::SpecId, B256};
use serde::{Deserialize, Serialize};
use std::{
    ffi::OsString,
    io::{self, BufReader, BufWriter, Read, Write},
    path::PathBuf,
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

/// Frames larger than this are refused: a corrupt length must not make either side allocate
/// gigabytes.
const MAX_FRAME: usize = 256 * 1024 * 1024;

/// A failure a helper stages on purpose, so that tests can show each one costs only its job.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelperFault {
    /// Never answer.
    Hang,
    /// Abort, as LLVM does on a fatal error.
    Abort,
    /// Allocate until the address-space limit stops it.
    ExhaustMemory,
}

/// Why a helper could not compile a job (the job's code stays on the interpreter).
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// The helper could not be started.
    #[error("cannot start the compile helper {program}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Talking to the helper failed.
    #[error("compile helper I/O")]
    Io(#[from] io::Error),
    /// The helper did not answer in time and was killed.
    #[error("the compile helper took longer than {0:?} and was killed")]
    Timeout(Duration),
    /// The helper died (a crash, an abort, the memory limit, a kill).
    #[error("the compile helper died ({0})")]
    Died(ExitStatus),
    /// The helper answered with something that is not a frame of the protocol.
    #[error("compile helper protocol: {0}")]
    Protocol(String),
    /// The compiler in the helper refused or failed.
    #[error("compile helper: {0}")]
    Compile(String),
}

/// The request header: everything but the code.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    hash: B256,
    spec: u8,
    entry: String,
    options: CompileOptions,
    coverage: Option<Vec<usize>>,
    #[serde(default)]
    params: Vec<u32>,
    fault: Option<HelperFault>,
}

fn write_frame(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(bytes)
}

fn read_frame(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut bytes = vec![0u8; len];
    input.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// The child's side: answers requests from `input` on `output` until `input` closes.
pub fn serve(input: impl Read, output: impl Write) -> io::Result<()> {
    let (mut input, mut output) = (BufReader::new(input), BufWriter::new(output));
    loop {
        let header = match read_frame(&mut input) {
            Ok(h) => h,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let code = read_frame(&mut input)?;
        let header: Header = serde_json::from_slice(&header)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        stage(header.fault);
        let spec = SpecId::try_from_u8(header.spec).unwrap_or(SpecId::OSAKA);
        let coverage: Option<Coverage> = header.coverage.map(|pcs| pcs.into_iter().collect());
        match kiln_compiler::compile_object(
            &code,
            spec,
            &header.options,
            coverage.as_ref(),
            &header.params,
            &header.entry,
        ) {
            Ok(object) => {
                output.write_all(&[0])?;
                write_frame(&mut output, &object)?;
            }
            Err(e) => {
                output.write_all(&[1])?;
                write_frame(&mut output, e.to_string().as_bytes())?;
            }
        }
        output.flush()?;
    }
}

/// Carries out a staged failure.
fn stage(fault: Option<HelperFault>) {
    match fault {
        None => {}
        Some(HelperFault::Hang) => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        Some(HelperFault::Abort) => std::process::abort(),
        Some(HelperFault::ExhaustMemory) => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                // Touch every page so that the memory is really taken.
                hoard.push(vec![1u8; 64 << 20]);
            }
        }
    }
}

/// The helper program's `main`: limits its own address space to `address_space_limit` bytes
/// (if given), then serves stdin and stdout.
pub fn serve_stdio(address_space_limit: Option<u64>) -> io::Result<()> {
    if let Some(limit) = address_space_limit {
        limit_address_space(limit)?;
    }
    serve(io::stdin().lock(), io::stdout().lock())
}

/// Sets this process's RLIMIT_AS.
fn limit_address_space(bytes: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: `setrlimit` reads the struct passed by reference and changes only this process.
    if unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How the node starts its helpers.
#[derive(Clone, Debug)]
pub struct HelperConfig {
    /// The program (by default this executable).
    pub program: PathBuf,
    /// Its arguments (by default `compile-helper`); `--address-space-limit N` is appended.
    pub args: Vec<OsString>,
    /// A job that takes longer kills its helper.
    pub timeout: Duration,
    /// The helper's RLIMIT_AS, in bytes.
    pub address_space_limit: Option<u64>,
}

impl HelperConfig {
    /// Helpers run as `program args...`, with a 60 s timeout and a 4 GiB address space.
    pub fn new(program: impl Into<PathBuf>, args: Vec<OsString>) -> Self {
        Self {
            program: program.into(),
            args,
            timeout: Duration::from_secs(60),
            address_space_limit: Some(4 << 30),
        }
    }

    /// This executable's `compile-helper` subcommand (the `kiln` binary has one).
    pub fn this_executable() -> io::Result<Self> {
        Ok(Self::new(
            std::env::current_exe()?,
            vec!["compile-helper".into()],
        ))
    }
}

/// One running helper: its process, its stdin, and the thread that reads its answers.
struct Helper {
    child: Child,
    stdin: BufWriter<ChildStdin>,
    answers: mpsc::Receiver<io::Result<Answer>>,
    reader: Option<JoinHandle<()>>,
}

type Answer = Result<Vec<u8>, String>;

impl Helper {
    fn spawn(config: &HelperConfig) -> Result<Self, HelperError> {
        let mut command = Command::new(&config.program);
        command.args(&config.args);
        if let Some(limit) = config.address_space_limit {
            command.arg("--address-space-limit").arg(limit.to_string());
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| HelperError::Spawn {
                program: config.program.display().to_string(),
                source,
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HelperError::Protocol("no pipes to the helper".into()));
        };
        let (tx, answers) = mpsc::channel();
        let reader = std::thread::Builder::new()
            .name("kiln-helper-reader".into())
            .spawn(move || {
                let mut out = BufReader::new(stdout);
                loop {
                    let answer = (|| {
                        let mut tag = [0u8];
                        out.read_exact(&mut tag)?;
                        let payload = read_frame(&mut out)?;
                        Ok(match tag[0] {
                            0 => Ok(payload),
                            _ => Err(String::from_utf8_lossy(&payload).into_owned()),
                        })
                    })();
                    let end = answer.is_err();
                    if tx.send(answer).is_err() || end {
                        return;
                    }
                }
            })
            .map_err(HelperError::Io)?;
        Ok(Self {
            child,
            stdin: BufWriter::new(stdin),
            answers,
            reader: Some(reader),
        })
    }

    /// Kills the process and joins its reader.
    fn kill(mut self) -> Option<ExitStatus> {
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = reader.join();
        }
    }
}

/// A [`Compiler`] that compiles in helper processes, one per concurrent job, started on demand
/// and replaced after any failure of the process.
pub struct HelperProcess {
    config: HelperConfig,
    idle: Mutex<Vec<Helper>>,
    restarts: AtomicU64,
    timeouts: AtomicU64,
    started: AtomicU64,
    /// Process ids of helpers busy with a job (tests kill them).
    busy: Mutex<Vec<u32>>,
}

impl std::fmt::Debug for HelperProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelperProcess")
            .field("config", &self.config)
            .field("restarts", &self.restarts())
            .field("timeouts", &self.timeouts())
            .finish_non_exhaustive()
    }
}

impl HelperProcess {
    /// Helpers started as `config` says.
    pub fn new(config: HelperConfig) -> Self {
        Self {
            config,
            idle: Mutex::default(),
            restarts: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            started: AtomicU64::new(0),
            busy: Mutex::default(),
        }
    }

    /// Changes the address-space limit of helpers started from now on.
    pub fn set_address_space_limit(&mut self, bytes: Option<u64>) {
        self.config.address_space_limit = bytes;
    }

    /// Helpers started again after one died or was killed.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Jobs that timed out.
    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }

    /// Process ids of the helpers running a job now.
    pub fn busy_pids(&self) -> Vec<u32> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops every idle helper (busy ones stop when their job ends and the pool is gone).
    pub fn shutdown(&self) {
        for helper in std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner())) {
            helper.kill();
        }
    }

    fn helper(&self) -> Result<Helper, HelperError> {
        if let Some(h) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(h);
        }
        let helper = Helper::spawn(&self.config)?;
        // Every start after the first few is a replacement of a helper that died; counting
        // starts beyond the concurrent ones would need the pool size, so restarts are counted
        // where a helper is discarded instead.
        self.started.fetch_add(1, Ordering::Relaxed);
        Ok(helper)
    }

    /// Sends one job to `helper` and waits for its answer.
    fn run(
        &self,
        helper: &mut Helper,
        request: &CompileRequest,
        entry: &str,
    ) -> Result<Answer, HelperError> {
        let header = Header {
            hash: request.hash,
            spec: request.spec as u8,
            entry: entry.to_string(),
            options: request.options,
            coverage: request.coverage.as_ref().map(|c| c.pcs().collect()),
            params: request.params.clone(),
            fault: request.helper_fault,
        };
        let header =
            serde_json::to_vec(&header).map_err(|e| HelperError::Protocol(e.to_string()))?;
        write_frame(&mut helper.stdin, &header)?;
        write_frame(&mut helper.stdin, &request.code)?;
        helper.stdin.flush()?;
        match helper.answers.recv_timeout(self.config.timeout) {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(HelperError::Protocol("the helper closed its output".into()))
            }
            Ok(Err(e)) => Err(HelperError::Io(e)),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(HelperError::Timeout(self.config.timeout)),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(HelperError::Protocol("the helper's reader stopped".into()))
            }
        }
    }
}

impl Drop for HelperProcess {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Compiler for HelperProcess {
    fn helper_counts(&self) -> Option<(u64, u64)> {
        Some((self.restarts(), self.timeouts()))
    }

    fn compile_object(
        &self,
        request: &CompileRequest,
        entry: &str,
    ) -> Result<Vec<u8>, RuntimeError> {
        let mut helper = self.helper()?;
        let pid = helper.child.id();
        self.busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pid);
        let answer = self.run(&mut helper, request, entry);
        self.busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| *p != pid);
        match answer {
            Ok(answer) => {
                self.idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(helper);
                Ok(answer.map_err(HelperError::Compile)?)
            }
            Err(e) => {
                if matches!(e, HelperError::Timeout(_)) {
                    self.timeouts.fetch_add(1, Ordering::Relaxed);
                }
                self.restarts.fetch_add(1, Ordering::Relaxed);
                let status = helper.kill();
                let e = match (e, status) {
                    // A helper that died mid-job: say how.
                    (HelperError::Protocol(_) | HelperError::Io(_), Some(status))
                        if !status.success() =>
                    {
                        HelperError::Died(status)
                    }
                    (e, _) => e,
                };
                tracing::warn!(hash = %request.hash, error = %e, "compile helper failed; the job is dropped and the helper replaced");
                Err(e.into())
            }
        }
    }
}
