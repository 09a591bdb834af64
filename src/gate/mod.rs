//! The gate: asking for a decision on an action *before* doing it.
//!
//! A harness (Claude Code's `PreToolUse` hook, an agent framework) describes
//! what it is about to do — run a command, open a file, connect somewhere,
//! call a named tool — and gets the policy's answer with its reason, in
//! words the model reads. The same policy, ledger and approvals as the
//! kernel-level judge; what the tool then really does is judged again at
//! the kernel when it runs supervised.
//!
//! This module owns the request (a JSON object, [`parse_request`]), how a
//! described action is read into the actions it is judged as ([`Asked`]),
//! and the client of the in-run gate socket ([`ask_running`]). Judging,
//! recording and answering are the session's (`session::gate`).
//!
//! The request (see docs/gate.md):
//!
//! ```json
//! {"op": "decide", "cwd": "/w", "action": {"kind": "exec", "argv": ["rm", "-rf", "x"]}}
//! {"action": {"kind": "open", "path": "/etc/hosts", "access": ["write"]}}
//! {"action": {"kind": "connect", "url": "https://example.com/x"}}
//! {"action": {"kind": "tool", "name": "Bash", "input": {"command": "ls"}, "shell": "/command"}}
//! ```

pub mod harness;

use std::ffi::OsString;
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::action::{Access, Action, ExecAction, FileOp, NetOp, OpenAction, ToolAction};

/// The environment variable naming the gate socket of the supervised run a
/// process is in.
pub const GATE_ENV: &str = "LEXECON_GATE";

/// Longest request accepted (a `Write` tool's input holds the whole file).
pub const MAX_REQUEST: usize = 4 << 20;

/// Most simple commands judged out of one shell command.
const MAX_COMMANDS: usize = 64;

/// A described action, read into what it is judged as.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    /// The action as described (for a tool call, the tool call itself).
    pub primary: Action,
    /// What it is also judged as: the programs of a shell command, the file
    /// a tool reads or writes, the destination it fetches.
    pub derived: Vec<Action>,
    /// How the description was read, when that matters for the answer
    /// (a shell command judged by its whole text only, and why).
    pub notes: Vec<String>,
}

/// Lexical normalisation of `p` against `base` (`.`, `..` and repeated `/`
/// removed; the filesystem is not consulted).
pub fn absolute(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Finds a program as a shell would (a name with a `/` relative to `cwd`,
/// a bare name in `PATH`), following symlinks as the kernel does; a name not
/// found is returned as given (it matches `name:` conditions, no
/// `program:` pattern).
pub fn resolve_program(cmd: &std::ffi::OsStr, cwd: &Path) -> PathBuf {
    let cmd_path = Path::new(cmd);
    let candidate = if cmd.as_bytes().contains(&b'/') {
        Some(absolute(cwd, cmd_path))
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| absolute(cwd, &dir.join(cmd_path)))
                .find(|p| {
                    use std::os::unix::fs::PermissionsExt;
                    p.metadata()
                        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                        .unwrap_or(false)
                })
        })
    };
    match candidate {
        Some(p) => std::fs::canonicalize(&p).unwrap_or(p),
        None => cmd_path.to_path_buf(),
    }
}

/// SHA-256 of a file's content, when it can be read.
pub fn file_sha256(path: &Path) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Some(h.finalize().into())
}

fn string<'v>(v: &'v Value, key: &str, what: &str) -> Result<&'v str, String> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what} needs `{key}` (a string)"))
}

/// An exec of `argv` in `cwd`; the program from `program` or as a shell
/// finds it. `hash`: compute the program's content hash.
fn exec_of(argv: Vec<OsString>, program: Option<&str>, cwd: &Path, hash: bool) -> Action {
    let path = match program {
        Some(p) => absolute(cwd, Path::new(p)),
        None => resolve_program(
            argv.first().map(OsString::as_os_str).unwrap_or_default(),
            cwd,
        ),
    };
    let sha256 = if hash { file_sha256(&path) } else { None };
    Action::Exec(ExecAction {
        path,
        argv,
        cwd: cwd.to_path_buf(),
        sha256,
    })
}

/// The default port of a URL scheme.
fn scheme_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        "ftp" => 21,
        "ssh" | "sftp" => 22,
        "git" => 9418,
        _ => return None,
    })
}

