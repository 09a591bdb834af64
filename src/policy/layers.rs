//! Layered policies: a file that includes others (`include:`).
//!
//! A policy file may include other policy files (a user's baseline, an
//! organisation's, a shipped policy as `builtin:NAME`). The files a file
//! includes are *above* it; the file is a layer *below* them that can only
//! tighten them. Every layer judges an action on its own (its own rules
//! and defaults, as if it were the only file), and the strictest verdict
//! wins ([`combine`]): so no layer can turn a verdict of another into a
//! weaker one, by construction. What a lower layer writes that tries to
//! (a default weaker than the one above, `mode: observe` under an enforcing
//! layer, a rule whose own examples the layers above judge stricter) would
//! have no effect, and is a load error at its location, so that `policy
//! check` says so instead of leaving a rule that silently does nothing.
//!
//! Layer order: depth first, each file after the files it includes, in
//! `include:` order; the including file last. The rules of all layers form
//! one id space (records name rules by id), so an id may be used once.
//!
//! Includes are read here: relative paths against the including file's
//! directory, `builtin:NAME` from the shipped policies. Cycles, a file
//! included twice and nesting deeper than [`MAX_INCLUDE_DEPTH`] are
//! refused at the `include:` entry.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::compile::{kind_index, KINDS};
use super::error::PolicyError;
use super::explain::Explanation;
use super::rule::Rule;
use super::yaml::{self, Loc, Node, Value};
use super::{Env, Policy, Vars};
use crate::action::{Action, Decision, Mode, Verdict};

/// How deep includes may nest (a file that includes a file that
/// includes …).
pub const MAX_INCLUDE_DEPTH: usize = 8;

/// One layer of a policy: the file (an absolute path, or `builtin:NAME`;
/// the top file as it was named when loaded) and its own hash (that file
/// alone, as [`Policy::sha256`] of a file without `include:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub path: String,
    pub sha256: [u8; 32],
}

/// What a file with `include:` adds to its own policy.
#[derive(Debug)]
pub(crate) struct Stack {
    /// Every layer the file includes, directly or through another, in
    /// layer order.
    pub above: Vec<Arc<Policy>>,
    /// The hash of the file alone.
    pub own_sha256: [u8; 32],
}

/// The layers above a file, loaded with the example variables: what its
/// examples and tests are judged with (see `compile`).
pub(crate) struct Above<'a> {
    layers: &'a [Arc<Policy>],
}

impl Above<'_> {
    /// Whether some layer above has a rule with this id.
    pub fn has_rule(&self, id: &str) -> bool {
        self.layers
            .iter()
            .any(|p| p.rules.iter().any(|r| r.id == id))
    }

    /// The decision of the layers above together with the file's own
    /// decision `own`.
    pub fn below(&self, own: Decision, action: &Action) -> Decision {
        let above = self.layers.iter().map(|p| p.decide_own(action));
        combine(above.chain(std::iter::once(own))).0
    }

    /// When the layers above judge `action`, which `rule` of the file
    /// below matches, stricter than the rule does: the message and hint of
    /// the error (the rule tries to loosen them).
    pub fn loosens(&self, rule: &Rule, action: &Action) -> Option<(String, String)> {
        if self.layers.is_empty() {
            return None;
        }
        let (d, i) = combine(self.layers.iter().map(|p| p.decide_own(action)));
        if d.verdict <= rule.verdict {
            return None;
        }
        let file = crate::escape::text(&self.layers[i].origin);
        let by = match &d.rule {
            Some(id) => format!("rule '{}' of {file}", crate::escape::text(id)),
            None => format!("the default of {file}"),
        };
        Some((
            format!(
                "the rule decides {} for this example, but the layers this file includes decide {} ({by}): a file can only tighten the policies it includes, so this rule has no effect on it",
                rule.verdict, d.verdict
            ),
            "remove the rule or narrow it to what the included layers allow (to change their decision, change the included file)".into(),
        ))
    }
}

/// The decisions of the layers, in layer order, as one: the strictest
/// verdict wins; among equal verdicts, a decision by a rule beats one by a
/// default, then the first layer. `matched` lists every layer's matching
/// rules in layer order. Also returns the index of the winning layer.
pub(crate) fn combine(decisions: impl IntoIterator<Item = Decision>) -> (Decision, usize) {
    let mut matched = Vec::new();
    let mut best: Option<(usize, Decision)> = None;
    for (i, d) in decisions.into_iter().enumerate() {
        matched.extend(d.matched.iter().cloned());
        let better = best
            .as_ref()
            .is_none_or(|(_, b)| (d.verdict, d.rule.is_some()) > (b.verdict, b.rule.is_some()));
        if better {
            best = Some((i, d));
        }
    }
    let (i, mut d) = best.unwrap_or_else(|| {
        (
            0,
            Decision {
                verdict: Verdict::Block,
                matched: Vec::new(),
                rule: None,
                reason: "a layered policy without layers decides nothing".into(),
            },
        )
    });
    d.matched = matched;
    (d, i)
}

