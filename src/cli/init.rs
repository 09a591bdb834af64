//! `lexecon init`: set a project up for Lexecon, once or again (every step
//! is done only when it is not done yet, and says which).
//!
//! 1. the signing key, when the key directory has none;
//! 2. the project policy `lexecon-policy.yaml`: the shipped default policy
//!    in observe mode (everything judged and recorded, nothing refused),
//!    to be tightened to `mode: enforce` once its records look right;
//! 3. with `--claude-code`, the `PreToolUse` hook in `.claude/settings.json`
//!    (merged into what is there); with `--gemini-cli`, the `BeforeTool`
//!    hook in `.gemini/settings.json`;
//! 4. a note for the agent's instruction file (`CLAUDE.md` with
//!    `--claude-code`, `GEMINI.md` with `--gemini-cli`, else `AGENTS.md`)
//!    saying what the gate is and how to read its refusals, between marker
//!    lines so that it is found again;
//!
//! then prints the next steps.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use serde_json::{json, Value};

use super::locations;
use crate::escape;
use crate::ledger::keys;

/// The project policy's file name.
pub const POLICY_FILE: &str = "lexecon-policy.yaml";

const NOTE_BEGIN: &str = "<!-- lexecon:begin -->";
const NOTE_END: &str = "<!-- lexecon:end -->";

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The project directory (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The signing key directory (default: as for `supervise`).
    #[arg(long, value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// Configure Claude Code's PreToolUse hook (`.claude/settings.json`)
    /// and put the note in `CLAUDE.md`.
    #[arg(long)]
    pub claude_code: bool,
    /// Configure Gemini CLI's BeforeTool hook (`.gemini/settings.json`)
    /// and put the note in `GEMINI.md`.
    #[arg(long)]
    pub gemini_cli: bool,
}

/// The note for the agent's instruction file.
fn note() -> String {
    format!(
        "{NOTE_BEGIN}\n\
## Lexecon (execution control)\n\
\n\
This project runs its agent under Lexecon. Before each tool call a hook asks\n\
Lexecon's gate whether the call may happen; the same policy judges every\n\
program, file and connection again at the system call, and everything is\n\
recorded in a signed ledger.\n\
\n\
- A refusal reads `Lexecon policy refuses this (rule RULE: REASON; record N in\n\
  LEDGER)`. The rule and its reason say what is not allowed. Do not try to\n\
  reach the same result another way (another command, a script, another\n\
  tool): that is refused too, and it is recorded. Tell the user what you\n\
  wanted to do and why, and let them decide.\n\
- `this needs a human's approval` means a person has to allow it; wait for\n\
  their answer.\n\
- A command a refused process sees fail with `Operation not permitted`, and\n\
  a line `lexecon: blocked …` on its stderr, was refused at the system call,\n\
  with the same rule and record.\n\
{NOTE_END}\n"
    )
}

/// The project policy: the shipped default policy in observe mode.
fn project_policy() -> anyhow::Result<String> {
    let text = crate::policy::shipped::shipped("default").context("no shipped default policy")?;
    let mut out = String::with_capacity(text.len() + 512);
    let mut swapped = false;
    for line in text.lines() {
        if !swapped && line == "mode: enforce" {
            out.push_str(
                "# Observe mode: everything is judged and recorded, nothing is refused.\n",
            );
            out.push_str(
                "# Read the ledger (`lexecon verify`), tighten the rules, then switch to\n",
            );
            out.push_str(
                "# `mode: enforce`. Tool calls asked about through the gate are judged by\n",
            );
            out.push_str("# `tool:` rules (docs/policy.md, \"Tool conditions\").\n");
            out.push_str("mode: observe\n");
            swapped = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    anyhow::ensure!(
        swapped,
        "the shipped default policy has no `mode: enforce` line"
    );
    Ok(out)
}

/// Reads a JSON settings file (an object; `{}` when absent).
fn read_settings(path: &Path) -> anyhow::Result<Value> {
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().is_empty() => Ok(json!({})),
        Ok(t) => {
            let v: Value = serde_json::from_str(&t).with_context(|| {
                format!(
                    "{} is not JSON; fix it, then run `lexecon init` again",
                    escape::path(path)
                )
            })?;
            anyhow::ensure!(
                v.is_object(),
                "{} is not a JSON object; fix it, then run `lexecon init` again",
                escape::path(path)
            );
            Ok(v)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", escape::path(path))),
    }
}

/// Adds `command` as a hook of `event` (matching every tool) unless a hook
/// running `lexecon hook` is there already. Whether it changed anything.
fn add_hook(
    settings: &mut Value,
    event: &str,
    command: &str,
    timeout: u64,
) -> anyhow::Result<bool> {
    let hooks = settings
        .as_object_mut()
        .context("settings are not an object")?
        .entry("hooks")
        .or_insert_with(|| json!({}));
    let list = hooks
        .as_object_mut()
        .context("`hooks` in the settings is not an object")?
        .entry(event)
        .or_insert_with(|| json!([]));
    let list = list
        .as_array_mut()
        .with_context(|| format!("`hooks.{event}` in the settings is not a list"))?;
    let present = list.iter().any(|m| {
        m["hooks"].as_array().is_some_and(|hs| {
            hs.iter().any(|h| {
                h["command"]
                    .as_str()
                    .is_some_and(|c| c.contains("lexecon hook "))
            })
        })
    });
    if present {
        return Ok(false);
    }
    list.push(json!({
        "matcher": "*",
        "hooks": [{"type": "command", "command": command, "timeout": timeout}],
    }));
    Ok(true)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", escape::path(d)))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", escape::path(path)))
}

