//! Prometheus metrics of a run, written as a node_exporter textfile
//! (`supervise --metrics-file FILE`): what was decided (by kind, verdict,
//! outcome and rule), how long judging took, what is held for a human, and
//! how much the ledger grew.
//!
//! The file is operational data, not evidence (the ledger is): it is
//! rewritten atomically (a temporary file in the same directory, then
//! `rename`) at most once a second while the run goes on and once more when
//! it ends, so a collector never reads half a file. The names and labels are
//! documented in docs/ledger.md, "Metrics".
//!
//! Label values come from the policy (rule ids) and from fixed vocabularies
//! (kinds, verdicts, outcomes); nothing the supervised tree chose becomes a
//! label, so the number of series is bounded by the policy.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::action::Verdict;
use crate::ledger::{Outcome, WriterStats};

/// Upper bounds (seconds) of the judging-latency histogram's buckets.
const BUCKETS: [f64; 14] = [
    5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.25, 1.0,
];

/// Least time between two writes of the file while the run goes on.
const EVERY: Duration = Duration::from_secs(1);

/// A decision's labels.
type Key = (&'static str, Verdict, Outcome, String);

/// The counters of one run.
#[derive(Debug)]
pub struct Metrics {
    path: PathBuf,
    run_id: String,
    mode: &'static str,
    policy_sha256: String,
    started: SystemTime,
    decisions: BTreeMap<Key, u64>,
    refusals: u64,
    /// Cumulative counts per bucket of [`BUCKETS`], then the +Inf count.
    latency: [u64; BUCKETS.len() + 1],
    latency_sum: f64,
    last_write: Option<Instant>,
    write_error: Option<String>,
}

/// What the session knows at write time besides the counters.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    pub held_escalations: usize,
    pub ledger: WriterStats,
    pub ended: bool,
}

impl Metrics {
    pub fn new(path: PathBuf, run_id: &str, mode: &'static str, policy_sha256: &[u8; 32]) -> Self {
        Metrics {
            path,
            run_id: run_id.to_string(),
            mode,
            policy_sha256: hex::encode(policy_sha256),
            started: SystemTime::now(),
            decisions: BTreeMap::new(),
            refusals: 0,
            latency: [0; BUCKETS.len() + 1],
            latency_sum: 0.0,
            last_write: None,
            write_error: None,
        }
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counts one recorded decision.
    pub fn decision(&mut self, kind: &'static str, verdict: Verdict, outcome: Outcome, rule: &str) {
        *self
            .decisions
            .entry((kind, verdict, outcome, rule.to_string()))
            .or_insert(0) += 1;
    }

    /// Counts one call refused before it could be judged.
    pub fn refusal(&mut self) {
        self.refusals += 1;
    }

    /// Adds one judging time (from the notification to the recorded
    /// decision).
    pub fn judged(&mut self, took: Duration) {
        let s = took.as_secs_f64();
        self.latency_sum += s;
        let at = BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS.len());
        self.latency[at] += 1;
    }

    /// Whether a write is due while the run goes on.
    pub fn due(&self) -> bool {
        self.last_write.is_none_or(|t| t.elapsed() >= EVERY)
    }

    /// The exposition text (Prometheus text format 0.0.4).
    pub fn render(&self, g: &Gauges) -> String {
        let mut o = String::new();
        let secs = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        };
        let _ = writeln!(
            o,
            "# HELP lexecon_run_info The supervised run these metrics describe."
        );
        let _ = writeln!(o, "# TYPE lexecon_run_info gauge");
        let _ = writeln!(
            o,
            "lexecon_run_info{{run=\"{}\",mode=\"{}\",policy_sha256=\"{}\",version=\"{}\"}} 1",
            label(&self.run_id),
            label(self.mode),
            label(&self.policy_sha256),
            label(crate::ledger::VERSION),
        );
        let _ = writeln!(o, "# HELP lexecon_run_start_time_seconds When the run started, in seconds since the Unix epoch.");
        let _ = writeln!(o, "# TYPE lexecon_run_start_time_seconds gauge");
        let _ = writeln!(o, "lexecon_run_start_time_seconds {}", secs(self.started));
        let _ = writeln!(
            o,
            "# HELP lexecon_run_ended 1 once the run has ended and its ledger is sealed."
        );
        let _ = writeln!(o, "# TYPE lexecon_run_ended gauge");
        let _ = writeln!(o, "lexecon_run_ended {}", u8::from(g.ended));

        let _ = writeln!(o, "# HELP lexecon_decisions_total Judged actions, by kind, verdict, outcome and winning rule (\"default\" when none).");
        let _ = writeln!(o, "# TYPE lexecon_decisions_total counter");
        for ((kind, verdict, outcome, rule), n) in &self.decisions {
            let _ = writeln!(
                o,
                "lexecon_decisions_total{{kind=\"{kind}\",verdict=\"{}\",outcome=\"{}\",rule=\"{}\"}} {n}",
                verdict.as_str(),
                outcome.as_str(),
                label(rule),
            );
        }
        let _ = writeln!(o, "# HELP lexecon_refusals_total Calls refused before they could be judged (aimed at the supervisor, undecodable).");
        let _ = writeln!(o, "# TYPE lexecon_refusals_total counter");
        let _ = writeln!(o, "lexecon_refusals_total {}", self.refusals);

