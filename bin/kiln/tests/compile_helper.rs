//! `kiln compile-helper`: the binary serves the hot-code service's isolated compilations.

use kiln_compiler::CompileOptions;
use kiln_runtime::{CompileRequest, CompiledCode, Compiler, HelperConfig, HelperProcess};
use revm::primitives::{hardfork::SpecId, keccak256};
use std::sync::Arc;

#[test]
fn the_kiln_binary_is_a_compile_helper() {
    let helpers = HelperProcess::new(HelperConfig::new(
        env!("CARGO_BIN_EXE_kiln"),
        vec!["compile-helper".into()],
    ));
    let code: &[u8] = &[0x60, 1, 0x60, 2, 0x01, 0x00];
    let request = CompileRequest::new(
        keccak256(code),
        SpecId::CANCUN,
        Arc::from(code),
        CompileOptions::default(),
    );
    for _ in 0..2 {
        match helpers.compile(&request) {
            Ok(CompiledCode::Jit(f)) => assert!(f.object_bytes() > 0),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(helpers.restarts(), 0);
}
