//! `lexecon policy check FILE…` and `lexecon policy explain FILE -- ACTION`.
//!
//! Grammar of the action after `--`:
//! - `exec CMD [ARGS…]`: CMD is resolved as a shell would (a name with a `/`
//!   is taken relative to `--cwd`; a bare name is searched in `PATH`, then
//!   symlinks are followed as the kernel does; a name not found is taken
//!   literally);
//! - `open PATH [--read] [--write] [--create] [--truncate] [--append]
//!   [--directory]`: PATH is made absolute against `--cwd` and normalised
//!   lexically (the supervisor hands the policy the kernel's resolution; this
//!   command does not touch the file); with no access flag, `--read`;
//!   `--op=NAME` judges it as that operation (`delete`, `chmod`, …; see
//!   docs/policy.md), a plain open by default.
//!
//! Exit codes: `check` 0 when every file is valid, 1 when any is not;
//! `explain` 0 when the action was judged (whatever the verdict), 1 when the
//! policy is invalid; 2 for usage errors.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::action::{Access, Action, ActionKind, ExecAction, FileOp, OpenAction};
use crate::policy::{PolicyErrors, Vars};

#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Validate policy files and run their embedded examples.
    Check {
        /// Policy files, or shipped policies by name (`default`, `ci`,
        /// `observe`, `demo`, `builtin:NAME`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Value of ${WORKSPACE} (default: the current directory).
        #[arg(long)]
        workspace: Option<PathBuf>,
        /// Print the result as JSON (one object with a `policies` array).
        #[arg(long)]
        json: bool,
    },
    /// Show how a policy judges one action.
    #[command(
        after_help = "Examples:\n  lexecon policy explain policies/default.yaml -- exec rm -rf ./important_data\n  lexecon policy explain policies/default.yaml -- open ~/.ssh/id_rsa --read"
    )]
    Explain {
        /// Policy file, or a shipped policy by name.
        file: PathBuf,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
        /// Working directory of the action (default: the current directory).
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// Value of ${WORKSPACE} (default: the current directory).
        #[arg(long)]
        workspace: Option<PathBuf>,
        /// The action: `exec CMD [ARGS…]` or `open PATH [--read|--write|--create|--truncate|--append|--directory]… [--op=NAME]`.
        #[arg(last = true, required = true, value_name = "ACTION")]
        action: Vec<OsString>,
    },
    /// Print a shipped policy (`default`, `ci`, `observe`, `demo`), to read
    /// it or to start a policy of your own from it.
    Show {
        /// The shipped policy's name.
        name: String,
    },
}

pub fn run(args: PolicyArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PolicyCommand::Check {
            files,
            workspace,
            json,
        } => check(&files, workspace, json),
        PolicyCommand::Explain {
            file,
            json,
            cwd,
            workspace,
            action,
        } => explain(&file, json, cwd, workspace, &action),
        PolicyCommand::Show { name } => show(&name),
    }
}

fn current_dir() -> anyhow::Result<PathBuf> {
    std::env::current_dir().context("cannot read the current directory")
}

/// The variables, with symlinks in their values resolved (the paths they
/// are compared with are resolved by the kernel), as `supervise` does, so
/// that `check` prints the policy hash a run records.
fn vars(workspace: Option<PathBuf>) -> anyhow::Result<Vars> {
    let ws = match workspace {
        Some(w) => w,
        None => current_dir()?,
    };
    Ok(super::vars_for(&ws))
}

fn print_errors(e: &PolicyErrors) {
    for err in e.iter() {
        eprintln!("{err}");
    }
}