/// `HOST:PORT` of a URL (`scheme://[user@]host[:port][/…]`).
pub fn url_target(url: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("'{url}' is not a URL (no scheme://)"))?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hostport.is_empty() {
        return Err(format!("'{url}' names no host"));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("'{url}': unterminated [address]"))?;
        (format!("[{h}]"), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("'{url}': '{p}' is not a port"))?,
        None => scheme_port(&scheme)
            .ok_or_else(|| format!("'{url}': no port, and scheme '{scheme}' has no known one"))?,
    };
    Ok(format!("{host}:{port}"))
}

/// The simple commands of a shell command as exec actions, following
/// `cd DIR` between them and the command text of `sh -c TEXT` (and bash,
/// dash, zsh), with notes on what could not be read.
fn shell_execs(text: &str, cwd: &Path, hash: bool, depth: u32, out: &mut Asked) {
    let home = std::env::var("HOME").ok().filter(|h| h.starts_with('/'));
    let commands = match crate::policy::tool::split_shell(text, home.as_deref()) {
        Ok(c) => c,
        Err(why) => {
            out.notes.push(format!(
                "the shell command could not be split into words without a shell ({why}): it is judged by its whole text only, and the programs it runs are judged when they run"
            ));
            return;
        }
    };
    let mut cwd = cwd.to_path_buf();
    for words in commands {
        if out.derived.len() >= MAX_COMMANDS {
            out.notes.push(format!(
                "the shell command has more than {MAX_COMMANDS} commands: the rest are judged when they run"
            ));
            return;
        }
        if words[0] == "cd" {
            match words.get(1..) {
                Some([dir]) => cwd = absolute(&cwd, Path::new(dir)),
                _ => {
                    out.notes.push(
                        "a `cd` without exactly one directory: the commands after it are judged in an unknown directory".into(),
                    );
                    cwd = PathBuf::new();
                }
            }
            continue;
        }
        let shell = matches!(
            words[0].rsplit('/').next(),
            Some("sh" | "bash" | "dash" | "zsh")
        );
        if shell && words.get(1).map(String::as_str) == Some("-c") && depth < 3 {
            if let Some(inner) = words.get(2) {
                shell_execs(inner, &cwd, hash, depth + 1, out);
            }
        }
        let argv = words.into_iter().map(OsString::from).collect();
        out.derived.push(exec_of(argv, None, &cwd, hash));
    }
}

