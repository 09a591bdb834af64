//! Held escalations: the table of questions waiting for a human, their
//! answers, and the grants "for the rest of this run".
//!
//! A held request is answered by the approval socket ([`crate::approval`]),
//! or by its deadline (blocked), or because its caller went away (blocked).
//!
//! **Same action** (what a grant covers): a grant made for the answer to one
//! request covers later actions that were escalated by the *same rule* and
//! are:
//! - for an exec: the same program path (resolved, as recorded) and the
//!   same argv, byte for byte (argv\[0\] included; the cwd is not compared);
//! - for an open (and the calls judged as opens): the same resolved path,
//!   exactly the same set of access flags, the same operation and the same
//!   detail (a grant for `chmod 0644` does not cover `chmod 4755`).
//!
//! Nothing else: a different argument, another file, or the same file with
//! one more access flag is a new question.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use super::{describe_call, lock, OnEscalate, Session};
use crate::action::{Access, Action, Decision, FileOp, Mode, OpDetail, Verdict};
use crate::escape;
use crate::ledger::{self, Outcome};
use crate::supervisor::{self, Caller, Identity, Ruling};

/// Who answered a held request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// `lexecon approve/deny` over the approval socket, from this peer.
    Approver { uid: u32, pid: i32 },
    /// The deadline passed.
    Timeout,
    /// The caller went away (killed) before an answer.
    Withdrawn,
    /// Typed at the supervisor's terminal (`--on-escalate prompt`).
    Terminal { uid: u32, pid: i32 },
}

impl By {
    pub fn as_str(self) -> &'static str {
        match self {
            By::Approver { .. } => "approver",
            By::Timeout => "timeout",
            By::Withdrawn => "withdrawn",
            By::Terminal { .. } => "terminal",
        }
    }
}

/// How long an answer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This request only.
    Once,
    /// This request and every later escalation of the same action by the
    /// same rule in this run.
    Run,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Once => "once",
            Scope::Run => "run",
        }
    }
}

/// The answer to a held request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub allow: bool,
    pub scope: Scope,
    pub by: By,
    /// An approver's signed receipt: (public key, signature over
    /// [`ledger::receipt_message`]), checked before it is accepted.
    pub receipt: Option<([u8; 32], [u8; 64])>,
}

/// What a grant compares (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKey {
    Exec {
        path: PathBuf,
        argv: Vec<OsString>,
    },
    Open {
        path: PathBuf,
        access: Access,
        op: FileOp,
        detail: Option<OpDetail>,
    },
    /// A connect-kind action, compared whole but for the caller's program.
    Connect(Box<crate::action::ConnectAction>),
    /// A tool call: the same tool name and exactly the same input (the
    /// working directory is not compared).
    Tool {
        name: String,
        input: serde_json::Value,
    },
}

impl ActionKey {
    pub fn of(action: &Action) -> ActionKey {
        match action {
            Action::Exec(x) => ActionKey::Exec {
                path: x.path.clone(),
                argv: x.argv.clone(),
            },
            Action::Open(o) => ActionKey::Open {
                path: o.path.clone(),
                access: o.access,
                op: o.op,
                detail: o.detail.clone(),
            },
            Action::Connect(c) => {
                let mut c = c.clone();
                c.process = None;
                ActionKey::Connect(Box::new(c))
            }
            Action::Tool(t) => ActionKey::Tool {
                name: t.name.clone(),
                input: t.input.clone(),
            },
        }
    }
}

/// A standing answer for the rest of the run.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The request whose answer made it.
    pub request: u64,
    pub allow: bool,
    pub rule: String,
    pub key: ActionKey,
}

/// A request waiting for its answer, as listed by `lexecon pending`.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: u64,
    pub what: String,
    pub rule: String,
    pub reason: String,
    pub pid: i32,
    pub since: Instant,
    pub deadline: Instant,
    /// The hash of the escalation record, once written.
    pub record_hash: Option<[u8; 32]>,
    answer: Option<Answer>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
    grants: Vec<Grant>,
    /// Execs allowed by an approval, not yet confirmed at the exec event.
    approved_execs: Vec<(ActionKey, u64)>,
    /// Peers refused by the approval socket, waiting to be recorded.
    refused_peers: Vec<(i32, i32, u32, String)>,
}

