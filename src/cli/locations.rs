//! Where Lexecon keeps its keys and ledgers, found the same way by every
//! command.
//!
//! Following the XDG base-directory conventions, nothing lives in the
//! workspace (so that `git add -A`, `tar czf x.tgz .` or `grep -r .` in the
//! workspace never meets a file the supervisor refuses to the tree):
//!
//! - **keys**: `--keys DIR` / `--dir DIR` / `--pubkey F` where a command has
//!   it, else `$LEXECON_KEYS`, else `$XDG_CONFIG_HOME/lexecon/keys`, else
//!   `~/.config/lexecon/keys`;
//! - **ledger**: the command's ledger argument, else `$LEXECON_LEDGER`, else
//!   the workspace's ledger `$XDG_STATE_HOME/lexecon/ledgers/<id>/ledger.jsonl`
//!   (`~/.local/state/lexecon/…` by default), one per workspace. `<id>` is
//!   the workspace directory's name (sanitised) and 12 hex digits of the
//!   SHA-256 of its canonical path, e.g. `myproject-3f2a9c1b7d4e`; a file
//!   `workspace` next to the ledger names the path.
//!
//! `supervise` uses the ledger of its workspace (`--workspace DIR`, else
//! the current directory). The other commands look for the ledger of the
//! current directory, then of each directory above it, and use the first
//! that exists, so they work from anywhere inside the workspace.
//!
//! **Earlier versions** kept the ledger in `<workspace>/.audit/ledger.jsonl`
//! and the keys in `.lexecon/`. When a run finds such a ledger and the
//! workspace has no ledger at the new place yet, it moves the file there
//! (saying so once), so the workspace keeps one history. Keys are never
//! moved: they may be shared by several workspaces; a run that finds none
//! at the new place but an old `.lexecon/` says how to move it.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use sha2::{Digest as _, Sha256};

use crate::escape;
use crate::ledger::keys;

/// Overrides the key directory.
pub const KEYS_ENV: &str = "LEXECON_KEYS";
/// Overrides the ledger file.
pub const LEDGER_ENV: &str = "LEXECON_LEDGER";
/// The ledger's file name inside its workspace's directory.
pub const LEDGER_FILE: &str = "ledger.jsonl";
/// The file next to a workspace's ledger naming the workspace.
pub const WORKSPACE_FILE: &str = "workspace";
/// Where earlier versions kept a workspace's ledger, relative to it.
pub const LEGACY_LEDGER: &str = ".audit/ledger.jsonl";
/// Where earlier versions kept the keys, relative to the current directory.
pub const LEGACY_KEYS: &str = ".lexecon";

/// How a location was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Named on the command line.
    Argument,
    /// From `$LEXECON_KEYS` or `$LEXECON_LEDGER`.
    Env,
    /// The default location.
    Default,
}

/// A key directory and how it was chosen.
#[derive(Debug, Clone)]
pub struct Keys {
    pub dir: PathBuf,
    pub source: Source,
}

/// A ledger file and how it was chosen.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub path: PathBuf,
    pub source: Source,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// An XDG base directory: `$var` when it is an absolute path (relative
/// values are ignored, as the specification says), else `$HOME/fallback`.
fn base_dir(var: &str, fallback: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = env_path(var).filter(|p| p.is_absolute()) {
        return Ok(p);
    }
    match env_path("HOME").filter(|h| h.is_absolute()) {
        Some(home) => Ok(home.join(fallback)),
        None => bail!(
            "cannot tell where Lexecon's files go: neither ${var} nor $HOME is set to an absolute path; set one of them, or name the files (--keys DIR, --ledger FILE, ${KEYS_ENV}, ${LEDGER_ENV})"
        ),
    }
}

/// The default key directory: `$XDG_CONFIG_HOME/lexecon/keys`.
pub fn default_keys_dir() -> anyhow::Result<PathBuf> {
    Ok(base_dir("XDG_CONFIG_HOME", ".config")?.join("lexecon/keys"))
}