/// [`Policy::decide`] of a file with `include:`.
pub(crate) fn decide(stack: &Stack, top: &Policy, action: &Action) -> Decision {
    let above = stack.above.iter().map(|p| p.decide_own(action));
    combine(above.chain(std::iter::once(top.decide_own(action)))).0
}

/// [`Policy::explain`] of a file with `include:`: every layer explained on
/// its own, combined as [`decide`] combines, naming the winning layer.
pub(crate) fn explain(_stack: &Stack, top: &Policy, action: &Action) -> Explanation {
    let layers: Vec<&Policy> = top.layer_policies().collect();
    let each: Vec<Explanation> = layers
        .iter()
        .map(|p| super::explain::explain(p, action))
        .collect();
    let (decision, winner) = combine(each.iter().map(|e| e.decision.clone()));
    Explanation {
        decision,
        matched: each.into_iter().flat_map(|e| e.matched).collect(),
        layer: layers.get(winner).map(|p| p.origin.clone()),
    }
}

/// A policy file read for loading.
struct Source {
    origin: String,
    text: String,
    /// The directory relative includes start from (`None` for a shipped
    /// policy, which has none).
    dir: Option<PathBuf>,
    /// What names the file for cycles and duplicates: its canonical path,
    /// or `builtin:NAME`.
    identity: String,
}

struct Ctx<'v> {
    vars: &'v Vars,
    /// The files being loaded, outermost first (a cycle returns to one).
    chain: Vec<String>,
    /// Every file included so far, with where.
    seen: HashMap<String, (String, Loc)>,
}

fn error(file: &str, loc: Loc, message: String, hint: &str) -> PolicyError {
    PolicyError {
        file: file.to_string(),
        line: loc.line,
        col: loc.col,
        rule: None,
        message,
        hint: Some(hint.to_string()),
    }
}

fn parse(text: &str, origin: &str) -> Result<Node, Vec<PolicyError>> {
    match yaml::parse(text) {
        Err(e) => Err(vec![PolicyError {
            file: origin.to_string(),
            line: e.loc.line,
            col: e.loc.col,
            rule: None,
            message: e.message,
            hint: None,
        }]),
        Ok(None) => Err(vec![error(
            origin,
            Loc { line: 1, col: 1 },
            "the policy is empty".into(),
            "start with `version: 1`, then `rules:`",
        )]),
        Ok(Some(root)) => Ok(root),
    }
}

fn top_entry<'n>(root: &'n Node, name: &str) -> Option<&'n Node> {
    let Value::Map(top) = &root.value else {
        return None;
    };
    top.iter()
        .find(|(k, _)| matches!(&k.value, Value::Scalar(s, _) if s == name))
        .map(|(_, v)| v)
}

