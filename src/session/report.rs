//! What a run shows about what it refused: the lines on the supervisor's
//! stderr, folded when they repeat, and the lists the end summaries show.
//!
//! **Folding.** An agent that retries a refused action in a loop would
//! bury everything else under identical lines. A line is shown the first
//! time; while the same line (everything but its record number: the same
//! outcome, action, rule, reason and hint) comes again within [`WINDOW`] of
//! the last time it was shown, it is only counted; the next time it is shown,
//! it says how many were not. The summaries give each line's total (`×N`).
//! Two lines are the same only if their full texts are (compared by
//! SHA-256), so a *different* action is never folded into another. Memory is
//! bounded: at most [`MAX_LISTED`] distinct lines are kept per list; a line
//! beyond that is always shown, and counted as unlisted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long a repeated line stays folded after it was last shown.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Most distinct entries a list keeps.
pub const MAX_LISTED: usize = 1000;

/// Longest action description a list keeps (the line shown on stderr is
/// never shortened; the ledger has the exact bytes).
const MAX_WHAT: usize = 1000;

/// The text of a block line (after `lexecon: `), as the supervisor prints
/// it and `lexecon ledger show` reads it back: `VERB WHAT (rule RULE,
/// RECORD): REASON; HINT`. `what` is shown as given (already escaped, see
/// [`crate::session::describe_call`]); the rule, reason and hint are
/// escaped here. Without `record`, `(rule RULE)`: the form repeats are
/// compared in.
pub fn line(
    verb: &str,
    what: &str,
    rule: &str,
    record: Option<&str>,
    reason: &str,
    hint: &str,
) -> String {
    use crate::escape;
    use std::fmt::Write as _;
    let mut s = format!("{verb} {what} (rule {}", escape::text(rule));
    if let Some(r) = record {
        let _ = write!(s, ", {r}");
    }
    s.push(')');
    if !reason.is_empty() {
        let _ = write!(s, ": {}", escape::text(reason));
    }
    if !hint.is_empty() {
        let _ = write!(
            s,
            "{}{}",
            if reason.is_empty() { ": " } else { "; " },
            escape::text(hint)
        );
    }
    s
}

/// One distinct entry of a list: what happened, how often, which records.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The action (shown escaped; possibly shortened with `…`).
    pub what: String,
    pub rule: String,
    pub reason: String,
    /// How it ended: `blocked`, `killed`, `refused`, … (for escalations, the
    /// resolution).
    pub how: String,
    /// The first and the last record of it (`None`: not recorded).
    pub first: Option<u64>,
    pub last: Option<u64>,
    pub count: u64,
    shown_at: Option<Instant>,
    /// Occurrences since it was last shown.
    unshown: u64,
    /// The process last told this line, and when.
    told: Option<(i32, Instant)>,
}

/// What to do with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Show it; `folded` identical lines since it was last shown were not.
    Line { folded: u64 },
    /// Do not show it (a repeat within the window).
    Folded,
}

/// The distinct entries of one kind, in the order first seen.
#[derive(Debug, Clone, Default)]
pub struct List {
    pub entries: Vec<Listed>,
    index: HashMap<[u8; 32], usize>,
    /// Occurrences not listed ([`MAX_LISTED`] distinct entries were full).
    pub unlisted: u64,
}

fn shorten(s: &str) -> String {
    if s.len() <= MAX_WHAT {
        return s.to_string();
    }
    let mut end = MAX_WHAT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl List {
    /// Counts one occurrence. `line` is the full text that identifies it
    /// (what would be shown, without the record number).
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        line: &str,
        what: &str,
        rule: &str,
        reason: &str,
        how: &str,
        seq: Option<u64>,
        now: Instant,
    ) -> Show {
        let key: [u8; 32] = Sha256::digest(line.as_bytes()).into();
        if let Some(&i) = self.index.get(&key) {
            let e = &mut self.entries[i];
            e.count += 1;
            if seq.is_some() {
                e.last = seq;
                e.first = e.first.or(seq);
            }
            let recent = e
                .shown_at
                .is_some_and(|t| now.saturating_duration_since(t) < WINDOW);
            if recent {
                e.unshown += 1;
                return Show::Folded;
            }
            let folded = std::mem::take(&mut e.unshown);
            e.shown_at = Some(now);
            return Show::Line { folded };
        }
        if self.entries.len() >= MAX_LISTED {
            self.unlisted += 1;
            return Show::Line { folded: 0 };
        }
        self.index.insert(key, self.entries.len());
        self.entries.push(Listed {
            what: shorten(what),
            rule: shorten(rule),
            reason: shorten(reason),
            how: how.to_string(),
            first: seq,
            last: seq,
            count: 1,
            shown_at: Some(now),
            unshown: 0,
            told: None,
        });
        Show::Line { folded: 0 }
    }

    /// Whether process `pid` should be told `line` (just added): not when
    /// it was told the same line within [`WINDOW`] (a shell trying each
    /// directory of `PATH` is refused once per directory).
    pub fn tell(&mut self, line: &str, pid: i32, now: Instant) -> bool {
        let key: [u8; 32] = Sha256::digest(line.as_bytes()).into();
        let Some(&i) = self.index.get(&key) else {
            return true;
        };
        let e = &mut self.entries[i];
        let again = e
            .told
            .is_some_and(|(p, t)| p == pid && now.saturating_duration_since(t) < WINDOW);
        if !again {
            e.told = Some((pid, now));
        }
        !again
    }

    /// Total occurrences, listed or not.
    pub fn total(&self) -> u64 {
        self.entries.iter().map(|e| e.count).sum::<u64>() + self.unlisted
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.unlisted == 0
    }
}