/// The held requests of one run.
pub struct Escalations {
    pub timeout: Duration,
    pub max_pending: usize,
    table: Mutex<Table>,
    changed: Condvar,
}

/// `t` as ns since the Unix epoch.
pub fn wall_ns(t: Instant) -> u128 {
    let now = Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let wall = if t >= now {
        wall + (t - now)
    } else {
        wall.saturating_sub(now - t)
    };
    wall.as_nanos()
}

/// Why a request could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl Escalations {
    pub fn new(timeout: Duration, max_pending: usize) -> Escalations {
        Escalations {
            timeout,
            max_pending,
            table: Mutex::new(Table {
                next_id: 1,
                ..Table::default()
            }),
            changed: Condvar::new(),
        }
    }

    /// The standing grant covering `action` escalated by `rule`, if any
    /// (the latest one wins).
    pub fn grant_for(&self, rule: &str, action: &Action) -> Option<Grant> {
        let key = ActionKey::of(action);
        lock(&self.table)
            .grants
            .iter()
            .rev()
            .find(|g| g.rule == rule && g.key == key)
            .cloned()
    }

    pub fn is_full(&self) -> bool {
        lock(&self.table).pending.len() >= self.max_pending
    }

    /// Registers a request; its id and deadline (`timeout`, or the run's
    /// default when the rule sets none).
    pub fn register(
        &self,
        what: String,
        rule: &str,
        reason: &str,
        pid: i32,
        timeout: Option<Duration>,
    ) -> Result<(u64, Instant), Full> {
        let mut t = lock(&self.table);
        if t.pending.len() >= self.max_pending {
            return Err(Full);
        }
        let id = t.next_id;
        t.next_id += 1;
        let since = Instant::now();
        let deadline = since + timeout.unwrap_or(self.timeout);
        t.pending.insert(
            id,
            Pending {
                id,
                what,
                rule: rule.to_string(),
                reason: reason.to_string(),
                pid,
                since,
                deadline,
                record_hash: None,
                answer: None,
            },
        );
        Ok((id, deadline))
    }

    /// Waits for the answer to request `id`; `still_waiting` says whether the
    /// caller is still there. The request leaves the table.
    pub fn wait(&self, id: u64, still_waiting: impl Fn() -> bool) -> Answer {
        let mut t = lock(&self.table);
        let answer = loop {
            let Some(p) = t.pending.get(&id) else {
                break Answer {
                    allow: false,
                    scope: Scope::Once,
                    by: By::Withdrawn,
                    receipt: None,
                };
            };
            if let Some(a) = p.answer {
                break a;
            }
            let now = Instant::now();
            if now >= p.deadline {
                break Answer {
                    allow: false,
                    scope: Scope::Once,
                    by: By::Timeout,
                    receipt: None,
                };
            }
            if !still_waiting() {
                break Answer {
                    allow: false,
                    scope: Scope::Once,
                    by: By::Withdrawn,
                    receipt: None,
                };
            }
            let slice = (p.deadline - now).min(Duration::from_millis(100));
            t = self
                .changed
                .wait_timeout(t, slice)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        t.pending.remove(&id);
        answer
    }

    /// The escalation record of request `id` was written with this hash.
    pub fn set_record_hash(&self, id: u64, h: [u8; 32]) {
        if let Some(p) = lock(&self.table).pending.get_mut(&id) {
            p.record_hash = Some(h);
        }
    }

    /// Records a standing grant made by the answer to `request`.
    pub fn add_grant(&self, g: Grant) {
        lock(&self.table).grants.push(g);
    }

    /// Answers request `id`. `Err` when no such request is pending (or it
    /// was already answered).
    pub fn answer(&self, id: u64, a: Answer) -> Result<(), String> {
        let mut t = lock(&self.table);
        match t.pending.get_mut(&id) {
            Some(p) if p.answer.is_none() => {
                if let Some((key, sig)) = &a.receipt {
                    let Some(h) = p.record_hash else {
                        return Err(format!("request {id} is not on record yet"));
                    };
                    let msg = ledger::receipt_message(&h, a.allow, a.scope.as_str());
                    let ok = ed25519_dalek::VerifyingKey::from_bytes(key).is_ok_and(|k| {
                        k.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(sig))
                            .is_ok()
                    });
                    if !ok {
                        return Err(format!(
                            "the receipt does not match request {id} and this answer"
                        ));
                    }
                }
                p.answer = Some(a);
                self.changed.notify_all();
                Ok(())
            }
            Some(_) => Err(format!("request {id} is already answered")),
            None => Err(format!("no pending request {id}")),
        }
    }

    /// Whether request `id` still waits for an answer.
    pub fn is_pending(&self, id: u64) -> bool {
        lock(&self.table)
            .pending
            .get(&id)
            .is_some_and(|p| p.answer.is_none() && p.deadline > Instant::now())
    }

    /// The unanswered requests, oldest first.
    pub fn list(&self) -> Vec<Pending> {
        let now = Instant::now();
        lock(&self.table)
            .pending
            .values()
            .filter(|p| p.answer.is_none() && p.deadline > now)
            .cloned()
            .collect()
    }

    /// An exec allowed by the answer to `request` will be confirmed at the
    /// exec event.
    pub fn expect_exec(&self, action: &Action, request: u64) {
        lock(&self.table)
            .approved_execs
            .push((ActionKey::of(action), request));
    }

    /// The request whose approval covers the exec now committed, if any
    /// (consumed).
    pub fn take_approved_exec(&self, action: &Action) -> Option<u64> {
        let key = ActionKey::of(action);
        let mut t = lock(&self.table);
        let i = t.approved_execs.iter().position(|(k, _)| *k == key)?;
        Some(t.approved_execs.remove(i).1)
    }

    /// A connection refused by the approval socket: (pid, parent, uid, why).
    pub fn note_refused_peer(&self, pid: i32, ppid: i32, uid: u32, why: String) {
        lock(&self.table).refused_peers.push((pid, ppid, uid, why));
        self.changed.notify_all();
    }

    pub fn take_refused_peers(&self) -> Vec<(i32, i32, u32, String)> {
        std::mem::take(&mut lock(&self.table).refused_peers)
    }
}

