//! Compiled rules and their conditions, and the evaluation of one rule
//! against one action (optionally recording why each condition held or not).

use std::borrow::Cow;

use regex_automata::meta::Regex;

use super::argv::{self, ArgItem, FlagGroup, Parsed};
use super::glob::Globs;
use super::yaml::Loc;
use crate::action::{Access, ActionKind, ExecAction, FileOps, OpenAction, Verdict};

/// One rule, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub id: String,
    pub kind: ActionKind,
    pub verdict: Verdict,
    pub reason: String,
    /// How long an escalation by this rule waits for a human
    /// (`timeout_seconds`), when the rule sets it.
    pub timeout: Option<std::time::Duration>,
    pub when: Conds,
    pub unless: Option<Conds>,
    pub loc: Loc,
    /// `rate: N/PERIOD` (see `policy::limits`).
    pub rate: Option<super::limits::Rate>,
    /// `risk: W`: the weight a decision by this rule adds to the breaker.
    pub risk: Option<u32>,
}

/// The conditions of a rule (all must hold), by kind.
#[derive(Debug, Clone)]
pub(crate) enum Conds {
    Exec(Box<ExecConds>),
    Open(Box<OpenConds>),
    Connect(Box<super::net::ConnectConds>),
    Tool(Box<super::tool::ToolConds>),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ExecConds {
    pub program: Option<Globs>,
    pub name: Option<Globs>,
    pub sha256: Option<Vec<[u8; 32]>>,
    pub args: Option<(Vec<ArgItem>, Vec<String>)>,
    pub argv_regex: Option<(Regex, String)>,
    pub flags: Option<Vec<FlagGroup>>,
    pub operand: Option<Globs>,
    pub operand_path: Option<Globs>,
    pub operand_outside: Option<Globs>,
    /// Absolute, normalised paths; holds when some operand is one of them or
    /// an ancestor of one.
    pub operand_covers: Option<Vec<String>>,
    pub cwd: Option<Globs>,
}

impl ExecConds {
    /// Whether evaluating needs the decoded argument list.
    pub fn needs_args(&self) -> bool {
        self.args.is_some()
            || self.flags.is_some()
            || self.operand.is_some()
            || self.operand_path.is_some()
            || self.operand_outside.is_some()
            || self.operand_covers.is_some()
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct OpenConds {
    pub path: Option<Globs>,
    pub access: Option<Access>,
    /// The operations the rule judges (`op:`); `None`: every one.
    pub op: Option<FileOps>,
    pub cwd: Option<Globs>,
    pub process: Option<ProcessConds>,
}

/// Conditions on the program the calling process runs, as confirmed at its
/// exec (`process:` of an open rule); all must hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcessConds {
    pub program: Option<Globs>,
    pub name: Option<Globs>,
    pub sha256: Option<Vec<[u8; 32]>>,
}

/// The result of one condition, for explanations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionResult {
    /// The condition's key as written in the policy (`name`, `flags`, `path`…;
    /// `unless` for the exception as a whole).
    pub condition: &'static str,
    /// Whether it held.
    pub holds: bool,
    /// What was compared with what.
    pub detail: String,
}

/// Text views of an exec action, computed once per decision. Bytes that are
/// not UTF-8 are replaced by U+FFFD (see the module docs of `policy`).
pub(crate) struct ExecView<'a> {
    pub action: &'a ExecAction,
    pub path: Cow<'a, str>,
    pub cwd: Cow<'a, str>,
    pub argv0: Cow<'a, str>,
    /// `argv[1..]`, decoded; empty unless some candidate rule needs it.
    pub args: &'a [Cow<'a, str>],
    pub parsed: &'a Parsed<'a>,
    /// The operands resolved against `cwd` (same order as
    /// `parsed.operands`); empty unless some candidate rule needs them.
    pub resolved: &'a [String],
}

pub(crate) struct OpenView<'a> {
    pub action: &'a OpenAction,
    pub path: Cow<'a, str>,
    pub cwd: Cow<'a, str>,
    /// The caller's program path, when known.
    pub process: Option<Cow<'a, str>>,
}

pub(crate) struct ConnectView<'a> {
    pub action: &'a crate::action::ConnectAction,
    /// The caller's program path, when known.
    pub process: Option<Cow<'a, str>>,
}

