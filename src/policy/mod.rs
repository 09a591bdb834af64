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
//! precedence), `explain`, `error`, `layers` (`include:`: policies built
//! on others, which they can only tighten; the only other place that
//! reads files, the included ones).

mod argv;
mod compile;
mod decide;
mod error;
mod explain;
mod glob;
mod layers;
pub mod limits;
pub mod net;
mod rule;
pub mod shipped;
pub mod tool;
mod yaml;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use error::{PolicyError, PolicyErrors};
pub use explain::{Explanation, RuleMatch};
pub use layers::{Layer, MAX_INCLUDE_DEPTH};
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

/// What the supervisor knew about a call besides its [`Action`], as
/// [`Policy::judge`] takes it. `Default`: a plain call.
#[derive(Debug, Clone, Copy, Default)]
pub struct Circumstances<'a> {
    /// For an exec of the dynamic loader asked to run a program
    /// (`ld.so PROG`): the exec of PROG it performs, judged too.
    pub loaded: Option<&'a Action>,
    /// For an exec: the path a `program:` condition names literally whose
    /// file (device and inode) is the file executed (a hard link), judged
    /// too.
    pub same_file_as: Option<&'a Path>,
    /// The action is a file mapped executable (`mmap`/`mprotect` with
    /// `PROT_EXEC`), judged as an exec that only block and escalate rules
    /// refuse.
    pub code_map: bool,
}

/// The values of `${HOME}`, `${WORKSPACE}`, `${TMPDIR}` with which rule
/// examples and policy tests are checked (`/home/user`,
/// `/home/user/project`, `/tmp`), whatever the real ones.
pub fn example_vars() -> Vars {
    compile::example_vars()
}

/// Makes this process's policies refuse every action, as they do once a
/// pattern could not be evaluated. For the test of that fail-closed path
/// only (it cannot be undone).
#[doc(hidden)]
pub fn fail_pattern_evaluation_for_tests() {
    glob::fail_evaluation();
}

/// How the ids of Lexecon's built-in rules begin (`lexecon.self-protect.keys`
/// …); no policy rule may take such an id.
pub const BUILTIN_PREFIX: &str = "lexecon.";

/// How a reason names a program judged under the loader's name.
pub const ALIAS_LOADER: &str = "run through the dynamic loader as";
/// How a reason names a program judged under a hard link's other name.
pub const ALIAS_SAME_FILE: &str = "the same file as";
/// The reason of a code mapping no block or escalate rule matches.
pub const CODE_MAP_DEFAULT_REASON: &str = "no block or escalate exec rule matches the mapped file";

