//! The gate in a session: a described action judged with the run's policy
//! (built-in protections first), recorded as an `intent` record, escalated
//! to a human exactly as a held system call is, and answered.
//!
//! Two channels:
//! - **in a supervised run**, the gate socket `<ledger>.gate.sock` (mode
//!   0600, named to the tree in `$LEXECON_GATE`). Who asked is never taken
//!   from the request: the kernel attaches the writer's pid to the bytes it
//!   wrote (`SCM_CREDENTIALS`), and that pid must be a process of the tree
//!   (traced by the supervisor, or descending from it). The supervisor
//!   performs the tree's `connect(2)` itself, so the connection's
//!   `SO_PEERCRED` names the supervisor; the credentials of the request's
//!   bytes name the process that wrote them. A request sent with
//!   `sendmsg(2)`, which the supervisor performs too, carries the
//!   supervisor's credentials and is refused: write the request with
//!   `write(2)` or `send(2)`.
//! - **one-shot** (`lexecon decide`, `lexecon hook` outside a supervised
//!   run): a run of its own in the ledger, with one intent record; the asker
//!   is the process that ran the command.
//!
//! The gate only asks: it cannot answer an escalation (answers come from
//! the approval socket, which refuses the tree, or the terminal), and what
//! the asker then does is judged again at the kernel.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use super::escalation::AskFailed;
use super::{describe, lock, OnEscalate, Session};
use crate::action::{Action, Decision, Verdict};
use crate::gate::Asked;
use crate::ledger::{self, Outcome};
use crate::supervisor::Caller;

/// Rule id of the built-in allow of the tree's connections to its gate.
pub const GATE_RULE: &str = "lexecon.gate";

/// Most gate requests served at once; beyond, a request is refused.
const MAX_CONCURRENT: usize = 16;

/// The gate socket of the run writing `ledger`.
pub fn socket_path(ledger: &Path) -> PathBuf {
    let mut name = ledger.file_name().unwrap_or_default().to_os_string();
    name.push(".gate.sock");
    ledger.with_file_name(name)
}

/// Who asked, as established by the channel.
#[derive(Debug, Clone)]
pub struct Asker {
    pub pid: i32,
    pub ppid: i32,
    /// The asker's program (`/proc/PID/exe`), when it can be read.
    pub program: Option<PathBuf>,
    /// `gate` or `decide`.
    pub channel: &'static str,
}

impl Asker {
    /// The asker `pid`, with its parent and program read from `/proc`.
    pub fn of(pid: i32, channel: &'static str) -> Asker {
        Asker {
            pid,
            ppid: crate::approval::parent_of(pid),
            program: std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
            channel,
        }
    }

    fn caller(&self) -> Caller {
        Caller {
            tid: self.pid,
            pid: self.pid,
            ppid: self.ppid,
        }
    }
}

/// The index of the decision that answers: the strongest verdict; among
/// equals, one a rule made before one of a default; then the first.
fn winner(decisions: &[(Decision, bool)]) -> usize {
    let mut best = 0;
    for (i, (d, _)) in decisions.iter().enumerate().skip(1) {
        let (b, _) = &decisions[best];
        if d.verdict > b.verdict || (d.verdict == b.verdict && b.rule.is_none() && d.rule.is_some())
        {
            best = i;
        }
    }
    best
}

