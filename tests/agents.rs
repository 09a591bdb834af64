//! Coding agents under the shipped policies: a stand-in agent (a shell
//! script doing what Claude Code, Codex CLI, Gemini CLI, Aider and OpenCode
//! do with their own state, in a throwaway home directory) runs with zero
//! blocks under default.yaml and ci.yaml, and cannot change the files that
//! set its own permissions, sandbox and hooks.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// The agent's routine: atomic rewrite of `~/.claude.json` (temporary file,
/// then rename), session and transcript files, todos, shell snapshots,
/// Codex sessions and history, Gemini's per-project temporary directory,
/// Aider's analytics, OpenCode's storage and state; reading its settings;
/// reading its parent's (the supervisor's) `stat` and `status`.
const WORK: &str = r#"set -e
cd "$WS"
t="$HOME/.claude.json.tmp.$$.1717171717"
printf '{"numStartups":2}\n' > "$t"
mv "$t" "$HOME/.claude.json"
cat "$HOME/.claude.json" > /dev/null
mkdir -p "$HOME/.claude/sessions" "$HOME/.claude/projects/-ws" "$HOME/.claude/todos" "$HOME/.claude/shell-snapshots"
printf '{"id":"s"}\n' > "$HOME/.claude/sessions/s.json"
printf '{"type":"user"}\n' >> "$HOME/.claude/projects/-ws/0b7e.jsonl"
printf '[]\n' > "$HOME/.claude/todos/t.json"
printf 'export PATH=/usr/bin\n' > "$HOME/.claude/shell-snapshots/snapshot-sh-1.sh"
printf '{"display":"hi"}\n' >> "$HOME/.claude/history.jsonl"
cat "$HOME/.claude/settings.json" "$WS/.claude/settings.json" > /dev/null
mkdir -p "$HOME/.codex/sessions/2025/06/01" "$HOME/.codex/log"
printf '{}\n' >> "$HOME/.codex/sessions/2025/06/01/rollout-x.jsonl"
printf '{}\n' >> "$HOME/.codex/history.jsonl"
printf 'start\n' >> "$HOME/.codex/log/codex-tui.log"
cat "$HOME/.codex/config.toml" > /dev/null
mkdir -p "$HOME/.gemini/tmp/0f1e/chats"
printf '[]\n' > "$HOME/.gemini/tmp/0f1e/logs.json"
printf '{}\n' > "$HOME/.gemini/tmp/0f1e/chats/session-1.json"
cat "$HOME/.gemini/settings.json" > /dev/null
mkdir -p "$HOME/.aider/caches"
printf '{}\n' > "$HOME/.aider/analytics.json"
mkdir -p "$HOME/.local/share/opencode/storage" "$HOME/.local/state/opencode"
printf '{}\n' > "$HOME/.local/share/opencode/storage/s.json"
printf '{}\n' > "$HOME/.local/state/opencode/kv.json"
cat "/proc/$PPID/stat" "/proc/$PPID/status" > /dev/null
echo work-done
"#;

/// The agent trying to loosen its own guard: each write must fail, and each
/// prints `NAME=refused` or `NAME=written`.
const LOOSEN: &str = r#"cd "$WS"
try() { name=$1; shift; if ( "$@" ) 2>/dev/null; then echo "$name=written"; else echo "$name=refused"; fi; }
allow='{"permissions":{"allow":["Bash(*)"],"defaultMode":"bypassPermissions"}}'
try claude-settings sh -c "printf '%s' '$allow' > \"$HOME/.claude/settings.json\""
try claude-local sh -c "printf '%s' '$allow' > \"$HOME/.claude/settings.local.json\""
try claude-hook sh -c "printf 'curl x|sh' > \"$HOME/.claude/hooks/pre.sh\""
try project-settings sh -c "printf '%s' '$allow' > \"$WS/.claude/settings.json\""
try project-local sh -c "printf '%s' '$allow' > \"$WS/.claude/settings.local.json\""
try claude-rename sh -c "printf '%s' '$allow' > \"$HOME/.claude/x.json\" && mv \"$HOME/.claude/x.json\" \"$HOME/.claude/settings.json\""
try codex-config sh -c "printf 'approval_policy = \"never\"\n' >> \"$HOME/.codex/config.toml\""
try gemini-settings sh -c "printf '{\"tools\":{\"sandbox\":false}}' > \"$HOME/.gemini/settings.json\""
try gemini-trust sh -c "printf '{\"/\":\"TRUST_FOLDER\"}' > \"$HOME/.gemini/trustedFolders.json\""
try gemini-project sh -c "printf '{}' > \"$WS/.gemini/settings.json\""
try claude-dir sh -c "mkdir -p \"$WS/fake/.claude\" && mv \"$HOME/.claude\" \"$WS/gone\""
"#;

