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
        /// The action: `exec CMD [ARGS…]`, `open PATH [--read|--write|--create|--truncate|--append|--directory]… [--op=NAME]`, `connect HOST:PORT` or `tool NAME [JSON-INPUT]`.
        #[arg(last = true, required = true, value_name = "ACTION")]
        action: Vec<OsString>,
    },
    /// Write a policy that allows what a recorded run did (observe a run
    /// first, e.g. `lexecon-supervise --mode observe -- CMD`).
    Suggest(SuggestArgs),
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
        PolicyCommand::Suggest(args) => suggest(args),
    }
}

#[derive(Args, Debug)]
#[command(
    after_help = "Exit codes: 0 the policy was written; 2 bad input (no such ledger or run, a ledger that does not verify without --unverified, an invalid base policy, a variable whose value is unknown)"
)]
pub struct SuggestArgs {
    /// The ledger file. Default: as for `verify`.
    pub ledger: Option<PathBuf>,
    /// The run (its id or a unique prefix). Default: the last run.
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// Write only the rules this policy (a file or a shipped policy's name)
    /// needs in addition to allow what the run did.
    #[arg(long, value_name = "FILE|NAME")]
    pub base: Option<PathBuf>,
    /// Allow programs by content hash too (one rule per program, with the
    /// hashes recorded), not only by path.
    #[arg(long)]
    pub sha256: bool,
    /// Entries of one directory from which they are allowed as `DIR/*`.
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u32).range(2..))]
    pub siblings: u32,
    /// Where to write the policy (default: standard output). Not overwritten
    /// unless --force.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Overwrite --out.
    #[arg(long)]
    pub force: bool,
    /// A variable's value when the run header does not record it (HOME,
    /// WORKSPACE, TMPDIR, env.NAME). Repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = crate::replay::parse_var)]
    pub vars: Vec<(String, std::ffi::OsString)>,
    /// Host public key file or key directory to verify the ledger with.
    #[arg(long)]
    pub pubkey: Option<PathBuf>,
    /// Use a ledger that does not verify.
    #[arg(long)]
    pub unverified: bool,
}

fn suggest(args: SuggestArgs) -> anyhow::Result<ExitCode> {
    let cwd = current_dir()?;
    let ledger =
        super::locations::find_ledger(args.ledger.as_deref(), &cwd, "the LEDGER argument")?.path;
    super::replay::verified(&ledger, args.pubkey.as_deref(), args.unverified)?;
    let run = crate::replay::read_run(&ledger, args.run.as_deref()).map_err(anyhow::Error::msg)?;
    let given = args.vars.iter().cloned().collect();
    let vars = crate::replay::RunVars::of(&run.header, &given).map_err(anyhow::Error::msg)?;
    let base = match &args.base {
        Some(b) => {
            let t = super::PolicySource::resolve(b)?.text()?;
            let p = vars.load(&t.text, &t.origin).map_err(anyhow::Error::msg)?;
            Some((crate::replay::Judge::new(p), t.origin))
        }
        None => None,
    };
    let opts = crate::suggest::Options {
        sha256: args.sha256,
        siblings: args.siblings as usize,
        ..Default::default()
    };
    let name = ledger.display().to_string();
    let s = crate::suggest::suggest(
        &run,
        &vars,
        &name,
        base.as_ref().map(|(p, o)| (p, o.as_str())),
        opts,
    );
    match &args.out {
        None => print!("{}", s.yaml),
        Some(out) => {
            use std::io::Write as _;
            let mut o = std::fs::OpenOptions::new();
            o.write(true);
            if args.force {
                o.create(true).truncate(true);
            } else {
                o.create_new(true);
            }
            let mut f = o.open(out).with_context(|| {
                format!(
                    "cannot write {}{}",
                    crate::escape::path(out),
                    if args.force {
                        ""
                    } else {
                        " (it is not overwritten without --force)"
                    }
                )
            })?;
            f.write_all(s.yaml.as_bytes())
                .with_context(|| format!("cannot write {}", crate::escape::path(out)))?;
            eprintln!(
                "lexecon: wrote {} ({} rules); check it with `lexecon policy check {}`",
                crate::escape::path(out),
                s.rules,
                crate::escape::path(out)
            );
        }
    }
    if s.held_by_base > 0 {
        eprintln!(
            "lexecon: {} actions of the run are refused by rules of the base policy, which no added rule can allow: see the comment at the top",
            s.held_by_base
        );
    }
    Ok(ExitCode::SUCCESS)
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
                            "connect": p.default_verdict(ActionKind::Connect).as_str(),
                            "tool": p.default_verdict(ActionKind::Tool).as_str(),
                        },
                        "rules": {
                            "exec": p.rule_count(ActionKind::Exec),
                            "open": p.rule_count(ActionKind::Open),
                            "connect": p.rule_count(ActionKind::Connect),
                            "tool": p.rule_count(ActionKind::Tool),
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
                // Tool calls are named only by policies that judge them.
                let tools = p.rule_count(ActionKind::Tool) > 0
                    || p.default_verdict(ActionKind::Tool) != crate::action::Verdict::Allow;
                println!(
                    "  defaults: exec {}, open {}, connect {}{}",
                    p.default_verdict(ActionKind::Exec),
                    p.default_verdict(ActionKind::Open),
                    p.default_verdict(ActionKind::Connect),
                    if tools {
                        format!(", tool {}", p.default_verdict(ActionKind::Tool))
                    } else {
                        String::new()
                    }
                );
                println!(
                    "  rules: {} exec, {} open, {} connect{}; {} examples and tests checked",
                    p.rule_count(ActionKind::Exec),
                    p.rule_count(ActionKind::Open),
                    p.rule_count(ActionKind::Connect),
                    if tools {
                        format!(", {} tool", p.rule_count(ActionKind::Tool))
                    } else {
                        String::new()
                    },
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

use crate::gate::{absolute, file_sha256, resolve_program};

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
        Some("tool") => {
            let Some((name, rest)) = rest.split_first() else {
                bail!("`tool` needs a tool name, e.g. `-- tool deploy '{{\"env\":\"prod\"}}'`");
            };
            let input = match rest {
                [] => serde_json::Value::Object(serde_json::Map::new()),
                [json] => serde_json::from_str(&json.to_string_lossy())
                    .context("the tool's input is not JSON")?,
                _ => bail!("`tool NAME [INPUT]` takes the input as one JSON argument"),
            };
            Ok(Action::Tool(crate::action::ToolAction {
                name: name.to_string_lossy().into_owned(),
                input,
                cwd: cwd.to_path_buf(),
            }))
        }
        _ => bail!(
            "unknown action '{}'; write `exec CMD ARGS…`, `open PATH --read|--write…`, `connect HOST:PORT` or `tool NAME [JSON]`",
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
        Action::Connect(_) | Action::Tool(_) => crate::session::describe(a),
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
        Action::Tool(t) => serde_json::json!({
            "kind": "tool",
            "name": t.name,
            "input": t.input,
            "cwd": t.cwd.to_string_lossy(),
        }),
    }
}
