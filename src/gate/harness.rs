//! Adapters for agent harnesses that ask before each tool call: their hook
//! input read into a gate request, the gate's answer written as their hook
//! output.
//!
//! - **Claude Code** `PreToolUse` (hooks reference as of Claude Code 2.x):
//!   input `{session_id, transcript_path, cwd, hook_event_name, tool_name,
//!   tool_input, …}` on stdin; output `{"hookSpecificOutput":
//!   {"hookEventName": "PreToolUse", "permissionDecision": "allow"|"deny"|
//!   "ask", "permissionDecisionReason": …}}` on stdout, exit 0. `deny`'s
//!   reason is shown to the model, `ask`'s to the user.
//! - **Gemini CLI** `BeforeTool`: input `{session_id, transcript_path, cwd,
//!   hook_event_name, timestamp, tool_name, tool_input}`; output
//!   `{"decision": "allow"|"deny", "reason": …}`, exit 0; the reason of a
//!   deny is sent to the model as the tool's error. It has no "ask".
//!
//! Tool inputs are read onto the kinds that mean the same thing, and the
//! tool call itself is always judged too (as a `tool:` action named as the
//! harness names it): a shell command → the programs it runs (exec), a file
//! tool → an open of its file with the access it needs, a fetch → a
//! connection to the URL's host and port; MCP and other tools → the tool
//! action only.

use serde_json::{json, Map, Value};

/// The harnesses with an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Harness {
    ClaudeCode,
    GeminiCli,
}

impl Harness {
    pub fn as_str(self) -> &'static str {
        match self {
            Harness::ClaudeCode => "claude-code",
            Harness::GeminiCli => "gemini-cli",
        }
    }

    /// The hook event this adapter answers.
    pub fn event(self) -> &'static str {
        match self {
            Harness::ClaudeCode => "PreToolUse",
            Harness::GeminiCli => "BeforeTool",
        }
    }
}

fn field<'v>(input: &'v Value, names: &[&str]) -> Option<&'v str> {
    names
        .iter()
        .find_map(|n| input.get(*n).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
}

fn open(path: &str, access: &[&str]) -> Value {
    json!({"path": path, "access": access})
}