impl Escalations {
    /// Drops request `id` unanswered (its question could not be recorded).
    pub fn cancel(&self, id: u64) {
        lock(&self.table).pending.remove(&id);
    }
}

fn record_error(session: &Session, e: &crate::ledger::LedgerError) {
    let mut st = super::lock(&session.state);
    st.record_failures += 1;
    if st.first_record_error.is_none() {
        let msg = e.to_string();
        eprintln!("lexecon: cannot write the ledger: {msg}; refusing actions until records can be written");
        st.first_record_error = Some(msg);
    }
}

impl Session {
    /// Whether an `escalate` verdict is held for a human in this run.
    pub(super) fn holds(&self, decision: &Decision, builtin: bool) -> bool {
        // Nobody is asked about what the limits block anyway.
        decision.verdict == Verdict::Escalate
            && !(self.policy.has_limits()
                && lock(&self.limits).would_block(&self.policy, decision, ledger::writer::now_ns()))
            && !builtin
            && self.mode == Mode::Enforce
            && matches!(self.on_escalate, OnEscalate::Wait | OnEscalate::Prompt)
    }

    /// The ruling on an escalated call when escalations are held; `None`
    /// when they are not (the verdict is carried out as usual).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn escalated(
        &self,
        caller: &Caller,
        syscall: &'static str,
        action: &Action,
        identity: Option<&Identity>,
        loaded: Option<&Action>,
        decision: &Decision,
        builtin: bool,
    ) -> Option<Ruling> {
        if !self.holds(decision, builtin) {
            return None;
        }
        let esc = &self.escalations;
        let rule = decision.rule.clone().unwrap_or_else(|| "default".into());
        let conclude = |mut outcome: Outcome, note: String| -> Ruling {
            let mut decision = decision.clone();
            // A mapping's record says it is one, as every mapping's does.
            let mut recorded = Some(if super::is_code_map(syscall) {
                format!("{}; {note}", super::CODE_MAP_NOTE)
            } else {
                note.clone()
            });
            let seq = self.record_request(
                caller,
                action,
                loaded,
                &mut decision,
                &mut outcome,
                builtin,
                identity,
                &mut recorded,
            );
            let note = recorded.unwrap_or(note);
            self.note_escalation(syscall, action, &decision, &note, seq);
            self.answer(caller, syscall, seq, action, &decision, outcome, &note)
        };
        if let Some(g) = esc.grant_for(&rule, action) {
            return Some(if g.allow {
                conclude(
                    Outcome::Allowed,
                    format!(
                        "allowed by the grant for this run made by escalation request {}",
                        g.request
                    ),
                )
            } else {
                conclude(
                    Outcome::Refused,
                    format!(
                        "blocked by the refusal for this run made by escalation request {}",
                        g.request
                    ),
                )
            });
        }
        let full = || {
            format!(
                "escalation blocked at once: {} requests are already waiting for an answer (--max-pending)",
                esc.max_pending
            )
        };
        if supervisor::held_call_waiting().is_none() {
            // On the loop thread: hand the call to a thread that may wait.
            if esc.is_full() {
                return Some(conclude(Outcome::Refused, full()));
            }
            return Some(Ruling::Hold);
        }
        let (id, a) = match self.ask_human(caller, syscall, action, decision, &rule, &|| {
            supervisor::held_call_waiting().unwrap_or(false)
        }) {
            Ok(x) => x,
            Err(AskFailed::Full) => return Some(conclude(Outcome::Refused, full())),
            Err(AskFailed::Unrecorded) => return Some(Ruling::Deny(libc::EPERM)),
        };
        let outcome = if a.allow {
            Outcome::Allowed
        } else {
            Outcome::Refused
        };
        let note = self.answer_note(id, &a, &rule);
        let ruling = conclude(outcome, note);
        if ruling == Ruling::Allow && matches!(action, Action::Exec(_)) {
            esc.expect_exec(action, id);
        }
        Some(ruling)
    }

    /// At the exec event, an escalated program runs only if it was approved
    /// at its request (or by a grant for this run); `None` when escalations
    /// are not held.
    pub(super) fn confirm_escalated(
        &self,
        action: &Action,
        decision: &Decision,
        builtin: bool,
    ) -> Option<(Outcome, Option<String>)> {
        if !self.holds(decision, builtin) {
            return None;
        }
        let rule = decision.rule.as_deref().unwrap_or("default");
        if let Some(id) = self.escalations.take_approved_exec(action) {
            return Some((
                Outcome::Allowed,
                Some(format!("the exec approved by escalation request {id}")),
            ));
        }
        match self.escalations.grant_for(rule, action) {
            Some(g) if g.allow => Some((
                Outcome::Allowed,
                Some(format!(
                    "allowed by the grant for this run made by escalation request {}",
                    g.request
                )),
            )),
            _ => Some((
                Outcome::Killed,
                Some("an escalated program with no approval at its request".into()),
            )),
        }
    }

    fn approval_hint(&self) -> String {
        self.hints.ledger_args.clone()
    }

    /// Starts the approval socket's thread (once, from a supervisor thread,
    /// after the command was forked) and records refused peers.
    pub(super) fn approval_tick(&self) {
        if let Some(server) = lock(&self.approval_server).take() {
            let table = Arc::clone(&self.escalations);
            let stop = Arc::clone(&self.approval_stop);
            if let Ok(w) = server.waker() {
                lock(&self.approval_wakers).push(w);
            }
            start_thread(
                "lexecon-approval",
                "the approval socket",
                &self.approval_thread,
                move || server.serve(table, stop),
            );
        }
        if let Some(terminal) = lock(&self.terminal).take() {
            if let Ok(w) = terminal.waker() {
                lock(&self.approval_wakers).push(w);
            }
            let table = Arc::clone(&self.escalations);
            let stop = Arc::clone(&self.approval_stop);
            start_thread(
                "lexecon-prompt",
                "the terminal prompt",
                &self.terminal_thread,
                move || terminal.serve(table, stop),
            );
        }
        self.record_refused_peers();
    }

    /// Records the connections the approval socket refused.
    fn record_refused_peers(&self) {
        let peers = self.escalations.take_refused_peers();
        for (pid, ppid, uid, why) in peers {
            let reason = format!("approval socket: connection by uid {uid} refused: {why}");
            super::Judge::refused(
                self,
                &Caller {
                    tid: pid,
                    pid,
                    ppid,
                },
                "connect",
                &reason,
                libc::EPERM,
            );
        }
    }

    /// Stops the approval socket (removes it).
    pub(super) fn approval_stop(&self) {
        self.approval_stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for w in lock(&self.approval_wakers).drain(..) {
            w.wake();
        }
        if let Some(t) = lock(&self.approval_thread).take() {
            let _ = t.join();
        }
        if let Some(t) = lock(&self.terminal_thread).take() {
            let _ = t.join();
        }
        if let Some(server) = lock(&self.approval_server).take() {
            // Never started: remove the socket.
            server.serve(
                Arc::clone(&self.escalations),
                Arc::clone(&self.approval_stop),
            );
        }
        self.record_refused_peers();
    }
}

