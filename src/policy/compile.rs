//! From the located YAML tree to compiled rules: strict validation (every
//! problem reported with its location, the rule id and what to write
//! instead), variable expansion, pattern compilation and the check of every
//! rule's embedded examples.

use std::cell::RefCell;

use regex_automata::meta::Regex as ArgvRegex;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;

use super::argv::{self, ArgItem, FlagGroup};
use super::error::PolicyError;
use super::glob::{self, Globs, Scope};
use super::rule::{with_view, Conds, ExecConds, OpenConds, ProcessConds, Rule};
use super::yaml::{Loc, Node, Value};
use super::{Env, Vars, BUILTIN_PREFIX};
use crate::action::{
    Access, Action, ActionKind, ExecAction, FileOp, FileOps, Mode, OpenAction, ProcessInfo, Verdict,
};

/// The kinds this version of the language judges, in order.
pub(crate) const KINDS: [ActionKind; 4] = [
    ActionKind::Exec,
    ActionKind::Open,
    ActionKind::Connect,
    ActionKind::Tool,
];

const TOP_KEYS: &[&str] = &[
    "version",
    "include",
    "mode",
    "defaults",
    "rules",
    "tests",
    "description",
    "breaker",
];
const RULE_KEYS: &[&str] = &[
    "id",
    "description",
    "exec",
    "open",
    "connect",
    "tool",
    "decision",
    "reason",
    "timeout_seconds",
    "examples",
    "rate",
    "risk",
];

/// Longest escalation deadline a rule may set (one day).
const MAX_TIMEOUT_SECONDS: u64 = 86_400;
const EXEC_KEYS: &[&str] = &[
    "program",
    "name",
    "sha256",
    "args",
    "argv_regex",
    "flags",
    "operand",
    "operand_path",
    "operand_outside",
    "operand_covers",
    "cwd",
    "unless",
];
const OPEN_KEYS: &[&str] = &["path", "access", "op", "cwd", "process", "unless"];
const CONNECT_KEYS: &[&str] = &[
    "host", "address", "port", "protocol", "path", "op", "process", "unless",
];
const PROCESS_KEYS: &[&str] = &["program", "name", "sha256"];
const EXAMPLE_PROCESS_KEYS: &[&str] = &["program", "sha256", "injected"];
const EXAMPLE_KEYS: &[&str] = &[
    "exec", "open", "program", "sha256", "cwd", "access", "process", "connect", "op", "protocol",
    "names", "tool", "input",
];
const TEST_KEYS: &[&str] = &[
    "exec", "open", "program", "sha256", "cwd", "access", "process", "expect", "rule", "connect",
    "op", "protocol", "names", "tool", "input",
];

/// A loaded policy before indexing.
pub(crate) struct Compiled {
    pub mode: Mode,
    pub defaults: [Verdict; 4],
    pub rules: Vec<Rule>,
    /// Number of embedded examples checked.
    pub examples: usize,
    /// The environment variables referenced, with the paths they expanded to.
    pub env: std::collections::BTreeMap<String, String>,
    /// The run's breaker (`breaker:`).
    pub breaker: Option<super::limits::Breaker>,
}

/// The index of a kind in [`KINDS`] and in `defaults`.
pub(crate) fn kind_index(kind: ActionKind) -> usize {
    match kind {
        ActionKind::Exec => 0,
        ActionKind::Open => 1,
        ActionKind::Connect => 2,
        ActionKind::Tool => 3,
    }
}

pub(super) struct Loader<'a> {
    file: &'a str,
    pub(super) scope: &'a Scope<'a>,
    errors: Vec<PolicyError>,
    rule: Option<String>,
    examples: usize,
    /// Every id seen so far with its line (also of rules that had errors).
    ids: HashMap<String, usize>,
    /// Whether to run the embedded examples in this pass.
    check_examples: bool,
    /// The layers this file includes (`include:`, see `layers`), with the
    /// example variables: tests are decided by them and this file together,
    /// and an example a rule of this file matches must not be judged
    /// stricter by them (the rule would try to loosen them).
    above: Option<&'a super::layers::Above<'a>>,
    /// `argv_regex` expressions compiled so far, by their text after
    /// variable expansion (shared by both passes of a load).
    regexes: &'a RefCell<HashMap<String, ArgvRegex>>,
    /// In the examples' pass: the rules the pass with the real variables
    /// compiled, to share those that reference no variable.
    shared: Option<Vec<Rule>>,
    /// The shared rules' real versions that this pass replaced, by index.
    displaced: Vec<(usize, Rule)>,
}

// For the tests that compare loading with the way it was done before
// rules were shared between the passes: while set on a thread, its loads
// compile every rule in both passes.
#[cfg(test)]
thread_local! {
    pub(super) static REFERENCE_LOAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread loads as before (see `REFERENCE_LOAD`; never outside
/// tests).
pub(super) fn reference_load() -> bool {
    #[cfg(test)]
    {
        REFERENCE_LOAD.with(|r| r.get())
    }
    #[cfg(not(test))]
    {
        false
    }
}

/// Whether a rule's text (anything but its `examples`) references a
/// variable: `${` anywhere in a key or a value.
fn references_variables(rule: &Node) -> bool {
    fn any(n: &Node) -> bool {
        match &n.value {
            Value::Scalar(s, _) => s.contains("${"),
            Value::Seq(items) => items.iter().any(any),
            Value::Map(entries) => entries.iter().any(|(k, v)| any(k) || any(v)),
        }
    }
    match &rule.value {
        Value::Map(entries) => entries
            .iter()
            .any(|(k, v)| key(k) != "examples" && (any(k) || any(v))),
        _ => any(rule),
    }
}

pub(super) fn key(n: &Node) -> &str {
    match &n.value {
        Value::Scalar(s, _) => s,
        _ => "",
    }
}

pub(super) fn get<'n>(entries: &'n [(Node, Node)], name: &str) -> Option<&'n Node> {
    entries.iter().find(|(k, _)| key(k) == name).map(|(_, v)| v)
}

/// Levenshtein distance, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn suggest(word: &str, allowed: &[&str]) -> String {
    let best = allowed
        .iter()
        .map(|k| (distance(word, k), *k))
        .min()
        .filter(|(d, _)| *d <= 2);
    match best {
        Some((_, k)) => format!("did you mean '{k}'? allowed here: {}", allowed.join(", ")),
        None => format!("allowed here: {}", allowed.join(", ")),
    }
}

impl<'a> Loader<'a> {
    pub(super) fn err(&mut self, loc: Loc, message: impl Into<String>, hint: Option<String>) {
        self.errors.push(PolicyError {
            file: self.file.to_string(),
            line: loc.line,
            col: loc.col,
            rule: self.rule.clone(),
            message: message.into(),
            hint,
        });
    }