pub fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let dir = std::fs::canonicalize(&dir).with_context(|| {
        format!(
            "the project directory {} does not exist",
            escape::path(&dir)
        )
    })?;
    let say = |done: bool, what: String| {
        println!("{} {what}", if done { "created:" } else { "kept:   " });
    };

    // 1. Keys.
    let k = locations::keys(args.keys.as_deref())?;
    let private = k.dir.join(keys::PRIVATE_KEY_FILE);
    if private.exists() {
        say(false, format!("signing key {}", escape::path(&private)));
    } else {
        let public = keys::generate(&k.dir, false)?;
        say(
            true,
            format!(
                "signing key {} (fingerprint {})",
                escape::path(&private),
                public.fingerprint()
            ),
        );
    }

    // 2. The project policy.
    let policy = dir.join(POLICY_FILE);
    if policy.exists() {
        say(false, format!("policy {}", escape::path(&policy)));
    } else {
        write(&policy, &project_policy()?)?;
        say(
            true,
            format!("policy {} (observe mode)", escape::path(&policy)),
        );
    }

    // 3. Hooks.
    let mut notes: Vec<PathBuf> = Vec::new();
    if args.claude_code {
        let path = dir.join(".claude/settings.json");
        let mut s = read_settings(&path)?;
        let cmd =
            format!("lexecon hook claude-code --policy \"$CLAUDE_PROJECT_DIR\"/{POLICY_FILE}");
        if add_hook(&mut s, "PreToolUse", &cmd, 120)? {
            write(&path, &format!("{}\n", serde_json::to_string_pretty(&s)?))?;
            say(true, format!("PreToolUse hook in {}", escape::path(&path)));
        } else {
            say(false, format!("PreToolUse hook in {}", escape::path(&path)));
        }
        notes.push(dir.join("CLAUDE.md"));
    }
    if args.gemini_cli {
        let path = dir.join(".gemini/settings.json");
        let mut s = read_settings(&path)?;
        let cmd = format!("lexecon hook gemini-cli --policy {}", escape::path(&policy));
        if add_hook(&mut s, "BeforeTool", &cmd, 120_000)? {
            write(&path, &format!("{}\n", serde_json::to_string_pretty(&s)?))?;
            say(true, format!("BeforeTool hook in {}", escape::path(&path)));
        } else {
            say(false, format!("BeforeTool hook in {}", escape::path(&path)));
        }
        notes.push(dir.join("GEMINI.md"));
    }
    if notes.is_empty() {
        notes.push(dir.join("AGENTS.md"));
    }

    // 4. The note for the agent.
    for path in &notes {
        let old = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", escape::path(path))),
        };
        if old.contains(NOTE_BEGIN) {
            say(
                false,
                format!("the note on the gate in {}", escape::path(path)),
            );
            continue;
        }
        let mut text = old.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&note());
        write(path, &text)?;
        say(
            true,
            format!("the note on the gate in {}", escape::path(path)),
        );
    }

    println!();
    println!("Next steps:");
    println!(
        "  1. Run the agent supervised, from {}:",
        escape::path(&dir)
    );
    let agent = if args.claude_code {
        "claude"
    } else if args.gemini_cli {
        "gemini"
    } else {
        "YOUR-AGENT"
    };
    println!("       lexecon-supervise --policy {POLICY_FILE} -- {agent}");
    if args.claude_code || args.gemini_cli {
        println!("     Its hook then asks the run's gate before each tool call.");
    }
    println!("  2. Read what it did:  lexecon verify; lexecon ledger show --last --blocked");
    println!(
        "  3. When the records look right, set `mode: enforce` in {POLICY_FILE} (check it with `lexecon policy check {POLICY_FILE}`),"
    );
    println!(
        "     or learn a tighter policy from the run: lexecon policy suggest -o suggested.yaml"
    );
    println!(
        "     and see what it would have refused:      lexecon replay --policy suggested.yaml"
    );
    Ok(ExitCode::SUCCESS)
}
