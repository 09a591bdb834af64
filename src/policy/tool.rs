//! Conditions of `tool:` rules (named tool calls asked about through the
//! gate) and their evaluation, and the splitting of a shell command given to
//! a tool into the programs it runs.
//!
//! - `name`: globs on the tool's name as the harness names it (`deploy`,
//!   `mcp__github__*`). Case-sensitive.
//! - `input`: a mapping from a JSON pointer (RFC 6901: `/command`,
//!   `/files/0/path`; `""` is the whole input) to globs. Holds when the
//!   value at every pointer given matches one of its globs (variables
//!   expand; `*` does not cross `/`, `**` does). A string is matched as it
//!   is; a list holds when one of its elements does; any other value is
//!   matched as its compact JSON text (`true`, `3`, `{"a":1}`). An absent
//!   value matches nothing.
//! - `input_regex`: the same, with a regular expression (unanchored) per
//!   pointer instead of globs.
//! - `unless`: as for the other kinds.
//!
//! The input of a tool call is what the asker said, complete: there are no
//! unknown facts here (an absent field is known to be absent).

use std::path::PathBuf;

use regex::Regex;

use super::compile::{get, key, Loader};
use super::glob::{self, Globs};
use super::yaml::{Node, Value};
use crate::action::{Action, ToolAction};

#[derive(Debug, Clone, Default)]
pub(crate) struct ToolConds {
    pub name: Option<Globs>,
    /// (pointer, globs), in the order written.
    pub input: Vec<(String, Globs)>,
    /// (pointer, compiled, as written).
    pub input_regex: Vec<(String, Regex, String)>,
}

/// The keys of `tool:` conditions.
pub(crate) const TOOL_KEYS: &[&str] = &["name", "input", "input_regex", "unless"];

/// One condition's result: (key, holds, detail).
pub(crate) type Check = super::net::Check;

/// The texts a value at a pointer is matched as (see the module docs).
fn texts(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        other => vec![other.to_string()],
    }
}

/// Shortened for explanations (the input may be large).
fn shown(s: &str) -> String {
    const MAX: usize = 120;
    if s.chars().count() <= MAX {
        format!("'{s}'")
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("'{cut}…'")
    }
}

/// Evaluates every condition; pushes one [`Check`] per condition.
pub(crate) fn eval(c: &ToolConds, a: &ToolAction, out: &mut Vec<Check>) {
    if let Some(g) = &c.name {
        out.push((
            "name",
            g.is_match(&a.name),
            match g.first_match(&a.name) {
                Some(p) => format!("tool '{}' matches '{p}'", a.name),
                None => format!("tool '{}' matches none of {}", a.name, g.describe()),
            },
        ));
    }
    for (ptr, g) in &c.input {
        let (holds, detail) = match a.input.pointer(ptr) {
            None => (false, format!("the input has no value at '{ptr}'")),
            Some(v) => {
                let ts = texts(v);
                match ts.iter().find_map(|t| g.first_match(t).map(|p| (t, p))) {
                    Some((t, p)) => (true, format!("input '{ptr}' {} matches '{p}'", shown(t))),
                    None => (
                        false,
                        format!(
                            "input '{ptr}' {} matches none of {}",
                            shown(&ts.join(", ")),
                            g.describe()
                        ),
                    ),
                }
            }
        };
        out.push(("input", holds, detail));
    }
    for (ptr, re, src) in &c.input_regex {
        let (holds, detail) = match a.input.pointer(ptr) {
            None => (false, format!("the input has no value at '{ptr}'")),
            Some(v) => {
                let ts = texts(v);
                match ts.iter().find(|t| re.is_match(t)) {
                    Some(t) => (true, format!("input '{ptr}' {} matches /{src}/", shown(t))),
                    None => (
                        false,
                        format!(
                            "input '{ptr}' {} does not match /{src}/",
                            shown(&ts.join(", "))
                        ),
                    ),
                }
            }
        };
        out.push(("input_regex", holds, detail));
    }
}