fn show(name: &str) -> anyhow::Result<ExitCode> {
    let name = name.strip_prefix("builtin:").unwrap_or(name);
    match crate::policy::shipped::shipped(name) {
        Some(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!(
            "there is no shipped policy named {} (shipped: {})",
            crate::escape::text(name),
            crate::policy::shipped::names()
        ),
    }
}

fn check(files: &[PathBuf], workspace: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let vars = vars(workspace)?;
    let mut all_ok = true;
    let mut results = Vec::new();
    for arg in files {
        let source = super::PolicySource::resolve(arg)?;
        let file = &source.path();
        match source.load(&vars) {
            Ok(p) => {
                if json {
                    results.push(serde_json::json!({
                        "policy": file.to_string_lossy(),
                        "valid": true,
                        "mode": p.mode().as_str(),
                        "defaults": {
                            "exec": p.default_verdict(ActionKind::Exec).as_str(),
                            "open": p.default_verdict(ActionKind::Open).as_str(),
                        },
                        "rules": {
                            "exec": p.rule_count(ActionKind::Exec),
                            "open": p.rule_count(ActionKind::Open),
                        },
                        "examples_checked": p.example_count(),
                        "sha256": hex::encode(p.sha256()),
                        "layers": p.is_layered().then(|| p.layers().iter().map(|l| serde_json::json!({
                            "path": l.path,
                            "sha256": hex::encode(l.sha256),
                        })).collect::<Vec<_>>()),
                    }));
                    continue;
                }
                println!("{}: valid", file.display());
                println!("  mode: {}", p.mode());
                println!(
                    "  defaults: exec {}, open {}, connect {}",
                    p.default_verdict(ActionKind::Exec),
                    p.default_verdict(ActionKind::Open),
                    p.default_verdict(ActionKind::Connect)
                );
                println!(
                    "  rules: {} exec, {} open, {} connect; {} examples and tests checked",
                    p.rule_count(ActionKind::Exec),
                    p.rule_count(ActionKind::Open),
                    p.rule_count(ActionKind::Connect),
                    p.example_count()
                );
                println!("  sha256: {}", hex::encode(p.sha256()));
                if p.is_layered() {
                    println!(
                        "  layers (uppermost first; a file only tightens the files it includes):"
                    );
                    for l in p.layers() {
                        println!(
                            "    {} (sha256 {})",
                            crate::escape::text(&l.path),
                            hex::encode(l.sha256)
                        );
                    }
                }
            }
            Err(e) => {
                all_ok = false;
                if json {
                    results.push(serde_json::json!({
                        "policy": file.to_string_lossy(),
                        "valid": false,
                        "errors": e.iter().map(|err| serde_json::json!({
                            "file": err.file,
                            "line": err.line,
                            "col": err.col,
                            "rule": err.rule,
                            "message": err.message,
                            "hint": err.hint,
                        })).collect::<Vec<_>>(),
                    }));
                    continue;
                }
                print_errors(&e);
                println!(
                    "{}: invalid ({} error{})",
                    file.display(),
                    e.len(),
                    if e.len() == 1 { "" } else { "s" }
                );
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "valid": all_ok,
                "policies": results,
            }))?
        );
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Lexical normalisation against a base directory.
fn absolute(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Find a program as a shell would, following symlinks like the kernel.
fn resolve_program(cmd: &OsString, cwd: &Path) -> PathBuf {
    let cmd_path = Path::new(cmd);
    let candidate = if cmd.as_bytes().contains(&b'/') {
        Some(absolute(cwd, cmd_path))
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| absolute(cwd, &dir.join(cmd_path)))
                .find(|p| {
                    use std::os::unix::fs::PermissionsExt;
                    p.metadata()
                        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                        .unwrap_or(false)
                })
        })
    };
    match candidate {
        Some(p) => std::fs::canonicalize(&p).unwrap_or(p),
        None => cmd_path.to_path_buf(),
    }
}

fn file_sha256(path: &Path) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Some(h.finalize().into())
}