/// The key directory: `arg`, else `$LEXECON_KEYS`, else the default.
pub fn keys(arg: Option<&Path>) -> anyhow::Result<Keys> {
    if let Some(a) = arg {
        return Ok(Keys {
            dir: a.to_path_buf(),
            source: Source::Argument,
        });
    }
    if let Some(e) = env_path(KEYS_ENV) {
        return Ok(Keys {
            dir: e,
            source: Source::Env,
        });
    }
    Ok(Keys {
        dir: default_keys_dir()?,
        source: Source::Default,
    })
}

/// The directory holding every workspace's ledger directory:
/// `$XDG_STATE_HOME/lexecon/ledgers`.
pub fn ledgers_root() -> anyhow::Result<PathBuf> {
    Ok(base_dir("XDG_STATE_HOME", ".local/state")?.join("lexecon/ledgers"))
}

/// The name of a workspace's ledger directory: its directory name, with
/// every byte but ASCII letters, digits, `-`, `_` and `.` replaced by `_`
/// (leading dots dropped, at most 40 bytes), a dash, and the first 12 hex
/// digits of the SHA-256 of `canonical`, its canonical path.
pub fn workspace_id(canonical: &Path) -> String {
    let base = canonical.file_name().map(|n| n.as_bytes()).unwrap_or(b"");
    let mut name: String = base
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
                b as char
            } else {
                '_'
            }
        })
        .collect();
    name = name.trim_start_matches('.').chars().take(40).collect();
    if name.is_empty() {
        name = if canonical == Path::new("/") {
            "root".into()
        } else {
            "workspace".into()
        };
    }
    let hash = hex::encode(Sha256::digest(canonical.as_os_str().as_bytes()));
    format!("{name}-{}", &hash[..12])
}

/// The default ledger of the workspace `canonical` (a canonical path).
pub fn workspace_ledger(canonical: &Path) -> anyhow::Result<PathBuf> {
    Ok(ledgers_root()?
        .join(workspace_id(canonical))
        .join(LEDGER_FILE))
}

/// The ledger a run in workspace `ws` (canonical) writes: `arg`, else
/// `$LEXECON_LEDGER`, else the workspace's ledger.
pub fn ledger_for_run(arg: Option<&Path>, ws: &Path) -> anyhow::Result<Ledger> {
    if let Some(a) = arg {
        return Ok(Ledger {
            path: a.to_path_buf(),
            source: Source::Argument,
        });
    }
    if let Some(e) = env_path(LEDGER_ENV) {
        return Ok(Ledger {
            path: e,
            source: Source::Env,
        });
    }
    Ok(Ledger {
        path: workspace_ledger(ws)?,
        source: Source::Default,
    })
}

/// The ledger a command other than `supervise` reads: `arg`, else `$LEXECON_LEDGER`, else the ledger of `cwd`
/// or of the nearest directory above it that has one. `name_it` says how
/// the command takes a ledger (`LEDGER`, `--ledger FILE`), for the error.
pub fn find_ledger(arg: Option<&Path>, cwd: &Path, name_it: &str) -> anyhow::Result<Ledger> {
    if arg.is_some() || env_path(LEDGER_ENV).is_some() {
        return ledger_for_run(arg, cwd);
    }
    let start = std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_path_buf());
    let root = ledgers_root()?;
    let mut legacy = None;
    for dir in start.ancestors() {
        let path = root.join(workspace_id(dir)).join(LEDGER_FILE);
        if path.is_file() {
            return Ok(Ledger {
                path,
                source: Source::Default,
            });
        }
        if legacy.is_none() && dir.join(LEGACY_LEDGER).is_file() {
            legacy = Some(dir.join(LEGACY_LEDGER));
        }
    }
    let own = root.join(workspace_id(&start)).join(LEDGER_FILE);
    let mut msg = format!(
        "no ledger found for {} or any directory above it (a workspace's ledger is kept in {}/<name>-<hash>/{LEDGER_FILE}; this directory's would be {}). Run this command in the workspace of a supervised run (or a directory below it), or name the ledger with {name_it}",
        escape::path(&start),
        escape::path(&root),
        escape::path(&own),
    );
    if let Some(old) = legacy {
        msg.push_str(&format!(
            "; {} is a ledger written by an earlier version of Lexecon: name it with {name_it} (the next supervised run in that workspace moves it to the new place)",
            escape::path(&old)
        ));
    }
    bail!("{msg}")
}