impl Session {
    /// Judges `asked`, asks a human when the verdict is a held escalation,
    /// records the intent and returns the reply (see docs/gate.md).
    /// `still_there`: whether the asker still waits (checked while a human
    /// is asked).
    pub fn gate_decide(
        &self,
        asker: &Asker,
        asked: &Asked,
        still_there: &dyn Fn() -> bool,
    ) -> Value {
        let actions: Vec<&Action> = asked.all().collect();
        let decisions: Vec<(Decision, bool)> = actions
            .iter()
            .map(|a| self.decide(a, None, None, false))
            .collect();
        let w = winner(&decisions);
        let (mut decision, builtin) = decisions[w].clone();
        let action = actions[w];
        let caller = asker.caller();
        let mut request = None;
        let mut asked_human = false;
        let (mut outcome, mut note) = if self.holds(&decision, builtin) {
            let rule = decision.rule.clone().unwrap_or_else(|| "default".into());
            if let Some(g) = self.escalations.grant_for(&rule, action) {
                request = Some(g.request);
                if g.allow {
                    (
                        Outcome::Allowed,
                        Some(format!(
                            "allowed by the grant for this run made by escalation request {}",
                            g.request
                        )),
                    )
                } else {
                    (
                        Outcome::Refused,
                        Some(format!(
                            "blocked by the refusal for this run made by escalation request {}",
                            g.request
                        )),
                    )
                }
            } else {
                match self.ask_human(&caller, "gate", action, &decision, &rule, still_there) {
                    Ok((id, a)) => {
                        request = Some(id);
                        asked_human = true;
                        let outcome = if a.allow {
                            Outcome::Allowed
                        } else {
                            Outcome::Refused
                        };
                        (outcome, Some(self.answer_note(id, &a, &rule)))
                    }
                    Err(AskFailed::Full) => (
                        Outcome::Refused,
                        Some(format!(
                            "escalation blocked at once: {} requests are already waiting for an answer (--max-pending)",
                            self.escalations.max_pending
                        )),
                    ),
                    Err(AskFailed::Unrecorded) => {
                        return json!({"ok": false, "error": "the ledger could not be written, and nothing is allowed unrecorded"});
                    }
                }
            }
        } else {
            self.carry_out(decision.verdict, builtin, Outcome::Refused)
        };
        let mut writer = lock(&self.writer);
        let now = crate::ledger::writer::now_ns();
        if self.policy.has_limits()
            && !self.limit_changes(
                &mut writer,
                now,
                &caller,
                &mut decision,
                &mut outcome,
                builtin,
                &mut note,
            )
        {
            return json!({"ok": false, "error": "the ledger could not be written, and nothing is allowed unrecorded"});
        }
        let judged: Vec<(&Action, &Decision)> = if asked.derived.is_empty() {
            Vec::new()
        } else {
            actions
                .iter()
                .copied()
                .zip(decisions.iter().map(|(d, _)| d))
                .collect()
        };
        let mut matched: Vec<String> = Vec::new();
        for (d, _) in &decisions {
            for m in &d.matched {
                if !matched.contains(m) {
                    matched.push(m.clone());
                }
            }
        }
        let entry = ledger::IntentEntry {
            channel: asker.channel,
            pid: asker.pid,
            ppid: asker.ppid,
            program: asker.program.as_deref(),
            action: &asked.primary,
            judged,
            verdict: decision.verdict,
            outcome,
            rule: decision.rule.clone(),
            matched,
            reason: decision.reason.clone(),
            mode: self.mode,
            note: note.clone(),
        };
        let written = writer.append_intent(&entry, now);
        drop(writer);
        let seq = match written {
            Ok(s) => s,
            Err(e) => {
                let msg = e.to_string();
                let mut st = lock(&self.state);
                st.record_failures += 1;
                if st.first_record_error.is_none() {
                    eprintln!("lexecon: cannot write the ledger: {msg}; refusing actions until records can be written");
                    st.first_record_error = Some(msg.clone());
                }
                return json!({"ok": false, "error": format!("the ledger could not be written ({msg}), and nothing is allowed unrecorded")});
            }
        };
        let answer = if outcome == Outcome::Allowed {
            "allow"
        } else {
            "block"
        };
        if outcome != Outcome::Allowed && self.report_blocks {
            eprintln!(
                "lexecon: refused at the gate: {} asked by pid {} (rule {}, record {seq}): {}",
                describe(action),
                asker.pid,
                crate::escape::text(decision.rule.as_deref().unwrap_or("default")),
                crate::escape::text(&decision.reason)
            );
        }
        let judged_json: Vec<Value> = actions
            .iter()
            .zip(&decisions)
            .map(|(a, (d, _))| {
                json!({
                    "action": describe(a),
                    "verdict": d.verdict.as_str(),
                    "rule": d.rule,
                    "reason": d.reason,
                })
            })
            .collect();
        json!({
            "ok": true,
            "answer": answer,
            "verdict": decision.verdict.as_str(),
            "rule": decision.rule,
            "reason": decision.reason,
            "action": describe(action),
            "record": seq,
            "ledger": self.protected.ledger_file.to_string_lossy(),
            "mode": self.mode.as_str(),
            "asked": asked_human,
            "request": request,
            "note": note,
            "notes": asked.notes,
            "judged": judged_json,
        })
    }

