//! Bad bytecode never panics or aborts: compilation succeeds or returns an error naming why.

use kiln_compiler::{compile_jit, compile_to_bytes, CompileError, CompileOptions, Emit};
use revm::primitives::hardfork::SpecId;

fn compile(code: &[u8]) -> Result<(), CompileError> {
    compile_jit(code, SpecId::CANCUN, &CompileOptions::default(), None).map(|_| ())
}

#[test]
fn empty_code_is_refused_with_a_reason() {
    let e = compile(&[]).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
}

#[test]
fn truncated_push_at_the_end_compiles() {
    for n in 1..=32u8 {
        let mut code = vec![0x60 + n - 1];
        code.extend(std::iter::repeat_n(0xab, n as usize - 1));
        compile(&code).unwrap();
    }
}

#[test]
fn only_invalid_opcodes_compiles() {
    compile(&[0xfe; 100]).unwrap();
    let unknown: Vec<u8> = (0..=255u8)
        .filter(|o| revm::bytecode::opcode::OpCode::new(*o).is_none())
        .collect();
    compile(&unknown).unwrap();
}

#[test]
fn all_jumpdests_24k_compiles() {
    let code = vec![0x5b; 24 * 1024];
    compile(&code).unwrap();
}

#[test]
fn one_mib_blob_is_refused_with_a_reason() {
    // Pseudo-random bytes: a mix of every opcode, PUSH data and JUMPDESTs.
    let mut x = 0x9e3779b97f4a7c15u64;
    let code: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let e = compile(&code).unwrap_err();
    assert!(matches!(e, CompileError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("exceeds"), "{e}");
    // The same bytes within the limit compile (random code: every opcode, truncated PUSHes).
    compile(&code[..24 * 1024]).unwrap();
}

#[test]
fn every_emit_kind_works() {
    let code = [
        0x60, 1, 0x60, 2, 0x01, 0x60, 0, 0x52, 0x60, 32, 0x60, 0, 0xf3,
    ];
    for emit in [Emit::Ir, Emit::Asm, Emit::Obj, Emit::So] {
        let out = compile_to_bytes(
            &code,
            SpecId::CANCUN,
            &CompileOptions::default(),
            None,
            emit,
        )
        .unwrap();
        assert!(!out.is_empty());
    }
}