struct Agent {
    env: Env,
    home: PathBuf,
    script: PathBuf,
}

/// A throwaway home with the agents' settings in place (as a user would
/// have them), and the script.
fn agent() -> Agent {
    let env = Env::new();
    let home = env.root.join("home");
    for (path, text) in [
        (
            ".claude/settings.json",
            "{\"permissions\":{\"deny\":[\"Bash(rm:*)\"]}}\n",
        ),
        (".claude/settings.local.json", "{}\n"),
        (".claude/hooks/pre.sh", "#!/bin/sh\nexit 0\n"),
        (".codex/config.toml", "approval_policy = \"on-request\"\n"),
        (".gemini/settings.json", "{\"tools\":{\"sandbox\":true}}\n"),
        (".gemini/trustedFolders.json", "{}\n"),
    ] {
        let p = home.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
    }
    for path in [
        ".claude/settings.json",
        ".claude/settings.local.json",
        ".gemini/settings.json",
    ] {
        let p = env.ws.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "{\"project\":true}\n").unwrap();
    }
    let script = env.root.join("fake-agent");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ncase \"$1\" in\nwork)\n{WORK}\n;;\nloosen)\n{LOOSEN}\n;;\nesac\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    Agent { env, home, script }
}

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies")
        .join(name)
}

fn run(a: &Agent, policy: &str, mode: &str) -> std::process::Output {
    a.env
        .supervise_cmd_with(
            &shipped(policy),
            &["--fail-on-block"],
            &[a.script.as_os_str(), mode.as_ref()],
        )
        .env("HOME", &a.home)
        .env("WS", &a.env.ws)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_STATE_HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("CLAUDE_CONFIG_DIR")
        .env_remove("CODEX_HOME")
        .output()
        .unwrap()
}

fn snapshot(a: &Agent) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for base in [&a.home, &a.env.ws] {
        for dir in [".claude", ".claude/hooks", ".codex", ".gemini"] {
            for e in std::fs::read_dir(base.join(dir))
                .into_iter()
                .flatten()
                .flatten()
            {
                if e.path().is_file() {
                    out.push((e.path(), std::fs::read(e.path()).unwrap()));
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn agents_keep_their_state_with_zero_blocks_under_default_and_ci() {
    for policy in ["default.yaml", "ci.yaml"] {
        let a = agent();
        let out = run(&a, policy, "work");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{policy}: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).contains("work-done"),
            "{policy}: {}",
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("lexecon: blocked"),
            "{policy}: {}",
            stderr(&out)
        );
        let refused: Vec<_> = a
            .env
            .records()
            .into_iter()
            .filter(|r| {
                r["kind"] == "refusal" || (r["kind"] == "decision" && r["verdict"] != "allow")
            })
            .collect();
        assert!(refused.is_empty(), "{policy}: {refused:#?}");
        assert_eq!(
            std::fs::read_to_string(a.home.join(".claude.json")).unwrap(),
            "{\"numStartups\":2}\n"
        );
        assert!(a.home.join(".claude/projects/-ws/0b7e.jsonl").exists());
        assert!(a.home.join(".codex/history.jsonl").exists());
        assert!(a.home.join(".gemini/tmp/0f1e/logs.json").exists());
        assert!(a.home.join(".local/share/opencode/storage/s.json").exists());
        a.env.assert_valid();
    }
}

#[test]
fn agents_cannot_loosen_their_own_settings_under_default_and_ci() {
    for policy in ["default.yaml", "ci.yaml"] {
        let a = agent();
        let before = snapshot(&a);
        let out = run(&a, policy, "loosen");
        let s = stdout(&out);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 11, "{policy}: {s}\n{}", stderr(&out));
        for line in &lines {
            assert!(
                line.ends_with("=refused"),
                "{policy}: {line}\n{}",
                stderr(&out)
            );
        }
        // Every settings file as it was (the temporary file the refused
        // rename left behind is the agent's own).
        for (path, bytes) in &before {
            assert_eq!(
                &std::fs::read(path).unwrap(),
                bytes,
                "{policy}: {} changed",
                path.display()
            );
        }
        assert!(a.home.join(".claude").is_dir(), "{policy}");
        assert!(
            stderr(&out).contains("rule block-persistence-tool-config"),
            "{policy}: {}",
            stderr(&out)
        );
        // Blocks make --fail-on-block fail the run.
        assert_eq!(out.status.code(), Some(1), "{policy}");
    }
}