/// Why a question could not be put to a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AskFailed {
    /// As many requests as may wait at once are waiting.
    Full,
    /// Its record (or its answer's) could not be written; reported.
    Unrecorded,
}

impl Session {
    /// Puts the escalation of `action` by `rule` to a human and waits for
    /// the answer while `still_waiting` holds: registers the request,
    /// records the question (an `escalation` record, before anyone is
    /// asked), says where to answer, waits, records the answer (a
    /// `resolution` record) and a grant for the run when it makes one.
    pub(super) fn ask_human(
        &self,
        caller: &Caller,
        syscall: &str,
        action: &Action,
        decision: &Decision,
        rule: &str,
        still_waiting: &dyn Fn() -> bool,
    ) -> Result<(u64, Answer), AskFailed> {
        let esc = &self.escalations;
        let what = describe_call(syscall, action);
        let (id, deadline) = esc
            .register(
                what.clone(),
                rule,
                &decision.reason,
                caller.pid,
                self.policy.escalate_timeout(rule),
            )
            .map_err(|Full| AskFailed::Full)?;
        let asked = lock(&self.writer).append_escalation(&ledger::EscalationEntry {
            request: id,
            pid: caller.pid,
            ppid: caller.ppid,
            syscall,
            action,
            rule,
            reason: &decision.reason,
            deadline_ns: wall_ns(deadline),
        });
        let esc_seq = match asked {
            Ok((s, h)) => {
                esc.set_record_hash(id, h);
                s
            }
            Err(e) => {
                esc.cancel(id);
                record_error(self, &e);
                self.report_record_failed(caller, syscall, action, "blocked");
                return Err(AskFailed::Unrecorded);
            }
        };
        let ledger_hint = self.approval_hint();
        eprintln!(
            "lexecon: request {id} is waiting for approval: {what} (pid {}; rule {}: {}); answer within {} s with `lexecon approve {id}{ledger_hint}` or `lexecon deny {id}{ledger_hint}`",
            caller.pid,
            escape::text(rule),
            escape::text(&decision.reason),
            self.policy
                .escalate_timeout(rule)
                .unwrap_or(self.escalations.timeout)
                .as_secs()
        );
        let a = esc.wait(id, still_waiting);
        let outcome = if a.allow {
            Outcome::Allowed
        } else {
            Outcome::Refused
        };
        let peer = match a.by {
            By::Approver { uid, pid } | By::Terminal { uid, pid } => Some((uid, pid)),
            _ => None,
        };
        let resolved = lock(&self.writer).append_resolution(&ledger::ResolutionEntry {
            request: id,
            escalation: esc_seq,
            outcome,
            by: a.by.as_str(),
            peer,
            scope: a.scope.as_str(),
            receipt: a.receipt,
        });
        if let Err(e) = resolved {
            record_error(self, &e);
            self.report_record_failed(caller, syscall, action, "blocked");
            return Err(AskFailed::Unrecorded);
        }
        if a.scope == Scope::Run {
            esc.add_grant(Grant {
                request: id,
                allow: a.allow,
                rule: rule.to_string(),
                key: ActionKey::of(action),
            });
        }
        Ok((id, a))
    }

