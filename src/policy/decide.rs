//! The decision: which rules can match an action (an index built once at
//! load), which of those do, and which verdict wins.
//!
//! The index keeps `decide` fast on large policies without running a
//! regular expression per rule. Every glob starts with a literal prefix (its
//! text before the first wildcard); a subject can only match when it starts
//! with that prefix. Path globs are filed under the directory part of their
//! prefix (up to its last `/`), so a path is looked up once per `/` it
//! contains; whole-literal globs are filed under their text. Name globs are
//! filed by their literal, or by the first character of their prefix. Only
//! rules the index cannot place (no name, program, hash or path condition,
//! or a pattern starting with a wildcard) are tried for every action.
//! Candidates are then evaluated in file order, so the result is exactly
//! that of trying every rule (a property test checks this against
//! [`super::Policy::explain`]).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::compile::kind_index;
use super::glob::Globs;
use super::rule::{basename, with_view, Conds, Rule, View};
use crate::action::{Action, ActionKind, Decision, Verdict};

/// FNV-1a: keys are short, trusted (from the policy) strings; lookups use
/// untrusted subjects but only read, so flooding is not a concern.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvMap<V> = HashMap<String, V, BuildHasherDefault<Fnv>>;

/// Rules filed by the literal prefix of their path globs.
#[derive(Debug, Default)]
struct PathIndex {
    exact: FnvMap<Vec<u32>>,
    dir: FnvMap<Vec<u32>>,
}

impl PathIndex {
    /// File `rule` under each pattern of `g`; false if some pattern has no
    /// directory prefix (the rule must then be tried always).
    fn add(&mut self, g: &Globs, rule: u32) -> bool {
        let mut placed = true;
        for (lit, prefix) in g.literals.iter().zip(&g.prefixes) {
            match (lit, prefix.rfind('/')) {
                (Some(l), _) => self.exact.entry(l.clone()).or_default().push(rule),
                (None, Some(i)) => self
                    .dir
                    .entry(prefix[..=i].to_string())
                    .or_default()
                    .push(rule),
                (None, None) => placed = false,
            }
        }
        placed
    }

    fn candidates(&self, s: &str, out: &mut Vec<u32>) {
        if let Some(rs) = self.exact.get(s) {
            out.extend_from_slice(rs);
        }
        if self.dir.is_empty() {
            return;
        }
        for (i, b) in s.bytes().enumerate() {
            if b == b'/' {
                if let Some(rs) = self.dir.get(&s[..=i]) {
                    out.extend_from_slice(rs);
                }
            }
        }
    }
}

/// Exec rules filed by program name.
#[derive(Debug, Default)]
struct NameIndex {
    exact: FnvMap<Vec<u32>>,
    /// Name globs by the first byte of their literal prefix: (prefix, rule).
    by_first: HashMap<u8, Vec<(String, u32)>>,
}

impl NameIndex {
    fn add(&mut self, g: &Globs, rule: u32) -> bool {
        let mut placed = true;
        for (lit, prefix) in g.literals.iter().zip(&g.prefixes) {
            match (lit, prefix.as_bytes().first()) {
                (Some(l), _) => self.exact.entry(l.clone()).or_default().push(rule),
                (None, Some(b)) => self
                    .by_first
                    .entry(*b)
                    .or_default()
                    .push((prefix.clone(), rule)),
                (None, None) => placed = false,
            }
        }
        placed
    }

    fn candidates(&self, name: &str, out: &mut Vec<u32>) {
        if let Some(rs) = self.exact.get(name) {
            out.extend_from_slice(rs);
        }
        if let Some(entries) = name.as_bytes().first().and_then(|b| self.by_first.get(b)) {
            out.extend(
                entries
                    .iter()
                    .filter(|(p, _)| name.starts_with(p.as_str()))
                    .map(|(_, r)| *r),
            );
        }
    }
}

/// The index of one action kind.
#[derive(Debug, Default)]
pub(crate) struct KindIndex {
    paths: PathIndex,
    names: NameIndex,
    by_hash: HashMap<[u8; 32], Vec<u32>>,
    /// The `block`/`escalate` rules in `by_hash`: candidates when a
    /// program's hash is not known (unknown facts never help).
    by_hash_strict: Vec<u32>,
    always: Vec<u32>,
    /// Every rule of the kind, file order: the candidates for a move or
    /// removal of a directory, which rules on paths beneath it can match.
    every: Vec<u32>,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    kinds: [KindIndex; 4],
}