/// Reads a request (see the module docs) into the actions it is judged as.
/// `default_cwd`: the working directory when the request names none (the
/// asker's). `hash`: compute programs' content hashes (when the policy has
/// `sha256:` conditions).
pub fn parse_request(req: &Value, default_cwd: &Path, hash: bool) -> Result<Asked, String> {
    let a = req
        .get("action")
        .filter(|a| a.is_object())
        .ok_or("the request needs `action` (an object with `kind`)")?;
    let cwd = match req.get("cwd").or_else(|| a.get("cwd")) {
        None | Some(Value::Null) => default_cwd.to_path_buf(),
        Some(Value::String(c)) if c.starts_with('/') => absolute(Path::new("/"), Path::new(c)),
        Some(_) => return Err("`cwd` must be an absolute path".into()),
    };
    let kind = string(a, "kind", "the action")?;
    let asked = |primary| Asked {
        primary,
        derived: Vec::new(),
        notes: Vec::new(),
    };
    match kind {
        "exec" => {
            let argv: Vec<OsString> = match a.get("argv") {
                Some(Value::Array(items)) if !items.is_empty() => items
                    .iter()
                    .map(|w| w.as_str().map(OsString::from))
                    .collect::<Option<_>>()
                    .ok_or("every word of `argv` must be a string")?,
                _ => return Err("an exec action needs `argv`, a non-empty list of strings".into()),
            };
            let program = a.get("program").and_then(Value::as_str);
            Ok(asked(exec_of(argv, program, &cwd, hash)))
        }
        "open" => {
            let path = string(a, "path", "an open action")?;
            let mut access = Access::empty();
            match a.get("access") {
                None => access = Access::READ,
                Some(Value::Array(items)) => {
                    for i in items {
                        let n = i.as_str().unwrap_or("");
                        access |= Access::from_name(n).ok_or_else(|| {
                            format!(
                                "unknown access '{n}'; write any of {}",
                                Access::ALL.map(|(_, n)| n).join(", ")
                            )
                        })?;
                    }
                }
                Some(_) => return Err("`access` must be a list of access names".into()),
            }
            let op = match a.get("op").and_then(Value::as_str) {
                None => FileOp::Open,
                Some(o) => FileOp::from_name(o).ok_or_else(|| format!("unknown op '{o}'"))?,
            };
            Ok(asked(Action::Open(OpenAction {
                path: absolute(&cwd, Path::new(path)),
                access: if access.is_empty() {
                    Access::READ
                } else {
                    access
                },
                cwd,
                process: None,
                op,
                detail: None,
            })))
        }
        "connect" => {
            let target = match (a.get("url"), a.get("host"), a.get("target")) {
                (Some(Value::String(u)), None, None) => url_target(u)?,
                (None, Some(Value::String(h)), None) => {
                    let port = a
                        .get("port")
                        .and_then(Value::as_u64)
                        .and_then(|p| u16::try_from(p).ok())
                        .ok_or("a connect action with `host` needs `port` (a number)")?;
                    if h.contains(':') {
                        format!("[{h}]:{port}")
                    } else {
                        format!("{h}:{port}")
                    }
                }
                (None, None, Some(Value::String(t))) => t.clone(),
                _ => {
                    return Err(
                        "a connect action needs one of `url`, `host` with `port`, or `target` (HOST:PORT or a socket path)"
                            .into(),
                    )
                }
            };
            let c = crate::policy::net::parse_action(&target, NetOp::Connect, None, Vec::new())?;
            let mut x = asked(Action::Connect(c));
            if x.primary_names_only() {
                x.notes.push(
                    "a host name is judged by its name; its addresses are judged when the connection is made".into(),
                );
            }
            Ok(x)
        }
        "tool" => {
            let name = string(a, "name", "a tool action")?;
            if name.is_empty() {
                return Err("a tool action's `name` is empty".into());
            }
            let input = a
                .get("input")
                .cloned()
                .unwrap_or_else(|| Value::Object(serde_json::Map::new()));
            let mut x = asked(Action::Tool(ToolAction {
                name: name.to_string(),
                input: input.clone(),
                cwd: cwd.clone(),
            }));
            if let Some(ptr) = a.get("shell") {
                let ptr = ptr.as_str().ok_or("`shell` must be a JSON pointer")?;
                match input.pointer(ptr) {
                    Some(Value::String(text)) => shell_execs(text, &cwd, hash, 0, &mut x),
                    _ => x.notes.push(format!(
                        "the input has no command text at '{ptr}': no program is judged"
                    )),
                }
            }
            for (k, d) in [("open", "opens"), ("connect", "connects")] {
                let Some(list) = a.get(d).or_else(|| a.get(k)) else {
                    continue;
                };
                let items: Vec<&Value> = match list {
                    Value::Array(v) => v.iter().collect(),
                    v => vec![v],
                };
                for item in items {
                    let mut sub = serde_json::Map::new();
                    sub.insert("kind".into(), Value::String(k.into()));
                    if let Value::Object(m) = item {
                        sub.extend(m.clone());
                    }
                    let inner = serde_json::json!({"action": sub, "cwd": cwd.to_string_lossy()});
                    let y = parse_request(&inner, &cwd, hash)?;
                    x.derived.push(y.primary);
                    x.notes.extend(y.notes);
                }
            }
            Ok(x)
        }
        other => Err(format!(
            "unknown action kind '{other}'; write exec, open, connect or tool"
        )),
    }
}

impl Asked {
    fn primary_names_only(&self) -> bool {
        matches!(&self.primary, Action::Connect(c) if !c.names.is_empty())
    }

    /// Every action judged, the described one first.
    pub fn all(&self) -> impl Iterator<Item = &Action> {
        std::iter::once(&self.primary).chain(self.derived.iter())
    }
}

