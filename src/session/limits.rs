//! Rate limits and the breaker over one run (the policy states them, see
//! `policy::limits`): deterministic from the times the records carry.
//!
//! Every decision (and every intent) is passed through [`Limits::apply`]
//! under the ledger's lock, with the time its record is then written with,
//! in the order of the ledger: so the state before each record is a
//! function of the records before it, and a replay of the ledger re-derives
//! every change. Each change is a `limit` record written just before the
//! decision it changes: `rate` when a rule's limit refuses an action,
//! `breaker` when the breaker trips.
//!
//! - A rule with `rate: N/P` counts the actions it decided and let through
//!   (not those it refused for the limit) at the times recorded; an action
//!   it would decide when N of them lie within the last P (`t - P < time
//!   ≤ t`) is blocked.
//! - The breaker sums, over the decisions within its window, one per block
//!   (`blocks:`) or the deciding rule's risk weight (`risk:`; default 1 for
//!   a block, 0 otherwise), the changed decision's own included; when the
//!   sum reaches the threshold it trips for the rest of the run.
//! - Built-in protections are neither counted nor changed.

use std::collections::{HashMap, VecDeque};

use crate::action::{Decision, Verdict};
use crate::policy::limits::{Counted, Then};
use crate::policy::Policy;

/// Rule id of decisions changed by a tripped breaker.
pub const BREAKER_RULE: &str = "lexecon.breaker";

/// A change to record before the decision it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `rate` or `breaker`.
    pub event: &'static str,
    pub rule: Option<String>,
    pub count: u64,
    pub limit: u64,
    pub window_ms: u64,
    pub then: Option<&'static str>,
    /// What the breaker counts: `blocks` or `risk`.
    pub counted: Option<&'static str>,
    pub reason: String,
}

/// The limits' state of one run.
#[derive(Debug, Default)]
pub struct Limits {
    /// Per rule with a rate: the times of the actions it let through.
    let_through: HashMap<String, VecDeque<u128>>,
    /// (time, weight) of the decisions the breaker counts.
    counted: VecDeque<(u128, u64)>,
    /// Set once the breaker tripped: what it does, and the seq of its
    /// `limit` record (once written).
    tripped: Option<(Then, Option<u64>)>,
}

fn ns(d: std::time::Duration) -> u128 {
    d.as_nanos()
}

impl Limits {
    /// Passes `decision` (of a non-built-in rule when `builtin` is false)
    /// at `now` through the limits; changes it when a limit applies, and
    /// returns the changes to record before it, in order.
    pub fn apply(
        &mut self,
        policy: &Policy,
        decision: &mut Decision,
        builtin: bool,
        now: u128,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        if builtin {
            return changes;
        }
        // A tripped breaker first.
        if let Some((then, seq)) = self.tripped {
            let hit = match then {
                Then::BlockAll | Then::Stop => decision.verdict != Verdict::Block,
                Then::BlockEscalations => decision.verdict == Verdict::Escalate,
            };
            if hit {
                let at = seq.map_or_else(String::new, |s| format!(" (record {s})"));
                decision.reason = format!(
                    "the run's breaker tripped{at}: {}; the rule's decision was {} ({})",
                    match then {
                        Then::BlockAll => "every action is blocked",
                        Then::Stop => "the tree is stopped",
                        Then::BlockEscalations => "every escalation is blocked",
                    },
                    decision.verdict,
                    decision.reason
                );
                decision.verdict = Verdict::Block;
                decision.matched.push(BREAKER_RULE.to_string());
                decision.rule = Some(BREAKER_RULE.to_string());
            }
        }
        // The deciding rule's rate limit.
        if decision.verdict != Verdict::Block {
            if let Some((rule, rate)) = decision
                .rule
                .as_deref()
                .and_then(|r| policy.rate(r).map(|rate| (r.to_string(), rate)))
            {
                let times = self.let_through.entry(rule.clone()).or_default();
                while times.front().is_some_and(|t| *t + ns(rate.period) <= now) {
                    times.pop_front();
                }
                if times.len() as u64 >= u64::from(rate.count) {
                    let per = human(rate.period);
                    changes.push(Change {
                        event: "rate",
                        rule: Some(rule.clone()),
                        count: times.len() as u64,
                        limit: u64::from(rate.count),
                        window_ms: rate.period.as_millis() as u64,
                        then: None,
                        counted: None,
                        reason: format!(
                            "rule {rule} let {} actions through in the last {per}, its limit",
                            times.len()
                        ),
                    });
                    decision.reason = format!(
                        "rate limit of rule {rule} reached ({} per {per}): blocked; the rule's decision was {} ({})",
                        rate.count, decision.verdict, decision.reason
                    );
                    decision.verdict = Verdict::Block;
                } else {
                    times.push_back(now);
                }
            }
        }
        // The breaker counts the decision as it now stands.
        if let (Some(b), None) = (policy.breaker(), self.tripped) {
            let weight = match b.counted {
                Counted::Blocks => u64::from(decision.verdict == Verdict::Block),
                Counted::Risk => match decision.rule.as_deref().and_then(|r| policy.risk(r)) {
                    Some(w) => u64::from(w),
                    None => u64::from(decision.verdict == Verdict::Block),
                },
            };
            while self
                .counted
                .front()
                .is_some_and(|(t, _)| *t + ns(b.within) <= now)
            {
                self.counted.pop_front();
            }
            if weight > 0 {
                self.counted.push_back((now, weight));
            }
            let sum: u64 = self.counted.iter().map(|(_, w)| w).sum();
            if weight > 0 && sum >= b.threshold {
                self.tripped = Some((b.then, None));
                let what = match b.counted {
                    Counted::Blocks => "blocks",
                    Counted::Risk => "risk",
                };
                changes.push(Change {
                    event: "breaker",
                    rule: None,
                    count: sum,
                    limit: b.threshold,
                    window_ms: b.within.as_millis() as u64,
                    then: Some(b.then.as_str()),
                    counted: Some(what),
                    reason: format!(
                        "{sum} {what} within {} reached the breaker's threshold of {}: from now on {}",
                        human(b.within),
                        b.threshold,
                        match b.then {
                            Then::BlockAll => "every action is blocked",
                            Then::Stop => "the tree is stopped",
                            Then::BlockEscalations => "every escalation is blocked",
                        }
                    ),
                });
            }
        }
        changes
    }