/// The reason of a decision no rule matched: the kind's default verdict.
/// Ledgers of format 2 leave it out and readers derive it again
/// ([`crate::ledger::record::default_reason`]).
pub fn default_reason(kind: crate::action::ActionKind, verdict: Verdict) -> String {
    format!("no rule matched; the default for {kind} is {verdict}")
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
    defaults: [Verdict; 4],
    rules: Vec<Rule>,
    index: Index,
    sha256: [u8; 32],
    vars: Vars,
    env: BTreeMap<String, String>,
    origin: String,
    examples: usize,
    breaker: Option<limits::Breaker>,
    /// Whether some rule has `rate` or `risk`, or there is a breaker.
    limited: bool,
    /// The layers this file includes (`include:`), when it has any.
    stack: Option<Box<layers::Stack>>,
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
        layers::load(text, origin, &vars.normalised(), env, checks).map_err(PolicyErrors::new)
    }

    /// One file's policy from its YAML tree, without the layers it
    /// includes; `above` (the included layers, loaded with the example
    /// variables) judges its examples and tests as a layer below them.
    pub(crate) fn single(
        text: &str,
        root: &yaml::Node,
        origin: &str,
        vars: &Vars,
        env: &Env,
        above: Option<&layers::Above<'_>>,
        checks: Option<&dyn ExampleChecks>,
    ) -> Result<Policy, Vec<PolicyError>> {
        let checks = checks.map(|c| (c, examples_id(text)));
        let compiled = compile::load(root, origin, vars, env, above, checks)?;
        let policy = Policy::assemble(text, origin, vars, compiled);
        crate::timing::mark("policy: indexed and hashed");
        Ok(policy)
    }

    /// [`Policy::single`] with the example variables and no environment,
    /// its examples and tests not run: what a layer below it is checked
    /// against.
    pub(crate) fn single_for_examples(
        text: &str,
        root: &yaml::Node,
        origin: &str,
    ) -> Result<Policy, Vec<PolicyError>> {
        let vars = compile::example_vars();
        let compiled = compile::load_for_examples(root, origin)?;
        Ok(Policy::assemble(text, origin, &vars, compiled))
    }

    fn assemble(text: &str, origin: &str, vars: &Vars, compiled: compile::Compiled) -> Policy {
        let index = Index::build(&compiled.rules);
        let limited = compiled.breaker.is_some()
            || compiled
                .rules
                .iter()
                .any(|r| r.rate.is_some() || r.risk.is_some());
        Policy {
            mode: compiled.mode,
            defaults: compiled.defaults,
            rules: compiled.rules,
            index,
            sha256: policy_hash(text, vars, &compiled.env, &[]),
            vars: vars.clone(),
            env: compiled.env,
            origin: origin.to_string(),
            examples: compiled.examples,
            breaker: compiled.breaker,
            limited,
            stack: None,
        }
    }

    /// This file's own decision, its included layers left out.
    pub(crate) fn decide_own(&self, action: &Action) -> Decision {
        decide::decide(&self.rules, &self.index, &self.defaults, action)
    }

    /// Judge one action. Pure and deterministic; never panics.
    pub fn decide(&self, action: &Action) -> Decision {
        let d = match &self.stack {
            None => self.decide_own(action),
            Some(stack) => layers::decide(stack, self, action),
        };
        if glob::evaluation_failed() {
            return Decision {
                verdict: Verdict::Block,
                matched: d.matched,
                rule: None,
                reason: "a pattern of the policy could not be evaluated (an internal error): every action is refused; report it with the policy".into(),
            };
        }
        d
    }

    /// Judge one action as the supervisor does, with what it knew about the
    /// call besides the action ([`Circumstances`]): the program under the
    /// other names it runs as (the stronger verdict wins, and the reason
    /// says which name), and a code mapping refused only by block and
    /// escalate rules. The one place that says how an action is judged:
    /// the session calls it for every call, `lexecon replay` and `lexecon
    /// verify --policy` for every recorded one. Pure.
    pub fn judge(&self, action: &Action, how: &Circumstances<'_>) -> Decision {
        let mut d = self.decide(action);
        let mut aliases: Vec<(Action, &str)> = Vec::new();
        if let Some(target) = how.loaded {
            aliases.push((target.clone(), ALIAS_LOADER));
        }
        if let (Action::Exec(x), Some(named)) = (action, how.same_file_as) {
            if named != x.path {
                let mut alias = x.clone();
                alias.path = named.to_path_buf();
                aliases.push((Action::Exec(alias), ALIAS_SAME_FILE));
            }
        }
        for (alias, how) in aliases {
            let t = self.decide(&alias);
            if t.verdict > d.verdict {
                let prog = match &alias {
                    Action::Exec(x) => x.path.display().to_string(),
                    Action::Open(o) => o.path.display().to_string(),
                    Action::Connect(c) => net::target_text(&c.target),
                    Action::Tool(t) => t.name.clone(),
                };
                let mut matched = d.matched;
                matched.extend(t.matched);
                d = Decision {
                    verdict: t.verdict,
                    matched,
                    rule: t.rule,
                    reason: format!("{} ({how} {prog})", t.reason),
                };
            }
        }
        if how.code_map && d.rule.is_none() {
            // A mapping is refused by block and escalate rules only: the
            // exec default does not reach libraries the loader maps.
            d.verdict = Verdict::Allow;
            d.reason = CODE_MAP_DEFAULT_REASON.to_string();
        }
        d
    }

    /// The decision and every matching rule with the result of each of its
    /// conditions. Evaluates every rule of the kind (slower than
    /// [`Policy::decide`], with the same decision).
    pub fn explain(&self, action: &Action) -> Explanation {
        match &self.stack {
            None => explain::explain(self, action),
            Some(stack) => layers::explain(stack, self, action),
        }
    }

    /// Whether refusals are carried out.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The verdict for actions of `kind` that no rule matches.
    pub fn default_verdict(&self, kind: ActionKind) -> Verdict {
        self.layer_policies()
            .map(|p| p.defaults[compile::kind_index(kind)])
            .max()
            .unwrap_or(Verdict::Allow)
    }

    /// Number of rules judging `kind` (in every layer).
    pub fn rule_count(&self, kind: ActionKind) -> usize {
        self.all_rules().filter(|r| r.kind == kind).count()
    }

    /// Number of embedded rule examples and policy tests checked at load
    /// (in every layer).
    pub fn example_count(&self) -> usize {
        self.layer_policies().map(|p| p.examples).sum()
    }

    /// Ids of all rules, in layer order (the included layers first), each
    /// layer's in file order.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.all_rules().map(|r| r.id.as_str())
    }

    /// The reason text of a rule.
    pub fn reason(&self, rule_id: &str) -> Option<&str> {
        self.all_rules()
            .find(|r| r.id == rule_id)
            .map(|r| r.reason.as_str())
    }

    /// Every layer of the policy: the files it includes (each after the
    /// files it includes itself, in `include:` order), then this file; for
    /// a policy without `include:`, this file alone. Each with its path (as
    /// loaded: an absolute path or `builtin:NAME`) and its own hash
    /// (`sha256` of that file alone, see docs/policy.md, "Layers").
    pub fn layers(&self) -> Vec<Layer> {
        self.layer_policies()
            .map(|p| Layer {
                path: p.origin.clone(),
                sha256: p.own_sha256(),
            })
            .collect()
    }

    /// Whether the policy includes other files (`include:`).
    pub fn is_layered(&self) -> bool {
        self.stack.is_some()
    }

    /// The hash of this file alone, its included layers left out (for a
    /// policy without `include:`, [`Policy::sha256`]).
    pub fn own_sha256(&self) -> [u8; 32] {
        self.stack.as_ref().map_or(self.sha256, |s| s.own_sha256)
    }

    /// The path (as loaded) of the layer that holds rule `rule_id`.
    pub fn layer_of(&self, rule_id: &str) -> Option<&str> {
        self.layer_policies()
            .find(|p| p.rules.iter().any(|r| r.id == rule_id))
            .map(|p| p.origin.as_str())
    }

    /// The policy of each layer, in layer order (this one last).
    fn layer_policies(&self) -> impl Iterator<Item = &Policy> {
        let above = self.stack.iter().flat_map(|s| s.above.iter().map(|p| &**p));
        above.chain(std::iter::once(self))
    }

    /// The rules of every layer, in layer order.
    fn all_rules(&self) -> impl Iterator<Item = &Rule> {
        self.layer_policies().flat_map(|p| p.rules.iter())
    }

    /// The policy's identity:
    /// `SHA-256("lexecon-policy-v1\0" || frame(file text) || frame(HOME) ||
    /// frame(WORKSPACE) || frame(TMPDIR))`, where `frame(x)` is the length of
    /// `x` as 8 bytes big-endian followed by `x`. It covers the exact text
    /// (so anyone holding the file can recompute it, comments included) and
    /// the variable values it was loaded with (so it names the rules that
    /// were really in force on that machine); a policy with `${env.NAME:-…}`
    /// references then adds, for each variable by name order,
    /// `frame("env.NAME") || frame(the path it expanded to)`; a policy with
    /// `include:` then adds, for each included layer in layer order,
    /// `frame("layer") || frame(that layer's own hash)` (docs/policy.md,
    /// "Layers"), so the hash names every file in force.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// Whether some exec rule matches by program content hash (then the
    /// caller must supply [`crate::action::ExecAction::sha256`]).
    pub fn uses_content_hash(&self) -> bool {
        self.all_rules().any(|r| {
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
        for r in self.all_rules() {
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
        self.all_rules()
            .find(|r| r.id == rule_id)
            .and_then(|r| r.timeout)
    }

    /// The rate limit of rule `rule_id` (`rate:`), if any.
    pub fn rate(&self, rule_id: &str) -> Option<limits::Rate> {
        self.all_rules()
            .find(|r| r.id == rule_id)
            .and_then(|r| r.rate)
    }

    /// The risk weight of rule `rule_id` (`risk:`), if it sets one.
    pub fn risk(&self, rule_id: &str) -> Option<u32> {
        self.all_rules()
            .find(|r| r.id == rule_id)
            .and_then(|r| r.risk)
    }

    /// The run's breaker (`breaker:`), if any: of whichever layer sets it
    /// (only one may, see docs/policy.md, "Layers").
    pub fn breaker(&self) -> Option<limits::Breaker> {
        self.layer_policies().find_map(|p| p.breaker)
    }

    /// Whether the policy (any of its layers) sets rate limits or a
    /// breaker (state the session keeps over a run).
    pub fn has_limits(&self) -> bool {
        self.layer_policies().any(|p| p.limited)
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

pub(crate) fn policy_hash(
    text: &str,
    vars: &Vars,
    env: &BTreeMap<String, String>,
    layers: &[[u8; 32]],
) -> [u8; 32] {
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
    // Likewise only policies with `include:`.
    for layer in layers {
        frame(b"layer");
        frame(layer);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests;
