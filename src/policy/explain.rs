//! Explanations: the decision plus every rule of the action's kind that
//! matched, with the result of each of its conditions.

use serde_json::{json, Value};

use super::decide::combine;
use super::rule::{with_view, ConditionResult};
use super::Policy;
use crate::action::{Action, Decision, Verdict};

/// One rule that matched, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    /// The rule's id.
    pub id: String,
    /// Its decision.
    pub verdict: Verdict,
    /// Its reason.
    pub reason: String,
    /// The file that holds the rule (the policy's file, or for a layered
    /// policy the layer's: an absolute path or `builtin:NAME`).
    pub file: String,
    /// Line of the rule in that file.
    pub line: usize,
    /// Every condition of the rule, each of which held.
    pub conditions: Vec<ConditionResult>,
}

/// Why an action got its decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The decision (identical to [`Policy::decide`]).
    pub decision: Decision,
    /// Every matching rule, in file order (for a layered policy, layer
    /// order); the winner is the one named by `decision.rule`.
    pub matched: Vec<RuleMatch>,
    /// For a policy with `include:`: the layer whose rule (or default)
    /// decided.
    pub layer: Option<String>,
}

impl Explanation {
    /// The explanation as JSON (for `policy explain --json`).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "verdict": self.decision.verdict.as_str(),
            "rule": self.decision.rule,
            "reason": self.decision.reason,
            "matched": self.matched.iter().map(|m| json!({
                "id": m.id,
                "decision": m.verdict.as_str(),
                "reason": m.reason,
                "file": m.file,
                "line": m.line,
                "winner": self.decision.rule.as_deref() == Some(m.id.as_str()),
                "conditions": m.conditions.iter().map(|c| json!({
                    "condition": c.condition,
                    "holds": c.holds,
                    "detail": c.detail,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        if let Some(layer) = &self.layer {
            v["layer"] = json!(layer);
        }
        v
    }
}

pub(crate) fn explain(policy: &Policy, action: &Action) -> Explanation {
    let kind = action.kind();
    let mut matched = Vec::new();
    let mut indices = Vec::new();
    with_view(action, true, |v| {
        for (i, rule) in policy.rules.iter().enumerate() {
            if rule.kind != kind {
                continue;
            }
            let mut trace = Vec::new();
            if rule.matches(v, Some(&mut trace)) {
                indices.push(i);
                matched.push(RuleMatch {
                    id: rule.id.clone(),
                    verdict: rule.verdict,
                    reason: rule.reason.clone(),
                    file: policy.origin.clone(),
                    line: rule.loc.line,
                    conditions: trace,
                });
            }
        }
    });
    let mut decision = combine(
        &policy.rules,
        indices,
        kind,
        policy.defaults[super::compile::kind_index(kind)],
    );
    super::net::explain_default(
        action,
        policy.defaults[super::compile::kind_index(kind)],
        &mut decision,
    );
    Explanation {
        decision,
        matched,
        layer: None,
    }
}