    /// The `limit` record of the breaker's trip was written as `seq`.
    pub fn breaker_recorded(&mut self, seq: u64) {
        if let Some((then, None)) = self.tripped {
            self.tripped = Some((then, Some(seq)));
        }
    }

    /// Whether the tripped breaker stops the tree.
    pub fn stops(&self) -> bool {
        matches!(self.tripped, Some((Then::Stop, _)))
    }

    /// Whether an escalation `decision` at `now` would be blocked by the
    /// limits as they stand (a tripped breaker, its rule's rate limit):
    /// checked before a human is asked, so that nobody is asked in vain.
    /// The decision itself is still passed through [`Limits::apply`] when
    /// it is recorded.
    pub fn would_block(&self, policy: &Policy, decision: &Decision, now: u128) -> bool {
        if self.tripped.is_some() {
            return true;
        }
        let Some(rule) = decision.rule.as_deref() else {
            return false;
        };
        let Some(rate) = policy.rate(rule) else {
            return false;
        };
        let within = self.let_through.get(rule).map_or(0, |ts| {
            ts.iter().filter(|t| **t + ns(rate.period) > now).count()
        });
        within as u64 >= u64::from(rate.count)
    }
}

/// `90 s`, `10 min`, `1 h`.
fn human(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s % 3600 == 0 {
        format!("{} h", s / 3600)
    } else if s % 60 == 0 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn policy(text: &str) -> Policy {
        let vars = crate::policy::Vars {
            home: PathBuf::from("/h"),
            workspace: PathBuf::from("/w"),
            tmpdir: PathBuf::from("/tmp"),
        };
        Policy::from_str(text, "t.yaml", &vars).unwrap_or_else(|e| panic!("{e}"))
    }

    fn decided(p: &Policy, name: &str) -> Decision {
        p.decide(&crate::action::Action::Tool(crate::action::ToolAction {
            name: name.into(),
            input: serde_json::json!({}),
            cwd: PathBuf::new(),
        }))
    }

    const S: u128 = 1_000_000_000;

    #[test]
    fn a_rate_limit_lets_n_through_per_window_at_the_recorded_times() {
        let p = policy("version: 1\nrules:\n  - id: r\n    tool: {name: t}\n    decision: allow\n    reason: ok\n    rate: 2/min\n");
        let mut l = Limits::default();
        let mut verdicts = Vec::new();
        for t in [0, 10, 20, 59, 60, 61, 130] {
            let mut d = decided(&p, "t");
            let changes = l.apply(&p, &mut d, false, t * S);
            verdicts.push((t, d.verdict, changes.len()));
        }
        use Verdict::*;
        assert_eq!(
            verdicts,
            [
                (0, Allow, 0),
                (10, Allow, 0),
                (20, Block, 1),
                (59, Block, 1),
                // The first one left the window (0 + 60 ≤ 60).
                (60, Allow, 0),
                (61, Block, 1),
                (130, Allow, 0)
            ]
        );
        // Another rule, or a built-in decision, is not limited.
        let mut d = decided(&p, "other");
        assert!(l.apply(&p, &mut d, false, 21 * S).is_empty());
        assert_eq!(d.verdict, Allow);
    }

    #[test]
    fn the_breaker_trips_on_blocks_within_its_window_and_then_blocks_escalations() {
        let p = policy("version: 1\nbreaker: {blocks: 3, within: 10s}\nrules:\n  - id: b\n    tool: {name: bad}\n    decision: block\n    reason: no\n  - id: e\n    tool: {name: ask}\n    decision: escalate\n    reason: ask\n");
        let mut l = Limits::default();
        let mut run = |name: &str, t: u128| {
            let mut d = decided(&p, name);
            let c = l.apply(&p, &mut d, false, t * S);
            (d, c)
        };
        assert!(run("bad", 0).1.is_empty());
        assert!(run("bad", 5).1.is_empty());
        // The first block left the window: two within 10 s.
        assert!(run("bad", 11).1.is_empty());
        let (d, c) = run("ask", 12);
        assert_eq!(d.verdict, Verdict::Escalate);
        assert!(c.is_empty());
        let (_, c) = run("bad", 13);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].event, "breaker");
        assert_eq!(c[0].count, 3);
        let (d, c) = run("ask", 14);
        assert!(c.is_empty());
        assert_eq!(d.verdict, Verdict::Block);
        assert_eq!(d.rule.as_deref(), Some(BREAKER_RULE));
        assert!(
            d.reason.contains("every escalation is blocked"),
            "{}",
            d.reason
        );
        let (d, _) = run("fine", 15);
        assert_eq!(d.verdict, Verdict::Allow);
    }
}