    /// Whether the policy needs programs' content hashes.
    pub(crate) fn needs_hashes(&self) -> bool {
        self.policy.uses_content_hash()
    }

    /// The gate socket, when this run has one: every connection to it is
    /// allowed by the built-in rule [`GATE_RULE`].
    pub(super) fn gate_connect(&self, action: &Action) -> Option<Decision> {
        let gate = self.protected.gate_socket.as_ref()?;
        match action {
            Action::Connect(c)
                if c.op == crate::action::NetOp::Connect
                    && matches!(&c.target, crate::action::NetTarget::UnixPath(p) if p == gate) =>
            {
                Some(Decision {
                    verdict: Verdict::Allow,
                    matched: vec![GATE_RULE.to_string()],
                    rule: Some(GATE_RULE.to_string()),
                    reason: "the tree may ask its gate (the gate judges what it asks)".into(),
                })
            }
            _ => None,
        }
    }
}

/// The running gate socket of a supervised run.
pub(super) struct GateServer {
    stop: Arc<AtomicBool>,
    waker: crate::approval::Waker,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GateServer {
    /// Serves `server`'s connections with `session` until [`Self::stop`].
    pub fn start(server: crate::approval::Server, session: Arc<Session>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let waker = server.waker()?;
        let thread = std::thread::Builder::new()
            .name("lexecon-gate".into())
            .spawn(move || {
                let busy = Arc::new(AtomicUsize::new(0));
                let mut workers: Vec<std::thread::JoinHandle<()>> = Vec::new();
                let stop3 = Arc::clone(&stop2);
                server.serve_with(stop2, |stream| {
                    workers.retain(|w| !w.is_finished());
                    if busy.fetch_add(1, Ordering::SeqCst) >= MAX_CONCURRENT {
                        busy.fetch_sub(1, Ordering::SeqCst);
                        let _ = stream.set_nonblocking(false);
                        let _ = crate::approval::reply_and_close(
                            &stream,
                            &json!({"ok": false, "error": format!("{MAX_CONCURRENT} gate requests are already being answered; ask again")}),
                            crate::gate::MAX_REQUEST as u64,
                        );
                        return;
                    }
                    let s = Arc::clone(&session);
                    let b = Arc::clone(&busy);
                    let st = Arc::clone(&stop3);
                    match std::thread::Builder::new()
                        .name("lexecon-gate-req".into())
                        .spawn(move || {
                            serve_one(&s, stream, &st);
                            b.fetch_sub(1, Ordering::SeqCst);
                        }) {
                        Ok(t) => workers.push(t),
                        Err(_) => {
                            busy.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                });
                for w in workers {
                    let _ = w.join();
                }
            })?;
        Ok(GateServer {
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// Stops serving (requests still waiting for a human are refused as
    /// withdrawn) and removes the socket.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection: who wrote the request, whether it may ask, the answer.
fn serve_one(session: &Session, stream: std::os::unix::net::UnixStream, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(std::time::Duration::from_secs(10)));
    let me = crate::os::pid();
    let max = crate::gate::MAX_REQUEST;
    let reply = match crate::approval::read_line_with_creds(&stream, max) {
        Err(e) => json!({"ok": false, "error": format!("cannot read the request: {e}")}),
        Ok((_, cred)) if cred.pid == me => json!({"ok": false, "error":
            "the request was sent by the supervisor on a process's behalf (sendmsg), so who asked cannot be established; write the request with write(2) or send(2)"}),
        Ok((line, cred)) => match crate::approval::in_tree(cred.pid, me) {
            Ok(None) => json!({"ok": false, "error": format!(
                "pid {} is not part of the supervised tree; outside it, use `lexecon decide`", cred.pid)}),
            Err(e) => {
                json!({"ok": false, "error": format!("cannot establish who asked (pid {}): {e}", cred.pid)})
            }
            Ok(Some(_)) => {
                let asker = Asker::of(cred.pid, "gate");
                match serde_json::from_slice::<Value>(&line) {
                    Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
                    Ok(req) if req["op"].as_str().unwrap_or("decide") != "decide" => {
                        json!({"ok": false,
                        "error": "bad request: the gate answers `decide` only (answers to escalations go through `lexecon approve`)"})
                    }
                    Ok(req) => {
                        let cwd = std::fs::read_link(format!("/proc/{}/cwd", cred.pid))
                            .unwrap_or_default();
                        match crate::gate::parse_request(&req, &cwd, session.needs_hashes()) {
                            Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
                            Ok(asked) => {
                                let pid = cred.pid;
                                let alive = move || {
                                    !stop.load(Ordering::SeqCst)
                                        && Path::new(&format!("/proc/{pid}")).exists()
                                };
                                session.gate_decide(&asker, &asked, &alive)
                            }
                        }
                    }
                }
            }
        },
    };
    let _ = crate::approval::reply_and_close(&stream, &reply, max as u64);
}

/// A one-shot decision (`lexecon decide`, a hook outside a supervised run):
/// a run of its own in the ledger, holding the intent record (and, when a
/// human is asked, the question and the answer). `asker`: the process that
/// ran the command.
pub fn decide_once(
    cfg: super::SessionConfig,
    writer: crate::ledger::LedgerWriter,
    command: &[std::ffi::OsString],
    cwd: &Path,
    req: &Value,
    asker_pid: i32,
) -> anyhow::Result<(Value, super::Summary)> {
    let wait = matches!(cfg.on_escalate, OnEscalate::Wait | OnEscalate::Prompt);
    let ask = cfg.on_escalate == OnEscalate::Prompt;
    let (mut session, run_id) = Session::begin(cfg, writer, command, cwd)?;
    let parsed = crate::gate::parse_request(req, cwd, session.needs_hashes());
    let finish = |s: Session, why: Option<String>| {
        s.finish(
            crate::supervisor::Outcome::Ran(crate::supervisor::Exit::Code(0)),
            run_id.clone(),
            why,
        )
    };
    let asked = match parsed {
        Ok(a) => a,
        Err(e) => {
            let summary = finish(session, None);
            return Ok((
                json!({"ok": false, "error": format!("bad request: {e}")}),
                summary,
            ));
        }
    };
    if let Err(e) = session.open_approvers(wait, ask) {
        finish(session, Some(e.clone()));
        anyhow::bail!(e);
    }
    session.approval_tick();
    let asker = Asker::of(asker_pid, "decide");
    let alive = || Path::new(&format!("/proc/{asker_pid}")).exists();
    let reply = session.gate_decide(&asker, &asked, &alive);
    session.approval_tick();
    let summary = finish(session, None);
    if let Some(e) = &summary.seal_error {
        anyhow::bail!("the decision was recorded, but the run could not be sealed: {e}");
    }
    Ok((reply, summary))
}

impl Session {
    /// Starts serving the gate socket (once, from a supervisor thread, after
    /// the command was forked: threads started there, like the approval
    /// socket's, do not take the signals the supervisor forwards to the
    /// command).
    pub(super) fn gate_tick(&self) {
        let Some((server, session)) = lock(&self.gate_start).take() else {
            return;
        };
        match GateServer::start(server, session) {
            Ok(g) => *lock(&self.gate_server) = Some(g),
            Err(e) => eprintln!(
                "lexecon: cannot start the gate: {e}; the tree's requests to it are not answered"
            ),
        }
    }

    /// Stops the gate (when the tree has ended) and removes its socket.
    pub(super) fn gate_stop(&self) {
        if let Some((server, session)) = lock(&self.gate_start).take() {
            // Never served.
            drop(session);
            server.serve_with(Arc::new(AtomicBool::new(true)), |_| {});
        }
        if let Some(g) = lock(&self.gate_server).take() {
            g.stop();
        }
    }
}