/// For a run's default ledger (of workspace `ws`): creates its directory
/// (mode 0700, dedicated to the ledger), writes the `workspace` file next to
/// it, and moves a ledger left in the workspace by an earlier version to
/// it when there is none yet. Returns the notice to print once, if any.
pub fn prepare_workspace_ledger(ledger: &Path, ws: &Path) -> anyhow::Result<Option<String>> {
    use std::os::unix::fs::DirBuilderExt as _;
    let dir = ledger
        .parent()
        .context("the ledger path has no directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| {
            format!(
                "cannot create the ledger directory {} (set $XDG_STATE_HOME, or pass --ledger FILE)",
                escape::path(dir)
            )
        })?;
    let named = dir.join(WORKSPACE_FILE);
    if !named.exists() {
        let mut text = ws.as_os_str().as_bytes().to_vec();
        text.push(b'\n');
        std::fs::write(&named, text)
            .with_context(|| format!("cannot write {}", escape::path(&named)))?;
    }
    let old = ws.join(LEGACY_LEDGER);
    if std::fs::symlink_metadata(ledger).is_ok() || !old.is_file() {
        return Ok(None);
    }
    move_legacy(&old, ledger)?;
    // `.audit/` held only the ledger (and its approval socket while a run
    // was waiting): removed when now empty.
    if let Some(audit) = old.parent() {
        let _ = std::fs::remove_dir(audit);
    }
    Ok(Some(format!(
        "lexecon: moved this workspace's ledger {} (where earlier versions kept it) to {}: ledgers now live outside the workspace, where `lexecon verify` (run in the workspace) finds it; its history continues there",
        escape::path(&old),
        escape::path(ledger)
    )))
}

/// Moves the old ledger `old` to `new` under its lock (so no run of an
/// earlier version is writing it), renaming it or, across file systems,
/// copying it and removing the original.
fn move_legacy(old: &Path, new: &Path) -> anyhow::Result<()> {
    use std::os::fd::AsFd as _;
    let what = || {
        format!(
            "cannot move the ledger of an earlier version {} to {}",
            escape::path(old),
            escape::path(new)
        )
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .open(old)
        .with_context(what)?;
    if crate::os::flock_exclusive(f.as_fd(), crate::os::Wait::No).is_err() {
        bail!(
            "{}: another run is writing it; run again when it has finished (or pass --ledger {} to keep using it)",
            what(),
            escape::path(old)
        );
    }
    match std::fs::rename(old, new) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "{} (move it yourself, or pass --ledger {} to keep using it)",
                    what(),
                    escape::path(old)
                )
            })
        }
    }
    let mut tmp = OsString::from(new.as_os_str());
    tmp.push(".moving");
    let tmp = PathBuf::from(tmp);
    let copied = (|| -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        std::io::copy(&mut &f, &mut out)?;
        out.flush()?;
        out.sync_all()?;
        std::fs::rename(&tmp, new)
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(what);
    }
    std::fs::remove_file(old).with_context(|| {
        format!(
            "copied the ledger of an earlier version {} to {}, but cannot remove the original; remove it yourself",
            escape::path(old),
            escape::path(new)
        )
    })
}