fn parse_action(words: &[OsString], cwd: &Path, hash: bool) -> anyhow::Result<Action> {
    let Some((kind, rest)) = words.split_first() else {
        bail!("no action given after `--`; write `-- exec CMD ARGS…` or `-- open PATH --read`");
    };
    match kind.to_str() {
        Some("exec") => {
            let Some(cmd) = rest.first() else {
                bail!("`exec` needs a command, e.g. `-- exec rm -rf ./important_data`");
            };
            let path = resolve_program(cmd, cwd);
            let sha256 = if hash { file_sha256(&path) } else { None };
            Ok(Action::Exec(ExecAction {
                path,
                argv: rest.to_vec(),
                cwd: cwd.to_path_buf(),
                sha256,
            }))
        }
        Some("open") => {
            let Some((path, flags)) = rest.split_first() else {
                bail!("`open` needs a path, e.g. `-- open ~/.ssh/id_rsa --read`");
            };
            let mut access = Access::empty();
            let mut op = FileOp::Open;
            for f in flags {
                let name = f.to_str().and_then(|s| s.strip_prefix("--"));
                if let Some(o) = name.and_then(|n| n.strip_prefix("op=")) {
                    match FileOp::from_name(o) {
                        Some(o) => op = o,
                        None => bail!(
                            "unknown operation '{o}'; write --op= and one of {}",
                            FileOp::ALL.map(FileOp::as_str).join(", ")
                        ),
                    }
                    continue;
                }
                match name.and_then(Access::from_name) {
                    Some(a) => access |= a,
                    None => bail!(
                        "unknown access flag '{}'; write any of --read --write --create --truncate --append --directory, and optionally --op=NAME",
                        f.to_string_lossy()
                    ),
                }
            }
            if access.is_empty() {
                access = Access::READ;
            }
            let p = Path::new(path);
            let path = if path.as_bytes().starts_with(b"/") || !path.as_bytes().contains(&b':') {
                absolute(cwd, p)
            } else {
                // Kernel object names such as `pipe:[12]` stay as given.
                p.to_path_buf()
            };
            Ok(Action::Open(OpenAction {
                op,
                detail: None,
                path,
                access,
                cwd: cwd.to_path_buf(),
                process: None,
            }))
        }
        Some("connect") => {
            let Some((target, flags)) = rest.split_first() else {
                bail!("`connect` needs a destination, e.g. `-- connect pypi.org:443`");
            };
            let mut op = crate::action::NetOp::Connect;
            let mut protocol = None;
            let mut names = Vec::new();
            let mut it = flags.iter();
            while let Some(f) = it.next() {
                let f = f.to_string_lossy();
                let mut value = || it.next().map(|v| v.to_string_lossy().into_owned());
                match f.as_ref() {
                    "--op" => {
                        let v = value().unwrap_or_default();
                        op = crate::action::NetOp::from_name(&v).ok_or_else(|| {
                            anyhow::anyhow!("unknown op '{v}'; write connect, send, bind, listen or resolve")
                        })?;
                    }
                    "--protocol" => {
                        let v = value().unwrap_or_default();
                        protocol = Some(crate::action::Protocol::from_name(&v).ok_or_else(|| {
                            anyhow::anyhow!("unknown protocol '{v}'; write tcp, udp, unix or other")
                        })?);
                    }
                    "--name" => names.push(value().unwrap_or_default().to_ascii_lowercase()),
                    other => bail!("unknown connect option '{other}'; write --op OP, --protocol P, --name HOST"),
                }
            }
            let a = crate::policy::net::parse_action(&target.to_string_lossy(), op, protocol, names)
                .map_err(|m| anyhow::anyhow!(m))?;
            Ok(Action::Connect(a))
        }
        _ => bail!(
            "unknown action '{}'; write `exec CMD ARGS…`, `open PATH --read|--write…` or `connect HOST:PORT`",
            kind.to_string_lossy()
        ),
    }
}