/// The gate request for one hook input.
pub fn request(h: Harness, hook: &Value) -> Result<Value, String> {
    let event = hook.get("hook_event_name").and_then(Value::as_str);
    if event.is_some_and(|e| e != h.event()) {
        return Err(format!(
            "the hook input is for the event '{}', and this adapter answers '{}'",
            event.unwrap_or(""),
            h.event()
        ));
    }
    let name = hook
        .get("tool_name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or("the hook input has no `tool_name`")?;
    let input = hook
        .get("tool_input")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let cwd = hook.get("cwd").and_then(Value::as_str);
    let mut action = Map::new();
    action.insert("kind".into(), "tool".into());
    action.insert("name".into(), name.into());
    let (shell, opens, connects): (Option<&str>, Vec<Value>, Vec<Value>) = match (h, name) {
        (Harness::ClaudeCode, "Bash") | (Harness::GeminiCli, "run_shell_command") => {
            (Some("/command"), vec![], vec![])
        }
        (Harness::ClaudeCode, "Read") | (Harness::GeminiCli, "read_file") => (
            None,
            field(&input, &["file_path", "absolute_path"])
                .map(|p| open(p, &["read"]))
                .into_iter()
                .collect(),
            vec![],
        ),
        (Harness::ClaudeCode, "Write") | (Harness::GeminiCli, "write_file") => (
            None,
            field(&input, &["file_path"])
                .map(|p| open(p, &["write", "create", "truncate"]))
                .into_iter()
                .collect(),
            vec![],
        ),
        (Harness::ClaudeCode, "Edit" | "MultiEdit") | (Harness::GeminiCli, "replace") => (
            None,
            field(&input, &["file_path"])
                .map(|p| open(p, &["read", "write"]))
                .into_iter()
                .collect(),
            vec![],
        ),
        (Harness::ClaudeCode, "NotebookEdit") => (
            None,
            field(&input, &["notebook_path"])
                .map(|p| open(p, &["read", "write"]))
                .into_iter()
                .collect(),
            vec![],
        ),
        (Harness::ClaudeCode, "Glob" | "Grep" | "LS")
        | (Harness::GeminiCli, "list_directory" | "glob" | "search_file_content") => {
            let dir = field(&input, &["path", "dir_path"]).or(cwd);
            (
                None,
                dir.map(|p| open(p, &["read"])).into_iter().collect(),
                vec![],
            )
        }
        (Harness::ClaudeCode, "WebFetch") => (
            None,
            vec![],
            field(&input, &["url"])
                .map(|u| json!({"url": u}))
                .into_iter()
                .collect(),
        ),
        _ => (None, vec![], vec![]),
    };
    if let Some(s) = shell {
        action.insert("shell".into(), s.into());
    }
    if !opens.is_empty() {
        action.insert("open".into(), Value::Array(opens));
    }
    if !connects.is_empty() {
        action.insert("connect".into(), Value::Array(connects));
    }
    // Gemini's shell tool may name its directory.
    let cwd = match (h, field(&input, &["dir_path", "directory"])) {
        (Harness::GeminiCli, Some(d)) if name == "run_shell_command" && d.starts_with('/') => {
            Some(d.to_string())
        }
        (Harness::GeminiCli, Some(d)) if name == "run_shell_command" => {
            return Err(format!(
                "the shell tool's directory '{d}' is relative; Lexecon needs it absolute to judge the command"
            ));
        }
        _ => cwd.map(str::to_string),
    };
    action.insert("input".into(), input);
    let mut req = Map::new();
    req.insert("op".into(), "decide".into());
    if let Some(c) = cwd {
        req.insert("cwd".into(), c.into());
    }
    req.insert("action".into(), Value::Object(action));
    Ok(Value::Object(req))
}

/// What the model (or the user) reads: the verdict, the rule and its
/// reason, the record, and how the command was read.
fn reason_text(reply: &Value) -> String {
    let verdict = reply["verdict"].as_str().unwrap_or("block");
    let rule = reply["rule"].as_str().unwrap_or("default");
    let reason = reply["reason"].as_str().unwrap_or("");
    let record = match (reply["record"].as_u64(), reply["ledger"].as_str()) {
        (Some(s), Some(l)) => format!("record {s} in {l}"),
        (Some(s), None) => format!("record {s}"),
        _ => "not recorded".into(),
    };
    let mut out = match (verdict, reply["answer"].as_str()) {
        (_, Some("allow")) => format!("Lexecon allows this (rule {rule}: {reason}; {record})."),
        ("escalate", _) if reply["asked"].as_bool() == Some(true) => format!(
            "Lexecon: a human refused this (rule {rule}: {reason}; {record}). Do not try to reach the same result another way; tell the user what you wanted to do."
        ),
        ("escalate", _) => format!(
            "Lexecon: this needs a human's approval (rule {rule}: {reason}; {record})."
        ),
        _ => format!(
            "Lexecon policy refuses this (rule {rule}: {reason}; {record}). Do not try to reach the same result another way (the same action is refused at the system call too); tell the user what you wanted to do and why."
        ),
    };
    if let Some(notes) = reply["notes"].as_array() {
        for n in notes.iter().filter_map(Value::as_str) {
            out.push_str(" Note: ");
            out.push_str(n);
            out.push('.');
        }
    }
    crate::escape::text(&out)
}

/// The hook output for the gate's reply. `None`: print nothing (the
/// harness's own permission flow decides): an allow by the policy's default,
/// which names no rule, does not skip the harness's own questions, and in
/// observe mode (judged and recorded, nothing refused) nothing is decided.
pub fn output(h: Harness, reply: &Value) -> Option<Value> {
    if reply["mode"].as_str() == Some("observe") {
        return None;
    }
    let answer = reply["answer"].as_str().unwrap_or("block");
    let verdict = reply["verdict"].as_str().unwrap_or("block");
    let by_rule = reply["rule"].as_str().is_some();
    let reason = reason_text(reply);
    match h {
        Harness::ClaudeCode => {
            let decision = match (answer, verdict) {
                ("allow", _) if !by_rule => return None,
                ("allow", _) => "allow",
                // Nobody in Lexecon was asked: the harness asks its user.
                (_, "escalate") if reply["asked"].as_bool() != Some(true) => "ask",
                _ => "deny",
            };
            Some(json!({
                "hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "permissionDecision": decision,
                    "permissionDecisionReason": reason,
                }
            }))
        }
        Harness::GeminiCli => match answer {
            "allow" if !by_rule => None,
            "allow" => Some(json!({"decision": "allow", "reason": reason})),
            _ => Some(json!({"decision": "deny", "reason": reason})),
        },
    }
}

