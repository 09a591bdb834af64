//! `lexecon ledger export`: a verified ledger's records in the formats log
//! collectors already read.
//!
//! - **OTLP/JSON** ([`otlp`]): one `LogsData` document (the OpenTelemetry
//!   protocol's JSON encoding, as an OTLP/HTTP collector's `/v1/logs`
//!   accepts it), one `ResourceLogs` per run, one `LogRecord` per record.
//!   Attribute names follow the OpenTelemetry semantic conventions where
//!   one exists (`process.pid`, `process.executable.path`,
//!   `process.command_args`, `file.path`, `server.address`, `server.port`,
//!   `network.transport`), `lexecon.*` otherwise.
//! - **ECS-style JSON lines** ([`ecs`]): one object per record with the
//!   Elastic Common Schema's field names (`@timestamp`, `event.*`,
//!   `process.*`, `file.path`, `destination.*`, `rule.*`), the record's
//!   own fields under `lexecon.*`.
//!
//! Every exported record also carries the ledger line itself
//! (`lexecon.record`), so nothing the ledger says is lost in translation;
//! text meant for people (the body, paths shown) is escaped as the block
//! lines are. Checkpoints and epoch records (cryptographic bookkeeping) are
//! not exported.

use serde_json::{json, Value as Json};

use crate::action::{Action, NetTarget, Verdict};
use crate::escape;
use crate::ledger::read::{self, Entry, Item};
use crate::ledger::record::Outcome;

/// Whether a record is exported at all.
pub fn exported(e: &Entry) -> bool {
    !matches!(e.item, Item::Epoch { .. } | Item::Checkpoint { .. })
}

// ------------------------------------------------------------------ OTLP

/// An OTLP `AnyValue`.
fn any(v: &Json) -> Json {
    match v {
        Json::String(s) => json!({"stringValue": s}),
        Json::Bool(b) => json!({"boolValue": b}),
        // 64-bit integers are strings in OTLP/JSON.
        Json::Number(n) if n.is_i64() || n.is_u64() => json!({"intValue": n.to_string()}),
        Json::Number(n) => json!({"doubleValue": n}),
        Json::Array(a) => json!({"arrayValue": {"values": a.iter().map(any).collect::<Vec<_>>()}}),
        Json::Object(_) | Json::Null => json!({"stringValue": v.to_string()}),
    }
}

fn attributes(pairs: &[(&str, Json)]) -> Json {
    Json::Array(
        pairs
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| json!({"key": k, "value": any(v)}))
            .collect(),
    )
}

/// OTLP severity (number, text) of a record.
fn severity(e: &Entry) -> (u32, &'static str) {
    let warn = (13, "WARN");
    let info = (9, "INFO");
    match &e.item {
        Item::Action(r) if r.verdict == Verdict::Escalate && r.outcome.is_none() => warn,
        Item::Action(r) => match r.outcome {
            Some(Outcome::Refused | Outcome::Killed) => warn,
            _ if e.is_blocked() => warn,
            _ => info,
        },
        Item::Refusal { .. } => warn,
        Item::Recovery { .. } | Item::Damaged(_) => (17, "ERROR"),
        _ => info,
    }
}

/// The caller's program of an open or connect (ECS `process.executable`,
/// `process.hash.sha256`), resolved from its run's `process` record in
/// record format 2.
fn caller_fields(v: &mut Json, p: Option<&crate::action::ProcessInfo>) {
    if let Some(p) = p {
        v["process"]["executable"] = json!(p.program.to_string_lossy());
        if let Some(h) = p.sha256 {
            v["process"]["hash"] = json!({"sha256": hex::encode(h)});
        }
    }
}

/// The attributes a record's action gives, by the semantic conventions.
fn action_fields(a: &Action) -> Vec<(&'static str, Json)> {
    let lossy = |s: &std::ffi::OsStr| Json::String(s.to_string_lossy().into_owned());
    match a {
        Action::Exec(x) => vec![
            ("process.executable.path", lossy(x.path.as_os_str())),
            (
                "process.command_args",
                Json::Array(x.argv.iter().map(|s| lossy(s)).collect()),
            ),
            ("process.working_directory", lossy(x.cwd.as_os_str())),
            ("lexecon.sha256", x.sha256.map(hex::encode).into()),
        ],
        Action::Open(o) => {
            let mut f = vec![
                ("file.path", lossy(o.path.as_os_str())),
                ("lexecon.access", Json::String(o.access.to_string())),
                ("lexecon.op", Json::String(o.op.as_str().to_string())),
                ("process.working_directory", lossy(o.cwd.as_os_str())),
            ];
            if let Some(p) = &o.process {
                f.push(("process.executable.path", lossy(p.program.as_os_str())));
                f.push(("lexecon.sha256", p.sha256.map(hex::encode).into()));
            }
            f
        }
        Action::Connect(c) => {
            let mut f = vec![
                (
                    "network.transport",
                    Json::String(c.protocol.as_str().to_string()),
                ),
                ("lexecon.op", Json::String(c.op.as_str().to_string())),
            ];
            if let Some(p) = &c.process {
                f.push(("process.executable.path", lossy(p.program.as_os_str())));
                f.push(("lexecon.sha256", p.sha256.map(hex::encode).into()));
            }
            match &c.target {
                NetTarget::Ip { addr, port, .. } => {
                    f.push(("server.address", Json::String(addr.to_string())));
                    f.push(("server.port", json!(port)));
                }
                NetTarget::UnixPath(p) => f.push(("server.address", lossy(p.as_os_str()))),
                NetTarget::Name(n) => f.push(("server.address", Json::String(n.clone()))),
                NetTarget::UnixAbstract(_) | NetTarget::UnixUnnamed => {}
            }
            if !c.names.is_empty() {
                f.push(("lexecon.names", json!(c.names)));
            }
            f
        }
        Action::Tool(t) => vec![
            ("lexecon.tool.name", Json::String(t.name.clone())),
            ("lexecon.tool.input", Json::String(t.input.to_string())),
        ],
    }
}

