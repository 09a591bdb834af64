//! The decision: which rules can match an action (an index built once at
//! load), which of those do, and which verdict wins.
//!
//! The index keeps `decide` fast on large policies: exec rules are found by
//! program name (a hash lookup), by program path (one pass of a regex set over
//! all path globs) or by content hash; open rules by one regex-set pass over
//! all path globs. Only rules the index cannot place (no name, program, hash
//! or path condition) are tried for every action. Candidates are then
//! evaluated in file order, so the result is exactly that of trying every
//! rule (a property test checks this against [`super::Policy::explain`]).

use std::collections::HashMap;

use regex::RegexSet;

use super::compile::kind_index;
use super::rule::{basename, with_view, Conds, Rule, View};
use crate::action::{Action, ActionKind, Decision, Verdict};

/// The index of one action kind.
#[derive(Debug, Default)]
pub(crate) struct KindIndex {
    /// One pass over all primary path globs; `owners[i]` is the rule of
    /// pattern `i`.
    set: Option<RegexSet>,
    owners: Vec<u32>,
    by_name: HashMap<String, Vec<u32>>,
    by_hash: HashMap<[u8; 32], Vec<u32>>,
    always: Vec<u32>,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    kinds: [KindIndex; 2],
}

impl Index {
    pub fn build(rules: &[Rule]) -> Result<Index, regex::Error> {
        let mut index = Index::default();
        let mut bodies: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        for (i, rule) in rules.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            let k = kind_index(rule.kind);
            let ki = &mut index.kinds[k];
            match &rule.when {
                Conds::Exec(c) => {
                    let literal_names: Option<Vec<&String>> = c
                        .name
                        .as_ref()
                        .and_then(|g| g.literals.iter().map(Option::as_ref).collect());
                    if let Some(names) = literal_names {
                        for n in names {
                            ki.by_name.entry(n.clone()).or_default().push(i);
                        }
                    } else if let Some(g) = &c.program {
                        for b in &g.bodies {
                            bodies[k].push(super::glob::anchored_any([b.as_str()]));
                            ki.owners.push(i);
                        }
                    } else if let Some(hashes) = &c.sha256 {
                        for h in hashes {
                            ki.by_hash.entry(*h).or_default().push(i);
                        }
                    } else {
                        ki.always.push(i);
                    }
                }
                Conds::Open(c) => match &c.path {
                    Some(g) => {
                        for b in &g.bodies {
                            bodies[k].push(super::glob::anchored_any([b.as_str()]));
                            ki.owners.push(i);
                        }
                    }
                    None => ki.always.push(i),
                },
            }
        }
        for (k, b) in bodies.iter().enumerate() {
            if !b.is_empty() {
                index.kinds[k].set = Some(
                    regex::RegexSetBuilder::new(b)
                        .size_limit(64 << 20)
                        .dfa_size_limit(16 << 20)
                        .build()?,
                );
            }
        }
        Ok(index)
    }

    /// Indices of the rules that may match, ascending (file order), without
    /// duplicates.
    fn candidates(&self, view: &View<'_>, out: &mut Vec<u32>) {
        match view {
            View::Exec(v) => {
                let ki = &self.kinds[kind_index(ActionKind::Exec)];
                out.extend_from_slice(&ki.always);
                let base = basename(&v.path);
                if let Some(rs) = ki.by_name.get(base) {
                    out.extend_from_slice(rs);
                }
                let arg0 = basename(&v.argv0);
                if arg0 != base {
                    if let Some(rs) = ki.by_name.get(arg0) {
                        out.extend_from_slice(rs);
                    }
                }
                if let Some(h) = &v.action.sha256 {
                    if let Some(rs) = ki.by_hash.get(h) {
                        out.extend_from_slice(rs);
                    }
                }
                if let Some(set) = &ki.set {
                    out.extend(set.matches(&v.path).iter().filter_map(|p| ki.owners.get(p)));
                }
            }
            View::Open(v) => {
                let ki = &self.kinds[kind_index(ActionKind::Open)];
                out.extend_from_slice(&ki.always);
                if let Some(set) = &ki.set {
                    out.extend(set.matches(&v.path).iter().filter_map(|p| ki.owners.get(p)));
                }
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
        reason: format!("no rule matched; the default for {kind} is {verdict}"),
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
        if best.map_or(true, |b| r.verdict > b.verdict) {
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
    defaults: &[Verdict; 2],
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