impl Index {
    pub fn build(rules: &[Rule]) -> Index {
        let mut index = Index::default();
        for (i, rule) in rules.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            let ki = &mut index.kinds[kind_index(rule.kind)];
            ki.every.push(i);
            let placed = match &rule.when {
                Conds::Exec(c) => {
                    if let Some(g) = &c.name {
                        ki.names.add(g, i)
                    } else if let Some(g) = &c.program {
                        ki.paths.add(g, i)
                    } else if let Some(hashes) = &c.sha256 {
                        for h in hashes {
                            ki.by_hash.entry(*h).or_default().push(i);
                        }
                        if rule.verdict != Verdict::Allow {
                            ki.by_hash_strict.push(i);
                        }
                        true
                    } else {
                        false
                    }
                }
                Conds::Open(c) => match &c.path {
                    Some(g) => ki.paths.add(g, i),
                    None => false,
                },
                // Few rules: tried for every action of the kind.
                Conds::Connect(_) | Conds::Tool(_) => false,
            };
            if !placed {
                ki.always.push(i);
            }
        }
        index
    }

    /// Indices of the rules that may match, ascending (file order), without
    /// duplicates.
    fn candidates(&self, view: &View<'_>, out: &mut Vec<u32>) {
        match view {
            View::Exec(v) => {
                let ki = &self.kinds[kind_index(ActionKind::Exec)];
                out.extend_from_slice(&ki.always);
                let base = basename(&v.path);
                ki.names.candidates(base, out);
                let arg0 = basename(&v.argv0);
                if arg0 != base {
                    ki.names.candidates(arg0, out);
                }
                match &v.action.sha256 {
                    Some(h) => {
                        if let Some(rs) = ki.by_hash.get(h) {
                            out.extend_from_slice(rs);
                        }
                    }
                    None => out.extend_from_slice(&ki.by_hash_strict),
                }
                ki.paths.candidates(&v.path, out);
            }
            View::Open(v) => {
                let ki = &self.kinds[kind_index(ActionKind::Open)];
                if v.action.moves_subtree() {
                    out.extend_from_slice(&ki.every);
                    return;
                }
                out.extend_from_slice(&ki.always);
                ki.paths.candidates(&v.path, out);
            }
            View::Connect(_) => {
                let ki = &self.kinds[kind_index(ActionKind::Connect)];
                out.extend_from_slice(&ki.always);
            }
            View::Tool(_) => {
                let ki = &self.kinds[kind_index(ActionKind::Tool)];
                out.extend_from_slice(&ki.always);
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}

/// The default decision of a kind.
pub(crate) fn default_decision(kind: ActionKind, verdict: Verdict) -> Decision {
    Decision {
        verdict,
        matched: Vec::new(),
        rule: None,
        reason: super::default_reason(kind, verdict),
    }
}

/// Combine matching rules (indices ascending) into a decision: the strongest
/// verdict wins; among equals, the first in file order.
pub(crate) fn combine(
    rules: &[Rule],
    matching: impl IntoIterator<Item = usize>,
    kind: ActionKind,
    default: Verdict,
) -> Decision {
    let mut matched = Vec::new();
    let mut best: Option<&Rule> = None;
    for i in matching {
        let Some(r) = rules.get(i) else { continue };
        matched.push(r.id.clone());
        if best.is_none_or(|b| r.verdict > b.verdict) {
            best = Some(r);
        }
    }
    match best {
        None => default_decision(kind, default),
        Some(r) => Decision {
            verdict: r.verdict,
            matched,
            rule: Some(r.id.clone()),
            reason: r.reason.clone(),
        },
    }
}

pub(crate) fn decide(
    rules: &[Rule],
    index: &Index,
    defaults: &[Verdict; 4],
    action: &Action,
) -> Decision {
    let mut d = decide_inner(rules, index, defaults, action);
    super::net::explain_default(action, defaults[kind_index(action.kind())], &mut d);
    d
}

fn decide_inner(
    rules: &[Rule],
    index: &Index,
    defaults: &[Verdict; 4],
    action: &Action,
) -> Decision {
    let kind = action.kind();
    let default = defaults[kind_index(kind)];
    let mut cands: Vec<u32> = Vec::with_capacity(16);
    // First pass: find candidates without decoding argv.
    with_view(action, false, |v| index.candidates(v, &mut cands));
    if cands.is_empty() {
        return default_decision(kind, default);
    }
    let needs_args = cands.iter().any(|&i| {
        matches!(rules.get(i as usize).map(|r| (&r.when, &r.unless)),
            Some((Conds::Exec(c), u)) if c.needs_args() || matches!(u, Some(Conds::Exec(uc)) if uc.needs_args()))
    });
    with_view(action, needs_args, |v| {
        let matching = cands
            .iter()
            .map(|&i| i as usize)
            .filter(|&i| rules.get(i).is_some_and(|r| r.matches(v, None)));
        combine(rules, matching, kind, default)
    })
}
