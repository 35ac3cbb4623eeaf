//! [`CompilePolicy::OnFirstSight`](super::CompilePolicy::OnFirstSight): compile on the calling
//! thread the first time a code is looked up.

use crate::{runtime::Lookup, CodeKey, Runtime};

/// The entry for `key`, compiled now (the whole code) if there is none.
pub(crate) fn lookup(rt: &Runtime, key: CodeKey, code: impl FnOnce() -> Vec<u8>) -> Lookup {
    if let Some(entry) = rt.store().get(key) {
        return entry.into();
    }
    // Compiled outside any lock: the execution path never waits on another compilation. Two
    // threads may compile the same code; the first result is kept.
    let entry = rt.compile_entry(key, &code(), None);
    rt.store().insert_if_absent(key, entry).into()
}