    pub(super) fn map<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match &node.value {
            Value::Map(m) => Some(m),
            _ => {
                self.err(
                    node.loc,
                    format!("{what} must be a mapping, found {}", node.type_name()),
                    Some("write `key: value` pairs, one per line".into()),
                );
                None
            }
        }
    }

    /// The action of an example of a rule of one kind: the entry `kind.0`
    /// (an error naming `kind.1`, e.g. "an exec", with `hint` when it is
    /// missing), after an error for each entry of `foreign` (keys of
    /// other kinds' examples: "`KEY` {foreign_msg}").
    pub(super) fn example_of<'n>(
        &mut self,
        node: &Node,
        entries: &'n [(Node, Node)],
        kind: (&str, &str),
        foreign: &[&str],
        foreign_msg: &str,
        hint: &str,
    ) -> Option<&'n Node> {
        for k in foreign {
            if let Some((n, _)) = entries.iter().find(|(n, _)| key(n) == *k) {
                self.err(n.loc, format!("`{k}` {foreign_msg}"), None);
            }
        }
        let (name, article) = kind;
        let found = get(entries, name);
        if found.is_none() {
            self.err(
                node.loc,
                format!("an example of {article} rule needs `{name}:`"),
                Some(hint.into()),
            );
        }
        found
    }

    pub(super) fn keys(&mut self, entries: &[(Node, Node)], allowed: &[&str], what: &str) {
        for (k, _) in entries {
            let name = key(k);
            if !allowed.contains(&name) {
                self.err(
                    k.loc,
                    format!("unknown key '{name}' in {what}"),
                    Some(suggest(name, allowed)),
                );
            }
        }
    }

    pub(super) fn string<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n str> {
        match &node.value {
            Value::Scalar(s, _) if !node.is_null() => Some(s),
            _ => {
                self.err(
                    node.loc,
                    format!("{what} must be a string, found {}", node.type_name()),
                    None,
                );
                None
            }
        }
    }

    /// A string or a non-empty list of strings.
    pub(super) fn strings(&mut self, node: &Node, what: &str) -> Option<Vec<(String, Loc)>> {
        match &node.value {
            Value::Seq(items) => {
                if items.is_empty() {
                    self.err(
                        node.loc,
                        format!("{what} is an empty list, which can never match"),
                        Some("list at least one pattern, or remove the condition".into()),
                    );
                    return None;
                }
                let mut out = Vec::new();
                let mut ok = true;
                for item in items {
                    match &item.value {
                        Value::Scalar(s, _) if !item.is_null() => out.push((s.clone(), item.loc)),
                        _ => {
                            // The error `string` reports for it.
                            self.string(item, &format!("each entry of {what}"));
                            ok = false;
                        }
                    }
                }
                ok.then_some(out)
            }
            _ => self
                .string(node, &format!("{what} (a string or a list of strings)"))
                .map(|s| vec![(s.to_string(), node.loc)]),
        }
    }

    fn verdict(&mut self, node: &Node, what: &str) -> Option<Verdict> {
        let s = self.string(node, what)?;
        match s {
            "allow" => Some(Verdict::Allow),
            "block" => Some(Verdict::Block),
            "escalate" => Some(Verdict::Escalate),
            other => {
                self.err(
                    node.loc,
                    format!("{what} '{other}' is not a decision"),
                    Some("write allow, block or escalate".into()),
                );
                None
            }
        }
    }

    /// Compile a list of globs. `path_like`: the subject is an absolute path,
    /// so a pattern that cannot start with `/` is refused.
    fn globs(&mut self, node: &Node, what: &str, path_like: bool) -> Option<Globs> {
        let items = self.strings(node, what)?;
        let mut refused: Vec<String> = Vec::new();
        for (p, loc) in &items {
            if path_like {
                let expanded = if p.contains("${") {
                    glob::expand(p, self.scope, &|v| v.to_string()).map(std::borrow::Cow::Owned)
                } else {
                    Ok(std::borrow::Cow::Borrowed(p.as_str()))
                };
                if let Ok(expanded) = expanded {
                    let absolute_ish = expanded.starts_with(['/', '*', '{', '?'])
                        || ["pipe:", "socket:", "anon_inode:"]
                            .iter()
                            .any(|pre| expanded.starts_with(pre));
                    if !absolute_ish {
                        self.err(
                            *loc,
                            format!("{what} pattern '{p}' is relative; paths are judged absolute, so it can never match"),
                            Some(format!("write '${{WORKSPACE}}/{p}' or '**/{p}'")),
                        );
                        refused.push(p.clone());
                    }
                }
            } else if what == "name" && p.contains('/') {
                self.err(
                    *loc,
                    format!(
                        "name '{p}' contains '/'; a name is the last component of the program path"
                    ),
                    Some("match a full path with `program:` instead".into()),
                );
                refused.push(p.clone());
            }
        }
        // Every pattern that passed those checks is compiled (and its errors
        // reported) even when another failed them.
        let checked: Vec<(String, Loc)> = items
            .into_iter()
            .filter(|(p, _)| !refused.contains(p))
            .collect();
        if checked.is_empty() && !refused.is_empty() {
            return None;
        }
        let globs = self.globs_from(&checked, node, what);
        if refused.is_empty() {
            globs
        } else {
            None
        }
    }

    fn load(&mut self, root: &Node) -> Option<Compiled> {
        let top = self.map(root, "the policy")?;
        self.keys(top, TOP_KEYS, "the policy");
        match get(top, "version") {
            None => self.err(
                root.loc,
                "missing 'version'",
                Some("start the file with `version: 1`".into()),
            ),
            Some(v) => {
                if !matches!(&v.value, Value::Scalar(s, true) if s == "1") {
                    let shown = match &v.value {
                        Value::Scalar(s, _) => format!("'{s}'"),
                        _ => v.type_name().to_string(),
                    };
                    self.err(
                        v.loc,
                        format!("unsupported policy version {shown}"),
                        Some("this Lexecon reads `version: 1`".into()),
                    );
                }
            }
        }
        if let Some(d) = get(top, "description") {
            self.string(d, "description");
        }
        let mut mode = Mode::Enforce;
        if let Some(m) = get(top, "mode") {
            match self.string(m, "mode") {
                Some("enforce") => mode = Mode::Enforce,
                Some("observe") => mode = Mode::Observe,
                Some(other) => self.err(
                    m.loc,
                    format!("unknown mode '{other}'"),
                    Some("write `mode: enforce` or `mode: observe`".into()),
                ),
                None => {}
            }
        }
        let mut defaults = [Verdict::Allow; 4];
        if let Some(d) = get(top, "defaults") {
            if let Some(entries) = self.map(d, "defaults") {
                for (k, v) in entries {
                    match KINDS.iter().find(|kind| kind.as_str() == key(k)) {
                        Some(kind) => {
                            if let Some(verdict) = self.verdict(v, &format!("defaults.{kind}")) {
                                defaults[kind_index(*kind)] = verdict;
                            }
                        }
                        None => self.err(
                            k.loc,
                            format!("unknown action kind '{}' in defaults", key(k)),
                            Some("this version judges exec, open, connect and tool".into()),
                        ),
                    }
                }
            }
        }
        let mut rules: Vec<Rule> = Vec::new();
        match get(top, "rules") {
            None => self.err(
                root.loc,
                "missing 'rules'",
                Some("add `rules:` with a list of rules (it may be `rules: []`)".into()),
            ),
            Some(node) if node.is_null() => {}
            Some(node) => match &node.value {
                Value::Seq(items) => {
                    match self.shared.take() {
                        Some(real) if real.len() == items.len() => {
                            rules = self.rules_sharing(items, real);
                        }
                        unused => {
                            self.shared = unused;
                            for item in items {
                                self.rule = None;
                                if let Some(rule) = self.rule_node(item) {
                                    rules.push(rule);
                                }
                            }
                        }
                    }
                    self.rule = None;
                }
                _ => self.err(
                    node.loc,
                    format!("'rules' must be a list, found {}", node.type_name()),
                    Some("write each rule as a list item starting with `- id: …`".into()),
                ),
            },
        }
        if let Some(tests) = get(top, "tests") {
            if self.check_examples {
                self.policy_tests(tests, &rules, &defaults);
            } else if !matches!(tests.value, Value::Seq(_)) {
                self.err(
                    tests.loc,
                    format!("'tests' must be a list, found {}", tests.type_name()),
                    Some(
                        "write each test as a list item, e.g. `- {exec: rm -rf /, expect: block}`"
                            .into(),
                    ),
                );
            }
        }
        let breaker = get(top, "breaker").and_then(|b| self.breaker(b));
        Some(Compiled {
            mode,
            defaults,
            rules,
            examples: self.examples,
            env: self.scope.used(),
            breaker,
        })
    }

    /// Top-level `tests`: actions with the decision the whole policy must
    /// reach (verdict, and optionally the winning rule).
    fn policy_tests(&mut self, node: &Node, rules: &[Rule], defaults: &[Verdict; 4]) {
        let Value::Seq(items) = &node.value else {
            self.err(
                node.loc,
                format!("'tests' must be a list, found {}", node.type_name()),
                Some(
                    "write each test as a list item, e.g. `- {exec: rm -rf /, expect: block}`"
                        .into(),
                ),
            );
            return;
        };
        let index = super::decide::Index::build(rules);
        for item in items {
            let Some(entries) = self.map(item, "a test") else {
                continue;
            };
            let given: Vec<ActionKind> = KINDS
                .iter()
                .copied()
                .filter(|k| get(entries, k.as_str()).is_some())
                .collect();
            let kind = match given.as_slice() {
                [k] => *k,
                _ => {
                    self.err(
                        item.loc,
                        "a test needs exactly one of `exec:`, `open:`, `connect:` and `tool:`",
                        Some("write e.g. `- {exec: rm -rf /, expect: block}`".into()),
                    );
                    continue;
                }
            };
            let expect = match get(entries, "expect") {
                Some(n) => self.verdict(n, "expect"),
                None => {
                    self.err(
                        item.loc,
                        "a test needs `expect:`",
                        Some("add `expect: allow`, `escalate` or `block`".into()),
                    );
                    None
                }
            };
            let above = self.above;
            let want_rule = match get(entries, "rule") {
                Some(n) => match self.string(n, "rule") {
                    Some(id)
                        if rules.iter().any(|r| r.id == id)
                            || id == "default"
                            || above.is_some_and(|a| a.has_rule(id)) =>
                    {
                        Some(id.to_string())
                    }
                    Some(id) => {
                        self.err(
                            n.loc,
                            format!("no rule has the id '{id}'"),
                            Some("name a rule of this policy, or `default` for no rule".into()),
                        );
                        None
                    }
                    None => None,
                },
                None => None,
            };
            let Some(action) = self.example_action_with(item, kind, TEST_KEYS, "a test") else {
                continue;
            };
            let Some(expect) = expect else { continue };
            self.examples += 1;
            let d = super::decide::decide(rules, &index, defaults, &action);
            let d = match above {
                Some(a) => a.below(d, &action),
                None => d,
            };
            let got_rule = d.rule.clone().unwrap_or_else(|| "default".to_string());
            let rule_ok = want_rule.as_ref().is_none_or(|w| *w == got_rule);
            if d.verdict != expect || !rule_ok {
                let want = match &want_rule {
                    Some(r) => format!("{expect} by {r}"),
                    None => expect.to_string(),
                };
                let matched = if d.matched.is_empty() {
                    "no rule matched".to_string()
                } else {
                    format!("matched: {}", d.matched.join(", "))
                };
                self.err(
                    item.loc,
                    format!(
                        "test expects {want}, but the decision is {} by {got_rule} ({matched})",
                        d.verdict
                    ),
                    Some("fix the rules or the test; `lexecon policy explain` shows why".into()),
                );
            }
        }
    }

    /// The rules of the examples' pass when the pass with the real
    /// variables compiled `real` from the same `items` (one rule each). A
    /// rule that references no variable compiles the same with any
    /// variables (they are read only through `${…}`), so the real pass's
    /// rule is used as is and only its examples are run; the others are
    /// compiled again with this pass's variables. The rules of the real
    /// pass that were set aside are kept in `displaced`, to be put back
    /// ([`restore`]).
    fn rules_sharing(&mut self, items: &[Node], real: Vec<Rule>) -> Vec<Rule> {
        let mut rules = real;
        let mut failed = Vec::new();
        for (i, item) in items.iter().enumerate() {
            self.rule = None;
            if references_variables(item) {
                match self.rule_node(item) {
                    Some(rule) => {
                        let real = std::mem::replace(&mut rules[i], rule);
                        self.displaced.push((i, real));
                    }
                    None => failed.push(i),
                }
            } else {
                self.shared_rule(item, &rules[i]);
            }
        }
        if !failed.is_empty() {
            // As if compiled here: a rule that failed is not among the
            // rules the tests are decided by (the pass fails anyway, so
            // the real rules need not be put back).
            self.displaced.clear();
            let mut failed = failed.into_iter().peekable();
            rules = rules
                .into_iter()
                .enumerate()
                .filter(|(i, _)| failed.next_if_eq(i).is_none())
                .map(|(_, r)| r)
                .collect();
        }
        rules
    }

    /// What [`Loader::rule_node`] does in the examples' pass for a rule
    /// that compiled without errors to `rule` (its id, its examples).
    fn shared_rule(&mut self, node: &Node, rule: &Rule) {
        let Value::Map(entries) = &node.value else {
            return;
        };
        if let Some(n) = get(entries, "id") {
            self.ids.insert(rule.id.clone(), n.loc.line);
        }
        self.rule = Some(rule.id.clone());
        if let Some(ex) = get(entries, "examples") {
            self.examples(ex, rule);
        }
    }

    fn rule_node(&mut self, node: &Node) -> Option<Rule> {
        let entries = self.map(node, "a rule")?;
        let id = match get(entries, "id") {
            None => {
                self.err(
                    node.loc,
                    "rule has no 'id'",
                    Some("add `id: some-name` (letters, digits, '.', '_', '-')".into()),
                );
                None
            }
            Some(n) => match self.string(n, "id") {
                Some(id) => {
                    let valid = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                        && id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
                    if !valid {
                        self.err(
                            n.loc,
                            format!("rule id '{id}' has characters other than letters, digits, '.', '_', '-'"),
                            Some("write e.g. `id: block-rm-rf`".into()),
                        );
                    }
                    if valid && id.starts_with(BUILTIN_PREFIX) {
                        self.err(
                            n.loc,
                            format!("rule id '{id}' begins with '{BUILTIN_PREFIX}', which names Lexecon's built-in rules"),
                            Some("choose another id: records name built-in rules this way, and `lexecon replay` and `verify --policy` tell them apart by it".into()),
                        );
                    }
                    if let Some(line) = self.ids.get(id) {
                        let line = *line;
                        self.rule = Some(id.to_string());
                        self.err(
                            n.loc,
                            format!("duplicate rule id (first used at line {line})"),
                            Some("give every rule its own id".into()),
                        );
                    } else {
                        self.ids.insert(id.to_string(), n.loc.line);
                    }
                    Some(id.to_string())
                }
                None => None,
            },
        };
        self.rule = id.clone();
        self.keys(entries, RULE_KEYS, "a rule");
        if let Some(d) = get(entries, "description") {
            self.string(d, "description");
        }
        let given: Vec<(ActionKind, &Node)> = KINDS
            .iter()
            .filter_map(|k| get(entries, k.as_str()).map(|n| (*k, n)))
            .collect();
        let (kind, conds_node) = match given.as_slice() {
            [(k, n)] => (Some(*k), Some(*n)),
            [] => {
                self.err(
                    node.loc,
                    "rule says none of `exec:`, `open:`, `connect:` and `tool:`",
                    Some("add `exec:`, `open:`, `connect:` or `tool:` with the conditions (`exec: {}` matches every exec)".into()),
                );
                (None, None)
            }
            [_, (_, n), ..] => {
                self.err(
                    n.loc,
                    "rule names more than one of `exec:`, `open:`, `connect:` and `tool:`; a rule judges one kind of action",
                    Some("split it into several rules".into()),
                );
                (None, None)
            }
        };
        let conds = match (kind, conds_node) {
            (Some(kind), Some(n)) => self.conds(n, kind, true),
            _ => None,
        };
        let verdict = match get(entries, "decision") {
            None => {
                self.err(
                    node.loc,
                    "rule has no 'decision'",
                    Some("add `decision: allow`, `block` or `escalate`".into()),
                );
                None
            }
            Some(d) => self.verdict(d, "decision"),
        };
        let reason = match get(entries, "reason") {
            None => {
                self.err(
                    node.loc,
                    "rule has no 'reason'",
                    Some("add `reason: …`, the sentence shown to the user and recorded".into()),
                );
                None
            }
            Some(r) => match self.string(r, "reason") {
                Some(s) if s.trim().is_empty() => {
                    self.err(
                        r.loc,
                        "reason is empty",
                        Some("say why, in one sentence".into()),
                    );
                    None
                }
                s => s.map(str::to_string),
            },
        };
        let timeout = match get(entries, "timeout_seconds") {
            None => None,
            Some(t) => {
                let secs = self
                    .string(t, "timeout_seconds")
                    .map(|v| (v.parse::<u64>(), v.to_string()));
                match secs {
                    Some((Ok(n), _)) if (1..=MAX_TIMEOUT_SECONDS).contains(&n) => {
                        if verdict != Some(Verdict::Escalate) {
                            self.err(
                                t.loc,
                                "timeout_seconds only applies to `decision: escalate`",
                                Some("remove it, or make the rule escalate".into()),
                            );
                        }
                        Some(std::time::Duration::from_secs(n))
                    }
                    Some((_, v)) => {
                        self.err(
                            t.loc,
                            format!("timeout_seconds must be a whole number of seconds from 1 to {MAX_TIMEOUT_SECONDS}, found '{v}'"),
                            Some("write e.g. `timeout_seconds: 120`".into()),
                        );
                        None
                    }
                    None => None,
                }
            }
        };
        let rate = get(entries, "rate").and_then(|n| self.rate(n, verdict));
        let risk = get(entries, "risk").and_then(|n| self.risk(n));
        let (id, kind, (when, unless), verdict, reason) = (id?, kind?, conds?, verdict?, reason?);
        let rule = Rule {
            id,
            kind,
            verdict,
            reason,
            timeout,
            when,
            unless,
            loc: node.loc,
            rate,
            risk,
        };
        if let Some(ex) = get(entries, "examples") {
            if self.check_examples {
                self.examples(ex, &rule);
            } else {
                // Checked in the pass with the example variables; only the
                // shape is checked here.
                self.map(ex, "examples");
            }
        }
        Some(rule)
    }

    /// The conditions mapping of a rule (`top`: may hold `unless`).
    fn conds(
        &mut self,
        node: &Node,
        kind: ActionKind,
        top: bool,
    ) -> Option<(Conds, Option<Conds>)> {
        let empty: [(Node, Node); 0] = [];
        let entries: &[(Node, Node)] = if node.is_null() {
            &empty
        } else {
            self.map(node, &format!("the `{kind}` conditions"))?
        };
        let allowed: Vec<&str> = match kind {
            ActionKind::Exec => EXEC_KEYS,
            ActionKind::Open => OPEN_KEYS,
            ActionKind::Connect => CONNECT_KEYS,
            ActionKind::Tool => super::tool::TOOL_KEYS,
        }
        .iter()
        .copied()
        .filter(|k| top || *k != "unless")
        .collect();
        let what = if top {
            format!("`{kind}` conditions")
        } else {
            format!("`{kind}` conditions under `unless`")
        };
        let before = self.errors.len();
        self.keys(entries, &allowed, &what);
        let unless = match get(entries, "unless") {
            // An invalid `unless` adds its errors; the check below then fails.
            Some(u) if top => self.conds(u, kind, false).map(|(c, _)| c),
            _ => None,
        };
        let conds = match kind {
            ActionKind::Exec => Conds::Exec(Box::new(self.exec_conds(entries))),
            ActionKind::Open => Conds::Open(Box::new(self.open_conds(entries))),
            ActionKind::Connect => Conds::Connect(Box::new(self.connect_conds(entries))),
            ActionKind::Tool => Conds::Tool(Box::new(self.tool_conds(entries))),
        };
        (self.errors.len() == before).then_some((conds, unless))
    }

    fn exec_conds(&mut self, e: &[(Node, Node)]) -> ExecConds {
        let mut c = ExecConds::default();
        if let Some(n) = get(e, "program") {
            c.program = self.globs(n, "program", true);
        }
        if let Some(n) = get(e, "name") {
            c.name = self.globs(n, "name", false);
        }
        if let Some(n) = get(e, "cwd") {
            c.cwd = self.globs(n, "cwd", true);
        }
        if let Some(n) = get(e, "operand") {
            c.operand = self.globs(n, "operand", false);
        }
        if let Some(n) = get(e, "operand_path") {
            c.operand_path = self.globs(n, "operand_path", true);
        }
        if let Some(n) = get(e, "operand_outside") {
            c.operand_outside = self.globs(n, "operand_outside", true);
        }
        if let Some(n) = get(e, "operand_covers") {
            if let Some(items) = self.strings(n, "operand_covers") {
                let mut paths = Vec::new();
                for (p, loc) in items {
                    match glob::compile(&p, self.scope) {
                        Ok(g) => match g.literal {
                            Some(l) if l.starts_with('/') => {
                                paths.push(argv::resolve("/", &l));
                            }
                            _ => self.err(
                                loc,
                                format!("operand_covers takes absolute paths without wildcards; '{p}' is not one"),
                                Some("write e.g. \"${WORKSPACE}\" or \"${HOME}\"".into()),
                            ),
                        },
                        Err(e) => self.err(loc, format!("bad path in operand_covers: {}", e.message), e.hint),
                    }
                }
                c.operand_covers = Some(paths);
            }
        }
        if let Some(n) = get(e, "sha256") {
            c.sha256 = self.hashes(n, "sha256");
        }
        if let Some(n) = get(e, "args") {
            match &n.value {
                Value::Seq(items) => {
                    let mut compiled = Vec::new();
                    let mut sources = Vec::new();
                    for item in items {
                        let Some(s) = self.string(item, "each entry of args") else {
                            continue;
                        };
                        sources.push(s.to_string());
                        let it = match s {
                            "*" => ArgItem::One,
                            "**" => ArgItem::Many,
                            p => match glob::compile(p, self.scope)
                                .and_then(|g| glob::build(vec![g.expanded], g.weight))
                            {
                                Ok(re) => ArgItem::Glob(re),
                                Err(e) => {
                                    self.err(
                                        item.loc,
                                        format!("bad pattern in args: {}", e.message),
                                        e.hint,
                                    );
                                    continue;
                                }
                            },
                        };
                        compiled.push(it);
                    }
                    c.args = Some((compiled, sources));
                }
                _ => self.err(
                    n.loc,
                    format!("args must be a list of patterns, found {}", n.type_name()),
                    Some(
                        "write e.g. `args: [push, \"**\"]` (`*` one argument, `**` any number)"
                            .into(),
                    ),
                ),
            }
        }
        if let Some(n) = get(e, "argv_regex") {
            if let Some(src) = self.string(n, "argv_regex") {
                let expanded = glob::expand(src, self.scope, &|v| regex::escape(v));
                match expanded {
                    Err(e) => self.err(n.loc, e.message, e.hint),
                    Ok(x) => match self.argv_regex(&x) {
                        Ok(re) => c.argv_regex = Some((re, src.to_string())),
                        Err(err) => self.err(
                            n.loc,
                            format!(
                                "bad regular expression: {}",
                                err.split_whitespace().collect::<Vec<_>>().join(" ")
                            ),
                            Some("the syntax is that of the Rust regex crate; it is matched against the argv joined by spaces".into()),
                        ),
                    },
                }
            }
        }
        if let Some(n) = get(e, "flags") {
            if let Some(items) = self.strings(n, "flags") {
                let mut groups = Vec::new();
                for (s, loc) in items {
                    match FlagGroup::parse(&s) {
                        Ok(g) => groups.push(g),
                        Err(m) => self.err(loc, m, None),
                    }
                }
                c.flags = Some(groups);
            }
        }
        c
    }

    /// A list of SHA-256 digests.
    fn hashes(&mut self, n: &Node, what: &str) -> Option<Vec<[u8; 32]>> {
        let items = self.strings(n, what)?;
        let mut hashes = Vec::new();
        for (s, loc) in items {
            let mut h = [0u8; 32];
            match hex::decode_to_slice(s.trim(), &mut h) {
                Ok(()) => hashes.push(h),
                Err(_) => self.err(
                    loc,
                    format!("'{s}' is not a SHA-256 digest"),
                    Some("write 64 hexadecimal digits, as printed by `sha256sum FILE`".into()),
                ),
            }
        }
        Some(hashes)
    }

    fn open_conds(&mut self, e: &[(Node, Node)]) -> OpenConds {
        let mut c = OpenConds::default();
        if let Some(n) = get(e, "path") {
            c.path = self.globs(n, "path", true);
        }
        if let Some(n) = get(e, "cwd") {
            c.cwd = self.globs(n, "cwd", true);
        }
        if let Some(n) = get(e, "access") {
            c.access = self.access(n);
        }
        if let Some(n) = get(e, "op") {
            c.op = self.ops(n);
        }
        if let Some(n) = get(e, "process") {
            c.process = self.process_conds(n);
        }
        c
    }

    /// `op:` of an open rule: the operations it judges (a name or a list).
    fn ops(&mut self, n: &Node) -> Option<FileOps> {
        let items = self.strings(n, "op")?;
        let mut ops = FileOps::empty();
        for (s, loc) in items {
            match FileOp::from_name(&s) {
                Some(o) => ops.insert(o),
                None => self.err(
                    loc,
                    format!("unknown operation '{s}'"),
                    Some(format!(
                        "write any of {}",
                        FileOp::ALL.map(FileOp::as_str).join(", ")
                    )),
                ),
            }
        }
        Some(ops)
    }

    /// `op:` of an example or test: one operation name.
    fn example_op(&mut self, n: &Node) -> Option<FileOp> {
        let s = self.string(n, "op")?;
        match FileOp::from_name(s) {
            Some(o) => Some(o),
            None => {
                self.err(
                    n.loc,
                    format!("unknown operation '{s}'"),
                    Some(format!(
                        "write one of {}",
                        FileOp::ALL.map(FileOp::as_str).join(", ")
                    )),
                );
                None
            }
        }
    }

    /// A list of names (one or several) each parsed by `parse`; a name it
    /// refuses is an error at its location, with `bad`'s message and hint.
    fn parsed<T>(
        &mut self,
        n: &Node,
        what: &str,
        parse: impl Fn(&str) -> Option<T>,
        bad: impl Fn(&str) -> (String, &'static str),
    ) -> Option<Vec<T>> {
        let items = self.strings(n, what)?;
        let mut v = Vec::new();
        for (p, loc) in items {
            match parse(&p) {
                Some(x) => v.push(x),
                None => {
                    let (message, hint) = bad(&p);
                    self.err(loc, message, Some(hint.into()));
                }
            }
        }
        Some(v)
    }

    /// The conditions of a `connect:` rule (see [`super::net`]).
    fn connect_conds(&mut self, e: &[(Node, Node)]) -> super::net::ConnectConds {
        use super::net::{parse_ports, Cidr};
        use crate::action::{NetOp, Protocol};
        let mut c = super::net::ConnectConds::default();
        if let Some(n) = get(e, "host") {
            if let Some(items) = self.strings(n, "host") {
                if let Some((bad, loc)) = items.iter().find(|(h, _)| {
                    h.contains(['/', ':', ' ']) || h.parse::<std::net::IpAddr>().is_ok()
                }) {
                    self.err(
                        *loc,
                        format!("'{bad}' is not a host name pattern"),
                        Some(
                            "write addresses and CIDR blocks under `address:`, ports under `port:`"
                                .into(),
                        ),
                    );
                } else {
                    let lower: Vec<(String, Loc)> = items
                        .into_iter()
                        .map(|(h, l)| (h.trim_end_matches('.').to_ascii_lowercase(), l))
                        .collect();
                    c.host = self.globs_from(&lower, n, "host");
                }
            }
        }
        if let Some(n) = get(e, "address") {
            if let Some(items) = self.strings(n, "address") {
                let mut v = Vec::new();
                for (a, loc) in items {
                    match Cidr::parse(&a) {
                        Some(b) => v.push(b),
                        None => self.err(
                            loc,
                            format!("'{a}' is not an address or CIDR block"),
                            Some("write e.g. `10.0.0.0/8`, `127.0.0.1`, `::1` or `fd00::/8`; host names go under `host:`".into()),
                        ),
                    }
                }
                c.address = Some(v);
            }
        }
        if let Some(n) = get(e, "port") {
            c.port = self.parsed(n, "port", parse_ports, |p| {
                (
                    format!("'{p}' is not a port or a range of ports"),
                    "write e.g. `443` or `8000-8999`",
                )
            });
        }
        if let Some(n) = get(e, "protocol") {
            c.protocol = self.parsed(n, "protocol", Protocol::from_name, |p| {
                (
                    format!("unknown protocol '{p}'"),
                    "write any of tcp, udp, unix, other",
                )
            });
        }
        if let Some(n) = get(e, "op") {
            c.op = self.parsed(n, "op", NetOp::from_name, |p| {
                (
                    format!("unknown op '{p}'"),
                    "write any of connect, send, bind, listen, resolve",
                )
            });
        }
        if let Some(n) = get(e, "path") {
            if let Some(items) = self.strings(n, "path") {
                // Abstract names (`@name`) are not paths; both kinds compile
                // as globs on the socket's name.
                c.path = self.globs_from(&items, n, "path");
            }
        }
        if let Some(n) = get(e, "process") {
            c.process = self.process_conds(n);
        }
        c
    }

    /// Globs from already-read strings (no path check).
    pub(super) fn globs_from(
        &mut self,
        items: &[(String, Loc)],
        node: &Node,
        what: &str,
    ) -> Option<Globs> {
        let mut compiled = Vec::with_capacity(items.len());
        for (p, loc) in items {
            match glob::compile(p, self.scope) {
                Ok(c) => compiled.push(c),
                Err(e) => self.err(
                    *loc,
                    format!("bad pattern in {what}: {}", e.message),
                    e.hint,
                ),
            }
        }
        if compiled.len() != items.len() {
            return None;
        }
        let sources: Vec<String> = items.iter().map(|(s, _)| s.clone()).collect();
        match Globs::from_compiled(&sources, compiled) {
            Ok(g) => Some(g),
            Err((_, e)) => {
                self.err(
                    node.loc,
                    format!("bad pattern in {what}: {}", e.message),
                    e.hint,
                );
                None
            }
        }
    }

    /// `process:` of an open rule: conditions on the caller's program.
    fn process_conds(&mut self, n: &Node) -> Option<ProcessConds> {
        let entries = self.map(n, "`process`")?;
        if entries.is_empty() {
            self.err(
                n.loc,
                "`process` has no condition",
                Some("write e.g. `process: {program: /usr/bin/ssh}`".into()),
            );
            return None;
        }
        self.keys(entries, PROCESS_KEYS, "`process` conditions");
        let mut c = ProcessConds::default();
        if let Some(n) = get(entries, "program") {
            c.program = self.globs(n, "program", true);
        }
        if let Some(n) = get(entries, "name") {
            c.name = self.globs(n, "name", false);
        }
        if let Some(n) = get(entries, "sha256") {
            c.sha256 = self.hashes(n, "sha256");
        }
        Some(c)
    }

    fn access(&mut self, n: &Node) -> Option<Access> {
        let items = self.strings(n, "access")?;
        let mut a = Access::empty();
        for (s, loc) in items {
            match Access::from_name(&s) {
                Some(f) => a |= f,
                None => self.err(
                    loc,
                    format!("unknown access '{s}'"),
                    Some(format!(
                        "write any of {}",
                        Access::ALL.map(|(_, n)| n).join(", ")
                    )),
                ),
            }
        }
        Some(a)
    }

    fn examples(&mut self, node: &Node, rule: &Rule) {
        let Some(entries) = self.map(node, "examples") else {
            return;
        };
        self.keys(entries, &["match", "no_match"], "examples");
        for (k, list) in entries {
            let expect = match key(k) {
                "match" => true,
                "no_match" => false,
                _ => continue,
            };
            let Value::Seq(items) = &list.value else {
                self.err(
                    list.loc,
                    format!(
                        "examples.{} must be a list, found {}",
                        key(k),
                        list.type_name()
                    ),
                    Some("write each example as a list item, e.g. `- exec: rm -rf /`".into()),
                );
                continue;
            };
            for item in items {
                let Some(action) = self.example_action(item, rule.kind) else {
                    continue;
                };
                self.examples += 1;
                // The explanation is only worked out for an example that
                // fails (the same evaluation, recording why).
                let got = with_view(&action, true, |v| rule.matches(v, None));
                if got != expect {
                    let mut trace = Vec::new();
                    with_view(&action, true, |v| rule.matches(v, Some(&mut trace)));
                    let why = trace
                        .iter()
                        .filter(|c| !expect || !c.holds)
                        .map(|c| format!("{}: {}", c.condition, c.detail))
                        .collect::<Vec<_>>()
                        .join("; ");
                    let message = if expect {
                        format!("example should match the rule but does not: {why}")
                    } else {
                        format!("example should not match the rule but does: {why}")
                    };
                    self.err(
                        item.loc,
                        message,
                        Some("fix the rule's conditions or the example".into()),
                    );
                } else if let Some((message, hint)) = self
                    .above
                    .filter(|_| expect)
                    .and_then(|a| a.loosens(rule, &action))
                {
                    self.err(item.loc, message, Some(hint));
                }
            }
        }
    }

    fn example_action(&mut self, node: &Node, kind: ActionKind) -> Option<Action> {
        self.example_action_with(node, kind, EXAMPLE_KEYS, "an example")
    }

    fn example_action_with(
        &mut self,
        node: &Node,
        kind: ActionKind,
        allowed: &[&str],
        what: &str,
    ) -> Option<Action> {
        let entries = self.map(node, what)?;
        self.keys(entries, allowed, what);
        let expand = |l: &mut Self, n: &Node, s: &str| -> Option<String> {
            match glob::expand(s, l.scope, &|v| v.to_string()) {
                Ok(x) => Some(x),
                Err(e) => {
                    l.err(n.loc, e.message, e.hint);
                    None
                }
            }
        };
        let workspace = self.scope.vars.workspace.clone();
        let cwd = match get(entries, "cwd") {
            Some(n) => {
                let s = self.string(n, "cwd")?;
                PathBuf::from(expand(self, n, s)?)
            }
            None => workspace,
        };
        match kind {
            ActionKind::Tool => self.tool_example(node, entries, cwd),
            ActionKind::Exec => {
                let cmd = self.example_of(
                    node,
                    entries,
                    ("exec", "an exec"),
                    &["access", "open", "op", "process"],
                    "belongs to examples of open rules",
                    "write e.g. `- exec: rm -rf /` or `- exec: [rm, -rf, /]`",
                )?;
                let words: Vec<String> = match &cmd.value {
                    Value::Seq(items) => {
                        let mut w = Vec::new();
                        for i in items {
                            let s = self.string(i, "each word of exec")?;
                            w.push(expand(self, i, s)?);
                        }
                        w
                    }
                    _ => {
                        let s = self.string(cmd, "exec")?;
                        let s = expand(self, cmd, s)?;
                        match argv::split_words(&s) {
                            Ok(w) => w,
                            Err(m) => {
                                self.err(cmd.loc, m, None);
                                return None;
                            }
                        }
                    }
                };
                let Some(first) = words.first() else {
                    self.err(cmd.loc, "the example command is empty", None);
                    return None;
                };
                let path = match get(entries, "program") {
                    Some(n) => {
                        let s = self.string(n, "program")?;
                        PathBuf::from(expand(self, n, s)?)
                    }
                    None if first.starts_with('/') => PathBuf::from(first),
                    None => PathBuf::from(format!(
                        "/usr/bin/{}",
                        first.rsplit('/').next().unwrap_or(first)
                    )),
                };
                let sha256 = match get(entries, "sha256") {
                    Some(n) => {
                        let s = self.string(n, "sha256")?;
                        let mut h = [0u8; 32];
                        if hex::decode_to_slice(s.trim(), &mut h).is_err() {
                            self.err(
                                n.loc,
                                format!("'{s}' is not a SHA-256 digest"),
                                Some("write 64 hexadecimal digits".into()),
                            );
                            return None;
                        }
                        Some(h)
                    }
                    None => None,
                };
                Some(Action::Exec(ExecAction {
                    path,
                    argv: words.into_iter().map(OsString::from).collect(),
                    cwd,
                    sha256,
                }))
            }
            ActionKind::Connect => {
                let t = self.example_of(
                    node,
                    entries,
                    ("connect", "a connect"),
                    &["program", "sha256", "exec", "open", "access", "cwd"],
                    "does not belong to examples of connect rules",
                    "write e.g. `- connect: pypi.org:443` or `- connect: /var/run/docker.sock`",
                )?;
                let text = self.string(t, "connect")?.to_string();
                let op = match get(entries, "op") {
                    Some(n) => {
                        let o = self.string(n, "op")?;
                        match crate::action::NetOp::from_name(o) {
                            Some(o) => o,
                            None => {
                                self.err(
                                    n.loc,
                                    format!("unknown op '{o}'"),
                                    Some("write connect, send, bind, listen or resolve".into()),
                                );
                                return None;
                            }
                        }
                    }
                    None => crate::action::NetOp::Connect,
                };
                let protocol = match get(entries, "protocol") {
                    Some(n) => {
                        let p = self.string(n, "protocol")?;
                        match crate::action::Protocol::from_name(p) {
                            Some(p) => Some(p),
                            None => {
                                self.err(
                                    n.loc,
                                    format!("unknown protocol '{p}'"),
                                    Some("write tcp, udp, unix or other".into()),
                                );
                                return None;
                            }
                        }
                    }
                    None => None,
                };
                let names = match get(entries, "names") {
                    Some(n) => self
                        .strings(n, "names")?
                        .into_iter()
                        .map(|(s, _)| s.to_ascii_lowercase())
                        .collect(),
                    None => Vec::new(),
                };
                let mut action = match super::net::parse_action(&text, op, protocol, names) {
                    Ok(a) => a,
                    Err(m) => {
                        self.err(t.loc, m, None);
                        return None;
                    }
                };
                if let Some(n) = get(entries, "process") {
                    action.process = Some(self.example_process(n)?);
                }
                let _ = cwd;
                Some(Action::Connect(action))
            }
            ActionKind::Open => {
                let p = self.example_of(
                    node,
                    entries,
                    ("open", "an open"),
                    &["program", "sha256", "exec"],
                    "belongs to examples of exec rules",
                    "write e.g. `- {open: \"${HOME}/.ssh/id_rsa\", access: [read]}`",
                )?;
                let s = self.string(p, "open")?;
                let path = PathBuf::from(expand(self, p, s)?);
                let access = match get(entries, "access") {
                    Some(n) => self.access(n)?,
                    None => Access::READ,
                };
                let process = match get(entries, "process") {
                    Some(n) => Some(self.example_process(n)?),
                    None => None,
                };
                let op = match get(entries, "op") {
                    Some(n) => self.example_op(n)?,
                    None => FileOp::Open,
                };
                Some(Action::Open(OpenAction {
                    op,
                    detail: None,
                    path,
                    access,
                    cwd,
                    process,
                }))
            }
        }
    }
}

