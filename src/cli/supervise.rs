//! `supervise` (and the `lexecon-supervise` binary), `demo`.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use crate::action::Mode;
use crate::escape;
use crate::ledger::{self, LedgerError, LedgerWriter, LockMode, SyncPolicy, WriterOptions};
use crate::policy::{Policy, Vars};

use super::locations::{self, Keys, Ledger, Source};
use super::vars_for;
use crate::session::{self, Hints, OnEscalate, SessionConfig, Summary};
use crate::supervisor;

/// The policies shipped in `policies/`, built into the binary.

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    Enforce,
    Observe,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EscalateArg {
    /// Refuse escalated actions at once.
    Block,
    /// Allow them, recorded as allowed without approval.
    Allow,
    /// Hold them until a human answers with `lexecon approve/deny`, or the
    /// timeout blocks them.
    Wait,
    /// As `wait`, and ask on the supervisor's controlling terminal too.
    Prompt,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SyncArg {
    /// fdatasync at every checkpoint.
    Checkpoint,
    /// fdatasync after every record.
    EveryRecord,
    /// Never sync (tests and benchmarks only).
    Never,
}

#[derive(Args, Debug)]
pub struct SuperviseArgs {
    /// Policy file, or a shipped policy by name (`default`, `ci`, `observe`,
    /// `demo`, or `builtin:NAME`; default: the shipped default policy for
    /// coding agents).
    #[arg(long, value_name = "FILE|NAME", env = "LEXECON_POLICY")]
    pub policy: Option<PathBuf>,
    /// Ledger file; runs are appended. Default: $LEXECON_LEDGER, else the
    /// workspace's ledger, $XDG_STATE_HOME/lexecon/ledgers/NAME-HASH/ledger.jsonl
    /// (~/.local/state/lexecon/… when XDG_STATE_HOME is not set).
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
    /// Directory with the signing key (from `lexecon init-keys`).
    /// Default: $LEXECON_KEYS, else $XDG_CONFIG_HOME/lexecon/keys
    /// (~/.config/lexecon/keys).
    #[arg(long, value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// Override the policy's mode: `observe` records everything and refuses nothing.
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// What an `escalate` verdict does when no human is asked.
    #[arg(long, value_enum, default_value = "block")]
    pub on_escalate: EscalateArg,
    /// How long a held escalation waits for an answer (seconds); then it is blocked.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub escalate_timeout: u64,
    /// Most escalations held at once; beyond, new ones are blocked at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_pending: usize,
    /// Sign a checkpoint every N records.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub checkpoint_every: u64,
    /// Sign a checkpoint at least every T milliseconds while records are pending.
    #[arg(long, value_name = "T", default_value_t = 1000)]
    pub checkpoint_ms: u64,
    /// Keep idle CPUs awake for US microseconds after each notified call,
    /// with threads at idle priority (`SCHED_IDLE`, so they never take CPU
    /// time from anything else): a woken caller then finds its CPU awake
    /// instead of halted, which on a virtual machine roughly halves the time
    /// of an emulated open. 0 turns it off.
    #[arg(long, value_name = "US", default_value_t = supervisor::spin::DEFAULT_WINDOW_US)]
    pub wake_spin_us: u64,
    /// When the ledger is flushed to disk.
    #[arg(long, value_enum, default_value = "checkpoint")]
    pub sync: SyncArg,
    /// Fail at once instead of waiting when another run holds the ledger.
    #[arg(long)]
    pub no_wait: bool,
    /// No per-block lines and no summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Write a machine-readable summary of the run to FILE.
    #[arg(long, value_name = "FILE")]
    pub json_summary: Option<PathBuf>,
    /// Append the run's anchor (its final signed checkpoint, one line) to
    /// FILE, for `lexecon verify LEDGER --anchor FILE`. Keep FILE where the
    /// supervised command cannot write, or copy it off the machine.
    #[arg(long, value_name = "FILE")]
    pub anchor_out: Option<PathBuf>,
    /// Write the run's Prometheus metrics to FILE (a node_exporter textfile:
    /// decisions by kind, verdict, outcome and rule, judging latency, held
    /// escalations, ledger growth), replaced at most once a second and when
    /// the run ends. The tree may not write it.
    #[arg(long, value_name = "FILE", env = "LEXECON_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Exit with status 1 when the command succeeded but an action was blocked.
    #[arg(long)]
    pub fail_on_block: bool,
    /// Do not write the block line to the denied process's own stderr
    /// (by default a refused process is told what was refused and why, so
    /// that an agent reading its tool's output sees the rule and the record).
    #[arg(long)]
    pub no_tell_process: bool,
    /// The workspace: the directory the policy's `${WORKSPACE}` stands for
    /// (default: the current directory). The command still starts in the
    /// current directory.
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Accept a workspace of `/`, of `$HOME` or of an ancestor of `$HOME`:
    /// the policy's rules for the workspace then cover all of it.
    #[arg(long)]
    pub allow_broad_workspace: bool,
    /// Run the command even though it would run as root or with
    /// capabilities, which weakens what Lexecon guarantees (also:
    /// LEXECON_ALLOW_ROOT_TREE=1).
    #[arg(long)]
    pub allow_root_tree: bool,
    /// Offer the supervised tree no gate socket (`$LEXECON_GATE`, through
    /// which a harness asks about a tool call before making it).
    #[arg(long)]
    pub no_gate: bool,
    /// Diagnostics on the supervisor's stderr: `-v` what it found out about
    /// the machine and where policy, keys and ledger are (info); `-vv` the
    /// start-up timings too (debug). `LEXECON_LOG=LEVEL` does the same;
    /// `LEXECON_LOG_FILE=FILE` sends the lines to FILE.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command to run, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the demo's workspace instead of deleting it.
    #[arg(long)]
    pub keep: bool,
}

/// The signing key of `keys`; when there is none at the default place but
/// an earlier version's `.lexecon/` (in one of `dirs`) holds one, an error
/// saying how to move it.
pub fn load_key(keys: &Keys, dirs: &[&Path]) -> anyhow::Result<ledger::keys::HostKey> {
    match ledger::keys::load_signing_key(&keys.dir) {
        Ok(k) => Ok(k),
        Err(e @ LedgerError::MissingKey { .. }) => {
            match locations::legacy_keys_advice(keys, dirs) {
                Some(advice) => Err(anyhow::anyhow!(advice)),
                None => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// `e`, with the commands it advises (`lexecon ledger recover LEDGER`,
/// `lexecon verify LEDGER`) written so that they find this ledger and key
/// when run from `cwd`.
pub(crate) fn with_hints(
    e: LedgerError,
    ledger: &Ledger,
    keys: &Keys,
    cwd: &Path,
) -> anyhow::Error {
    let path = ledger.path.display().to_string();
    let msg = e
        .to_string()
        .replace(
            &format!("`lexecon ledger recover {path}`"),
            &format!("`{}`", locations::recover_command(ledger, keys, cwd)),
        )
        .replace(
            &format!("`lexecon verify {path}`"),
            &format!("`{}`", locations::verify_command(ledger, keys, cwd)),
        );
    anyhow::anyhow!(msg)
}

/// What a run waiting for the ledger's lock says at once.
pub(crate) fn lock_wait_notice(e: &LedgerError) {
    if let LedgerError::Locked { path, holder } = e {
        eprintln!(
            "lexecon: waiting for the ledger {}: another run holds its lock ({}), and a ledger is written by one run at a time. This run starts when that one ends; to fail at once instead, stop it (Ctrl-C) and pass --no-wait, or use another ledger with --ledger FILE",
            escape::path(path),
            holder.as_deref().unwrap_or("its process cannot be told"),
        );
    }
}

pub(crate) fn load_policy(source: &super::PolicySource, vars: &Vars) -> anyhow::Result<Policy> {
    source.load(vars).map_err(policy_error)
}

fn policy_error(errors: crate::policy::PolicyErrors) -> anyhow::Error {
    anyhow::anyhow!("the policy is not valid:\n{errors}\n(run `lexecon policy check` for details)")
}

/// The workspace of a run: `arg` (relative to `cwd`), or `cwd`; absolute,
/// symlinks resolved. Unless `allow_broad`, `/`, `$HOME` and the ancestors
/// of `$HOME` are refused: every `${WORKSPACE}` rule of the policy (the
/// default policy lets the agent write and delete there) would then cover
/// system files or the user's dotfiles.
pub fn workspace(arg: Option<&Path>, cwd: &Path, allow_broad: bool) -> anyhow::Result<PathBuf> {
    let given = arg.map_or_else(|| cwd.to_path_buf(), |a| cwd.join(a));
    let ws = std::fs::canonicalize(&given).with_context(|| {
        format!(
            "the workspace {} cannot be used (name an existing directory with --workspace DIR)",
            escape::path(&given)
        )
    })?;
    if !ws.is_dir() {
        bail!(
            "the workspace {} is not a directory (name a directory with --workspace DIR)",
            escape::path(&ws)
        );
    }
    if allow_broad {
        return Ok(ws);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute())
        .map(|h| std::fs::canonicalize(&h).unwrap_or(h));
    let what = if ws == Path::new("/") {
        "the root directory".to_string()
    } else if home.as_deref() == Some(ws.as_path()) {
        "your home directory".to_string()
    } else if home.as_deref().is_some_and(|h| h.starts_with(&ws)) {
        format!(
            "an ancestor of your home directory {}",
            escape::path(home.as_deref().unwrap_or(Path::new("")))
        )
    } else {
        return Ok(ws);
    };
    let source = if arg.is_some() {
        "given with --workspace"
    } else {
        "the current directory"
    };
    bail!(
        "the workspace would be {} ({source}), which is {what}: the policy's rules for ${{WORKSPACE}} would cover every file in it (system files, dotfiles such as ~/.bashrc). Start lexecon from the project's directory or name it with --workspace DIR; pass --allow-broad-workspace to run with this workspace anyway",
        escape::path(&ws)
    )
}

/// The environment variable that has the effect of `--allow-root-tree`,
/// for harnesses whose command line cannot be changed.
pub const ALLOW_ROOT_TREE_ENV: &str = "LEXECON_ALLOW_ROOT_TREE";

/// What a root tree can do that the supervisor does not stop.
const ROOT_TREE_WEAKENS: &str = "it can read the signing key and rewrite the ledger without opening them through the gate (through a raw block device or a kernel module), and its capabilities bypass the permission checks the supervisor relies on";

/// Refuses to start a command that would run as root or with capabilities,
/// unless `accepted_by` (`--allow-root-tree`) or [`ALLOW_ROOT_TREE_ENV`]
/// accepts it; then the warning to print.
pub fn check_root_tree(accepted_by: Option<&str>) -> anyhow::Result<Option<String>> {
    let privilege = supervisor::privilege::of_command().context(
        "cannot tell whether the command would run as root (reading /proc/self/status failed)",
    )?;
    let Some(p) = privilege else {
        return Ok(None);
    };
    let env = format!("{ALLOW_ROOT_TREE_ENV}=1");
    let accepted_by = accepted_by.or_else(|| {
        std::env::var_os(ALLOW_ROOT_TREE_ENV)
            .is_some_and(|v| v == "1")
            .then_some(env.as_str())
    });
    let Some(by) = accepted_by else {
        bail!(
            "the command would run {}. Lexecon's guarantees do not hold for such a tree: {ROOT_TREE_WEAKENS}. Run lexecon as an unprivileged user (e.g. `setpriv --reuid=USER --regid=GROUP --init-groups lexecon-supervise …`), or pass --allow-root-tree (or set {ALLOW_ROOT_TREE_ENV}=1) to run it anyway with these weaker guarantees",
            p.describe()
        );
    };
    Ok(Some(format!(
        "lexecon: warning: accepted by {by}: the command runs {}, so {ROOT_TREE_WEAKENS}",
        p.describe()
    )))
}

/// How a location was chosen, for the log.
fn source_word(source: Source, env: &str) -> String {
    match source {
        Source::Argument => "from the command line".into(),
        Source::Env => format!("from ${env}"),
        Source::Default => "the default".into(),
    }
}

/// The run's counters, at the end of it.
fn log_counters(s: &Summary) {
    let c = &s.counts;
    log::info!(
        "run {} ended: {} decisions (allow {}, escalate {}, block {}); {} allowed, {} refused, {} killed; {} record failures",
        escape::word(s.run_id.as_bytes()),
        c.decisions,
        c.allow,
        c.escalate,
        c.block,
        c.allowed,
        c.refused,
        c.killed,
        s.record_failures
    );
}

pub fn run(args: SuperviseArgs) -> anyhow::Result<ExitCode> {
    crate::diag::raise(args.verbose);
    crate::timing::mark("supervise: arguments parsed");
    let root_warning = check_root_tree(args.allow_root_tree.then_some("--allow-root-tree"))?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let ws = workspace(args.workspace.as_deref(), &cwd, args.allow_broad_workspace)?;
    let vars = vars_for(&ws);
    let source = match &args.policy {
        Some(p) => super::PolicySource::resolve(p)?,
        None => super::PolicySource::resolve(Path::new("builtin:default"))?,
    };
    // The key first (its errors are reported after the policy's): the
    // record of policies whose examples passed is authenticated with it.
    let keys = locations::keys(args.keys.as_deref());
    let key = keys.as_ref().ok().map(|k| load_key(k, &[&ws, &cwd]));
    crate::timing::mark("signing key loaded");
    // Hashes kept across runs, for a tree that is neither root nor holds
    // capabilities only: a privileged one reads and writes none.
    let hash_cache = match (&keys, &key) {
        (Ok(k), Some(Ok(key))) if root_warning.is_none() => {
            super::hash_cache::HashCacheFile::load(&k.dir, key)
        }
        _ => None,
    };
    let lasting = hash_cache.as_ref().and_then(|f| {
        supervisor::lasting::LastingHashes::new(f.entries().iter().copied()).map(Arc::new)
    });
    crate::timing::mark("hash cache loaded");
    // The files the command's first exec maps are hashed while the policy
    // loads (those kept from earlier runs are not hashed again).
    let name = PathBuf::from(&args.command[0]);
    let program = supervisor::find_program(&name, std::env::var_os("PATH").as_deref());
    let prehash = program
        .as_ref()
        .and_then(|p| supervisor::prehash::Prehash::start(p, lasting.clone()));
    let policy = match (&keys, &key) {
        (Ok(k), Some(Ok(key))) => {
            let checks = super::policy_checks::KeyDirChecks::new(&k.dir, key);
            source.load_checked(&vars, &checks).map_err(policy_error)?
        }
        _ => load_policy(&source, &vars)?,
    };
    crate::timing::mark("policy loaded and its examples checked");
    log::info!("workspace: {}", escape::path(&ws));
    log::info!(
        "policy: {} (sha256 {}, {} layer(s))",
        escape::path(&source.path()),
        hex::encode(policy.sha256()),
        policy.layers().len().max(1)
    );
    let keys = keys?;
    log::info!(
        "key directory: {} ({})",
        escape::path(&keys.dir),
        source_word(keys.source, "LEXECON_KEYS")
    );
    let key = key.unwrap_or_else(|| load_key(&keys, &[&ws, &cwd]))?;
    let Some(program) = program else {
        eprintln!("lexecon: error: {}: command not found", escape::path(&name));
        return Ok(ExitCode::from(127));
    };
    let opts = WriterOptions {
        checkpoint_every: args.checkpoint_every.max(1),
        checkpoint_interval: Duration::from_millis(args.checkpoint_ms),
        sync: match args.sync {
            SyncArg::Checkpoint => SyncPolicy::Checkpoint,
            SyncArg::EveryRecord => SyncPolicy::EveryRecord,
            SyncArg::Never => SyncPolicy::Never,
        },
        lock: if args.no_wait {
            LockMode::Fail
        } else {
            LockMode::Wait
        },
    };
    let ledger = locations::ledger_for_run(args.ledger.as_deref(), &ws)?;
    log::info!(
        "ledger: {} ({})",
        escape::path(&ledger.path),
        source_word(ledger.source, "LEXECON_LEDGER")
    );
    let mut ledger_dir = None;
    if ledger.source == Source::Default {
        if let Some(notice) = locations::prepare_workspace_ledger(&ledger.path, &ws)? {
            eprintln!("{notice}");
        }
        // Every workspace's ledger is the supervisor's only.
        ledger_dir = Some(locations::ledgers_root()?);
    }
    let writer = LedgerWriter::open_notify(&ledger.path, key, opts, &mut lock_wait_notice)
        .map_err(|e| with_hints(e, &ledger, &keys, &cwd))?;
    crate::timing::mark("ledger opened");
    let hints = Hints {
        ledger_args: locations::ledger_args(&ledger, &cwd),
        verify: locations::verify_command(&ledger, &keys, &cwd),
    };
    let cfg = SessionConfig {
        policy,
        policy_path: Some(source.path()),
        mode: args.mode.map(|m| match m {
            ModeArg::Enforce => Mode::Enforce,
            ModeArg::Observe => Mode::Observe,
        }),
        on_escalate: match args.on_escalate {
            EscalateArg::Allow => OnEscalate::Allow,
            EscalateArg::Wait => OnEscalate::Wait,
            EscalateArg::Prompt => OnEscalate::Prompt,
            EscalateArg::Block => OnEscalate::Block,
        },
        keys_dir: keys.dir,
        report_blocks: !args.quiet,
        tell_process: !args.no_tell_process,
        escalate_timeout: Duration::from_secs(args.escalate_timeout),
        max_pending: args.max_pending.max(1),
        workspace: ws.clone(),
        ledger_dir,
        hints,
        metrics_file: args.metrics_file.clone(),
        gate: !args.no_gate,
    };
    let command = supervisor::Command {
        program,
        argv: args.command.clone(),
        env: std::env::vars_os().collect(),
        lasting_hashes: lasting.clone(),
        prehashed: prehash.map(|p| Arc::new(p.finish())),
        wake_spin: Duration::from_micros(args.wake_spin_us),
    };
    crate::timing::mark("hashes taken ahead");
    if !args.quiet {
        if let Some(w) = &root_warning {
            eprintln!("{w}");
        }
        eprintln!(
            "lexecon: workspace {} (the policy's ${{WORKSPACE}}; change it with --workspace DIR)",
            escape::path(&ws)
        );
    }
    let mut summary = session::run(cfg, writer, &command, &cwd)?;
    crate::timing::mark("run sealed");
    if let (Some(file), Some(lasting)) = (&hash_cache, &lasting) {
        let added = lasting.added();
        log::info!(
            "hash cache: {} of {} kept hashes used, {} added",
            lasting.hits(),
            file.entries().len(),
            added.len()
        );
        file.save(&added);
        crate::timing::mark("hash cache saved (when hashes were added)");
    }
    let code = summary.decide_exit(args.fail_on_block);
    log_counters(&summary);
    report(&summary, &args)?;
    // Said even with --quiet: an exit status that is not the command's
    // must not go unexplained.
    if let Some(why) = summary.exit_explanation() {
        eprintln!("{why}");
    }
    Ok(ExitCode::from(code))
}

fn report(summary: &Summary, args: &SuperviseArgs) -> anyhow::Result<()> {
    if let supervisor::Outcome::NotStarted(e) = summary.outcome {
        eprintln!(
            "lexecon: error: cannot execute {}: {}",
            escape::os(&args.command[0]),
            std::io::Error::from_raw_os_error(e)
        );
    }
    if !args.quiet {
        eprint!("{}", summary.text());
    }
    if let Some(path) = &args.json_summary {
        let text = serde_json::to_string_pretty(&summary.json())?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write the summary to {}", path.display()))?;
    }
    summary.write_github_step_summary();
    if let Some(path) = &args.anchor_out {
        write_anchor(summary, path)?;
    }
    Ok(())
}

/// Appends the run's anchor line to `path` (`--anchor-out`).
fn write_anchor(summary: &Summary, path: &Path) -> anyhow::Result<()> {
    let Some(anchor) = &summary.anchor else {
        // The run's own exit status stays what it was; the seal failure
        // is reported with it.
        eprintln!(
            "lexecon: error: no anchor written to {}: the run was not sealed, so it has no final checkpoint",
            path.display()
        );
        return Ok(());
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("cannot open the anchor file {}", path.display()))?;
    f.write_all(format!("{anchor}\n").as_bytes())
        .with_context(|| format!("cannot append the anchor to {}", path.display()))?;
    Ok(())
}

const DEMO_AGENT: &str = r#"#!/bin/sh
# A coding agent that decides to "clean up" its workspace.
echo "agent: listing the workspace"
ls
echo "agent: removing ./important_data"
rm -rf ./important_data
echo "agent: rm exited with status $?"
"#;

/// `lexecon demo`: an agent attempts `rm -rf ./important_data` under the
/// real supervisor and `policies/demo.yaml`.
pub fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let base = std::env::temp_dir();
    let ws = tempfile_dir(&base)?;
    let result = demo_in(&ws);
    if args.keep {
        println!("Workspace kept: {}", ws.display());
    } else {
        let _ = std::fs::remove_dir_all(&ws);
    }
    result
}

fn tempfile_dir(base: &Path) -> anyhow::Result<PathBuf> {
    for i in 0..100u32 {
        let pid = crate::os::pid();
        let p = base.join(format!("lexecon-demo-{pid}-{i}"));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(std::fs::canonicalize(&p)?),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", p.display())),
        }
    }
    bail!("cannot create a demo directory in {}", base.display())
}

fn demo_in(ws: &Path) -> anyhow::Result<ExitCode> {
    use std::os::unix::fs::PermissionsExt;
    let data = ws.join("important_data");
    std::fs::create_dir(&data)?;
    std::fs::write(data.join("customers.csv"), "id,name\n1,Ada\n2,Grace\n")?;
    let agent = ws.join("agent.sh");
    std::fs::write(&agent, DEMO_AGENT)?;
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755))?;
    let keys = ws.join(".lexecon");
    let public = ledger::keys::generate(&keys, false)?;
    let ledger_path = ws.join(".audit/ledger.jsonl");

    println!("Workspace: {}", ws.display());
    println!("Policy: policies/demo.yaml");
    println!("Agent: ./agent.sh (attempts `rm -rf ./important_data`)");
    println!("--- agent output ---");
    let _ = std::io::stdout().flush();

    // The demo's agent is the script above, nothing untrusted: as root it
    // runs with the warning a supervised root tree gets.
    if let Some(w) = check_root_tree(Some("the demo, which runs its own script"))? {
        eprintln!("{w}");
    }
    let vars = vars_for(ws);
    let policy = load_policy(
        &super::PolicySource::resolve(Path::new("builtin:demo"))?,
        &vars,
    )?;
    let writer = LedgerWriter::open(
        &ledger_path,
        ledger::keys::load_signing_key(&keys)?,
        WriterOptions::default(),
    )?;
    let cfg = SessionConfig {
        policy,
        policy_path: Some(PathBuf::from("policies/demo.yaml")),
        mode: None,
        on_escalate: OnEscalate::Block,
        keys_dir: keys.clone(),
        report_blocks: true,
        tell_process: true,
        escalate_timeout: Duration::from_secs(60),
        max_pending: 16,
        workspace: ws.to_path_buf(),
        ledger_dir: None,
        metrics_file: None,
        hints: Hints {
            ledger_args: format!(" --ledger {}", escape::path(&ledger_path)),
            verify: format!(
                "lexecon verify {} --pubkey {}",
                escape::path(&ledger_path),
                escape::path(&keys)
            ),
        },
        gate: false,
    };
    let command = supervisor::Command {
        program: agent.clone(),
        argv: vec![OsString::from("./agent.sh")],
        env: std::env::vars_os().collect(),
        lasting_hashes: None,
        prehashed: None,
        wake_spin: Duration::from_micros(supervisor::spin::DEFAULT_WINDOW_US),
    };
    let prev = std::env::current_dir()?;
    std::env::set_current_dir(ws)?;
    let summary = session::run(cfg, writer, &command, ws);
    std::env::set_current_dir(prev)?;
    summary?;
    println!("--- end of agent output ---");

    let (decision, executed, recorded) = demo_findings(&ledger_path)?;
    let report = ledger::verify_file(&ledger_path, Some(public.verifying_key()))?;
    let exists = data.join("customers.csv").exists();
    println!("Decision: {}", decision.to_uppercase());
    println!("Executed: {executed}");
    println!(
        "important_data still exists: {}",
        if exists { "yes" } else { "no" }
    );
    println!(
        "Ledger: {} ({} decisions recorded)",
        ledger_path.display(),
        recorded
    );
    println!("Ledger verification: {}", report.status.as_str());
    let ok = decision == "block" && !executed && exists && report.is_valid();
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// From the ledger: the verdict on `rm -rf ./important_data`, whether an
/// `rm` image was ever confirmed running, and how many decisions it records.
fn demo_findings(path: &Path) -> anyhow::Result<(String, bool, u64)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut decision = String::from("none recorded");
    let mut executed = false;
    let mut recorded = 0;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        recorded += u64::from(v["kind"] == "decision");
        if v["kind"] != "decision" || v["action"]["kind"] != "exec" {
            continue;
        }
        let argv: Vec<&str> = v["action"]["argv"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        if argv.first() != Some(&"rm") {
            continue;
        }
        // Record format 2 leaves out a `request` stage, an `allow` verdict
        // and the `allowed` outcome of an allow verdict.
        let stage = v["stage"].as_str().unwrap_or("request");
        let verdict = v["verdict"].as_str().unwrap_or("allow");
        let outcome = match (v["outcome"].as_str(), verdict) {
            (Some(o), _) => o,
            (None, "allow") => "allowed",
            (None, _) => "?",
        };
        if stage == "request" && argv.iter().any(|a| a.contains("important_data")) {
            decision = verdict.to_string();
        }
        if stage == "confirm" && outcome == "allowed" {
            executed = true;
        }
    }
    Ok((decision, executed, recorded))
}
