//! Load errors: every problem found in a policy file, each with its location,
//! the rule it belongs to and what to write instead.

use std::fmt;

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file (or origin name given to [`super::Policy::from_str`]).
    pub file: String,
    /// 1-based line; 0 when the problem has no position (an unreadable file).
    pub line: usize,
    /// 1-based column; 0 when the problem has no position.
    pub col: usize,
    /// Id of the rule the problem is in, when it is inside a rule with an id.
    pub rule: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What to write instead, when there is a clear answer.
    pub hint: Option<String>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        if let Some(rule) = &self.rule {
            write!(f, "rule '{rule}': ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// Every problem found while loading one policy, in file order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors {
    /// The problems, sorted by line and column.
    pub errors: Vec<PolicyError>,
}

impl PolicyErrors {
    pub(crate) fn new(mut errors: Vec<PolicyError>) -> PolicyErrors {
        errors.sort_by_key(|e| (e.line, e.col));
        errors.dedup();
        PolicyErrors { errors }
    }

    /// The number of problems.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false for a value returned by a load; present for completeness.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The problems, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, PolicyError> {
        self.errors.iter()
    }
}

/// One problem per line: `file:line:col: rule 'id': message (hint)`.
impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_per_error_with_location_rule_and_hint() {
        let errs = PolicyErrors::new(vec![
            PolicyError {
                file: "p.yaml".into(),
                line: 7,
                col: 5,
                rule: Some("r1".into()),
                message: "unknown key 'decison'".into(),
                hint: Some("did you mean 'decision'?".into()),
            },
            PolicyError {
                file: "p.yaml".into(),
                line: 2,
                col: 1,
                rule: None,
                message: "bad mode".into(),
                hint: None,
            },
        ]);
        assert_eq!(
            errs.to_string(),
            "p.yaml:2:1: bad mode\np.yaml:7:5: rule 'r1': unknown key 'decison' (did you mean 'decision'?)"
        );
    }
}
