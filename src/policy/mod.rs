//! The policy language: YAML → compiled, deterministic matcher.
//!
//! A [`Policy`] exists only as the result of parsing and validating a file
//! ([`Policy::from_file`], [`Policy::from_str`]): every pattern checked
//! (and compiled when it is first matched, which cannot fail for a pattern
//! that passed the check), every variable expanded, every embedded example
//! checked (or, with [`ExampleChecks`], known to have passed with this very
//! text). Judging an action
//! ([`Policy::decide`]) is then pure: no I/O, no clock, no randomness, and no
//! panic on any input. The language is documented in `docs/policy.md`.
//!
//! Text and bytes: paths and argv elements are bytes. Patterns are text, and
//! matching is done on the text form of the subject in which every byte
//! sequence that is not UTF-8 is replaced by U+FFFD. A replaced byte is an
//! ordinary character that is not `/`: `*`, `?` and `**` match it, a literal
//! never does. So a path with bad bytes matches exactly the rules its
//! replaced form matches, and cannot slip past a block rule written with
//! wildcards.
//!
//! Submodules: `yaml` (located YAML tree), `compile` (validation and
//! compilation), `glob`, `argv` (options, operands, positional patterns),
//! `rule` (conditions and their evaluation), `decide` (index and
//! precedence), `explain`, `error`.

mod argv;
mod compile;
mod decide;
mod error;
mod explain;
mod glob;
pub mod net;
mod rule;
pub mod shipped;
mod yaml;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use error::{PolicyError, PolicyErrors};
pub use explain::{Explanation, RuleMatch};
pub use rule::ConditionResult;

use crate::action::{Action, ActionKind, Decision, Mode, Verdict};
use decide::Index;
use rule::{Conds, Rule};

/// The values of the policy variables, fixed when a policy is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vars {
    /// `${HOME}`.
    pub home: PathBuf,
    /// `${WORKSPACE}`: the directory supervision started in.
    pub workspace: PathBuf,
    /// `${TMPDIR}`.
    pub tmpdir: PathBuf,
}

