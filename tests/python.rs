//! The Python package (`python/lexecon`) against the built binary: its
//! unit tests, run by `python3 -m unittest` with `PYTHONPATH=python`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Env, LEXECON};

#[test]
fn the_python_package_decides_through_the_binary() {
    if Command::new("python3").arg("--version").output().is_err() {
        panic!("python3 must be installed to run this test");
    }
    let env = Env::new();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policy =
        env.policy(&std::fs::read_to_string(manifest.join("tests/gate/policy.yaml")).unwrap());
    let out = Command::new("python3")
        .args(["-m", "unittest", "-v", "test_decide"])
        .current_dir(manifest.join("python/tests"))
        .env("PYTHONPATH", manifest.join("python"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("LEXECON_BIN", LEXECON)
        .env("LEXECON_TEST_POLICY", &policy)
        .env("LEXECON_TEST_KEYS", &env.keys)
        .env("LEXECON_TEST_LEDGER", &env.ledger)
        .env_remove("LEXECON_GATE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python tests failed:\n{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    env.assert_valid();
}