impl Listed {
    /// `record 30`, `records 30–89`, or `not recorded`.
    pub fn records(&self) -> String {
        match (self.first, self.last) {
            (Some(a), Some(b)) if a != b => format!("records {a}–{b}"),
            (Some(a), _) => format!("record {a}"),
            _ => "not recorded".to_string(),
        }
    }

    /// ` ×N` when it happened more than once.
    pub fn times(&self) -> String {
        if self.count > 1 {
            format!(" ×{}", self.count)
        } else {
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(l: &mut List, line: &str, seq: u64, at: Instant) -> Show {
        l.add(line, line, "r", "why", "blocked", Some(seq), at)
    }

    #[test]
    fn repeats_are_folded_within_the_window_and_counted() {
        let mut l = List::default();
        let t0 = Instant::now();
        assert_eq!(
            add(&mut l, "exec rm -rf /", 1, t0),
            Show::Line { folded: 0 }
        );
        for i in 2..=30 {
            let at = t0 + Duration::from_millis(i * 10);
            assert_eq!(add(&mut l, "exec rm -rf /", i, at), Show::Folded);
        }
        // A different action in between is shown at once.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            add(&mut l, "exec rm -rf /x", 31, t1),
            Show::Line { folded: 0 }
        );
        // After the window the line is shown again, with what was folded.
        let t2 = t0 + WINDOW + Duration::from_secs(1);
        assert_eq!(
            add(&mut l, "exec rm -rf /", 32, t2),
            Show::Line { folded: 29 }
        );
        assert_eq!(add(&mut l, "exec rm -rf /", 33, t2), Show::Folded);
        assert_eq!(l.entries.len(), 2);
        assert_eq!(l.entries[0].count, 32);
        assert_eq!(l.entries[0].records(), "records 1–33");
        assert_eq!(l.entries[0].times(), " ×32");
        assert_eq!(l.entries[1].records(), "record 31");
        assert_eq!(l.total(), 33);
    }

    #[test]
    fn a_process_is_told_a_line_once_per_window() {
        let mut l = List::default();
        let t0 = Instant::now();
        add(&mut l, "exec rm -rf x", 1, t0);
        assert!(l.tell("exec rm -rf x", 7, t0));
        add(&mut l, "exec rm -rf x", 2, t0);
        assert!(!l.tell("exec rm -rf x", 7, t0));
        // Another process, another line, or later: told.
        assert!(l.tell("exec rm -rf x", 8, t0));
        assert!(l.tell("exec rm -rf x", 7, t0 + WINDOW));
        assert!(l.tell("exec rm -rf y", 7, t0));
    }

    #[test]
    fn the_list_is_bounded_and_never_hides_a_new_line() {
        let mut l = List::default();
        let t = Instant::now();
        for i in 0..MAX_LISTED as u64 {
            add(&mut l, &format!("exec a{i}"), i, t);
        }
        // Beyond the bound, new lines are still shown, every time.
        for _ in 0..3 {
            assert_eq!(add(&mut l, "exec new", 9, t), Show::Line { folded: 0 });
        }
        assert_eq!(l.entries.len(), MAX_LISTED);
        assert_eq!(l.unlisted, 3);
        assert_eq!(l.total(), MAX_LISTED as u64 + 3);
        // Listed ones keep folding.
        assert_eq!(add(&mut l, "exec a0", 1, t), Show::Folded);
    }

    #[test]
    fn long_descriptions_are_kept_short() {
        let mut l = List::default();
        let long = "é".repeat(2000);
        l.add(&long, &long, "r", "why", "blocked", None, Instant::now());
        let w = &l.entries[0].what;
        assert!(w.len() <= MAX_WHAT + "…".len() && w.ends_with('…'));
        assert_eq!(l.entries[0].records(), "not recorded");
    }
}