impl Vars {
    /// `HOME` and `TMPDIR` from the environment (`TMPDIR` defaults to `/tmp`;
    /// an unset or relative `HOME` becomes `/`, so that `${HOME}/…` patterns
    /// match nothing unexpected), and `workspace` (made absolute against the
    /// current directory if relative). All three are normalised lexically.
    pub fn from_env(workspace: &Path) -> Vars {
        let abs = |p: PathBuf, fallback: &str| -> PathBuf {
            if p.is_absolute() {
                p
            } else {
                PathBuf::from(fallback)
            }
        };
        let home = abs(
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default(),
            "/",
        );
        let tmpdir = abs(
            std::env::var_os("TMPDIR")
                .filter(|t| !t.is_empty())
                .map(PathBuf::from)
                .unwrap_or_default(),
            "/tmp",
        );
        let workspace = if workspace.is_absolute() {
            workspace.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|c| c.join(workspace))
                .unwrap_or_else(|_| PathBuf::from("/").join(workspace))
        };
        Vars {
            home,
            workspace,
            tmpdir,
        }
        .normalised()
    }

    /// The same values with `.`/`..`/repeated `/` removed lexically.
    pub fn normalised(&self) -> Vars {
        let n = normalise_path;
        Vars {
            home: n(&self.home),
            workspace: n(&self.workspace),
            tmpdir: n(&self.tmpdir),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Path> {
        match name {
            "HOME" => Some(&self.home),
            "WORKSPACE" => Some(&self.workspace),
            "TMPDIR" => Some(&self.tmpdir),
            _ => None,
        }
    }
}

/// `p` with `.`, `..` and repeated `/` removed lexically, as an absolute
/// path (on bytes, so that non-UTF-8 directory names survive).
pub(crate) fn normalise_path(p: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in p.as_os_str().as_bytes().split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = Vec::new();
    for c in parts {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

/// The environment that `${env.NAME:-DEFAULT}` references read when a policy
/// is loaded (see docs/policy.md, "Variables").
#[derive(Debug, Clone)]
pub struct Env {
    fixed: Option<BTreeMap<String, OsString>>,
}

impl Env {
    /// The environment of this process; values that name existing paths have
    /// their symlinks resolved, like `${HOME}` under `lexecon supervise` (the
    /// paths they are compared with are resolved by the kernel).
    pub fn process() -> Env {
        Env { fixed: None }
    }

    /// Exactly these variables (nothing else is set); no filesystem access.
    pub fn fixed<K: Into<String>, V: Into<OsString>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            fixed: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<OsString> {
        match &self.fixed {
            None => std::env::var_os(name),
            Some(m) => m.get(name).cloned(),
        }
    }

    pub(crate) fn resolves_symlinks(&self) -> bool {
        self.fixed.is_none()
    }
}

/// A record of policy texts that passed the check of their embedded examples
/// and tests (see [`Policy::from_file_checked_with`]). That check runs with
/// fixed example variables and no environment, so its outcome depends only
/// on the policy's text and on the Lexecon that ran it: [`examples_id`]
/// names both, and an implementation must tell apart builds of Lexecon and
/// must not be writable by anyone it does not trust (the supervisor keeps
/// its record in the key directory, authenticated with a key derived from
/// the signing key).
pub trait ExampleChecks {
    /// The number of examples and tests checked, if the text `id` names has
    /// passed them.
    fn passed(&self, id: &[u8; 32]) -> Option<usize>;
    /// Remember that the text `id` names passed its `examples` checks.
    fn record(&self, id: &[u8; 32], examples: usize);
}

/// The identity of a policy text for [`ExampleChecks`]:
/// `SHA-256("lexecon-policy-examples-v1\0" || frame(crate version) ||
/// frame(text))` (frames as in [`Policy::sha256`]).
pub fn examples_id(text: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"lexecon-policy-examples-v1\0");
    for b in [env!("CARGO_PKG_VERSION").as_bytes(), text.as_bytes()] {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    }
    h.finalize().into()
}

/// A validated, compiled policy. Obtainable only by loading a file or text
/// that passed every check.
#[derive(Debug)]
pub struct Policy {
    mode: Mode,
    defaults: [Verdict; 3],
    rules: Vec<Rule>,
    index: Index,
    sha256: [u8; 32],
    vars: Vars,
    env: BTreeMap<String, String>,
    origin: String,
    examples: usize,
}

impl Policy {
    /// Read and load a policy file; `${env.…}` references read this
    /// process's environment. The only I/O of this module (with the
    /// environment's symlink resolution, see [`Env::process`]).
    pub fn from_file(path: &Path, vars: &Vars) -> Result<Policy, PolicyErrors> {
        Policy::from_file_with_env(path, vars, &Env::process())
    }

    /// [`Policy::from_file`] with `${env.…}` references read from `env`.
    pub fn from_file_with_env(path: &Path, vars: &Vars, env: &Env) -> Result<Policy, PolicyErrors> {
        let text = Policy::read(path)?;
        Policy::from_str_with_env(&text, &path.display().to_string(), vars, env)
    }

    /// [`Policy::from_file`], where the check of the embedded examples and
    /// tests is skipped when `checks` says this very text passed it before
    /// (and recorded when it passes now). Every other check runs: the
    /// policy is compiled with `vars` and the environment as always, and one
    /// that fails any check is refused.
    pub fn from_file_checked_with(
        path: &Path,
        vars: &Vars,
        checks: &dyn ExampleChecks,
    ) -> Result<Policy, PolicyErrors> {
        let text = Policy::read(path)?;
        Policy::load(
            &text,
            &path.display().to_string(),
            vars,
            &Env::process(),
            Some(checks),
        )
    }

    /// [`Policy::from_str`] with [`ExampleChecks`], as
    /// [`Policy::from_file_checked_with`].
    pub fn from_str_checked_with(
        text: &str,
        origin: &str,
        vars: &Vars,
        checks: &dyn ExampleChecks,
    ) -> Result<Policy, PolicyErrors> {
        Policy::load(text, origin, vars, &Env::process(), Some(checks))
    }

    fn read(path: &Path) -> Result<String, PolicyErrors> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| {
            PolicyErrors::new(vec![PolicyError {
                file: origin.clone(),
                line: 0,
                col: 0,
                rule: None,
                message: format!("cannot read the policy file: {e}"),
                hint: Some("check the path given with --policy".into()),
            }])
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            PolicyErrors::new(vec![PolicyError {
                file: origin.clone(),
                line: 0,
                col: 0,
                rule: None,
                message: format!(
                    "the policy file is not UTF-8 (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
                hint: Some("save the file as UTF-8".into()),
            }])
        })?;
        Ok(text)
    }

    /// Load a policy from text; `origin` names it in errors; `${env.…}`
    /// references read this process's environment.
    #[allow(clippy::should_implement_trait)] // takes extra arguments, unlike FromStr
    pub fn from_str(text: &str, origin: &str, vars: &Vars) -> Result<Policy, PolicyErrors> {
        Policy::from_str_with_env(text, origin, vars, &Env::process())
    }

    /// [`Policy::from_str`] with `${env.…}` references read from `env`.
    pub fn from_str_with_env(
        text: &str,
        origin: &str,
        vars: &Vars,
        env: &Env,
    ) -> Result<Policy, PolicyErrors> {
        Policy::load(text, origin, vars, env, None)
    }

    fn load(
        text: &str,
        origin: &str,
        vars: &Vars,
        env: &Env,
        checks: Option<&dyn ExampleChecks>,
    ) -> Result<Policy, PolicyErrors> {
        let vars = vars.normalised();
        let fail = |loc: yaml::Loc, message: String, hint: Option<&str>| {
            PolicyErrors::new(vec![PolicyError {
                file: origin.to_string(),
                line: loc.line,
                col: loc.col,
                rule: None,
                message,
                hint: hint.map(str::to_owned),
            }])
        };
        let root = match yaml::parse(text) {
            Err(e) => return Err(fail(e.loc, e.message, None)),
            Ok(None) => {
                return Err(fail(
                    yaml::Loc { line: 1, col: 1 },
                    "the policy is empty".into(),
                    Some("start with `version: 1`, then `rules:`"),
                ))
            }
            Ok(Some(root)) => root,
        };
        let checks = checks.map(|c| (c, examples_id(text)));
        let compiled =
            compile::load(&root, origin, &vars, env, checks).map_err(PolicyErrors::new)?;
        let index = Index::build(&compiled.rules);
        Ok(Policy {
            mode: compiled.mode,
            defaults: compiled.defaults,
            rules: compiled.rules,
            index,
            sha256: policy_hash(text, &vars, &compiled.env),
            vars,
            env: compiled.env,
            origin: origin.to_string(),
            examples: compiled.examples,
        })
    }

    /// Judge one action. Pure and deterministic; never panics.
    pub fn decide(&self, action: &Action) -> Decision {
        decide::decide(&self.rules, &self.index, &self.defaults, action)
    }

    /// The decision and every matching rule with the result of each of its
    /// conditions. Evaluates every rule of the kind (slower than
    /// [`Policy::decide`], with the same decision).
    pub fn explain(&self, action: &Action) -> Explanation {
        explain::explain(self, action)
    }

    /// Whether refusals are carried out.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The verdict for actions of `kind` that no rule matches.
    pub fn default_verdict(&self, kind: ActionKind) -> Verdict {
        self.defaults[compile::kind_index(kind)]
    }

    /// Number of rules judging `kind`.
    pub fn rule_count(&self, kind: ActionKind) -> usize {
        self.rules.iter().filter(|r| r.kind == kind).count()
    }

    /// Number of embedded rule examples and policy tests checked at load.
    pub fn example_count(&self) -> usize {
        self.examples
    }

    /// Ids of all rules, in file order.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.id.as_str())
    }

    /// The reason text of a rule.
    pub fn reason(&self, rule_id: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| r.id == rule_id)
            .map(|r| r.reason.as_str())
    }

    /// The policy's identity:
    /// `SHA-256("lexecon-policy-v1\0" || frame(file text) || frame(HOME) ||
    /// frame(WORKSPACE) || frame(TMPDIR))`, where `frame(x)` is the length of
    /// `x` as 8 bytes big-endian followed by `x`. It covers the exact text
    /// (so anyone holding the file can recompute it, comments included) and
    /// the variable values it was loaded with (so it names the rules that
    /// were really in force on that machine); a policy with `${env.NAME:-…}`
    /// references then adds, for each variable by name order,
    /// `frame("env.NAME") || frame(the path it expanded to)`.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// Whether some exec rule matches by program content hash (then the
    /// caller must supply [`crate::action::ExecAction::sha256`]).
    pub fn uses_content_hash(&self) -> bool {
        self.rules.iter().any(|r| {
            [Some(&r.when), r.unless.as_ref()]
                .into_iter()
                .flatten()
                .any(|c| matches!(c, Conds::Exec(e) if e.sha256.is_some()))
        })
    }

    /// The wildcard-free program paths named by `program:` conditions (after
    /// variable expansion), in rule order, without duplicates. The caller may
    /// resolve them to file identities, so that a program reached under
    /// another name (a hard link) is still judged as the program the rule
    /// names; the policy itself never touches the filesystem.
    pub fn literal_programs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for r in &self.rules {
            for c in [Some(&r.when), r.unless.as_ref()].into_iter().flatten() {
                let Conds::Exec(e) = c else { continue };
                let Some(g) = &e.program else { continue };
                for lit in g.literals.iter().flatten() {
                    let p = PathBuf::from(lit);
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
            }
        }
        out
    }

    /// The escalation deadline rule `rule_id` sets (`timeout_seconds`), if
    /// any; otherwise the supervisor's default applies.
    pub fn escalate_timeout(&self, rule_id: &str) -> Option<std::time::Duration> {
        self.rules
            .iter()
            .find(|r| r.id == rule_id)
            .and_then(|r| r.timeout)
    }

    /// The variable values the policy was loaded with.
    pub fn vars(&self) -> &Vars {
        &self.vars
    }

    /// The environment variables the policy's `${env.…}` references read,
    /// each with the path it expanded to (its value, or the default when it
    /// was unset or empty).
    pub fn env_vars(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// The file name (or origin) the policy was loaded from.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

fn policy_hash(text: &str, vars: &Vars, env: &BTreeMap<String, String>) -> [u8; 32] {
    use std::os::unix::ffi::OsStrExt;
    let mut h = Sha256::new();
    h.update(b"lexecon-policy-v1\0");
    let mut frame = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    frame(text.as_bytes());
    frame(vars.home.as_os_str().as_bytes());
    frame(vars.workspace.as_os_str().as_bytes());
    frame(vars.tmpdir.as_os_str().as_bytes());
    // Only policies that reference the environment add frames, so the hash
    // of every other policy is unchanged.
    for (name, value) in env {
        frame(format!("env.{name}").as_bytes());
        frame(value.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests;
