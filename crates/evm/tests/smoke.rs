use kiln_evm::{difftest::*, Runtime};
use revm::primitives::hardfork::SpecId;

#[test]
fn add_and_return() {
    // PUSH1 2, PUSH1 3, ADD, PUSH1 0, MSTORE, PUSH1 32, PUSH1 0, RETURN
    let code = vec![0x60, 2, 0x60, 3, 0x01, 0x60, 0, 0x52, 0x60, 32, 0x60, 0, 0xf3];
    let rt = Runtime::jit();
    let (a, b) = compare(&Case::call(code, 100_000, SpecId::CANCUN), &rt);
    assert_eq!(a, b);
    assert!(rt.stats.compiled_frames.load(std::sync::atomic::Ordering::Relaxed) > 0);
    println!("{a:?}");
}