impl Loader<'_> {
    /// Compile an `argv_regex` (once per load: the pass that checks the
    /// examples usually meets the same text). The syntax and the matches are
    /// the `regex` crate's (the same parser and defaults); the automaton
    /// keeps no capture groups and builds no full DFA up front, which makes
    /// compiling several times cheaper, for the same answers.
    fn argv_regex(&self, text: &str) -> Result<ArgvRegex, String> {
        if let Some(re) = self.regexes.borrow().get(text) {
            return Ok(re.clone());
        }
        let hir = regex_syntax::Parser::new()
            .parse(text)
            .map_err(|e| e.to_string())?;
        let re = ArgvRegex::builder()
            .configure(
                ArgvRegex::config()
                    .dfa(false)
                    .which_captures(regex_automata::nfa::thompson::WhichCaptures::None)
                    .nfa_size_limit(Some(4 << 20)),
            )
            .build_from_hir(&hir)
            .map_err(|_| {
                "the expression is too large (its automaton would exceed 4 MiB)".to_string()
            })?;
        self.regexes
            .borrow_mut()
            .insert(text.to_string(), re.clone());
        Ok(re)
    }

    /// The caller's program of an example open: a path, or a mapping with
    /// `program`, `sha256` and `injected`.
    fn example_process(&mut self, n: &Node) -> Option<ProcessInfo> {
        let expand = |l: &mut Self, n: &Node, s: &str| -> Option<String> {
            match glob::expand(s, l.scope, &|v| v.to_string()) {
                Ok(x) => Some(x),
                Err(e) => {
                    l.err(n.loc, e.message, e.hint);
                    None
                }
            }
        };
        let absolute = |l: &mut Self, n: &Node, p: String| -> Option<PathBuf> {
            if p.starts_with('/') {
                Some(PathBuf::from(p))
            } else {
                l.err(
                    n.loc,
                    format!("the example's process program '{p}' is not an absolute path"),
                    Some("write the program's full path, e.g. /usr/bin/ssh".into()),
                );
                None
            }
        };
        if let Value::Scalar(..) = &n.value {
            let s = self.string(n, "process")?;
            let p = expand(self, n, s)?;
            return Some(ProcessInfo {
                program: absolute(self, n, p)?,
                sha256: None,
                file: None,
                injected: None,
            });
        }
        let entries = self.map(n, "an example's `process` (a path or a mapping)")?;
        self.keys(entries, EXAMPLE_PROCESS_KEYS, "an example's `process`");
        let Some(pn) = get(entries, "program") else {
            self.err(
                n.loc,
                "an example's `process` needs `program:`",
                Some("write e.g. `process: {program: /usr/bin/ssh}`".into()),
            );
            return None;
        };
        let s = self.string(pn, "program")?;
        let p = expand(self, pn, s)?;
        let program = absolute(self, pn, p)?;
        let sha256 = match get(entries, "sha256") {
            Some(h) => {
                let s = self.string(h, "sha256")?;
                let mut d = [0u8; 32];
                if hex::decode_to_slice(s.trim(), &mut d).is_err() {
                    self.err(
                        h.loc,
                        format!("'{s}' is not a SHA-256 digest"),
                        Some("write 64 hexadecimal digits".into()),
                    );
                    return None;
                }
                Some(d)
            }
            None => None,
        };
        let injected = match get(entries, "injected") {
            Some(i) => Some(self.string(i, "injected")?.to_string()),
            None => None,
        };
        Some(ProcessInfo {
            program,
            sha256,
            file: None,
            injected,
        })
    }
}