impl Loader<'_> {
    /// The conditions of a `tool:` rule.
    pub(super) fn tool_conds(&mut self, e: &[(Node, Node)]) -> ToolConds {
        let mut c = ToolConds::default();
        if let Some(n) = get(e, "name") {
            if let Some(items) = self.strings(n, "name") {
                c.name = self.globs_from(&items, n, "name");
            }
        }
        if let Some(n) = get(e, "input") {
            if let Some(entries) = self.pointers(n, "input") {
                for (k, v) in entries {
                    let ptr = key(k).to_string();
                    if let Some(items) = self.strings(v, &format!("input '{ptr}'")) {
                        if let Some(g) = self.globs_from(&items, v, &format!("input '{ptr}'")) {
                            c.input.push((ptr, g));
                        }
                    }
                }
            }
        }
        if let Some(n) = get(e, "input_regex") {
            if let Some(entries) = self.pointers(n, "input_regex") {
                for (k, v) in entries {
                    let ptr = key(k).to_string();
                    let Some(src) = self.string(v, &format!("input_regex '{ptr}'")) else {
                        continue;
                    };
                    let expanded = glob::expand(src, self.scope, &|v| regex::escape(v));
                    match expanded {
                        Err(e) => self.err(v.loc, e.message, e.hint),
                        Ok(x) => match regex::RegexBuilder::new(&x).size_limit(4 << 20).build() {
                            Ok(re) => c.input_regex.push((ptr, re, src.to_string())),
                            Err(err) => self.err(
                                v.loc,
                                format!(
                                    "bad regular expression: {}",
                                    err.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
                                ),
                                Some("the syntax is that of the Rust regex crate; it is matched unanchored against the value".into()),
                            ),
                        },
                    }
                }
            }
        }
        c
    }

    /// A mapping whose keys are JSON pointers.
    fn pointers<'n>(&mut self, n: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        let entries = self.map(n, &format!("`{what}` (JSON pointer: patterns)"))?;
        if entries.is_empty() {
            self.err(
                n.loc,
                format!("`{what}` has no condition"),
                Some("write e.g. `input: {/command: \"git push*\"}`".into()),
            );
            return None;
        }
        let mut ok = true;
        for (k, _) in entries {
            if !valid_pointer(key(k)) {
                self.err(
                    k.loc,
                    format!("'{}' is not a JSON pointer", key(k)),
                    Some("write `/field`, `/field/0/sub` (RFC 6901; `~1` for '/', `~0` for '~'), or \"\" for the whole input".into()),
                );
                ok = false;
            }
        }
        ok.then_some(entries)
    }

    /// An example or test of a tool rule: `tool: NAME`, `input:`, `cwd:`.
    pub(super) fn tool_example(
        &mut self,
        node: &Node,
        entries: &[(Node, Node)],
        cwd: PathBuf,
    ) -> Option<Action> {
        let t = self.example_of(
            node,
            entries,
            ("tool", "a tool"),
            &[
                "exec", "open", "connect", "program", "sha256", "access", "process", "op",
                "protocol", "names",
            ],
            "does not belong to examples of tool rules",
            "write e.g. `- {tool: deploy, input: {env: prod}}`",
        )?;
        let name = self.string(t, "tool")?.to_string();
        let input = match get(entries, "input") {
            Some(n) => yaml_json(n),
            None => serde_json::Value::Object(serde_json::Map::new()),
        };
        Some(Action::Tool(ToolAction { name, input, cwd }))
    }
}