/// The `include:` entries of a file (a path or a list of them).
fn includes(root: &Node, origin: &str) -> Result<Vec<(String, Loc)>, Vec<PolicyError>> {
    let Some(n) = top_entry(root, "include") else {
        return Ok(Vec::new());
    };
    const HINT: &str = "write `include: [../baseline.yaml, builtin:default]` (paths relative to this file, or builtin:NAME)";
    let items: Vec<&Node> = match &n.value {
        Value::Scalar(..) if !n.is_null() => vec![n],
        Value::Seq(items) if !items.is_empty() => items.iter().collect(),
        _ => {
            return Err(vec![error(
                origin,
                n.loc,
                format!(
                    "'include' must be a path or a non-empty list of paths, found {}",
                    n.type_name()
                ),
                HINT,
            )])
        }
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for item in items {
        match &item.value {
            Value::Scalar(s, _) if !item.is_null() && !s.trim().is_empty() => {
                out.push((s.clone(), item.loc))
            }
            _ => errors.push(error(
                origin,
                item.loc,
                format!("an include must be a path, found {}", item.type_name()),
                HINT,
            )),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// `${HOME}`, `${WORKSPACE}` and `${TMPDIR}` of an include path replaced;
/// any other `${…}` is an error.
fn expand(spec: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = spec;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unterminated variable in include path '{spec}'"));
        };
        let name = &after[..end];
        match vars.get(name) {
            Some(v) => out.push_str(&v.to_string_lossy()),
            None => {
                return Err(format!(
                    "unknown variable ${{{name}}} in include path '{spec}' (include paths may use ${{HOME}}, ${{WORKSPACE}} and ${{TMPDIR}})"
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The file an include entry names, read.
fn resolve(ctx: &mut Ctx<'_>, from: &Source, spec: &str, loc: Loc) -> Result<Source, PolicyError> {
    let fail = |message: String, hint: &str| error(&from.origin, loc, message, hint);
    let spec_shown = crate::escape::text(spec);
    if ctx.chain.len() > MAX_INCLUDE_DEPTH {
        return Err(fail(
            format!(
                "includes nest deeper than {MAX_INCLUDE_DEPTH} levels ({})",
                ctx.chain
                    .iter()
                    .map(|c| crate::escape::text(c))
                    .collect::<Vec<_>>()
                    .join(" → ")
            ),
            "include the files side by side from one file",
        ));
    }
    let source = if let Some(name) = spec.strip_prefix("builtin:") {
        let Some(text) = super::shipped::shipped(name) else {
            return Err(fail(
                format!(
                    "there is no built-in policy named {}",
                    crate::escape::text(name)
                ),
                &format!("built in: {}", super::shipped::names()),
            ));
        };
        let name = name.strip_suffix(".yaml").unwrap_or(name);
        Source {
            origin: format!("builtin:{name}"),
            text: text.to_string(),
            dir: None,
            identity: format!("builtin:{name}"),
        }
    } else {
        let expanded = expand(spec, ctx.vars).map_err(|m| fail(m, "write the path out"))?;
        let p = Path::new(&expanded);
        let path = if p.is_absolute() {
            p.to_path_buf()
        } else {
            match &from.dir {
                Some(d) => d.join(p),
                None => {
                    return Err(fail(
                        format!(
                            "{} has no directory for the relative include {spec_shown}",
                            crate::escape::text(&from.origin)
                        ),
                        "write an absolute path or builtin:NAME",
                    ))
                }
            }
        };
        let canonical = std::fs::canonicalize(&path).map_err(|e| {
            fail(
                format!(
                    "cannot read the included policy {} ({spec_shown}): {e}",
                    crate::escape::path(&path)
                ),
                "include paths are relative to the including file",
            )
        })?;
        if canonical.to_str().is_none() {
            // The run header, the protection of the file and messages
            // name it by its path as text.
            return Err(fail(
                format!(
                    "the path of the included policy {} is not UTF-8",
                    crate::escape::path(&canonical)
                ),
                "rename the file or a directory above it",
            ));
        }
        let bytes = std::fs::read(&canonical).map_err(|e| {
            fail(
                format!(
                    "cannot read the included policy {}: {e}",
                    crate::escape::path(&canonical)
                ),
                "check the file's permissions",
            )
        })?;
        let text = String::from_utf8(bytes).map_err(|_| {
            fail(
                format!(
                    "the included policy {} is not UTF-8",
                    crate::escape::path(&canonical)
                ),
                "save the file as UTF-8",
            )
        })?;
        let origin = canonical.display().to_string();
        Source {
            identity: origin.clone(),
            dir: canonical.parent().map(Path::to_path_buf),
            origin,
            text,
        }
    };
    if let Some(at) = ctx.chain.iter().position(|c| *c == source.identity) {
        let cycle: Vec<String> = ctx.chain[at..]
            .iter()
            .chain(std::iter::once(&source.identity))
            .map(|c| crate::escape::text(c))
            .collect();
        return Err(fail(
            format!(
                "the include of {spec_shown} is a cycle: {}",
                cycle.join(" → ")
            ),
            "a policy cannot include itself, directly or through another file",
        ));
    }
    if let Some((file, first)) = ctx.seen.get(&source.identity) {
        return Err(fail(
            format!(
                "{} is included already (at {}:{}:{})",
                crate::escape::text(&source.identity),
                crate::escape::text(file),
                first.line,
                first.col
            ),
            "include each file once",
        ));
    }
    ctx.seen
        .insert(source.identity.clone(), (from.origin.clone(), loc));
    Ok(source)
}

/// Loads a policy: a file without `include:` as it always was, a file
/// with it as the layers it names and itself.
pub(crate) fn load(
    text: &str,
    origin: &str,
    vars: &Vars,
    env: &Env,
    checks: Option<&dyn super::ExampleChecks>,
) -> Result<Policy, Vec<PolicyError>> {
    let root = parse(text, origin)?;
    crate::timing::mark("policy: YAML parsed");
    if top_entry(&root, "include").is_none() {
        return Policy::single(text, &root, origin, vars, env, None, checks);
    }
    let (identity, dir) = if origin.starts_with("builtin:") {
        (origin.to_string(), None)
    } else {
        match std::fs::canonicalize(origin) {
            Ok(c) => (c.display().to_string(), c.parent().map(Path::to_path_buf)),
            Err(_) => (
                origin.to_string(),
                Some(
                    Path::new(origin)
                        .parent()
                        .map(Path::to_path_buf)
                        .unwrap_or_default(),
                ),
            ),
        }
    };
    let top = Source {
        origin: origin.to_string(),
        text: text.to_string(),
        dir,
        identity: identity.clone(),
    };
    let mut ctx = Ctx {
        vars,
        chain: vec![identity],
        seen: HashMap::new(),
    };
    load_node(&mut ctx, &top, &root, env, false).map(|(real, _)| real)
}

/// One file and the files it includes: the policy with the real
/// variables and, when `example` is set, with the example variables (what
/// the layers below it judge their examples with).
fn load_node(
    ctx: &mut Ctx<'_>,
    src: &Source,
    root: &Node,
    env: &Env,
    example: bool,
) -> Result<(Policy, Option<Policy>), Vec<PolicyError>> {
    let specs = includes(root, &src.origin)?;
    let mut errors = Vec::new();
    let mut above_real: Vec<Arc<Policy>> = Vec::new();
    let mut above_example: Vec<Arc<Policy>> = Vec::new();
    for (spec, loc) in specs {
        let child = match resolve(ctx, src, &spec, loc) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let child_root = match parse(&child.text, &child.origin) {
            Ok(r) => r,
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        ctx.chain.push(child.identity.clone());
        let loaded = load_node(ctx, &child, &child_root, env, true);
        ctx.chain.pop();
        match loaded {
            Ok((real, Some(ex))) => {
                for (list, p) in [(&mut above_real, real), (&mut above_example, ex)] {
                    if let Some(s) = &p.stack {
                        list.extend(s.above.iter().cloned());
                    }
                    list.push(Arc::new(p));
                }
            }
            Ok((_, None)) => {}
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let above = Above {
        layers: &above_example,
    };
    let above = (!above_example.is_empty()).then_some(&above);
    let mut errors = tightens(&src.origin, root, &above_real);
    let mut real = match Policy::single(&src.text, root, &src.origin, ctx.vars, env, above, None) {
        Ok(p) if errors.is_empty() => p,
        Ok(_) => return Err(errors),
        Err(e) => {
            errors.extend(e);
            return Err(errors);
        }
    };
    let mut ex = if example || !above_example.is_empty() {
        Some(Policy::single_for_examples(&src.text, root, &src.origin)?)
    } else {
        None
    };
    if above_real.is_empty() {
        return Ok((real, ex));
    }
    let mut errors = unique_ids(&above_real, &real);
    if let Some(ex) = &ex {
        errors.extend(probed(ex, &above_example));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    attach(&mut real, &src.text, above_real);
    if let Some(ex) = &mut ex {
        attach(ex, &src.text, above_example);
    }
    Ok((real, ex.filter(|_| example)))
}

/// The constructs of a file that would loosen the layers above it: a
/// default weaker than theirs, `mode: observe` under a layer that enforces.
/// (Rules that would are found by their examples, in `compile`.)
fn tightens(origin: &str, root: &Node, above: &[Arc<Policy>]) -> Vec<PolicyError> {
    let mut errors = Vec::new();
    let scalar = |n: &Node| match &n.value {
        Value::Scalar(s, _) => Some(s.clone()),
        _ => None,
    };
    if let Some(m) = top_entry(root, "mode") {
        let enforcing = above.iter().find(|p| p.mode == Mode::Enforce);
        if let (Some("observe"), Some(p)) = (scalar(m).as_deref(), enforcing) {
            errors.push(error(
                origin,
                m.loc,
                format!(
                    "`mode: observe` would loosen {}, which enforces: a file can only tighten the policies it includes",
                    crate::escape::text(&p.origin)
                ),
                "remove `mode: observe` (the policy enforces); to observe, every layer must say `mode: observe`, or run with `supervise --mode observe`",
            ));
        }
    }
    // One breaker per policy: a second one, in a layer below, could only
    // be combined by a rule this file does not state.
    if let Some(b) = top_entry(root, "breaker") {
        if let Some(p) = above.iter().find(|p| p.breaker.is_some()) {
            errors.push(error(
                origin,
                b.loc,
                format!(
                    "`breaker:` is set already by {}, which this file includes: a policy has one breaker",
                    crate::escape::text(&p.origin)
                ),
                "remove this `breaker:`, or change the breaker of the included file",
            ));
        }
    }
    if let Some(Value::Map(entries)) = top_entry(root, "defaults").map(|d| &d.value) {
        for (k, v) in entries {
            let Some(kind) = KINDS
                .iter()
                .find(|kind| matches!(&k.value, Value::Scalar(s, _) if s == kind.as_str()))
            else {
                continue;
            };
            let own = match scalar(v).as_deref() {
                Some("allow") => Verdict::Allow,
                Some("escalate") => Verdict::Escalate,
                Some("block") => Verdict::Block,
                // Not a verdict: an error of its own (compile).
                _ => continue,
            };
            let i = kind_index(*kind);
            let Some(upper) = above.iter().max_by_key(|p| p.defaults[i]) else {
                continue;
            };
            if own < upper.defaults[i] {
                errors.push(error(
                    origin,
                    v.loc,
                    format!(
                        "`defaults.{kind}: {own}` would loosen the default of {} ({}): a file can only tighten the policies it includes, so this default has no effect",
                        crate::escape::text(&upper.origin),
                        upper.defaults[i]
                    ),
                    &format!("write `{kind}: {}` or stricter, or leave it out", upper.defaults[i]),
                ));
            }
        }
    }
    errors
}

/// The content hash the probes of [`probes`] carry: one no rule names (a
/// probe with an unknown hash would match every block rule on hashes).
const PROBE_SHA256: [u8; 32] = [0; 32];

/// Actions built from a rule's own wildcard-free patterns (`name:`,
/// `program:` of exec rules; `path:` of open rules, with the rule's
/// accesses) that the rule matches: concrete actions a rule without
/// examples is judged by. Patterns with wildcards and connect rules give
/// none (their examples are what shows what they match).
fn probes(rule: &Rule, workspace: &Path) -> Vec<Action> {
    use super::rule::{with_view, Conds};
    use crate::action::{Access, ExecAction, FileOp, OpenAction};
    let literals = |g: &Option<super::glob::Globs>| -> Vec<String> {
        g.iter()
            .flat_map(|g| g.literals.iter().flatten().cloned())
            .collect()
    };
    let mut out = Vec::new();
    match &rule.when {
        Conds::Exec(e) => {
            let mut programs: Vec<PathBuf> = literals(&e.program)
                .into_iter()
                .map(PathBuf::from)
                .collect();
            programs.extend(
                literals(&e.name)
                    .into_iter()
                    .map(|n| Path::new("/usr/bin").join(n)),
            );
            for path in programs {
                let name = path.file_name().unwrap_or_default().to_os_string();
                out.push(Action::Exec(ExecAction {
                    path,
                    argv: vec![name],
                    cwd: workspace.to_path_buf(),
                    sha256: Some(PROBE_SHA256),
                }));
            }
        }
        Conds::Open(o) => {
            for path in literals(&o.path) {
                out.push(Action::Open(OpenAction {
                    path: PathBuf::from(path),
                    access: o.access.unwrap_or(Access::READ),
                    cwd: workspace.to_path_buf(),
                    process: None,
                    op: FileOp::Open,
                    detail: None,
                }));
            }
        }
        // Connect rules (and any other kind) are shown by their examples.
        _ => {}
    }
    out.retain(|a| with_view(a, true, |v| rule.matches(v, None)));
    out
}

/// The rules of `file` (loaded with the example variables) that some probe
/// ([`probes`]) shows trying to loosen the layers above: an error at each.
fn probed(file: &Policy, above: &[Arc<Policy>]) -> Vec<PolicyError> {
    let above = Above { layers: above };
    let mut errors = Vec::new();
    for rule in &file.rules {
        if rule.verdict == Verdict::Block {
            continue;
        }
        for probe in probes(rule, &file.vars.workspace) {
            if let Some((message, hint)) = above.loosens(rule, &probe) {
                let what = match &probe {
                    Action::Exec(x) => format!("exec of {}", crate::escape::path(&x.path)),
                    Action::Open(o) => {
                        format!("open of {} ({})", crate::escape::path(&o.path), o.access)
                    }
                    other => other.kind().to_string(),
                };
                errors.push(PolicyError {
                    file: file.origin.clone(),
                    line: rule.loc.line,
                    col: rule.loc.col,
                    rule: Some(rule.id.clone()),
                    message: message
                        .replace("for this example", &format!("for an {what} it matches")),
                    hint: Some(hint),
                });
                break;
            }
        }
    }
    errors
}

/// Rule ids are unique across the layers (records name rules by id): an
/// error at every rule whose id an earlier layer has.
fn unique_ids(above: &[Arc<Policy>], file: &Policy) -> Vec<PolicyError> {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    let mut errors = Vec::new();
    for p in above.iter().map(|p| &**p).chain(std::iter::once(file)) {
        for r in &p.rules {
            match seen.get(r.id.as_str()) {
                Some(first) => errors.push(PolicyError {
                    file: p.origin.clone(),
                    line: r.loc.line,
                    col: r.loc.col,
                    rule: Some(r.id.clone()),
                    message: format!(
                        "duplicate rule id: {} has a rule with this id too",
                        crate::escape::text(first)
                    ),
                    hint: Some(
                        "rule ids are unique across the layers of a policy (records name rules by id): rename this one"
                            .into(),
                    ),
                }),
                None => {
                    seen.insert(&r.id, &p.origin);
                }
            }
        }
    }
    errors
}

/// Makes `p` (a file alone) the layered policy of it and `above`: the hash
/// naming every layer, the environment variables every layer read, the
/// mode (observe only when every layer observes).
fn attach(p: &mut Policy, text: &str, above: Vec<Arc<Policy>>) {
    let own = p.sha256;
    let hashes: Vec<[u8; 32]> = above.iter().map(|l| l.own_sha256()).collect();
    p.sha256 = super::policy_hash(text, &p.vars, &p.env, &hashes);
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for l in &above {
        env.extend(l.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    env.extend(std::mem::take(&mut p.env));
    p.env = env;
    if above.iter().any(|l| l.mode == Mode::Enforce) {
        p.mode = Mode::Enforce;
    }
    p.stack = Some(Box::new(Stack {
        above,
        own_sha256: own,
    }));
}

#[cfg(test)]
mod tests {
    use super::super::tests::{exec, open, vars};
    use super::*;
    use crate::action::Access;

    /// A directory of policy files.
    struct Dir(tempfile::TempDir);

    impl Dir {
        fn new(files: &[(&str, &str)]) -> Dir {
            let d = Dir(tempfile::tempdir().unwrap());
            for (name, text) in files {
                d.write(name, text);
            }
            d
        }
        fn write(&self, name: &str, text: &str) {
            let p = self.0.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        fn path(&self, name: &str) -> String {
            self.0.path().join(name).display().to_string()
        }
        fn load(&self, name: &str) -> Result<Policy, Vec<String>> {
            Policy::from_file_with_env(
                Path::new(&self.path(name)),
                &vars(),
                &Env::fixed::<String, String>([]),
            )
            .map_err(|e| e.iter().map(ToString::to_string).collect())
        }
        fn ok(&self, name: &str) -> Policy {
            self.load(name)
                .unwrap_or_else(|e| panic!("{}", e.join("\n")))
        }
        fn err(&self, name: &str) -> Vec<String> {
            match self.load(name) {
                Ok(_) => panic!("{name} should not load"),
                Err(e) => e,
            }
        }
    }

    const BASE: &str = "version: 1
defaults: {exec: allow, open: escalate}
rules:
  - id: base-block-rm
    exec: {name: rm}
    decision: block
    reason: no rm
  - id: base-allow-etc
    open: {path: [\"/etc/**\"], access: [read]}
    decision: allow
    reason: configuration is readable
";

    #[test]
    fn the_strictest_layer_wins_and_a_rule_beats_a_default_on_a_tie() {
        let d = Dir::new(&[
            ("base.yaml", BASE),
            (
                "p.yaml",
                "version: 1
include: base.yaml
defaults: {exec: escalate}
rules:
  - id: p-allow-ls
    exec: {name: ls}
    decision: allow
    reason: listing is harmless
  - id: p-block-hosts
    open: {path: [/etc/hosts]}
    decision: block
    reason: not the hosts file
",
            ),
        ]);
        let p = d.ok("p.yaml");
        // rm: blocked above; ls: allowed by p's rule but the baseline's
        // default allows too, so the rule decides (a rule beats a default).
        let rm = p.decide(&exec(&["rm", "x"]));
        assert_eq!(
            (rm.verdict, rm.rule.as_deref()),
            (Verdict::Block, Some("base-block-rm"))
        );
        let ls = p.decide(&exec(&["ls"]));
        assert_eq!(
            (ls.verdict, ls.rule.as_deref()),
            (Verdict::Allow, Some("p-allow-ls"))
        );
        // cat: no rule; p's default escalate is stricter than the baseline's.
        let cat = p.decide(&exec(&["cat"]));
        assert_eq!((cat.verdict, cat.rule), (Verdict::Escalate, None));
        // /etc/hosts: the baseline allows, p blocks: block. Matched lists both.
        let hosts = p.decide(&open("/etc/hosts", Access::READ));
        assert_eq!(hosts.verdict, Verdict::Block);
        assert_eq!(hosts.matched, ["base-allow-etc", "p-block-hosts"]);
        // /etc/passwd: the baseline's rule allows; p's default (allow) too.
        let passwd = p.decide(&open("/etc/passwd", Access::READ));
        assert_eq!(passwd.rule.as_deref(), Some("base-allow-etc"));
        // Elsewhere the baseline's open default escalates.
        assert_eq!(
            p.decide(&open("/srv/x", Access::READ)).verdict,
            Verdict::Escalate
        );
        assert_eq!(
            p.default_verdict(crate::action::ActionKind::Exec),
            Verdict::Escalate
        );
        assert_eq!(
            p.default_verdict(crate::action::ActionKind::Open),
            Verdict::Escalate
        );
        // Explain agrees with decide, and names the layer.
        for a in [
            exec(&["rm", "x"]),
            exec(&["ls"]),
            exec(&["cat"]),
            open("/etc/hosts", Access::READ),
        ] {
            let ex = p.explain(&a);
            assert_eq!(ex.decision, p.decide(&a));
        }
        let ex = p.explain(&exec(&["rm", "x"]));
        assert_eq!(ex.layer.as_deref(), Some(d.path("base.yaml").as_str()));
        assert_eq!(ex.matched[0].file, d.path("base.yaml"));
        let ex = p.explain(&exec(&["cat"]));
        assert_eq!(ex.layer.as_deref(), Some(d.path("p.yaml").as_str()));
        assert_eq!(p.layer_of("p-block-hosts"), Some(d.path("p.yaml").as_str()));
        assert_eq!(
            p.rule_ids().collect::<Vec<_>>(),
            [
                "base-block-rm",
                "base-allow-etc",
                "p-allow-ls",
                "p-block-hosts"
            ]
        );
    }

    #[test]
    fn loosening_is_an_error_at_its_location() {
        let d = Dir::new(&[
            ("base.yaml", BASE),
            (
                "p.yaml",
                "version: 1
include: base.yaml
mode: observe
defaults:
  open: allow
rules:
  - id: p-allow-rm
    exec: {name: rm, operand: [build]}
    decision: allow
    reason: build
    examples:
      match: [{exec: rm -rf build}]
",
            ),
        ]);
        let e = d.err("p.yaml");
        let p = d.path("p.yaml");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e[0].starts_with(&format!("{p}:3:7: `mode: observe` would loosen")),
            "{e:?}"
        );
        assert!(
            e[1].starts_with(&format!(
                "{p}:5:9: `defaults.open: allow` would loosen the default of "
            )),
            "{e:?}"
        );
        assert!(e[2].starts_with(&format!("{p}:12:15: rule 'p-allow-rm': the rule decides allow for this example, but the layers this file includes decide block (rule 'base-block-rm' of ")), "{e:?}");
        // An escalate rule under a block is loosening too.
        d.write("p.yaml", "version: 1\ninclude: base.yaml\nrules:\n  - id: p-ask-rm\n    exec: {name: rm}\n    decision: escalate\n    reason: ask\n");
        let e = d.err("p.yaml");
        assert!(e[0].starts_with(&format!("{p}:4:5: rule 'p-ask-rm': the rule decides escalate for an exec of /usr/bin/rm it matches, but the layers this file includes decide block")), "{e:?}");
        // A block rule, or an allow rule within what the baseline allows, is not.
        d.write("p.yaml", "version: 1\ninclude: base.yaml\nrules:\n  - id: p-block-rm\n    exec: {name: rm}\n    decision: block\n    reason: no\n  - id: p-allow-ls\n    exec: {name: ls}\n    decision: allow\n    reason: fine\n    examples: {match: [{exec: ls -l}]}\n");
        d.ok("p.yaml");
    }

    #[test]
    fn cycles_duplicates_depth_and_missing_files_are_refused_at_the_include() {
        let d = Dir::new(&[
            ("a.yaml", "version: 1\ninclude: [b.yaml]\nrules: []\n"),
            ("b.yaml", "version: 1\ninclude: sub/c.yaml\nrules: []\n"),
            ("sub/c.yaml", "version: 1\ninclude: ../a.yaml\nrules: []\n"),
        ]);
        let e = d.err("a.yaml");
        assert_eq!(e.len(), 1, "{e:?}");
        let c = std::fs::canonicalize(d.path("sub/c.yaml")).unwrap();
        assert!(
            e[0].starts_with(&format!(
                "{}:2:10: the include of ../a.yaml is a cycle: ",
                c.display()
            )),
            "{e:?}"
        );
        assert!(e[0].contains(" → "), "{e:?}");

        d.write("sub/c.yaml", "version: 1\nrules: []\n");
        d.write(
            "a.yaml",
            "version: 1\ninclude: [b.yaml, sub/c.yaml]\nrules: []\n",
        );
        let e = d.err("a.yaml");
        assert!(
            e[0].starts_with(&format!("{}:2:19: ", d.path("a.yaml"))),
            "{e:?}"
        );
        assert!(e[0].contains("is included already (at "), "{e:?}");

        d.write("a.yaml", "version: 1\ninclude: missing.yaml\nrules: []\n");
        let e = d.err("a.yaml");
        assert!(
            e[0].starts_with(&format!(
                "{}:2:10: cannot read the included policy ",
                d.path("a.yaml")
            )),
            "{e:?}"
        );

        d.write("a.yaml", "version: 1\ninclude: builtin:nope\nrules: []\n");
        assert!(d.err("a.yaml")[0].contains("there is no built-in policy named nope"));
        d.write("a.yaml", "version: 1\ninclude: []\nrules: []\n");
        assert!(d.err("a.yaml")[0].contains("'include' must be a path or a non-empty list"));

        // A chain deeper than the limit.
        for i in 0..=MAX_INCLUDE_DEPTH {
            d.write(
                &format!("l{i}.yaml"),
                &format!("version: 1\ninclude: l{}.yaml\nrules: []\n", i + 1),
            );
        }
        d.write(
            &format!("l{}.yaml", MAX_INCLUDE_DEPTH + 1),
            "version: 1\nrules: []\n",
        );
        let e = d.err("l0.yaml");
        assert!(
            e[0].contains(&format!(
                "includes nest deeper than {MAX_INCLUDE_DEPTH} levels"
            )),
            "{e:?}"
        );
        d.write(
            &format!("l{}.yaml", MAX_INCLUDE_DEPTH),
            "version: 1\nrules: []\n",
        );
        d.ok("l1.yaml");
    }

    #[test]
    fn an_included_file_whose_path_is_not_utf8_is_refused() {
        use std::os::unix::ffi::OsStrExt;
        let d = Dir::new(&[]);
        let bad = d.0.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
        std::fs::create_dir(&bad).unwrap();
        std::fs::write(bad.join("b.yaml"), "version: 1\nrules: []\n").unwrap();
        std::os::unix::fs::symlink(&bad, d.0.path().join("link")).unwrap();
        d.write("p.yaml", "version: 1\ninclude: [link/b.yaml]\nrules: []\n");
        let e = d.err("p.yaml");
        assert!(
            e[0].starts_with(&format!(
                "{}:2:11: the path of the included policy ",
                d.path("p.yaml")
            )) && e[0].contains("is not UTF-8"),
            "{e:?}"
        );
    }

    #[test]
    fn rule_ids_are_unique_across_layers() {
        let d = Dir::new(&[
            ("base.yaml", BASE),
            ("p.yaml", "version: 1\ninclude: base.yaml\nrules:\n  - id: base-block-rm\n    exec: {name: rm}\n    decision: block\n    reason: again\n"),
        ]);
        let e = d.err("p.yaml");
        assert!(
            e[0].starts_with(&format!(
                "{}:4:5: rule 'base-block-rm': duplicate rule id: ",
                d.path("p.yaml")
            )),
            "{e:?}"
        );
    }

    #[test]
    fn hashes_name_every_layer_and_a_file_alone_keeps_its_own() {
        let d = Dir::new(&[
            ("base.yaml", BASE),
            ("p.yaml", "version: 1\ninclude: base.yaml\nrules: []\n"),
        ]);
        let p = d.ok("p.yaml");
        let base = d.ok("base.yaml");
        let layers = p.layers();
        assert_eq!(layers.len(), 2);
        assert_eq!(
            layers[0],
            Layer {
                path: d.path("base.yaml"),
                sha256: base.sha256()
            }
        );
        assert_eq!(layers[1].path, d.path("p.yaml"));
        assert_eq!(layers[1].sha256, p.own_sha256());
        let text = std::fs::read_to_string(d.path("p.yaml")).unwrap();
        let alone = super::super::policy_hash(&text, &vars(), &BTreeMap::new(), &[]);
        assert_eq!(p.own_sha256(), alone);
        assert_eq!(
            p.sha256(),
            super::super::policy_hash(&text, &vars(), &BTreeMap::new(), &[base.sha256()])
        );
        // A change in the baseline changes the whole.
        d.write("base.yaml", &format!("{BASE}# a comment\n"));
        let q = d.ok("p.yaml");
        assert_ne!(q.sha256(), p.sha256());
        assert_eq!(q.own_sha256(), p.own_sha256());
        assert!(!base.is_layered());
        assert_eq!(base.layers().len(), 1);
    }

    #[test]
    fn variables_apply_in_every_layer_and_tests_judge_the_file_with_its_layers() {
        let d = Dir::new(&[
            (
                "base.yaml",
                "version: 1
rules:
  - id: base-block-outside
    open:
      access: [write]
      path: \"/**\"
      unless: {path: [\"${WORKSPACE}/**\", \"${env.SCRATCH:-/scratch}/**\"]}
    decision: block
    reason: writes stay in the workspace
tests:
  - {open: /home/user/project/x, access: [write], expect: allow}
",
            ),
            (
                "p.yaml",
                "version: 1
include: base.yaml
rules:
  - id: p-block-secrets
    open: {path: [\"${WORKSPACE}/secrets/**\"]}
    decision: block
    reason: no secrets
tests:
  - {open: /home/user/project/secrets/k, expect: block, rule: p-block-secrets}
  - {open: /etc/x, access: [write], expect: block, rule: base-block-outside}
  - {open: /home/user/project/x, access: [write], expect: allow, rule: default}
",
            ),
        ]);
        let p = Policy::from_file_with_env(
            Path::new(&d.path("p.yaml")),
            &vars(),
            &Env::fixed([("SCRATCH", "/data/scratch")]),
        )
        .unwrap();
        assert_eq!(
            p.decide(&open("/home/u/ws/a", Access::WRITE)).verdict,
            Verdict::Allow
        );
        assert_eq!(
            p.decide(&open("/home/u/ws/secrets/a", Access::READ))
                .verdict,
            Verdict::Block
        );
        assert_eq!(
            p.decide(&open("/data/scratch/a", Access::WRITE)).verdict,
            Verdict::Allow
        );
        assert_eq!(
            p.decide(&open("/scratch/a", Access::WRITE)).verdict,
            Verdict::Block
        );
        assert_eq!(
            p.env_vars().get("SCRATCH").map(String::as_str),
            Some("/data/scratch")
        );
        assert_eq!(p.example_count(), 4);
        // A test of the file that fails with its layers.
        d.write("p.yaml", "version: 1\ninclude: base.yaml\nrules: []\ntests:\n  - {open: /etc/x, access: [write], expect: allow}\n");
        let e = d.err("p.yaml");
        assert!(
            e[0].contains(
                ":5:5: test expects allow, but the decision is block by base-block-outside"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn a_shipped_policy_can_be_included_and_observe_needs_every_layer() {
        let d = Dir::new(&[(
            "p.yaml",
            "version: 1\ninclude: builtin:observe\nmode: observe\nrules:\n  - id: p-block-x\n    exec: {name: x}\n    decision: block\n    reason: x\n",
        )]);
        let p = d.ok("p.yaml");
        assert_eq!(p.mode(), Mode::Observe);
        assert_eq!(p.layers()[0].path, "builtin:observe");
        assert_eq!(p.decide(&exec(&["rm", "-rf", "/"])).verdict, Verdict::Block);
        // Without `mode: observe` the file enforces, and so does the whole.
        d.write(
            "p.yaml",
            "version: 1\ninclude: builtin:observe\nrules: []\n",
        );
        assert_eq!(d.ok("p.yaml").mode(), Mode::Enforce);
        // Observe under an enforcing layer is an error.
        d.write(
            "p.yaml",
            "version: 1\ninclude: builtin:default\nmode: observe\nrules: []\n",
        );
        assert!(d.err("p.yaml")[0].contains("`mode: observe` would loosen builtin:default"));
    }
}
