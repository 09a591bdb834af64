//! `lexecon doctor`: can this machine run the supervisor, and what would
//! weaken it? Each check says what it found, what that breaks, and what to
//! do. The last check runs a real supervised command (with a throwaway key
//! and ledger), which is the one that settles whether enforcement works
//! here.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;
use clap::Args;

use crate::supervisor::sys;

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Note,
    Warn,
    Fail,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Note => "note",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        }
    }
}

struct Finding {
    check: &'static str,
    level: Level,
    found: String,
    todo: String,
}

fn finding(
    check: &'static str,
    level: Level,
    found: impl Into<String>,
    todo: impl Into<String>,
) -> Finding {
    Finding {
        check,
        level,
        found: found.into(),
        todo: todo.into(),
    }
}

/// `(major, minor)` of a release like `6.18.0-1-amd64`.
fn version_of(release: &str) -> Option<(u32, u32)> {
    sys::release_version(release)
}

fn status_field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_string())
}

fn kernel() -> Finding {
    let release = sys::kernel_release();
    match version_of(&release) {
        Some(v) if v >= (6, 11) => finding("kernel", Level::Ok, format!("Linux {release}"), ""),
        Some(v) if v >= (6, 6) => finding(
            "kernel",
            Level::Note,
            format!("Linux {release}: no PROCMAP_QUERY (before 6.11)"),
            "mprotect(PROT_EXEC) is judged by reading /proc/PID/maps instead: slower, same result",
        ),
        Some(v) if v >= (5, 19) => finding(
            "kernel",
            Level::Warn,
            format!("Linux {release}: no SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (before 6.6)"),
            "every judged call costs a cross-CPU wake-up; a kernel ≥ 6.6 is much faster",
        ),
        Some(v) if v >= (5, 14) => finding(
            "kernel",
            Level::Warn,
            format!("Linux {release}: no SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (before 5.19)"),
            "a caller interrupted by signals while judged is notified again; use Linux ≥ 5.19",
        ),
        _ => finding(
            "kernel",
            Level::Fail,
            format!("Linux {release}: before 5.14 there is no SECCOMP_ADDFD_FLAG_SEND"),
            "opens cannot be performed for the tree: use Linux ≥ 5.19",
        ),
    }
}

fn user_notify() -> Vec<Finding> {
    const RET_USER_NOTIF: u32 = 0x7fc0_0000;
    let mut out = Vec::new();
    match sys::seccomp_action_available(RET_USER_NOTIF) {
        Ok(()) => out.push(finding("seccomp user notification", Level::Ok, "available", "")),
        Err(e) => out.push(finding(
            "seccomp user notification",
            Level::Fail,
            format!("not available: {e}"),
            "the kernel lacks CONFIG_SECCOMP_FILTER or a sandbox refuses seccomp(2): Lexecon cannot run here",
        )),
    }
    match sys::seccomp_notif_sizes() {
        Ok((n, r, d)) => out.push(finding(
            "notification sizes",
            Level::Ok,
            format!("notif {n}, resp {r}, data {d} bytes"),
            "",
        )),
        Err(e) => out.push(finding(
            "notification sizes",
            Level::Fail,
            format!("SECCOMP_GET_NOTIF_SIZES failed: {e}"),
            "the notification ioctls cannot be used here",
        )),
    }
    out
}

fn this_process() -> Vec<Finding> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut out = Vec::new();
    let seccomp = status_field(&status, "Seccomp:").unwrap_or_default();
    let filters = status_field(&status, "Seccomp_filters:").unwrap_or_default();
    if seccomp == "0" {
        out.push(finding("seccomp filters above", Level::Ok, "none", ""));
    } else {
        out.push(finding(
            "seccomp filters above",
            Level::Warn,
            format!("this process already runs under {filters} seccomp filter(s) (mode {seccomp})"),
            "a sandbox, container runtime or another supervisor filters calls already; if one of them holds a user-notify listener (another Lexecon, WSL2's init), the supervisor's own listener fails with EBUSY — the end-to-end check below tells",
        ));
    }
    let caps = status_field(&status, "CapEff:").unwrap_or_default();
    let uid = status_field(&status, "Uid:").unwrap_or_default();
    let root = uid.split_whitespace().nth(1) == Some("0");
    let has_caps = u64::from_str_radix(&caps, 16).is_ok_and(|c| c != 0);
    if root || has_caps {
        out.push(finding(
            "privileges",
            Level::Warn,
            format!("running as uid {} with capabilities {caps}", uid.split_whitespace().nth(1).unwrap_or("?")),
            "a supervised command would run as root: refused unless --allow-root-tree; run the agent as an ordinary user",
        ));
    } else {
        out.push(finding(
            "privileges",
            Level::Ok,
            "an ordinary user, no capabilities",
            "",
        ));
    }
    if status_field(&status, "NoNewPrivs:").as_deref() == Some("1") {
        out.push(finding(
            "no_new_privs",
            Level::Note,
            "already set for this process",
            "set-id programs do not gain privileges here anyway; nothing to do",
        ));
    }
    out
}