pub(crate) enum View<'a> {
    Exec(ExecView<'a>),
    Open(OpenView<'a>),
    Connect(ConnectView<'a>),
    Tool(&'a crate::action::ToolAction),
}

/// The last component of a `/`-separated path (the whole string if none).
pub(crate) fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

impl Rule {
    /// Whether the rule matches. With `trace`, every condition is evaluated
    /// and its result recorded; without, evaluation stops at the first
    /// condition that fails.
    ///
    /// A fact the supervisor could not establish (a program's content hash,
    /// the caller's working directory) never helps the tree: it is taken as
    /// whatever makes this rule stricter. For a `block` or `escalate` rule an
    /// unknown fact satisfies its conditions and defeats its `unless`; for an
    /// `allow` rule it fails its conditions and satisfies its `unless`.
    pub fn matches(&self, view: &View<'_>, mut trace: Option<&mut Vec<ConditionResult>>) -> bool {
        let strict = self.verdict != Verdict::Allow;
        let when = eval(&self.when, view, strict, trace.as_deref_mut());
        if !when && trace.is_none() {
            return false;
        }
        let Some(unless) = &self.unless else {
            return when;
        };
        let mut inner = Vec::new();
        let exception = eval(unless, view, !strict, trace.is_some().then_some(&mut inner));
        if let Some(t) = trace {
            let detail = inner
                .iter()
                .map(|c| {
                    format!(
                        "{} {}: {}",
                        c.condition,
                        if c.holds { "holds" } else { "fails" },
                        c.detail
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            t.push(ConditionResult {
                condition: "unless",
                holds: !exception,
                detail: if exception {
                    format!("the exception applies ({detail})")
                } else {
                    format!("the exception does not apply ({detail})")
                },
            });
        }
        when && !exception
    }
}

/// How an unknown fact was taken, for explanations.
fn taken_as(unknown: bool) -> &'static str {
    if unknown {
        "taken as holding, since unknown facts never help"
    } else {
        "taken as failing, since unknown facts never help"
    }
}

/// Evaluate a set of conditions: all must hold. A condition on a fact that
/// is not known holds when `unknown` is true (see [`Rule::matches`]).
fn eval(
    conds: &Conds,
    view: &View<'_>,
    unknown: bool,
    mut trace: Option<&mut Vec<ConditionResult>>,
) -> bool {
    let mut all = true;
    macro_rules! cond {
        ($name:expr, $holds:expr, $detail:expr) => {{
            let holds: bool = $holds;
            match trace.as_deref_mut() {
                Some(t) => {
                    t.push(ConditionResult {
                        condition: $name,
                        holds,
                        detail: $detail,
                    });
                    all &= holds;
                }
                None if !holds => return false,
                None => {}
            }
        }};
    }
    match (conds, view) {
        (Conds::Exec(c), View::Exec(v)) => {
            if let Some(g) = &c.program {
                cond!(
                    "program",
                    g.is_match(&v.path),
                    describe_match(g, &v.path, "program")
                );
            }
            if let Some(g) = &c.name {
                let base = basename(&v.path);
                let arg0 = basename(&v.argv0);
                cond!(
                    "name",
                    g.is_match(base) || g.is_match(arg0),
                    match (g.first_match(base), g.first_match(arg0)) {
                        (Some(p), _) => format!("program name '{base}' matches '{p}'"),
                        (None, Some(p)) => format!("argv[0] name '{arg0}' matches '{p}'"),
                        (None, None) => format!(
                            "neither program name '{base}' nor argv[0] name '{arg0}' matches {}",
                            g.describe()
                        ),
                    }
                );
            }
            if let Some(hashes) = &c.sha256 {
                let held = match v.action.sha256 {
                    Some(h) => hashes.contains(&h),
                    None => unknown,
                };
                cond!(
                    "sha256",
                    held,
                    match v.action.sha256 {
                        None => format!(
                            "the program's content hash is not known: {}",
                            taken_as(unknown)
                        ),
                        Some(h) if held => format!("content hash {} is listed", hex::encode(h)),
                        Some(h) => format!("content hash {} is not listed", hex::encode(h)),
                    }
                );
            }
            if let Some((items, sources)) = &c.args {
                cond!(
                    "args",
                    argv::match_positional(items, v.args),
                    format!(
                        "arguments {:?} {} [{}]",
                        v.args,
                        if argv::match_positional(items, v.args) {
                            "match"
                        } else {
                            "do not match"
                        },
                        sources.join(", ")
                    )
                );
            }
            if let Some((re, source)) = &c.argv_regex {
                let joined = join_argv(v);
                cond!(
                    "argv_regex",
                    re.is_match(joined.as_str()),
                    format!(
                        "'{joined}' {} /{source}/",
                        if re.is_match(joined.as_str()) {
                            "matches"
                        } else {
                            "does not match"
                        }
                    )
                );
            }
            if let Some(groups) = &c.flags {
                let found: Vec<Option<String>> = groups.iter().map(|g| g.find(v.parsed)).collect();
                cond!(
                    "flags",
                    found.iter().all(Option::is_some),
                    groups
                        .iter()
                        .zip(&found)
                        .map(|(g, f)| match f {
                            Some(s) => format!("'{}' given as {s}", g.source),
                            None => format!("'{}' not given", g.source),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if let Some(g) = &c.operand {
                let hit = v.parsed.operands.iter().find(|o| g.is_match(o));
                cond!(
                    "operand",
                    hit.is_some(),
                    match hit {
                        Some(o) =>
                            format!("operand '{o}' matches '{}'", g.first_match(o).unwrap_or("")),
                        None => format!(
                            "no operand of {:?} matches {}",
                            v.parsed.operands,
                            g.describe()
                        ),
                    }
                );
            }
            // Relative operands cannot be placed when the cwd is not known.
            let operands_unknown =
                v.cwd.is_empty() && v.parsed.operands.iter().any(|o| !o.starts_with('/'));
            let or_unknown = |hit: bool| hit || (operands_unknown && unknown);
            if let Some(g) = &c.operand_path {
                let hit = v.resolved.iter().find(|p| g.is_match(p));
                cond!(
                    "operand_path",
                    or_unknown(hit.is_some()),
                    match &hit {
                        Some(p) => format!(
                            "operand resolves to '{p}', which matches '{}'",
                            g.first_match(p).unwrap_or("")
                        ),
                        None => format!(
                            "no operand of {:?} (resolved against '{}') matches {}",
                            v.parsed.operands,
                            v.cwd,
                            g.describe()
                        ),
                    }
                );
            }
            if let Some(g) = &c.operand_outside {
                let hit = v.resolved.iter().find(|p| !g.is_match(p));
                cond!(
                    "operand_outside",
                    or_unknown(hit.is_some()),
                    match &hit {
                        Some(p) =>
                            format!("operand resolves to '{p}', outside all of {}", g.describe()),
                        None => format!(
                            "every operand of {:?} (resolved against '{}') is inside {}",
                            v.parsed.operands,
                            v.cwd,
                            g.describe()
                        ),
                    }
                );
            }
            if let Some(paths) = &c.operand_covers {
                let hit = v
                    .resolved
                    .iter()
                    .find_map(|p| paths.iter().find(|l| covers(p, l)).map(|l| (p, l)));
                cond!(
                    "operand_covers",
                    or_unknown(hit.is_some()),
                    match &hit {
                        Some((p, l)) if *p == *l => format!("operand resolves to '{p}'"),
                        Some((p, l)) => format!("operand resolves to '{p}', which contains '{l}'"),
                        None => format!(
                            "no operand of {:?} (resolved against '{}') is or contains any of {:?}",
                            v.parsed.operands, v.cwd, paths
                        ),
                    }
                );
            }
            if let Some(g) = &c.cwd {
                cond!(
                    "cwd",
                    cwd_holds(g, &v.cwd, unknown),
                    describe_cwd(g, &v.cwd, unknown)
                );
            }
        }
        (Conds::Open(c), View::Open(v)) => {
            if let Some(ops) = c.op {
                let holds = ops.contains(v.action.op);
                cond!(
                    "op",
                    holds,
                    format!(
                        "operation '{}' {} [{}]",
                        v.action.op,
                        if holds { "is one of" } else { "is none of" },
                        ops
                    )
                );
            }
            if let Some(a) = c.access {
                cond!(
                    "access",
                    v.action.access.intersects(a),
                    format!(
                        "requested [{}] {} [{}]",
                        v.action.access,
                        if v.action.access.intersects(a) {
                            "includes some of"
                        } else {
                            "includes none of"
                        },
                        a
                    )
                );
            }
            if let Some(g) = &c.path {
                // Moving or removing a directory takes everything beneath it
                // along: where that makes the rule stricter (`unknown`), the
                // condition also holds when a path below could match.
                let own = g.is_match(&v.path);
                let beneath =
                    !own && unknown && v.action.moves_subtree() && g.could_match_beneath(&v.path);
                cond!(
                    "path",
                    own || beneath,
                    if beneath {
                        format!(
                            "the directory '{}' is moved or removed with everything beneath it, and a path beneath it can match {}",
                            v.path,
                            g.describe()
                        )
                    } else {
                        describe_match(g, &v.path, "path")
                    }
                );
            }
            if let Some(g) = &c.cwd {
                cond!(
                    "cwd",
                    cwd_holds(g, &v.cwd, unknown),
                    describe_cwd(g, &v.cwd, unknown)
                );
            }
            if let Some(p) = &c.process {
                // What the caller runs, when it can be relied on: not known,
                // or with code injected through the loader, it is unknown.
                let known = v.action.process.as_ref().and_then(|i| i.trusted());
                let why_unknown = || match &v.action.process {
                    None => "the calling process's program is not known".to_string(),
                    Some(i) => format!(
                        "the calling process runs {} with other code injected ({})",
                        i.program.display(),
                        i.injected.as_deref().unwrap_or("")
                    ),
                };
                let program = v.process.as_deref().unwrap_or("");
                if let Some(g) = &p.program {
                    cond!(
                        "process.program",
                        known.map_or(unknown, |_| g.is_match(program)),
                        match known {
                            None => format!("{}: {}", why_unknown(), taken_as(unknown)),
                            Some(_) => describe_match(g, program, "caller's program"),
                        }
                    );
                }
                if let Some(g) = &p.name {
                    let base = basename(program);
                    cond!(
                        "process.name",
                        known.map_or(unknown, |_| g.is_match(base)),
                        match known {
                            None => format!("{}: {}", why_unknown(), taken_as(unknown)),
                            Some(_) => describe_match(g, base, "caller's program name"),
                        }
                    );
                }
                if let Some(hashes) = &p.sha256 {
                    let hash = known.map(|i| i.sha256);
                    let held = match hash {
                        Some(Some(h)) => hashes.contains(&h),
                        _ => unknown,
                    };
                    cond!(
                        "process.sha256",
                        held,
                        match hash {
                            None => format!("{}: {}", why_unknown(), taken_as(unknown)),
                            Some(None) => format!(
                                "the content hash of the caller's program is not known: {}",
                                taken_as(unknown)
                            ),
                            Some(Some(h)) if held =>
                                format!("caller's program hash {} is listed", hex::encode(h)),
                            Some(Some(h)) =>
                                format!("caller's program hash {} is not listed", hex::encode(h)),
                        }
                    );
                }
            }
        }
        (Conds::Connect(c), View::Connect(v)) => {
            let mut checks = Vec::new();
            super::net::eval(c, v.action, unknown, &mut checks);
            if let Some(p) = &c.process {
                if c.judges(v.action.op) {
                    process_checks(
                        p,
                        &v.action.process,
                        v.process.as_deref(),
                        unknown,
                        &mut checks,
                    );
                }
            }
            for (name, holds, detail) in checks {
                cond!(name, holds, detail);
            }
        }
        (Conds::Tool(c), View::Tool(a)) => {
            let mut checks = Vec::new();
            super::tool::eval(c, a, &mut checks);
            for (name, holds, detail) in checks {
                cond!(name, holds, detail);
            }
        }
        // A rule is only ever evaluated against actions of its own kind; a
        // mismatch cannot match.
        _ => return false,
    }
    all
}

/// The `process:` conditions of a connect rule (the same meaning as for
/// open rules).
fn process_checks(
    p: &ProcessConds,
    info: &Option<crate::action::ProcessInfo>,
    program: Option<&str>,
    unknown: bool,
    out: &mut Vec<super::net::Check>,
) {
    let known = info.as_ref().and_then(|i| i.trusted());
    let why_unknown = || match info {
        None => "the calling process's program is not known".to_string(),
        Some(i) => format!(
            "the calling process runs {} with other code injected ({})",
            i.program.display(),
            i.injected.as_deref().unwrap_or("")
        ),
    };
    let program = program.unwrap_or("");
    if let Some(g) = &p.program {
        out.push((
            "process.program",
            known.map_or(unknown, |_| g.is_match(program)),
            match known {
                None => format!("{}: {}", why_unknown(), taken_as(unknown)),
                Some(_) => describe_match(g, program, "caller's program"),
            },
        ));
    }
    if let Some(g) = &p.name {
        let base = basename(program);
        out.push((
            "process.name",
            known.map_or(unknown, |_| g.is_match(base)),
            match known {
                None => format!("{}: {}", why_unknown(), taken_as(unknown)),
                Some(_) => describe_match(g, base, "caller's program name"),
            },
        ));
    }
    if let Some(hashes) = &p.sha256 {
        let held = match known.map(|i| i.sha256) {
            Some(Some(h)) => hashes.contains(&h),
            _ => unknown,
        };
        out.push((
            "process.sha256",
            held,
            if held == unknown && known.and_then(|i| i.sha256).is_none() {
                format!(
                    "the caller's program hash is not known: {}",
                    taken_as(unknown)
                )
            } else if held {
                "caller's program hash is listed".to_string()
            } else {
                "caller's program hash is not listed".to_string()
            },
        ));
    }
}

/// A `cwd` condition; an empty cwd is one that could not be read.
fn cwd_holds(g: &Globs, cwd: &str, unknown: bool) -> bool {
    if cwd.is_empty() {
        unknown
    } else {
        g.is_match(cwd)
    }
}

fn describe_cwd(g: &Globs, cwd: &str, unknown: bool) -> String {
    if cwd.is_empty() {
        format!("the working directory is not known: {}", taken_as(unknown))
    } else {
        describe_match(g, cwd, "cwd")
    }
}

/// Whether `dir` is `path` or one of its ancestors (both normalised).
fn covers(dir: &str, path: &str) -> bool {
    dir == path
        || dir == "/"
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn describe_match(g: &Globs, subject: &str, what: &str) -> String {
    match g.first_match(subject) {
        Some(p) => format!("{what} '{subject}' matches '{p}'"),
        None => format!("{what} '{subject}' matches none of {}", g.describe()),
    }
}

/// `argv` joined with single spaces (argv[0] included, as given).
fn join_argv(v: &ExecView<'_>) -> String {
    let mut s = String::with_capacity(64);
    for (i, a) in v.action.argv.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Build the text views of `action` and run `f` on them. `needs_args`:
/// decode `argv[1..]` and parse options (skipped when no rule needs them).
pub(crate) fn with_view<R>(
    action: &crate::action::Action,
    needs_args: bool,
    f: impl FnOnce(&View<'_>) -> R,
) -> R {
    use crate::action::Action;
    match action {
        Action::Exec(e) => {
            let args: Vec<Cow<'_, str>> = if needs_args {
                e.argv.iter().skip(1).map(|a| a.to_string_lossy()).collect()
            } else {
                Vec::new()
            };
            let parsed = argv::parse(&args);
            let cwd = e.cwd.to_string_lossy();
            let resolved: Vec<String> = parsed
                .operands
                .iter()
                .map(|o| argv::resolve(&cwd, o))
                .collect();
            let view = View::Exec(ExecView {
                action: e,
                path: e.path.to_string_lossy(),
                cwd,
                argv0: e
                    .argv
                    .first()
                    .map(|a| a.to_string_lossy())
                    .unwrap_or(Cow::Borrowed("")),
                args: &args,
                parsed: &parsed,
                resolved: &resolved,
            });
            f(&view)
        }
        Action::Open(o) => f(&View::Open(OpenView {
            action: o,
            path: o.path.to_string_lossy(),
            cwd: o.cwd.to_string_lossy(),
            process: o.process.as_ref().map(|p| p.program.to_string_lossy()),
        })),
        Action::Connect(c) => f(&View::Connect(ConnectView {
            action: c,
            process: c.process.as_ref().map(|p| p.program.to_string_lossy()),
        })),
        Action::Tool(t) => f(&View::Tool(t)),
    }
}