/// When no signing key is in the default key directory and an earlier
/// version's `.lexecon/` holds one (in `dir`, the current directory or the
/// workspace): the advice to move it rather than make a new key.
pub fn legacy_keys_advice(keys: &Keys, dirs: &[&Path]) -> Option<String> {
    if keys.source != Source::Default || keys.dir.join(keys::PRIVATE_KEY_FILE).exists() {
        return None;
    }
    let old = dirs
        .iter()
        .map(|d| d.join(LEGACY_KEYS))
        .find(|d| d.join(keys::PRIVATE_KEY_FILE).is_file())?;
    let parent = keys.dir.parent().unwrap_or(Path::new("/"));
    Some(format!(
        "no ledger signing key in {new}, but {old} holds one (where earlier versions kept keys). Move it there, so that your ledgers stay signed by one key: `mkdir -p {parent} && mv {old} {new}` (or pass --keys {old}, or set ${KEYS_ENV}); `lexecon init-keys` would make a new key instead",
        new = escape::path(&keys.dir),
        old = escape::path(&old),
        parent = escape::path(parent),
    ))
}

/// `path` as an argument in a printed command.
fn arg(path: &Path) -> String {
    escape::path(path)
}

/// The arguments that make `lexecon pending/approve/deny`, run from
/// `cwd`, reach `ledger`: empty when they find it themselves.
pub fn ledger_args(ledger: &Ledger, cwd: &Path) -> String {
    if found_from(ledger, cwd) {
        String::new()
    } else {
        format!(" --ledger {}", arg(&absolute(&ledger.path, cwd)))
    }
}

/// The command that verifies `ledger` with the public key of `keys`, run
/// from `cwd`: as short as it can be while still working as printed.
pub fn verify_command(ledger: &Ledger, keys: &Keys, cwd: &Path) -> String {
    let mut s = String::from("lexecon verify");
    if !found_from(ledger, cwd) {
        s.push(' ');
        s.push_str(&arg(&ledger.path));
    }
    if keys.source != Source::Default {
        s.push_str(" --pubkey ");
        s.push_str(&arg(&keys.dir));
    }
    s
}

/// The command that recovers `ledger` with the key of `keys`, run from `cwd`.
pub fn recover_command(ledger: &Ledger, keys: &Keys, cwd: &Path) -> String {
    let mut s = String::from("lexecon ledger recover");
    if !found_from(ledger, cwd) {
        s.push(' ');
        s.push_str(&arg(&ledger.path));
    }
    if keys.source != Source::Default {
        s.push_str(" --keys ");
        s.push_str(&arg(&keys.dir));
    }
    s
}

/// Whether a command run from `cwd` with no ledger argument and no
/// `$LEXECON_LEDGER` finds `ledger` (a default ledger, of `cwd` or the
/// nearest directory above it that has one).
fn found_from(ledger: &Ledger, cwd: &Path) -> bool {
    if ledger.source != Source::Default {
        return false;
    }
    let start = std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_path_buf());
    let Ok(root) = ledgers_root() else {
        return false;
    };
    for dir in start.ancestors() {
        let path = root.join(workspace_id(dir)).join(LEDGER_FILE);
        if path == ledger.path {
            return true;
        }
        if path.is_file() {
            return false;
        }
    }
    false
}

fn absolute(p: &Path, cwd: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_ids_are_readable_and_distinct() {
        let a = workspace_id(Path::new("/home/u/src/my project"));
        assert!(a.starts_with("my_project-"), "{a}");
        assert_eq!(a.len(), "my_project-".len() + 12);
        // Same name, another path: another id.
        let b = workspace_id(Path::new("/home/u/other/my project"));
        assert_ne!(a, b);
        assert!(b.starts_with("my_project-"));
        // Same path: same id.
        assert_eq!(a, workspace_id(Path::new("/home/u/src/my project")));
        assert!(workspace_id(Path::new("/")).starts_with("root-"));
        assert!(workspace_id(Path::new("/x/.hidden")).starts_with("hidden-"));
        assert!(workspace_id(Path::new("/x/...")).starts_with("workspace-"));
        let long = workspace_id(Path::new(&format!("/x/{}", "a".repeat(100))));
        assert_eq!(long.len(), 40 + 1 + 12);
        let odd = workspace_id(Path::new(std::ffi::OsStr::from_bytes(b"/x/\xff\n$(rm)")));
        assert!(odd.starts_with("____rm_-"), "{odd}");
    }
}
