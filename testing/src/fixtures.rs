//! Where the Ethereum consensus-test fixtures live: one definition for the tools and the tests
//! that run them.

use std::path::PathBuf;

/// Environment variable that overrides the fixtures root.
pub const TESTS_DIR_ENV: &str = "KILN_TESTS_DIR";

/// Root of the `ethereum/tests` checkout (the folder holding `GeneralStateTests/`).
///
/// `KILN_TESTS_DIR` wins when set and non-empty. Otherwise the default is
/// `../shared/fixtures/ethereum-tests` next to the workspace root; it is anchored at the
/// workspace's source location rather than the current directory so that `cargo test` and
/// the binary agree no matter where they are started from.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os(TESTS_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/fixtures/ethereum-tests");
            // Canonical form only for readable messages; a missing folder keeps the raw path.
            dir.canonicalize().unwrap_or(dir)
        }
    }
}

/// Environment variable that turns a missing fixture into a test failure (CI sets it to `1`).
pub const REQUIRE_ENV: &str = "KILN_REQUIRE_FIXTURES";

/// `rel` under [`fixtures_dir`], for a test: `None` when it is absent, after printing that the
/// test skipped and why; a panic instead when `KILN_REQUIRE_FIXTURES=1`.
pub fn fixture_or_skip(rel: &str) -> Option<PathBuf> {
    let path = fixtures_dir().join(rel);
    if path.exists() {
        return Some(path);
    }
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!(
            "fixtures not found at {} and {REQUIRE_ENV}=1",
            path.display()
        );
    }
    println!(
        "skipped: fixtures not found at {} (set {TESTS_DIR_ENV})",
        path.display()
    );
    None
}