fn explain(
    file: &Path,
    json: bool,
    cwd: Option<PathBuf>,
    workspace: Option<PathBuf>,
    words: &[OsString],
) -> anyhow::Result<ExitCode> {
    let vars = vars(workspace)?;
    let cwd = match cwd {
        Some(c) => absolute(&current_dir()?, &c),
        None => current_dir()?,
    };
    let source = super::PolicySource::resolve(file)?;
    let policy = match source.load(&vars) {
        Ok(p) => p,
        Err(e) => {
            print_errors(&e);
            println!("{}: invalid ({} errors)", source.path().display(), e.len());
            return Ok(ExitCode::from(1));
        }
    };
    let action = parse_action(words, &cwd, policy.uses_content_hash())?;
    let ex = policy.explain(&action);
    if json {
        let mut v = ex.to_json();
        v["action"] = action_json(&action);
        v["mode"] = policy.mode().as_str().into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("Action: {}", describe(&action));
    print_explanation(&ex, policy.mode());
    Ok(ExitCode::SUCCESS)
}

/// The decision, its rule and reason, and every matching rule with the
/// result of each of its conditions (`policy explain`, `explain --policy`).
/// Rule ids, reasons and condition details are escaped: they can quote
/// the action's paths, which the supervised tree chose.
pub(super) fn print_explanation(ex: &crate::policy::Explanation, mode: crate::action::Mode) {
    use crate::escape::text;
    println!("Decision: {}", ex.decision.verdict.as_str().to_uppercase());
    match (&ex.decision.rule, &ex.layer) {
        (Some(r), None) => println!("Rule: {}", text(r)),
        (None, None) => println!("Rule: (none; default)"),
        (Some(r), Some(l)) => println!("Rule: {} (layer {})", text(r), text(l)),
        (None, Some(l)) => println!("Rule: (none; the default of layer {})", text(l)),
    }
    println!("Reason: {}", text(&ex.decision.reason));
    if mode == crate::action::Mode::Observe {
        println!("Mode: observe (nothing is refused; the verdict is recorded)");
    }
    if ex.matched.is_empty() {
        println!("Matched rules: none");
    } else {
        println!("Matched rules:");
        for m in &ex.matched {
            let mark = if ex.decision.rule.as_deref() == Some(m.id.as_str()) {
                "*"
            } else {
                "-"
            };
            if ex.layer.is_some() {
                println!(
                    "  {mark} {} ({}, {} line {})",
                    text(&m.id),
                    m.verdict,
                    text(&m.file),
                    m.line
                );
            } else {
                println!("  {mark} {} ({}, line {})", text(&m.id), m.verdict, m.line);
            }
            for c in &m.conditions {
                println!("      {}: {}", c.condition, text(&c.detail));
            }
        }
    }
}

fn describe(a: &Action) -> String {
    match a {
        Action::Exec(e) => format!(
            "exec {} {:?} in {}",
            e.path.display(),
            e.argv
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
            e.cwd.display()
        ),
        Action::Open(o) => format!("open {} [{}]", o.path.display(), o.access),
        Action::Connect(_) => crate::session::describe(a),
    }
}

fn action_json(a: &Action) -> serde_json::Value {
    match a {
        Action::Exec(e) => serde_json::json!({
            "kind": "exec",
            "path": e.path.to_string_lossy(),
            "argv": e.argv.iter().map(|s| s.to_string_lossy().into_owned()).collect::<Vec<_>>(),
            "cwd": e.cwd.to_string_lossy(),
            "sha256": e.sha256.map(hex::encode),
        }),
        Action::Open(o) => serde_json::json!({
            "kind": "open",
            "path": o.path.to_string_lossy(),
            "access": o.access.names(),
            "cwd": o.cwd.to_string_lossy(),
        }),
        Action::Connect(c) => serde_json::json!({
            "kind": "connect",
            "op": c.op.as_str(),
            "protocol": c.protocol.as_str(),
            "target": crate::policy::net::target_text(&c.target),
            "names": c.names,
        }),
    }
}