/// The fields every exported record has, as (name, value) pairs.
fn common_fields(e: &Entry) -> Vec<(&'static str, Json)> {
    let mut f = vec![
        ("lexecon.kind", Json::String(e.kind().to_string())),
        ("lexecon.seq", e.seq.map_or(Json::Null, |s| json!(s))),
        ("lexecon.line", json!(e.line)),
    ];
    match &e.item {
        Item::Action(r) => {
            f.push(("process.pid", json!(r.pid)));
            f.push(("process.parent_pid", json!(r.ppid)));
            f.push(("lexecon.action", json!(read::action_kind(&r.action))));
            f.push(("lexecon.verdict", json!(r.verdict.as_str())));
            f.push(("lexecon.outcome", r.outcome.map(|o| o.as_str()).into()));
            f.push(("lexecon.stage", r.stage.map(|s| s.as_str()).into()));
            f.push((
                "lexecon.rule",
                json!(r.rule.as_deref().unwrap_or("default")),
            ));
            f.push(("lexecon.reason", json!(r.reason)));
            f.extend(action_fields(&r.action));
        }
        Item::Refusal {
            pid,
            syscall,
            rule,
            reason,
            errno,
            ..
        } => {
            f.push(("process.pid", json!(pid)));
            f.push(("lexecon.syscall", json!(syscall)));
            f.push(("lexecon.rule", json!(rule)));
            f.push(("lexecon.reason", json!(reason)));
            f.push(("lexecon.errno", json!(errno)));
        }
        Item::Dns { pid, query, .. } => {
            f.push(("process.pid", json!(pid)));
            f.push(("dns.question.name", json!(query)));
        }
        _ => {}
    }
    f.push(("lexecon.record", Json::String(e.text.clone())));
    f
}

/// One OTLP `LogsData` document of `entries` (one `ResourceLogs` per run,
/// in the order the runs appear). `body` renders a record for people.
pub fn otlp(entries: &[Entry], body: impl Fn(&Entry) -> Option<String>) -> Json {
    let mut runs: Vec<(Option<String>, Json, Vec<Json>)> = Vec::new();
    for e in entries.iter().filter(|e| exported(e)) {
        if let Item::Run(h) = &e.item {
            let resource = attributes(&[
                ("service.name", json!("lexecon")),
                ("service.version", json!(h.version)),
                ("lexecon.run.id", json!(h.run_id)),
                ("lexecon.policy.sha256", json!(hex::encode(h.policy_sha256))),
                (
                    "lexecon.policy.path",
                    h.policy_path
                        .as_deref()
                        .map(|p| json!(escape::path(p)))
                        .unwrap_or(Json::Null),
                ),
                ("lexecon.mode", json!(h.mode.as_str())),
            ]);
            runs.push((Some(h.run_id.clone()), resource, Vec::new()));
        } else if runs.last().is_none_or(|(id, _, _)| *id != e.run) {
            // Records before any header (a cut ledger read unverified).
            let resource = attributes(&[
                ("service.name", json!("lexecon")),
                ("lexecon.run.id", e.run.clone().into()),
            ]);
            runs.push((e.run.clone(), resource, Vec::new()));
        }
        let (number, text) = severity(e);
        let time = e
            .time_ns
            .map(|t| t.to_string())
            .unwrap_or_else(|| "0".into());
        let record = json!({
            "timeUnixNano": time,
            "severityNumber": number,
            "severityText": text,
            "body": {"stringValue": body(e).unwrap_or_else(|| e.kind().to_string())},
            "attributes": attributes(&common_fields(e)),
        });
        if let Some(last) = runs.last_mut() {
            last.2.push(record);
        }
    }
    json!({
        "resourceLogs": runs.into_iter().map(|(_, resource, records)| json!({
            "resource": {"attributes": resource},
            "scopeLogs": [{
                "scope": {"name": "lexecon", "version": crate::ledger::VERSION},
                "logRecords": records,
            }],
        })).collect::<Vec<_>>(),
    })
}