/// Asks the gate of the supervised run this process is in (`$LEXECON_GATE`)
/// about `req`; `None` when this process is not in a supervised run with a
/// gate (no `$LEXECON_GATE`, or this process is traced by nobody, so the
/// variable was inherited from elsewhere). Waits as long as the run holds
/// an escalation for a human.
pub fn ask_running(req: &Value) -> Option<anyhow::Result<Value>> {
    let path = std::env::var_os(GATE_ENV).filter(|p| !p.is_empty())?;
    match crate::approval::own_tracer() {
        Ok(0) => None,
        Ok(_) => Some(ask_at(Path::new(&path), req)),
        Err(e) => Some(Err(anyhow::anyhow!(
            "cannot tell whether this process is supervised (/proc/self/status: {e})"
        ))),
    }
}

/// Asks the gate socket at `path` about `req`.
pub fn ask_at(path: &Path, req: &Value) -> anyhow::Result<Value> {
    use anyhow::Context as _;
    let s = std::os::unix::net::UnixStream::connect(path).with_context(|| {
        format!(
            "cannot reach the gate of the supervised run at {} (${GATE_ENV})",
            crate::escape::path(path)
        )
    })?;
    let mut req = req.clone();
    if let Value::Object(m) = &mut req {
        m.entry("op").or_insert(Value::String("decide".into()));
    }
    // An escalation waits for a human for up to a day (the longest
    // `timeout_seconds` a rule may set).
    let v = crate::approval::exchange(s, &req, std::time::Duration::from_secs(86_400 + 60))?;
    if v["ok"].as_bool() != Some(true) {
        anyhow::bail!(
            "the gate refused the request: {}",
            v["error"].as_str().unwrap_or("no reason given")
        );
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn execs(a: &Asked) -> Vec<Vec<String>> {
        a.derived
            .iter()
            .filter_map(|d| match d {
                Action::Exec(e) => Some(
                    e.argv
                        .iter()
                        .map(|w| w.to_string_lossy().into_owned())
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn shell_commands_become_execs_following_cd_and_sh_c() {
        let req = json!({"cwd": "/w", "action": {"kind": "tool", "name": "Bash",
            "input": {"command": "cd sub && sh -c 'rm -rf ..' ; ls"}, "shell": "/command"}});
        let a = parse_request(&req, Path::new("/"), false).unwrap();
        assert!(matches!(&a.primary, Action::Tool(t) if t.name == "Bash"));
        assert_eq!(
            execs(&a),
            vec![
                vec!["rm", "-rf", ".."],
                vec!["sh", "-c", "rm -rf .."],
                vec!["ls"]
            ]
        );
        match &a.derived[0] {
            Action::Exec(e) => assert_eq!(e.cwd, PathBuf::from("/w/sub")),
            _ => unreachable!(),
        }
        assert!(a.notes.is_empty());
        let req = json!({"action": {"kind": "tool", "name": "Bash",
            "input": {"command": "rm -rf $HOME"}, "shell": "/command"}});
        let a = parse_request(&req, Path::new("/w"), false).unwrap();
        assert!(a.derived.is_empty());
        assert!(a.notes[0].contains("whole text only"), "{:?}", a.notes);
    }

    #[test]
    fn urls_and_files() {
        assert_eq!(
            url_target("https://example.com/x").unwrap(),
            "example.com:443"
        );
        assert_eq!(url_target("http://u@h:8080").unwrap(), "h:8080");
        assert_eq!(url_target("http://[::1]:9/").unwrap(), "[::1]:9");
        assert!(url_target("example.com").is_err());
        assert!(url_target("gopher://x").is_err());
        let req = json!({"action": {"kind": "open", "path": "../x", "access": ["write"]}});
        let a = parse_request(&req, Path::new("/w/d"), false).unwrap();
        match a.primary {
            Action::Open(o) => {
                assert_eq!(o.path, PathBuf::from("/w/x"));
                assert_eq!(o.access, Access::WRITE);
            }
            _ => unreachable!(),
        }
        for bad in [
            json!({}),
            json!({"action": {"kind": "exec", "argv": []}}),
            json!({"action": {"kind": "nope"}}),
            json!({"action": {"kind": "open", "path": "x", "access": ["exec"]}}),
            json!({"cwd": "rel", "action": {"kind": "open", "path": "x"}}),
        ] {
            assert!(parse_request(&bad, Path::new("/"), false).is_err(), "{bad}");
        }
    }
}