fn ptrace_scope() -> Finding {
    match std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope") {
        Err(_) => finding("ptrace (Yama)", Level::Ok, "Yama is not active", ""),
        Ok(v) => match v.trim() {
            "0" | "1" => finding("ptrace (Yama)", Level::Ok, format!("ptrace_scope {}", v.trim()), ""),
            "2" => finding(
                "ptrace (Yama)",
                Level::Warn,
                "ptrace_scope 2: only CAP_SYS_PTRACE may trace",
                "the supervisor traces its own children: run as root or set kernel.yama.ptrace_scope to 1",
            ),
            other => finding(
                "ptrace (Yama)",
                Level::Fail,
                format!("ptrace_scope {other}: ptrace is disabled"),
                "exec confirmation needs ptrace: set kernel.yama.ptrace_scope to 1 (it cannot be lowered again from 3 without a reboot)",
            ),
        },
    }
}

fn confinement() -> Vec<Finding> {
    let mut out = Vec::new();
    let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    let profile = std::fs::read_to_string("/proc/self/attr/current")
        .unwrap_or_default()
        .trim_end_matches('\0')
        .trim()
        .to_string();
    if !profile.is_empty()
        && profile != "unconfined"
        && !profile.ends_with("unconfined_t:s0-s0:c0.c1023")
    {
        out.push(finding(
            "LSM profile",
            Level::Warn,
            format!("this process is confined: {}", crate::escape::text(&profile)),
            "an AppArmor or SELinux profile may refuse the notification ioctls or ptrace, turning every judged call into EPERM; the end-to-end check below tells",
        ));
    } else {
        out.push(finding(
            "LSM profile",
            Level::Ok,
            format!(
                "unconfined (active: {})",
                if lsm.trim().is_empty() {
                    "none listed"
                } else {
                    lsm.trim()
                }
            ),
            "",
        ));
    }
    let container = Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists()
        || std::fs::read_to_string("/proc/1/cgroup").is_ok_and(|c| {
            c.contains("docker") || c.contains("kubepods") || c.contains("containerd")
        });
    if container {
        out.push(finding(
            "container",
            Level::Note,
            "running inside a container",
            "its seccomp profile must allow seccomp(2) with a listener, ptrace and pidfd_getfd; the end-to-end check below tells",
        ));
    }
    out
}

/// Runs a real supervised command with a throwaway key and ledger.
fn end_to_end() -> Finding {
    let check = "end to end";
    let run = || -> anyhow::Result<Finding> {
        let me = std::env::current_exe().context("cannot find this program")?;
        let dir = tempfile_dir()?;
        let keys = dir.join("keys");
        let ledger = dir.join("ledger.jsonl");
        let out = Command::new(&me)
            .args(["init-keys", "--dir"])
            .arg(&keys)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            anyhow::bail!(
                "init-keys failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let out = Command::new(&me)
            .args([
                "supervise",
                "--quiet",
                "--no-tell-process",
                "--allow-root-tree",
                "--allow-broad-workspace",
                "--sync",
                "never",
                "--policy",
                "builtin:observe",
                "--ledger",
            ])
            .arg(&ledger)
            .arg("--keys")
            .arg(&keys)
            .args([
                "--",
                "/bin/sh",
                "-c",
                "exec cat /proc/self/status > /dev/null",
            ])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()?;
        let records = std::fs::read_to_string(&ledger).unwrap_or_default();
        let judged = records
            .lines()
            .filter(|l| l.contains("\"kind\":\"decision\""))
            .count();
        let _ = std::fs::remove_dir_all(&dir);
        if out.status.success() && judged >= 2 {
            return Ok(finding(
                check,
                Level::Ok,
                format!("a supervised command ran; {judged} of its calls were judged and recorded"),
                "",
            ));
        }
        Ok(finding(
            check,
            Level::Fail,
            format!(
                "a supervised command failed (status {:?}, {judged} calls recorded): {}",
                out.status.code(),
                crate::escape::text(String::from_utf8_lossy(&out.stderr).trim())
            ),
            "Lexecon cannot enforce here; see the findings above (a filter or listener above this process, ptrace, an LSM profile)",
        ))
    };
    run().unwrap_or_else(|e| finding(check, Level::Fail, e.to_string(), "see the findings above"))
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let base = std::env::temp_dir();
    for i in 0..100u32 {
        let p = base.join(format!("lexecon-doctor-{}-{i}", std::process::id()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).context("cannot create a temporary directory"),
        }
    }
    anyhow::bail!("cannot create a temporary directory in {}", base.display())
}

pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut all = vec![kernel()];
    all.extend(user_notify());
    all.extend(this_process());
    all.push(ptrace_scope());
    all.extend(confinement());
    all.push(end_to_end());
    let worst = all.iter().map(|f| f.level).max().unwrap_or(Level::Ok);
    if args.json {
        let v = serde_json::json!({
            "ok": worst < Level::Fail,
            "checks": all.iter().map(|f| serde_json::json!({
                "check": f.check,
                "level": f.level.as_str(),
                "found": f.found,
                "todo": f.todo,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for f in &all {
            println!("{:<4}  {}: {}", f.level.as_str(), f.check, f.found);
            if !f.todo.is_empty() {
                println!("      → {}", f.todo);
            }
        }
        println!(
            "{}",
            if worst == Level::Fail {
                "Lexecon cannot enforce its policy on this machine (see FAIL above)."
            } else {
                "Lexecon can run here."
            }
        );
    }
    Ok(if worst == Level::Fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_are_read() {
        assert_eq!(version_of("6.18.0-1-amd64"), Some((6, 18)));
        assert_eq!(version_of("5.4.0"), Some((5, 4)));
        assert_eq!(version_of("x"), None);
    }
}