/// The variable values embedded examples are checked with, whatever the
/// real ones: a policy's own tests must give the same result on every machine
/// and in every directory (a workspace of `/` would otherwise make every
/// "outside the workspace" example fail).
pub(crate) fn example_vars() -> Vars {
    Vars {
        home: PathBuf::from("/home/user"),
        workspace: PathBuf::from("/home/user/project"),
        tmpdir: PathBuf::from("/tmp"),
    }
}

/// Load and validate a policy from its YAML tree: one pass with the real
/// variables and environment (the rules that will judge), and one with the
/// example variables and no environment (every `${env.NAME:-DEFAULT}` is its
/// default) that runs the examples; a single pass when both are the same.
pub(crate) fn load(
    root: &Node,
    file: &str,
    vars: &Vars,
    env: &Env,
    above: Option<&super::layers::Above<'_>>,
    checks: Option<(&dyn super::ExampleChecks, [u8; 32])>,
) -> Result<Compiled, Vec<PolicyError>> {
    let examples_vars = example_vars();
    let example_scope = Scope::new(&examples_vars, None);
    let regexes = RefCell::new(HashMap::new());
    let real_pass = || {
        load_pass(
            root,
            file,
            &Scope::new(vars, Some(env)),
            false,
            None,
            &regexes,
        )
    };
    if *vars == examples_vars {
        let with_examples = load_pass(root, file, &example_scope, true, above, &regexes)?;
        if with_examples.env.is_empty() {
            return Ok(with_examples);
        }
        let mut compiled = real_pass()?;
        compiled.examples = with_examples.examples;
        return Ok(compiled);
    }
    let mut compiled = real_pass()?;
    crate::timing::mark("policy: compiled and checked with the real variables");
    // The examples' pass depends on the text alone (fixed variables, no
    // environment): one that passed before with this build passes again.
    // Not for a layer below others: its examples and tests are judged with
    // the layers it includes too.
    let checks = checks.filter(|_| above.is_none());
    if let Some(n) = checks.and_then(|(c, id)| c.passed(&id)) {
        compiled.examples = n;
        return Ok(compiled);
    }
    if reference_load() {
        let with_examples = load_pass(root, file, &example_scope, true, above, &regexes)?;
        compiled.examples = with_examples.examples;
        if let Some((c, id)) = checks {
            c.record(&id, compiled.examples);
        }
        return Ok(compiled);
    }
    let real_rules = std::mem::take(&mut compiled.rules);
    let (with_examples, sharing) =
        examples_pass(root, file, &example_scope, above, &regexes, real_rules)?;
    compiled.rules = match sharing {
        Sharing::Unused(real) => real,
        Sharing::Displaced(displaced) => restore(with_examples.rules, displaced),
    };
    compiled.examples = with_examples.examples;
    crate::timing::mark("policy: examples and tests checked");
    if let Some((c, id)) = checks {
        c.record(&id, compiled.examples);
    }
    Ok(compiled)
}