        let _ = writeln!(o, "# HELP lexecon_judge_duration_seconds Time to judge a notified call and record the decision (execs at their request, opens, file changes, connects).");
        let _ = writeln!(o, "# TYPE lexecon_judge_duration_seconds histogram");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.latency[i];
            let _ = writeln!(
                o,
                "lexecon_judge_duration_seconds_bucket{{le=\"{b:e}\"}} {cumulative}"
            );
        }
        cumulative += self.latency[BUCKETS.len()];
        let _ = writeln!(
            o,
            "lexecon_judge_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(o, "lexecon_judge_duration_seconds_sum {}", self.latency_sum);
        let _ = writeln!(o, "lexecon_judge_duration_seconds_count {cumulative}");

        let _ = writeln!(
            o,
            "# HELP lexecon_escalations_held Escalated calls waiting for a human's answer."
        );
        let _ = writeln!(o, "# TYPE lexecon_escalations_held gauge");
        let _ = writeln!(o, "lexecon_escalations_held {}", g.held_escalations);
        let _ = writeln!(
            o,
            "# HELP lexecon_ledger_records_total Records this run appended to its ledger."
        );
        let _ = writeln!(o, "# TYPE lexecon_ledger_records_total counter");
        let _ = writeln!(o, "lexecon_ledger_records_total {}", g.ledger.records);
        let _ = writeln!(
            o,
            "# HELP lexecon_ledger_bytes_total Bytes this run appended to its ledger."
        );
        let _ = writeln!(o, "# TYPE lexecon_ledger_bytes_total counter");
        let _ = writeln!(o, "lexecon_ledger_bytes_total {}", g.ledger.bytes);
        let _ = writeln!(o, "# HELP lexecon_ledger_checkpoint_age_seconds Time since the last signed checkpoint was written.");
        let _ = writeln!(o, "# TYPE lexecon_ledger_checkpoint_age_seconds gauge");
        let age = g
            .ledger
            .last_checkpoint
            .map_or(0.0, |t| t.elapsed().map_or(0.0, |d| d.as_secs_f64()));
        let _ = writeln!(o, "lexecon_ledger_checkpoint_age_seconds {age}");
        o
    }

    /// Writes the file now (atomically). The first failure is returned once
    /// (for the session to report); later ones are silent.
    pub fn write(&mut self, g: &Gauges) -> Option<String> {
        self.last_write = Some(Instant::now());
        let text = self.render(g);
        match write_atomically(&self.path, text.as_bytes()) {
            Ok(()) => None,
            Err(e) if self.write_error.is_none() => {
                let msg = format!("cannot write the metrics file {}: {e}", self.path.display());
                self.write_error = Some(msg.clone());
                Some(msg)
            }
            Err(_) => None,
        }
    }
}

/// A label value escaped as the text format requires (`\`, `"`, newline).
fn label(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// The temporary file [`write_atomically`] renames over `path`:
/// `.NAME.PID.tmp` in the same directory.
pub fn temp_path(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    Some(path.with_file_name(tmp_name))
}

/// Writes `bytes` as `path`, through [`temp_path`] renamed over it.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp =
        temp_path(path).ok_or_else(|| std::io::Error::other("the metrics path names no file"))?;
    crate::os::write_file_atomically(path, &tmp, 0o644, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> Gauges {
        Gauges {
            held_escalations: 2,
            ledger: WriterStats {
                records: 7,
                bytes: 900,
                last_checkpoint: Some(SystemTime::now()),
            },
            ended: false,
        }
    }

    #[test]
    fn exposition_counts_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Metrics::new(dir.path().join("m.prom"), "abc", "enforce", &[0; 32]);
        m.decision("exec", Verdict::Allow, Outcome::Allowed, "allow-ls");
        m.decision("exec", Verdict::Allow, Outcome::Allowed, "allow-ls");
        m.decision(
            "open",
            Verdict::Block,
            Outcome::Refused,
            "odd\"rule\\\nname",
        );
        m.refusal();
        m.judged(Duration::from_micros(3));
        m.judged(Duration::from_micros(30));
        m.judged(Duration::from_secs(5));
        let t = m.render(&gauges());
        assert!(t.contains("lexecon_decisions_total{kind=\"exec\",verdict=\"allow\",outcome=\"allowed\",rule=\"allow-ls\"} 2\n"), "{t}");
        assert!(t.contains("rule=\"odd\\\"rule\\\\\\nname\"} 1\n"), "{t}");
        assert!(t.contains("lexecon_refusals_total 1\n"), "{t}");
        assert!(
            t.contains("lexecon_judge_duration_seconds_bucket{le=\"5e-6\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("lexecon_judge_duration_seconds_bucket{le=\"5e-5\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("lexecon_judge_duration_seconds_bucket{le=\"1e0\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("lexecon_judge_duration_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{t}"
        );
        assert!(
            t.contains("lexecon_judge_duration_seconds_count 3\n"),
            "{t}"
        );
        assert!(t.contains("lexecon_escalations_held 2\n"), "{t}");
        assert!(t.contains("lexecon_ledger_records_total 7\n"), "{t}");
        assert!(t.contains("lexecon_ledger_bytes_total 900\n"), "{t}");
        assert!(t.contains("lexecon_run_ended 0\n"), "{t}");
        // Every sample line belongs to a family announced by a TYPE line.
        let families: Vec<&str> = t
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(
                families.iter().any(|f| name == *f
                    || name
                        .strip_prefix(f)
                        .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s))),
                "{l}"
            );
        }
    }

    #[test]
    fn the_file_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep\n").unwrap();
        let path = dir.path().join("m.prom");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let mut m = Metrics::new(path.clone(), "abc", "enforce", &[0; 32]);
        assert!(m.write(&gauges()).is_none());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
        assert!(!std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("lexecon_run_info{run=\"abc\""));
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 2);
        // A directory that does not exist is reported once.
        let mut bad = Metrics::new(
            dir.path().join("no/such/m.prom"),
            "abc",
            "enforce",
            &[0; 32],
        );
        assert!(bad.write(&gauges()).is_some());
        assert!(bad.write(&gauges()).is_none());
    }
}
