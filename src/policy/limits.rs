//! Rate limits of rules and the run's breaker, as a policy states them.
//! The policy only says what they are; counting them over a run, against
//! the times its records carry, is the session's (`session::limits`).
//!
//! - `rate: N/s`, `N/min`, `N/h` on an `allow` or `escalate` rule: the rule
//!   lets at most N actions through within any such period of a run; an
//!   action it would decide beyond that is blocked.
//! - `risk: W` on a rule: the weight an action decided by the rule adds to
//!   the breaker's sum (default: 1 for a block, 0 otherwise).
//! - top-level `breaker: {blocks: N | risk: N, within: DURATION, then:
//!   block-escalations | block-all}`: when the blocks (or the risk sum) of
//!   the actions decided within DURATION (`90s`, `10min`, `1h`) reach N,
//!   the breaker trips for the rest of the run: every later `escalate`
//!   becomes `block` (`block-escalations`), every later action is blocked
//!   (`block-all`), or the tree is stopped (`stop`: killed, and every later
//!   action of a process still running blocked).

use std::time::Duration;

use super::compile::{get, Loader};
use super::yaml::Node;
use crate::action::Verdict;

/// A rule's rate limit: at most `count` actions per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

/// What a tripped breaker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Every later `escalate` verdict becomes `block`.
    BlockEscalations,
    /// Every later action is blocked.
    BlockAll,
    /// The tree is killed; every later action is blocked.
    Stop,
}

impl Then {
    pub fn as_str(self) -> &'static str {
        match self {
            Then::BlockEscalations => "block-escalations",
            Then::BlockAll => "block-all",
            Then::Stop => "stop",
        }
    }
}

/// What the breaker counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Blocked actions, one each.
    Blocks,
    /// The sum of the actions' risk weights.
    Risk,
}

/// The run's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    pub counted: Counted,
    pub threshold: u64,
    pub within: Duration,
    pub then: Then,
}

/// Longest period or window (a day).
const MAX_PERIOD: Duration = Duration::from_secs(86_400);

/// `90s`, `10min`, `1h` (also `s`/`min`/`h` alone, meaning 1).
fn duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = if n.is_empty() { 1 } else { n.parse().ok()? };
    let secs = match unit.trim() {
        "s" | "sec" => n,
        "min" | "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    let d = Duration::from_secs(secs);
    (secs > 0 && d <= MAX_PERIOD).then_some(d)
}