/// A YAML value as JSON: plain `true`/`false`/`null`/numbers as such, every
/// other scalar a string.
fn yaml_json(n: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &n.value {
        Value::Scalar(_, true) if n.is_null() => J::Null,
        Value::Scalar(s, true) => match s.as_str() {
            "true" => J::Bool(true),
            "false" => J::Bool(false),
            _ => match s.parse::<i64>() {
                Ok(i) => J::from(i),
                Err(_) => match s.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                    Some(f) if s.chars().all(|c| c.is_ascii_digit() || ".-+eE".contains(c)) => {
                        J::Number(f)
                    }
                    _ => J::String(s.clone()),
                },
            },
        },
        Value::Scalar(s, false) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(yaml_json).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| (key(k).to_string(), yaml_json(v)))
                .collect(),
        ),
    }
}

/// Whether `ptr` is a JSON pointer (RFC 6901): empty, or `/`-separated
/// tokens in which `~` is only followed by `0` or `1`.
pub(crate) fn valid_pointer(ptr: &str) -> bool {
    if ptr.is_empty() {
        return true;
    }
    if !ptr.starts_with('/') {
        return false;
    }
    let b = ptr.as_bytes();
    b.iter()
        .enumerate()
        .all(|(i, c)| *c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}

/// Why a shell command cannot be split into words without a shell.
pub type Ambiguous = String;

/// The simple commands of a shell command line, each as its words, when
/// splitting it needs no shell: words of ordinary characters, `'…'`
/// quotes, `"…"` quotes without `$`, `` ` `` or `\`, a backslash before an
/// ordinary character, separated by blanks; simple commands separated by
/// `;`, `&&`, `||`, `|`, `&` or newlines. Anything a shell would expand or
/// redirect (`$`, `` ` ``, globs `*?[`, `~user`, `<`, `>`, `(`, `)`, `{`,
/// `}`, here-documents, comments, a leading `VAR=value`) makes the text
/// ambiguous: `Err` says what was found. A word that is `~` or starts with
/// `~/` has `home` put in place of the `~`, as the shell does (ambiguous
/// when `home` is `None`). An empty line has no command.
pub fn split_shell(text: &str, home: Option<&str>) -> Result<Vec<Vec<String>>, Ambiguous> {
    let mut commands: Vec<Vec<String>> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    let end_word = |words: &mut Vec<String>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    let end_command = |commands: &mut Vec<Vec<String>>,
                       words: &mut Vec<String>,
                       sep: &str|
     -> Result<(), Ambiguous> {
        if words.is_empty() {
            return Err(format!("'{sep}' with no command before it"));
        }
        commands.push(std::mem::take(words));
        Ok(())
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => end_word(&mut words, &mut word, &mut in_word),
            '\n' | ';' => {
                end_word(&mut words, &mut word, &mut in_word);
                if !words.is_empty() {
                    end_command(&mut commands, &mut words, &c.to_string())?;
                }
            }
            '&' | '|' => {
                end_word(&mut words, &mut word, &mut in_word);
                let sep = if chars.peek() == Some(&c) {
                    chars.next();
                    format!("{c}{c}")
                } else {
                    c.to_string()
                };
                if chars.peek() == Some(&'&') || (c == '|' && chars.peek() == Some(&'|')) {
                    return Err(format!(
                        "the operator '{sep}{}'",
                        chars.peek().unwrap_or(&c)
                    ));
                }
                end_command(&mut commands, &mut words, &sep)?;
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => word.push(x),
                        None => return Err("an unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(x @ ('$' | '`' | '\\')) => {
                            return Err(format!("'{x}' inside double quotes"))
                        }
                        Some(x) => word.push(x),
                        None => return Err("an unterminated \" quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(x) => {
                    in_word = true;
                    word.push(x);
                }
                None => return Err("a trailing backslash".into()),
            },
            '$' | '`' => return Err(format!("the expansion '{c}'")),
            '*' | '?' | '[' => return Err(format!("the pattern character '{c}'")),
            '<' | '>' => return Err(format!("the redirection '{c}'")),
            '(' | ')' | '{' | '}' => return Err(format!("the grouping '{c}'")),
            '#' if !in_word => return Err("a comment".into()),
            '~' if !in_word => match (home, chars.peek()) {
                (Some(h), None | Some('/' | ' ' | '\t' | '\n' | ';' | '&' | '|')) => {
                    in_word = true;
                    word.push_str(h);
                }
                _ => return Err("a '~' the shell would expand".into()),
            },
            '=' if words.is_empty() && in_word && !word.is_empty() => {
                return Err("a variable assignment before the command".into())
            }
            '!' if !in_word && words.is_empty() => return Err("the negation '!'".into()),
            x if x.is_control() => return Err(format!("the control character {x:?}")),
            x => {
                in_word = true;
                word.push(x);
            }
        }
    }
    end_word(&mut words, &mut word, &mut in_word);
    if !words.is_empty() {
        commands.push(words);
    } else if text.trim_end().ends_with(['|', '&']) {
        return Err("an operator with no command after it".into());
    }
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Verdict;

    fn ok(s: &str) -> Vec<Vec<String>> {
        split_shell(s, Some("/home/u")).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn plain_commands_split_into_words() {
        assert_eq!(ok("rm -rf /"), vec![vec!["rm", "-rf", "/"]]);
        assert_eq!(
            ok("git commit -m 'a b' \"c d\" e\\ f"),
            vec![vec!["git", "commit", "-m", "a b", "c d", "e f"]]
        );
        assert_eq!(
            ok("cd /w && rm -rf build; ls | wc -l\nmake"),
            vec![
                vec!["cd", "/w"],
                vec!["rm", "-rf", "build"],
                vec!["ls"],
                vec!["wc", "-l"],
                vec!["make"]
            ]
        );
        assert_eq!(ok("echo x=y --opt=1"), vec![vec!["echo", "x=y", "--opt=1"]]);
        assert_eq!(ok("  "), Vec::<Vec<String>>::new());
        assert_eq!(
            ok("rm -rf ~ ~/x a~"),
            vec![vec!["rm", "-rf", "/home/u", "/home/u/x", "a~"]]
        );
        assert!(split_shell("ls ~", None).is_err());
    }

    #[test]
    fn anything_a_shell_would_expand_is_ambiguous() {
        for s in [
            "rm -rf $HOME",
            "echo `id`",
            "rm *",
            "ls ~root/x",
            "cat < /etc/passwd",
            "echo x > f",
            "(cd / && rm -rf x)",
            "echo \"$x\"",
            "FOO=1 make",
            "a=b",
            "a ||| b",
            "| b",
            "a |",
            "'open",
            "echo # c",
            "! true",
        ] {
            assert!(
                split_shell(s, Some("/h")).is_err(),
                "{s:?} should be ambiguous"
            );
        }
    }

    fn vars() -> crate::policy::Vars {
        crate::policy::Vars {
            home: PathBuf::from("/home/u"),
            workspace: PathBuf::from("/home/u/ws"),
            tmpdir: PathBuf::from("/tmp"),
        }
    }

    fn tool(name: &str, input: serde_json::Value) -> Action {
        Action::Tool(ToolAction {
            name: name.into(),
            input,
            cwd: PathBuf::from("/home/u/ws"),
        })
    }

    const POLICY: &str = r#"
version: 1
defaults: {tool: escalate}
rules:
  - id: allow-read-only-github
    tool: {name: ["mcp__github__get_*", "mcp__github__list_*"]}
    decision: allow
    reason: reading GitHub changes nothing
    examples:
      match: [{tool: mcp__github__get_issue, input: {number: 3}}]
      no_match: [{tool: mcp__github__create_issue}]
  - id: block-prod-deploy
    tool:
      name: deploy
      input: {/env: [prod, production]}
      unless:
        input: {/ticket: "OPS-*"}
    decision: block
    reason: production deploys need a change ticket
    examples:
      match:
        - {tool: deploy, input: {env: prod}}
        - {tool: deploy, input: {env: production, ticket: X-1}}
      no_match:
        - {tool: deploy, input: {env: prod, ticket: OPS-12}}
        - {tool: deploy, input: {env: staging}}
  - id: block-force-flag
    tool:
      input_regex: {/args: "^--force$"}
    decision: block
    reason: no forced tool calls
  - id: allow-staging
    tool: {name: deploy, input: {/env: staging, /dry_run: "true"}}
    decision: allow
    reason: staging dry runs are harmless
tests:
  - {tool: deploy, input: {env: staging, dry_run: true}, expect: allow, rule: allow-staging}
  - {tool: deploy, input: {env: staging}, expect: escalate, rule: default}
  - {tool: anything, input: {args: [-v, --force]}, expect: block}
"#;

    #[test]
    fn tool_rules_judge_names_and_input_fields() {
        let p = crate::policy::Policy::from_str(POLICY, "t.yaml", &vars())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.rule_count(crate::action::ActionKind::Tool), 4);
        assert_eq!(
            p.default_verdict(crate::action::ActionKind::Tool),
            Verdict::Escalate
        );
        let d = p.decide(&tool("deploy", serde_json::json!({"env": "prod"})));
        assert_eq!(d.verdict, Verdict::Block);
        assert_eq!(d.rule.as_deref(), Some("block-prod-deploy"));
        let d = p.decide(&tool(
            "deploy",
            serde_json::json!({"env": "prod", "ticket": "OPS-7"}),
        ));
        assert_eq!(d.verdict, Verdict::Escalate);
        assert!(d.rule.is_none());
        assert!(
            d.reason.contains("default for tool is escalate"),
            "{}",
            d.reason
        );
        let d = p.decide(&tool("mcp__github__list_prs", serde_json::json!({})));
        assert_eq!(d.verdict, Verdict::Allow);
        // A list element matches; a number is matched as its JSON text.
        let d = p.decide(&tool("x", serde_json::json!({"args": ["a", "--force"]})));
        assert_eq!(d.verdict, Verdict::Block);
        let d = p.decide(&tool("x", serde_json::json!({"args": "--forced"})));
        assert_eq!(d.verdict, Verdict::Escalate);
        // explain agrees with decide.
        let a = tool("deploy", serde_json::json!({"env": "production"}));
        let ex = p.explain(&a);
        assert_eq!(ex.decision, p.decide(&a));
        assert!(ex.matched[0]
            .conditions
            .iter()
            .any(|c| c.condition == "input" && c.detail.contains("'production' matches")));
    }

    #[test]
    fn tool_rules_are_validated() {
        let bad = |body: &str| {
            let text = format!(
                "version: 1\nrules:\n  - id: r\n    tool: {body}\n    decision: block\n    reason: x\n"
            );
            match crate::policy::Policy::from_str(&text, "t.yaml", &vars()) {
                Ok(_) => panic!("{body} should not load"),
                Err(e) => e
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            }
        };
        assert!(bad("{input: {command: x}}").contains("is not a JSON pointer"));
        assert!(bad("{input: {}}").contains("has no condition"));
        assert!(bad("{input_regex: {/c: \"(\"}}").contains("bad regular expression"));
        assert!(bad("{nme: x}").contains("did you mean 'name'"));
        // An example that does not hold is an error.
        let text = "version: 1\nrules:\n  - id: r\n    tool: {name: deploy}\n    decision: block\n    reason: x\n    examples: {match: [{tool: other}]}\n";
        let e = crate::policy::Policy::from_str(text, "t.yaml", &vars()).unwrap_err();
        assert!(e.to_string().contains("should match"), "{e}");
    }

    #[test]
    fn pointers() {
        assert!(valid_pointer(""));
        assert!(valid_pointer("/a/0/~1b~0"));
        assert!(!valid_pointer("a"));
        assert!(!valid_pointer("/a~2"));
        assert!(!valid_pointer("/a~"));
    }
}
