//! Everyday toolchains under the shipped policies: each scenario runs once
//! natively and once supervised under `policies/default.yaml` and
//! `policies/ci.yaml`, each time in a fresh workspace and a fresh home, and
//! must end with the native exit status and **no block at all**.
//!
//! The homes and workspaces are under cargo's target directory, not under
//! `/tmp`: the policies allow writes in `/tmp`, so a home there would hide
//! exactly the false positives this suite is for. Nothing is downloaded:
//! packages come from local files the scenario makes (a wheel, an npm
//! tarball, a path dependency).

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies")
        .join(name)
}

/// A fresh directory outside `/tmp` (removed on drop).
fn scratch() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("toolchains");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&base)
        .unwrap()
}

/// The environment a user's shell would give the tool, with `home` as HOME.
fn user_env(c: &mut Command, home: &Path) {
    let rustup_home = std::env::var_os("RUSTUP_HOME").unwrap_or_else(|| {
        let real = std::env::var_os("HOME").unwrap_or_default();
        Path::new(&real).join(".rustup").into_os_string()
    });
    let path = std::env::var_os("PATH").unwrap_or_default();
    c.env_clear()
        .env("PATH", path)
        .env("HOME", home)
        .env("CARGO_HOME", home.join(".cargo"))
        .env("RUSTUP_HOME", rustup_home)
        .env("LANG", "C.UTF-8");
    if let Some(t) = std::env::var_os("RUSTUP_TOOLCHAIN") {
        c.env("RUSTUP_TOOLCHAIN", t);
    }
}

/// Runs `script` with `sh -e` natively, then supervised under each shipped
/// policy; asserts the same exit status (0) and zero blocks.
fn scenario(script: &str) {
    let native = scratch();
    let (ws, home) = (native.path().join("ws"), native.path().join("home"));
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let mut c = Command::new("/bin/sh");
    c.args(["-ec", script]).current_dir(&ws);
    user_env(&mut c, &home);
    let out = c.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the scenario fails natively:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );

    for policy in ["default.yaml", "ci.yaml"] {
        let env = Env::new();
        let run = scratch();
        let (ws, home) = (run.path().join("ws"), run.path().join("home"));
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        let summary = env.root.join("summary.json");
        let summary_arg = summary.to_string_lossy().into_owned();
        let mut c = env.supervise_cmd_with(
            &shipped(policy),
            &["--json-summary", &summary_arg],
            &[OsStr::new("/bin/sh"), OsStr::new("-ec"), OsStr::new(script)],
        );
        c.current_dir(&ws);
        user_env(&mut c, &home);
        let out = c.output().unwrap();
        let text = std::fs::read_to_string(&summary).unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(
            json["blocked"].as_array().map(Vec::len),
            Some(0),
            "{policy}: blocked {}:\n{}",
            json["blocked"],
            stderr(&out)
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{policy}: the scenario failed supervised:\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
        env.assert_valid();
    }
}

#[test]
fn git_at_the_workspace_root() {
    scenario(
        "git init -q .
git config user.email dev@example.invalid
git config user.name dev
echo a > a.txt; mkdir -p build; echo o > build/out.o; echo 'build/' > .gitignore
git add -A
git commit -qm one
echo b > b.txt
git stash -u -q
git stash pop -q
git add -A
git commit -qm two
git clean -fdxq
git gc -q
test -z \"$(git status --porcelain)\"",
    );
}

#[test]
fn cargo_build_and_test_with_a_path_dependency() {
    scenario(
        "cargo new -q --vcs none --lib lib
cargo new -q --vcs none app
printf 'lib = { path = \"../lib\" }\\n' >> app/Cargo.toml
cd app
cargo build -q --offline
cargo test -q --offline",
    );
}

#[test]
fn npm_install_from_a_local_tarball() {
    if Command::new("npm").arg("--version").output().is_err() {
        panic!("npm is not installed (the CI script installs it)");
    }
    scenario(
        "mkdir lib app
cd lib
printf '{\"name\":\"demo-lib\",\"version\":\"1.0.0\",\"main\":\"index.js\"}' > package.json
echo 'module.exports = 42' > index.js
npm pack --silent > /dev/null
cd ../app
printf '{\"name\":\"app\",\"version\":\"1.0.0\"}' > package.json
npm install --offline --no-audit --no-fund --silent ../lib/demo-lib-1.0.0.tgz
node -e 'process.exit(require(\"demo-lib\") === 42 ? 0 : 1)'",
    );
}

/// A venv, a package installed from a local wheel, and pytest with
/// `tmp_path`, output capture and `tempfile.TemporaryFile` (an `O_TMPFILE`
/// open in `/tmp`).
#[test]
fn venv_pip_install_and_pytest() {
    let has_pytest = Command::new("/usr/bin/python3")
        .args(["-c", "import pytest, venv, ensurepip"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_pytest,
        "needs /usr/bin/python3 with venv and pytest (Debian: python3-venv python3-pytest; the CI script installs them)"
    );
    scenario(
        "/usr/bin/python3 -m venv --system-site-packages .venv
mkdir wheels
/usr/bin/python3 - <<'PY'
import zipfile
files = {
    'demo_pkg/__init__.py': 'VALUE = 42\\n',
    'demo_pkg-1.0.dist-info/METADATA': 'Metadata-Version: 2.1\\nName: demo_pkg\\nVersion: 1.0\\n',
    'demo_pkg-1.0.dist-info/WHEEL': 'Wheel-Version: 1.0\\nGenerator: hand\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n',
}
record = ''.join(f'{p},,\\n' for p in files) + 'demo_pkg-1.0.dist-info/RECORD,,\\n'
with zipfile.ZipFile('wheels/demo_pkg-1.0-py3-none-any.whl', 'w') as z:
    for p, t in files.items():
        z.writestr(p, t)
    z.writestr('demo_pkg-1.0.dist-info/RECORD', record)
PY
.venv/bin/pip install -q --no-index --find-links wheels demo_pkg
cat > test_demo.py <<'PY'
import tempfile
import demo_pkg

def test_everyday(tmp_path, capsys):
    (tmp_path / 'x').write_text('y')
    print('hello')
    with tempfile.TemporaryFile() as f:
        f.write(b'z')
    with tempfile.TemporaryFile(dir='.') as f:
        f.write(b'z')
    assert demo_pkg.VALUE == 42
    assert capsys.readouterr().out == 'hello\\n'
PY
.venv/bin/python -m pytest -q",
    );
}