/// The rules of a policy with the example variables and no environment,
/// its examples and tests not run (what the examples of a layer below it
/// are judged against).
pub(crate) fn load_for_examples(root: &Node, file: &str) -> Result<Compiled, Vec<PolicyError>> {
    let vars = example_vars();
    load_pass(
        root,
        file,
        &Scope::new(&vars, None),
        false,
        None,
        &RefCell::new(HashMap::new()),
    )
}

fn load_pass(
    root: &Node,
    file: &str,
    scope: &Scope,
    check_examples: bool,
    above: Option<&super::layers::Above<'_>>,
    regexes: &RefCell<HashMap<String, ArgvRegex>>,
) -> Result<Compiled, Vec<PolicyError>> {
    pass(root, file, scope, check_examples, above, regexes, None).map(|(c, _)| c)
}

/// What became of the real rules given to the examples' pass.
enum Sharing {
    /// Not shared (the pass found no list of as many rules): as given.
    Unused(Vec<Rule>),
    /// Shared: the real rules the pass replaced, by index.
    Displaced(Vec<(usize, Rule)>),
}

/// The pass that runs the examples and tests, sharing with it the rules
/// of the pass with the real variables (`real`, see
/// [`Loader::rules_sharing`]): its rules, and the real rules it replaced.
fn examples_pass(
    root: &Node,
    file: &str,
    scope: &Scope,
    above: Option<&super::layers::Above<'_>>,
    regexes: &RefCell<HashMap<String, ArgvRegex>>,
    real: Vec<Rule>,
) -> Result<(Compiled, Sharing), Vec<PolicyError>> {
    pass(root, file, scope, true, above, regexes, Some(real))
}

/// The rules of the real pass again: `rules` with each displaced rule put
/// back at its index.
fn restore(mut rules: Vec<Rule>, displaced: Vec<(usize, Rule)>) -> Vec<Rule> {
    for (i, rule) in displaced {
        rules[i] = rule;
    }
    rules
}

fn pass(
    root: &Node,
    file: &str,
    scope: &Scope,
    check_examples: bool,
    above: Option<&super::layers::Above<'_>>,
    regexes: &RefCell<HashMap<String, ArgvRegex>>,
    shared: Option<Vec<Rule>>,
) -> Result<(Compiled, Sharing), Vec<PolicyError>> {
    let mut l = Loader {
        file,
        scope,
        errors: Vec::new(),
        rule: None,
        examples: 0,
        ids: HashMap::new(),
        check_examples,
        above,
        regexes,
        shared,
        displaced: Vec::new(),
    };
    let compiled = l.load(root);
    match compiled {
        Some(c) if l.errors.is_empty() => {
            let sharing = match l.shared {
                Some(real) => Sharing::Unused(real),
                None => Sharing::Displaced(l.displaced),
            };
            Ok((c, sharing))
        }
        _ => Err(l.errors),
    }
}