    /// The note of a decision made by the answer `a` to request `id`.
    pub(super) fn answer_note(&self, id: u64, a: &Answer, rule: &str) -> String {
        let esc = &self.escalations;
        let verb = if a.allow { "approved" } else { "denied" };
        match a.by {
            By::Approver { uid, pid } => format!(
                "escalation request {id} {verb} by `lexecon {}` (uid {uid}, pid {pid}){}",
                if a.allow { "approve" } else { "deny" },
                if a.scope == Scope::Run {
                    ", for the rest of this run"
                } else {
                    ""
                }
            ),
            By::Terminal { uid, .. } => format!(
                "escalation request {id} {verb} at the supervisor's terminal (uid {uid}){}",
                if a.scope == Scope::Run {
                    ", for the rest of this run"
                } else {
                    ""
                }
            ),
            By::Timeout => format!(
                "escalation request {id} timed out after {} s: blocked",
                self.policy
                    .escalate_timeout(rule)
                    .unwrap_or(esc.timeout)
                    .as_secs()
            ),
            By::Withdrawn => {
                format!("escalation request {id} withdrawn: the caller went away")
            }
        }
    }
}

/// Starts a named thread and keeps its handle in `slot`; a failure to start
/// is reported, and the feature it serves is then unavailable for the run.
fn start_thread(
    name: &str,
    what: &str,
    slot: &Mutex<Option<std::thread::JoinHandle<()>>>,
    f: impl FnOnce() + Send + 'static,
) {
    match std::thread::Builder::new().name(name.into()).spawn(f) {
        Ok(t) => *lock(slot) = Some(t),
        Err(e) => eprintln!("lexecon: cannot start {what}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{ExecAction, OpenAction};

    fn exec(argv: &[&str]) -> Action {
        Action::Exec(ExecAction {
            path: PathBuf::from("/usr/bin/git"),
            argv: argv.iter().map(OsString::from).collect(),
            cwd: PathBuf::from("/w"),
            sha256: None,
        })
    }

    #[test]
    fn grants_cover_the_same_action_by_the_same_rule_only() {
        let e = Escalations::new(Duration::from_secs(1), 4);
        let a = exec(&["git", "push"]);
        e.add_grant(Grant {
            request: 1,
            allow: true,
            rule: "r".into(),
            key: ActionKey::of(&a),
        });
        assert!(e.grant_for("r", &a).is_some());
        // Another cwd is the same action.
        let mut moved = a.clone();
        if let Action::Exec(x) = &mut moved {
            x.cwd = PathBuf::from("/elsewhere");
        }
        assert!(e.grant_for("r", &moved).is_some());
        assert!(e.grant_for("other", &a).is_none());
        assert!(e.grant_for("r", &exec(&["git", "push", "-f"])).is_none());
        let open = |access| {
            Action::Open(OpenAction {
                op: crate::action::FileOp::Open,
                detail: None,
                path: PathBuf::from("/etc/x"),
                access,
                cwd: PathBuf::from("/w"),
                process: None,
            })
        };
        e.add_grant(Grant {
            request: 2,
            allow: true,
            rule: "r".into(),
            key: ActionKey::of(&open(Access::READ)),
        });
        assert!(e.grant_for("r", &open(Access::READ)).is_some());
        // The same path and access by another operation, or setting
        // something else, is another action.
        let chmod = |mode| {
            let mut a = open(Access::WRITE);
            if let Action::Open(o) = &mut a {
                o.op = FileOp::Chmod;
                o.detail = Some(OpDetail::Mode(mode));
            }
            a
        };
        e.add_grant(Grant {
            request: 3,
            allow: true,
            rule: "r".into(),
            key: ActionKey::of(&chmod(0o644)),
        });
        assert!(e.grant_for("r", &chmod(0o644)).is_some());
        assert!(e.grant_for("r", &chmod(0o4755)).is_none());
        assert!(e.grant_for("r", &open(Access::WRITE)).is_none());
        assert!(e
            .grant_for("r", &open(Access::READ | Access::WRITE))
            .is_none());
    }

    #[test]
    fn requests_time_out_and_are_bounded() {
        let e = Escalations::new(Duration::from_millis(50), 1);
        let (id, _) = e.register("x".into(), "r", "why", 1, None).unwrap();
        assert_eq!(e.register("y".into(), "r", "why", 1, None), Err(Full));
        let a = e.wait(id, || true);
        assert_eq!(a.by, By::Timeout);
        assert!(!a.allow);
        assert!(e.list().is_empty());
        let (id, _) = e.register("x".into(), "r", "why", 1, None).unwrap();
        let by = By::Approver { uid: 1, pid: 2 };
        e.answer(
            id,
            Answer {
                allow: true,
                scope: Scope::Once,
                by,
                receipt: None,
            },
        )
        .unwrap();
        assert!(e
            .answer(
                id,
                Answer {
                    allow: false,
                    scope: Scope::Once,
                    by,
                    receipt: None,
                }
            )
            .is_err());
        assert!(e.wait(id, || true).allow);
        let (id, _) = e.register("x".into(), "r", "why", 1, None).unwrap();
        assert_eq!(e.wait(id, || false).by, By::Withdrawn);
    }
}