/// The hook output when the tool call could not be judged: refused, saying
/// why (fail closed).
pub fn failure(h: Harness, why: &str) -> Value {
    let reason = crate::escape::text(&format!(
        "Lexecon could not judge this tool call, so it is refused: {why}"
    ));
    match h {
        Harness::ClaudeCode => json!({
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": reason,
            }
        }),
        Harness::GeminiCli => json!({"decision": "deny", "reason": reason}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(answer: &str, verdict: &str, rule: Option<&str>, mode: &str) -> Value {
        json!({"ok": true, "answer": answer, "verdict": verdict, "rule": rule,
               "reason": "why", "record": 7, "ledger": "/l", "mode": mode, "asked": false})
    }

    fn decision(v: Option<Value>) -> Option<String> {
        v.map(|o| {
            o["hookSpecificOutput"]["permissionDecision"]
                .as_str()
                .or(o["decision"].as_str())
                .unwrap_or("")
                .to_string()
        })
    }

    #[test]
    fn answers_map_onto_each_harness() {
        let c = Harness::ClaudeCode;
        let g = Harness::GeminiCli;
        let cases = [
            (
                reply("block", "block", Some("r"), "enforce"),
                Some("deny"),
                Some("deny"),
            ),
            (
                reply("block", "escalate", Some("r"), "enforce"),
                Some("ask"),
                Some("deny"),
            ),
            (
                reply("allow", "allow", Some("r"), "enforce"),
                Some("allow"),
                Some("allow"),
            ),
            (reply("allow", "allow", None, "enforce"), None, None),
            // Observe mode decides nothing: the harness's own flow does.
            (reply("allow", "block", Some("r"), "observe"), None, None),
        ];
        for (r, want_c, want_g) in cases {
            assert_eq!(decision(output(c, &r)).as_deref(), want_c, "{r}");
            assert_eq!(decision(output(g, &r)).as_deref(), want_g, "{r}");
        }
        let mut asked = reply("block", "escalate", Some("r"), "enforce");
        asked["asked"] = json!(true);
        assert_eq!(decision(output(c, &asked)).as_deref(), Some("deny"));
        let text = reason_text(&reply("block", "block", Some("r"), "enforce"));
        assert!(text.contains("rule r: why; record 7 in /l"), "{text}");
    }

    #[test]
    fn hook_inputs_become_requests() {
        let r = request(
            Harness::ClaudeCode,
            &json!({"hook_event_name": "PreToolUse", "cwd": "/w", "tool_name": "Write",
                    "tool_input": {"file_path": "/w/x", "content": "y"}}),
        )
        .unwrap();
        assert_eq!(r["cwd"], "/w");
        assert_eq!(r["action"]["kind"], "tool");
        assert_eq!(
            r["action"]["open"][0]["access"],
            json!(["write", "create", "truncate"])
        );
        let r = request(
            Harness::GeminiCli,
            &json!({"hook_event_name": "BeforeTool", "cwd": "/w", "tool_name": "run_shell_command",
                    "tool_input": {"command": "ls", "dir_path": "/w/sub"}}),
        )
        .unwrap();
        assert_eq!(r["cwd"], "/w/sub");
        assert_eq!(r["action"]["shell"], "/command");
        assert!(request(Harness::ClaudeCode, &json!({"tool_input": {}})).is_err());
    }
}