// ------------------------------------------------------------------- ECS

/// ECS `event.category` and `event.type` of an action.
fn ecs_event(a: &Action, allowed: bool) -> (&'static str, Vec<&'static str>) {
    let verdict = if allowed { "allowed" } else { "denied" };
    match a {
        Action::Exec(_) => ("process", vec!["start", verdict]),
        Action::Open(o) => {
            use crate::action::FileOp;
            let t = match o.op {
                FileOp::Delete => "deletion",
                FileOp::Open if o.access.contains(crate::action::Access::CREATE) => "creation",
                FileOp::Open if o.access == crate::action::Access::READ => "access",
                _ => "change",
            };
            ("file", vec![t, verdict])
        }
        Action::Connect(_) => ("network", vec!["connection", verdict]),
        Action::Tool(_) => ("api", vec!["info", verdict]),
    }
}

/// One ECS-style object for a record (`None` for records not exported).
pub fn ecs(e: &Entry, run: Option<&str>, body: impl Fn(&Entry) -> Option<String>) -> Option<Json> {
    if !exported(e) {
        return None;
    }
    let timestamp = e.time_ns.map(super::reader::utc);
    let record = serde_json::from_str::<Json>(&e.text).unwrap_or(Json::Null);
    let mut v = json!({
        "@timestamp": timestamp,
        "message": body(e),
        "event": {"kind": "event", "module": "lexecon", "dataset": "lexecon.ledger"},
        "lexecon": {
            "run": run,
            "seq": e.seq,
            "kind": e.kind(),
            "record": record,
        },
    });
    match &e.item {
        Item::Action(r) => {
            let allowed = r.outcome == Some(Outcome::Allowed);
            let (category, types) = ecs_event(&r.action, allowed);
            v["event"]["category"] = json!([category]);
            v["event"]["type"] = json!(types);
            v["event"]["action"] = json!(read::action_kind(&r.action));
            v["event"]["outcome"] = match r.outcome {
                Some(Outcome::Allowed) => json!("success"),
                Some(_) => json!("failure"),
                None => json!("unknown"),
            };
            v["event"]["reason"] = json!(r.reason);
            v["rule"] = json!({"id": r.rule.as_deref().unwrap_or("default"), "ruleset": "lexecon"});
            v["process"] = json!({"pid": r.pid, "parent": {"pid": r.ppid}});
            match &r.action {
                Action::Exec(x) => {
                    v["process"]["executable"] = json!(x.path.to_string_lossy());
                    v["process"]["args"] = json!(x
                        .argv
                        .iter()
                        .map(|a| a.to_string_lossy())
                        .collect::<Vec<_>>());
                    v["process"]["working_directory"] = json!(x.cwd.to_string_lossy());
                    if let Some(h) = x.sha256 {
                        v["process"]["hash"] = json!({"sha256": hex::encode(h)});
                    }
                }
                Action::Open(o) => {
                    v["file"] = json!({"path": o.path.to_string_lossy()});
                    v["process"]["working_directory"] = json!(o.cwd.to_string_lossy());
                    caller_fields(&mut v, o.process.as_ref());
                }
                Action::Connect(c) => {
                    caller_fields(&mut v, c.process.as_ref());
                    v["network"] = json!({"transport": c.protocol.as_str()});
                    match &c.target {
                        NetTarget::Ip { addr, port, .. } => {
                            v["destination"] = json!({"ip": addr.to_string(), "port": port});
                            if let Some(n) = c.names.first() {
                                v["destination"]["domain"] = json!(n);
                            }
                        }
                        NetTarget::Name(n) => v["dns"] = json!({"question": {"name": n}}),
                        NetTarget::UnixPath(p) => {
                            v["destination"] = json!({"address": p.to_string_lossy()})
                        }
                        NetTarget::UnixAbstract(_) | NetTarget::UnixUnnamed => {}
                    }
                }
                Action::Tool(t) => {
                    v["lexecon"]["tool"] = json!({"name": t.name, "input": t.input});
                }
            }
            v["lexecon"]["verdict"] = json!(r.verdict.as_str());
        }
        Item::Refusal {
            pid,
            syscall,
            rule,
            reason,
            ..
        } => {
            v["event"]["category"] = json!(["process"]);
            v["event"]["type"] = json!(["denied"]);
            v["event"]["action"] = json!(syscall);
            v["event"]["outcome"] = json!("failure");
            v["event"]["reason"] = json!(reason);
            v["rule"] = json!({"id": rule, "ruleset": "lexecon"});
            v["process"] = json!({"pid": pid});
        }
        Item::Dns { pid, query, .. } => {
            v["event"]["category"] = json!(["network"]);
            v["event"]["type"] = json!(["info"]);
            v["event"]["action"] = json!("dns-answer");
            v["dns"] = json!({"question": {"name": query}});
            v["process"] = json!({"pid": pid});
        }
        _ => {
            v["event"]["kind"] = json!("state");
            v["event"]["action"] = json!(e.kind());
        }
    }
    Some(v)
}