impl Loader<'_> {
    /// `rate: N/PERIOD` of a rule with `verdict`.
    pub(super) fn rate(&mut self, n: &Node, verdict: Option<Verdict>) -> Option<Rate> {
        let s = self.string(n, "rate")?;
        let parsed = s.split_once('/').and_then(|(c, p)| {
            let count: u32 = c.trim().parse().ok().filter(|c| *c > 0)?;
            Some(Rate {
                count,
                period: duration(p)?,
            })
        });
        let Some(rate) = parsed else {
            self.err(
                n.loc,
                format!("rate '{s}' is not a count per period"),
                Some("write e.g. `rate: 100/min` (periods: s, min, h; at most a day)".into()),
            );
            return None;
        };
        if verdict == Some(Verdict::Block) {
            self.err(
                n.loc,
                "a rate limit on a block rule limits nothing",
                Some("put `rate:` on an allow or escalate rule".into()),
            );
            return None;
        }
        Some(rate)
    }

    /// `risk: W` of a rule.
    pub(super) fn risk(&mut self, n: &Node) -> Option<u32> {
        let s = self.string(n, "risk")?;
        match s.trim().parse::<u32>() {
            Ok(w) if w <= 1_000_000 => Some(w),
            _ => {
                self.err(
                    n.loc,
                    format!("risk '{s}' is not a whole number from 0 to 1000000"),
                    Some("write e.g. `risk: 5`".into()),
                );
                None
            }
        }
    }

    /// The top-level `breaker:`.
    pub(super) fn breaker(&mut self, n: &Node) -> Option<Breaker> {
        let entries = self.map(n, "breaker")?;
        self.keys(entries, &["blocks", "risk", "within", "then"], "breaker");
        let counted = match (get(entries, "blocks"), get(entries, "risk")) {
            (Some(b), None) => (Counted::Blocks, b),
            (None, Some(r)) => (Counted::Risk, r),
            _ => {
                self.err(
                    n.loc,
                    "a breaker counts `blocks:` or `risk:` (exactly one)",
                    Some(
                        "write e.g. `breaker: {blocks: 5, within: 10min, then: block-escalations}`"
                            .into(),
                    ),
                );
                return None;
            }
        };
        let threshold = match self
            .string(counted.1, "the breaker's threshold")?
            .trim()
            .parse::<u64>()
        {
            Ok(t) if t > 0 => t,
            _ => {
                self.err(
                    counted.1.loc,
                    "the breaker's threshold must be a whole number above 0",
                    None,
                );
                return None;
            }
        };
        let Some(w) = get(entries, "within") else {
            self.err(
                n.loc,
                "the breaker needs `within:` (its window)",
                Some("write e.g. `within: 10min`".into()),
            );
            return None;
        };
        let within = match duration(self.string(w, "within")?) {
            Some(d) => d,
            None => {
                self.err(
                    w.loc,
                    "`within` is not a duration",
                    Some("write e.g. `90s`, `10min` or `1h` (at most a day)".into()),
                );
                return None;
            }
        };
        let then = match get(entries, "then").map(|t| (t, self.string(t, "then"))) {
            None => Then::BlockEscalations,
            Some((_, Some("block-escalations"))) => Then::BlockEscalations,
            Some((_, Some("block-all"))) => Then::BlockAll,
            Some((_, Some("stop"))) => Then::Stop,
            Some((t, Some(other))) => {
                self.err(
                    t.loc,
                    format!("unknown breaker action '{other}'"),
                    Some("write `block-escalations` (every escalate becomes block), `block-all` (every later action is blocked) or `stop` (the tree is killed)".into()),
                );
                return None;
            }
            Some((_, None)) => return None,
        };
        Some(Breaker {
            counted: counted.0,
            threshold,
            within,
            then,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn vars() -> crate::policy::Vars {
        crate::policy::Vars {
            home: PathBuf::from("/home/u"),
            workspace: PathBuf::from("/home/u/ws"),
            tmpdir: PathBuf::from("/tmp"),
        }
    }

    fn load(text: &str) -> Result<crate::policy::Policy, String> {
        crate::policy::Policy::from_str(text, "t.yaml", &vars()).map_err(|e| e.to_string())
    }

    #[test]
    fn rates_risks_and_breakers_are_read_and_checked() {
        let p = load(
            "version: 1\nbreaker: {risk: 10, within: 10min, then: block-all}\nrules:\n  - id: a\n    exec: {name: curl}\n    decision: allow\n    reason: r\n    rate: 100/min\n    risk: 3\n",
        )
        .unwrap();
        assert_eq!(
            p.rate("a"),
            Some(Rate {
                count: 100,
                period: Duration::from_secs(60)
            })
        );
        assert_eq!(p.risk("a"), Some(3));
        assert_eq!(
            p.breaker(),
            Some(Breaker {
                counted: Counted::Risk,
                threshold: 10,
                within: Duration::from_secs(600),
                then: Then::BlockAll
            })
        );
        let bad = |rule: &str, top: &str| {
            load(&format!(
                "version: 1\n{top}rules:\n  - id: a\n    exec: {{}}\n    decision: block\n    reason: r\n{rule}"
            ))
            .unwrap_err()
        };
        assert!(bad("    rate: 5/min\n", "").contains("limits nothing"));
        assert!(bad("    risk: x\n", "").contains("is not a whole number"));
        assert!(bad("", "breaker: {blocks: 3, within: 2d}\n").contains("not a duration"));
        assert!(bad("", "breaker: {blocks: 3, risk: 2, within: 1h}\n").contains("exactly one"));
        assert!(bad("", "breaker: {blocks: 3, within: 1h, then: halt}\n")
            .contains("unknown breaker action"));
        let e = load("version: 1\nrules:\n  - id: a\n    exec: {}\n    decision: allow\n    reason: r\n    rate: 0/min\n").unwrap_err();
        assert!(e.contains("not a count per period"), "{e}");
        assert_eq!(duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(duration("h"), Some(Duration::from_secs(3600)));
        assert_eq!(duration("0s"), None);
    }
}
