//! Compilation in helper processes: an object comes back and links; a hang, an abort, a memory
//! blow-up and a killed helper each cost only their job, and the next job gets a fresh helper.

use kiln_compiler::CompileOptions;
use kiln_runtime::{
    helper::HelperFault, CompileRequest, CompiledCode, Compiler, HelperConfig, HelperError,
    HelperProcess, RuntimeError,
};
use revm::primitives::{hardfork::SpecId, keccak256};
use std::{sync::Arc, time::Duration};

fn helpers(timeout: Duration) -> HelperProcess {
    let mut config = HelperConfig::new(env!("CARGO_BIN_EXE_kiln-compile-helper"), Vec::new());
    config.timeout = timeout;
    config.address_space_limit = Some(2 << 30);
    HelperProcess::new(config)
}

fn request(code: &[u8]) -> CompileRequest {
    CompileRequest::new(
        keccak256(code),
        SpecId::CANCUN,
        Arc::from(code),
        CompileOptions::default(),
    )
}

const ADD: &[u8] = &[0x60, 1, 0x60, 2, 0x01, 0x00];

fn compiles(helpers: &HelperProcess) {
    match helpers.compile(&request(ADD)) {
        Ok(CompiledCode::Jit(f)) => assert!(f.object_bytes() > 0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_helper_compiles_and_is_reused() {
    let helpers = helpers(Duration::from_secs(60));
    compiles(&helpers);
    compiles(&helpers);
    // A compile error is an answer, not a failure of the helper.
    let err = helpers.compile(&request(&[])).unwrap_err();
    assert!(
        matches!(err, RuntimeError::Helper(HelperError::Compile(_))),
        "{err}"
    );
    compiles(&helpers);
    assert_eq!(helpers.restarts(), 0);
}

#[test]
fn a_hanging_helper_is_killed_at_the_timeout() {
    // Long enough for a fresh helper to compile a small code on a busy machine.
    let helpers = helpers(Duration::from_secs(5));
    let mut hang = request(ADD);
    hang.helper_fault = Some(HelperFault::Hang);
    let err = helpers.compile(&hang).unwrap_err();
    assert!(
        matches!(err, RuntimeError::Helper(HelperError::Timeout(_))),
        "{err}"
    );
    assert_eq!((helpers.timeouts(), helpers.restarts()), (1, 1));
    compiles(&helpers);
}

#[test]
fn an_aborting_helper_costs_its_job() {
    let helpers = helpers(Duration::from_secs(60));
    let mut abort = request(ADD);
    abort.helper_fault = Some(HelperFault::Abort);
    let err = helpers.compile(&abort).unwrap_err();
    assert!(
        matches!(err, RuntimeError::Helper(HelperError::Died(_))),
        "{err}"
    );
    assert_eq!(helpers.restarts(), 1);
    compiles(&helpers);
}

#[test]
fn a_helper_that_exhausts_its_memory_limit_costs_its_job() {
    let mut helpers = helpers(Duration::from_secs(60));
    helpers.set_address_space_limit(Some(1 << 30));
    let mut hog = request(ADD);
    hog.helper_fault = Some(HelperFault::ExhaustMemory);
    let err = helpers.compile(&hog).unwrap_err();
    assert!(
        matches!(err, RuntimeError::Helper(HelperError::Died(_))),
        "{err}"
    );
    compiles(&helpers);
}

#[test]
fn a_killed_helper_costs_its_job() {
    let helpers = Arc::new(helpers(Duration::from_secs(60)));
    let killer = {
        let helpers = helpers.clone();
        std::thread::spawn(move || loop {
            if let Some(pid) = helpers.busy_pids().first() {
                // SAFETY: sends SIGKILL to a child process this test's helper pool started.
                unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        })
    };
    let mut hang = request(ADD);
    hang.helper_fault = Some(HelperFault::Hang);
    let err = helpers.compile(&hang).unwrap_err();
    killer.join().unwrap();
    assert!(
        matches!(err, RuntimeError::Helper(HelperError::Died(_))),
        "{err}"
    );
    compiles(&helpers);
}

#[test]
fn a_missing_helper_program_is_a_clear_error() {
    let helpers = HelperProcess::new(HelperConfig::new("/nonexistent/kiln-helper", Vec::new()));
    let err = helpers.compile(&request(ADD)).unwrap_err();
    assert!(
        matches!(err, RuntimeError::Helper(HelperError::Spawn { .. })),
        "{err}"
    );
}
