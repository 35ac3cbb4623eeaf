//! JIT objects compiled in one place and linked in another (a compile helper process, the
//! artifact cache): a good object links, a malformed one is an error.

use kiln_compiler::{compile_object, link_jit_object, next_entry_name, CompileOptions};
use revm::primitives::hardfork::SpecId;

#[test]
fn an_object_links_under_the_entry_name_it_was_compiled_for() {
    let code = [0x60, 1, 0x60, 2, 0x01, 0x00];
    let entry = next_entry_name();
    let object = compile_object(
        &code,
        SpecId::CANCUN,
        &CompileOptions::default(),
        None,
        &[],
        &entry,
    )
    .unwrap();
    assert!(object.starts_with(b"\x7fELF") || object.len() > 64);
    let f = link_jit_object(&object, &entry).unwrap();
    assert_eq!(f.object_bytes(), object.len());
    // Another name than the object's is not found.
    let other = next_entry_name();
    let again = compile_object(
        &code,
        SpecId::CANCUN,
        &CompileOptions::default(),
        None,
        &[],
        &other,
    )
    .unwrap();
    assert!(link_jit_object(&again, &next_entry_name()).is_err());
}

#[test]
fn a_malformed_object_is_an_error() {
    for bytes in [
        &b""[..],
        b"not an object file",
        b"\x7fELF\x02\x01\x01\x00truncated",
    ] {
        assert!(link_jit_object(bytes, &next_entry_name()).is_err());
    }
}
