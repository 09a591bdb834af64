//! `lexecon init`: keys, a project policy in observe mode, the Claude Code
//! hook merged into existing settings, the note for the agent; run twice,
//! the second run changes nothing.

use std::path::Path;
use std::process::Command;

const LEXECON: &str = env!("CARGO_BIN_EXE_lexecon");

fn init(project: &Path, config: &Path) -> String {
    let out = Command::new(LEXECON)
        .args(["init", "--claude-code"])
        .current_dir(project)
        .env("XDG_CONFIG_HOME", config)
        .env_remove("LEXECON_KEYS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn snapshot(project: &Path) -> Vec<(String, String)> {
    ["lexecon-policy.yaml", ".claude/settings.json", "CLAUDE.md"]
        .iter()
        .map(|f| {
            (
                f.to_string(),
                std::fs::read_to_string(project.join(f)).unwrap(),
            )
        })
        .collect()
}

#[test]
fn init_twice_sets_up_once() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    let config = dir.path().join("config");
    std::fs::create_dir_all(project.join(".claude")).unwrap();
    std::fs::write(
        project.join(".claude/settings.json"),
        r#"{"permissions": {"allow": ["Bash(ls:*)"]}, "hooks": {"PostToolUse": []}}"#,
    )
    .unwrap();
    std::fs::write(project.join("CLAUDE.md"), "# Project\n\nBuild with make.").unwrap();

    let first = init(&project, &config);
    assert!(first.contains("created: signing key"), "{first}");
    assert!(first.contains("created: policy"), "{first}");
    assert!(first.contains("created: PreToolUse hook"), "{first}");
    assert!(first.contains("created: the note on the gate"), "{first}");
    assert!(first.contains("lexecon-supervise --policy lexecon-policy.yaml -- claude"));
    assert!(config.join("lexecon/keys/ledger.key").exists());
    let before = snapshot(&project);

    let second = init(&project, &config);
    assert!(!second.contains("created:"), "{second}");
    assert_eq!(second.matches("kept:").count(), 4, "{second}");
    assert_eq!(snapshot(&project), before, "the second run changed a file");

    // The existing settings are kept, the hook is there once.
    let s: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.join(".claude/settings.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(s["permissions"]["allow"][0], "Bash(ls:*)");
    let pre = s["hooks"]["PreToolUse"].as_array().unwrap();
    assert_eq!(pre.len(), 1);
    assert_eq!(pre[0]["matcher"], "*");
    assert!(pre[0]["hooks"][0]["command"]
        .as_str()
        .unwrap()
        .starts_with("lexecon hook claude-code --policy"));
    let md = std::fs::read_to_string(project.join("CLAUDE.md")).unwrap();
    assert!(md.starts_with("# Project\n\nBuild with make.\n\n<!-- lexecon:begin -->"));
    assert_eq!(md.matches("<!-- lexecon:begin -->").count(), 1);

    // The project policy is valid and in observe mode.
    let out = Command::new(LEXECON)
        .args(["policy", "check", "lexecon-policy.yaml"])
        .current_dir(&project)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("mode: observe"), "{text}");
}
