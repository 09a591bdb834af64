//! `lexecon policy suggest`: a policy that allows what a recorded run did
//! and nothing else of substance.
//!
//! Every decision record of the run whose action was carried out (in
//! observe mode: everything the tree asked for) contributes; decisions of
//! built-in rules and actions that were refused do not. Programs are
//! allowed by exact path (and, on request, by content hash); file paths are
//! collapsed into globs by the bounded rules of [`Collapse`] (documented in
//! docs/policy.md, "From observe mode to a policy"); network destinations
//! are allowed one by one (host names the supervisor saw, else addresses).
//! Every rule carries examples taken from the recorded actions, so the
//! policy checks itself when it is loaded; paths and words that cannot be
//! written in YAML (not UTF-8) are matched by `*` and given no example.
//!
//! With a base policy, only what it does not allow already is added; what
//! it blocks cannot be allowed by an added rule (block wins) and is listed
//! in a comment.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::action::{Access, Action, ConnectAction, FileOp, NetOp, NetTarget, Verdict};
use crate::ledger::decode::{RecordKind, Recorded};
use crate::ledger::Outcome;
use crate::replay::{self, Judge, RecordedRun, RunVars};

/// Limits of collapsing and of the examples written.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Allow programs by content hash too (`sha256:`), one rule per program.
    pub sha256: bool,
    /// Distinct entries of one directory (outside the workspace, the
    /// temporary directories and the toolchain caches) from which they are
    /// allowed as `DIR/*` instead of one by one.
    pub siblings: usize,
    /// Examples written per rule at most.
    pub examples: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            sha256: false,
            siblings: 8,
            examples: 6,
        }
    }
}

/// Directories under `${HOME}` where toolchains keep caches, installed
/// packages and versions: a path inside one is allowed as the whole
/// directory (`${HOME}/.cargo/**`). Under `.cache`, each tool's own
/// subdirectory is one (`${HOME}/.cache/pip/**`).
pub const TOOLCHAIN_DIRS: &[&str] = &[
    ".cargo",
    ".rustup",
    ".npm",
    ".yarn",
    ".pnpm-store",
    ".local/share/pnpm",
    ".nvm",
    ".volta",
    ".bun",
    ".deno",
    ".pyenv",
    ".local/lib",
    ".local/share/uv",
    ".rbenv",
    ".gem",
    ".m2",
    ".gradle",
    "go/pkg/mod",
    ".asdf",
];

/// Where, in a path, a component made of digits only (a process, thread
/// or terminal number) becomes `*`.
const NUMBERED: &[&str] = &["/proc", "/dev/pts"];

/// A value written in YAML: a double-quoted scalar, with `\`, `"`, control
/// characters and invisible characters escaped.
pub fn yaml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if crate::escape::is_hidden(c) && (c as u32) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if crate::escape::is_hidden(c) => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `s` as a glob matching it literally; a byte sequence that is not UTF-8
/// (U+FFFD in the lossy text) becomes `*`.
fn glob_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\u{fffd}' => {
                if !out.ends_with('*') || out.ends_with("\\*") {
                    out.push('*');
                }
            }
            '*' | '?' | '{' | '}' | ',' | '\\' | '$' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// How paths are named: by the variable whose value they are under
/// (the longest: `${WORKSPACE}` inside `${HOME}` is the workspace).
struct Namer {
    vars: Vec<(&'static str, String)>,
}

impl Namer {
    fn new(v: &crate::policy::Vars) -> Namer {
        let text = |p: &Path| String::from_utf8_lossy(p.as_os_str().as_bytes()).into_owned();
        let mut vars: Vec<(&'static str, String)> = vec![
            ("WORKSPACE", text(&v.workspace)),
            ("TMPDIR", text(&v.tmpdir)),
            ("HOME", text(&v.home)),
        ];
        vars.retain(|(_, value)| {
            value != "/" && value.starts_with('/') && !value.contains('\u{fffd}')
        });
        vars.sort_by_key(|v| std::cmp::Reverse(v.1.len()));
        Namer { vars }
    }

    /// (variable, the rest after its value: empty or starting with `/`).
    fn split<'p>(&self, p: &'p str) -> Option<(&'static str, &'p str)> {
        self.vars.iter().find_map(|(name, value)| {
            let rest = p.strip_prefix(value.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((*name, rest))
        })
    }

    /// A glob matching exactly `p`, named by its variable.
    fn pattern(&self, p: &str) -> String {
        match self.split(p) {
            Some((var, rest)) => format!("${{{var}}}{}", glob_literal(rest)),
            None => glob_literal(p),
        }
    }

    /// `p` as an example writes it (variables expanded when it is loaded);
    /// `None` when it cannot be written (not UTF-8, or text that would be
    /// read as a variable or trimmed).
    fn example(&self, p: &str) -> Option<String> {
        if p.contains('\u{fffd}') || p.contains("${") || p.trim() != p || p.is_empty() {
            return None;
        }
        Some(match self.split(p) {
            Some((var, rest)) => format!("${{{var}}}{rest}"),
            None => p.to_string(),
        })
    }
}

fn lossy(p: &Path) -> String {
    String::from_utf8_lossy(p.as_os_str().as_bytes()).into_owned()
}

/// The bounded collapsing of file paths into globs:
///
/// 1. inside `${WORKSPACE}`, `${TMPDIR}` or `/tmp`: the whole directory
///    (`${WORKSPACE}/**`; the directory itself as itself);
/// 2. inside a toolchain directory under `${HOME}` ([`TOOLCHAIN_DIRS`], and
///    each `${HOME}/.cache/TOOL`): that whole directory;
/// 3. under `/proc` and `/dev/pts`, components of digits become `*`;
/// 4. any other path is allowed as itself, unless its directory has
///    [`Options::siblings`] or more distinct entries allowed: then `DIR/*`.
///
/// Never more than one level of a directory is collapsed by rule 4, and no
/// pattern reaches above the directory of a path that was recorded.
struct Collapse<'n> {
    namer: &'n Namer,
    siblings: usize,
}

/// A pattern with the recorded paths it stands for (in record order).
type Patterns = BTreeMap<String, Vec<String>>;

impl Collapse<'_> {
    /// A tree pattern for `p` by rules 1 and 2: (the pattern, its directory
    /// pattern when `p` is that directory itself).
    fn tree(&self, p: &str) -> Option<String> {
        let whole = |var: &str, dir_rest: &str, rest: &str| -> String {
            let dir = format!("${{{var}}}{}", glob_literal(dir_rest));
            if rest.len() == dir_rest.len() {
                dir
            } else {
                format!("{dir}/**")
            }
        };
        if let Some((var, rest)) = self.namer.split(p) {
            match var {
                "WORKSPACE" | "TMPDIR" => return Some(whole(var, "", rest)),
                "HOME" => {
                    let inside =
                        |d: &str| rest.len() == d.len() + 1 || rest[d.len() + 1..].starts_with('/');
                    for d in TOOLCHAIN_DIRS {
                        if rest.strip_prefix('/').is_some_and(|r| r.starts_with(d)) && inside(d) {
                            return Some(whole(var, &rest[..d.len() + 1], rest));
                        }
                    }
                    if let Some(r) = rest.strip_prefix("/.cache/") {
                        let tool = r.split('/').next().unwrap_or("");
                        if !tool.is_empty() {
                            let dir_len = "/.cache/".len() + tool.len();
                            return Some(whole(var, &rest[..dir_len], rest));
                        }
                    }
                }
                _ => {}
            }
        }
        for tmp in ["/tmp", "/var/tmp"] {
            if p == tmp {
                return Some(tmp.to_string());
            }
            if p.strip_prefix(tmp).is_some_and(|r| r.starts_with('/')) {
                return Some(format!("{tmp}/**"));
            }
        }
        None
    }

    /// (directory pattern, entry pattern) of `p` by rule 3, named by its
    /// variable.
    fn entry(&self, p: &str) -> (String, String) {
        let numbered = NUMBERED
            .iter()
            .any(|d| p.strip_prefix(d).is_some_and(|r| r.starts_with('/')));
        let (dir, name) = match p.rfind('/') {
            Some(0) => ("/".to_string(), &p[1..]),
            Some(i) => (p[..i].to_string(), &p[i + 1..]),
            None => (String::new(), p),
        };
        let digits = |c: &str| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit());
        let name_pat = if numbered && digits(name) {
            "*".to_string()
        } else {
            glob_literal(name)
        };
        let dir_pat = if numbered {
            dir.split('/')
                .map(|c| {
                    if digits(c) {
                        "*".to_string()
                    } else {
                        glob_literal(c)
                    }
                })
                .collect::<Vec<_>>()
                .join("/")
        } else {
            self.namer.pattern(&dir)
        };
        (dir_pat, name_pat)
    }

    fn collapse(&self, paths: &[String]) -> Patterns {
        let mut out: Patterns = BTreeMap::new();
        let mut by_dir: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for p in paths {
            if !p.starts_with('/') {
                // An object that is not a file: `pipe:[1234]` → `pipe:[*]`.
                let pat = match p.find(":[") {
                    Some(i) if p.ends_with(']') => format!("{}:[*]", glob_literal(&p[..i])),
                    _ => glob_literal(p),
                };
                out.entry(pat).or_default().push(p.clone());
                continue;
            }
            if let Some(t) = self.tree(p) {
                out.entry(t).or_default().push(p.clone());
                continue;
            }
            let (dir, name) = self.entry(p);
            by_dir
                .entry(dir)
                .or_default()
                .entry(name)
                .or_default()
                .push(p.clone());
        }
        for (dir, names) in by_dir {
            let sep = if dir == "/" { "" } else { "/" };
            if names.len() >= self.siblings {
                let all = out.entry(format!("{dir}{sep}*")).or_default();
                for (_, ps) in names {
                    all.extend(ps);
                }
            } else {
                for (name, ps) in names {
                    out.entry(format!("{dir}{sep}{name}"))
                        .or_default()
                        .extend(ps);
                }
            }
        }
        out
    }
}

/// The open rules' classes: reads, writes (opens that may change the
/// file), and each other operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum OpenClass {
    Read,
    Write,
    Op(FileOp),
}

fn open_class(o: &crate::action::OpenAction) -> OpenClass {
    let writes = Access::WRITE | Access::CREATE | Access::TRUNCATE | Access::APPEND;
    match o.op {
        FileOp::Open if o.access.intersects(writes) => OpenClass::Write,
        FileOp::Open => OpenClass::Read,
        op => OpenClass::Op(op),
    }
}

/// A program's hashes seen, whether some exec of it had no hash, and its
/// execs.
type Program<'r> = (BTreeSet<[u8; 32]>, bool, Vec<&'r crate::action::ExecAction>);

/// What was collected from the run.
#[derive(Default)]
struct Seen<'r> {
    /// Program path (lossy text) → (hashes seen, whether some exec had no
    /// hash, example execs).
    programs: BTreeMap<String, Program<'r>>,
    opens: BTreeMap<OpenClass, Vec<&'r crate::action::OpenAction>>,
    connects: Vec<&'r ConnectAction>,
    /// Actions the base policy blocks or escalates by a rule.
    held_by_base: Vec<(String, Verdict, String)>,
    skipped_refused: u64,
    skipped_builtin: u64,
    covered_by_base: u64,
    code_maps: u64,
    /// Tool calls (asked about through the gate and escalated): tool rules
    /// are not suggested.
    tools: u64,
}

impl<'r> Seen<'r> {
    fn add_exec(&mut self, x: &'r crate::action::ExecAction) {
        let e = self.programs.entry(lossy(&x.path)).or_default();
        match x.sha256 {
            Some(h) => {
                e.0.insert(h);
            }
            None => e.1 = true,
        }
        e.2.push(x);
    }
}

/// A suggested policy.
pub struct Suggestion {
    pub yaml: String,
    /// Rules written.
    pub rules: usize,
    /// Actions the base policy refuses by a rule, which no added rule can
    /// allow.
    pub held_by_base: usize,
}

/// Suggests a policy for `run` (see the module documentation). `base`:
/// (the base policy, loaded with the run's variables, and how to name it).
pub fn suggest(
    run: &RecordedRun,
    vars: &RunVars,
    ledger_name: &str,
    base: Option<(&Judge, &str)>,
    opts: Options,
) -> Suggestion {
    let namer = Namer::new(&vars.vars());
    let judge = base.map(|(j, _)| j);
    let mut seen = Seen::default();
    for (_, r) in &run.records {
        if r.record != RecordKind::Decision {
            continue;
        }
        if replay::is_builtin(r.rule.as_deref()) {
            seen.skipped_builtin += 1;
            continue;
        }
        if r.outcome != Some(Outcome::Allowed) {
            seen.skipped_refused += 1;
            continue;
        }
        if replay::is_code_map(r) {
            // Mappings are refused only by block and escalate rules; the
            // exec default does not reach them.
            seen.code_maps += 1;
            if let Some(j) = &judge {
                note_base(&mut seen, j, r);
            }
            continue;
        }
        if let Some(j) = &judge {
            if note_base(&mut seen, j, r) {
                continue;
            }
        }
        match &r.action {
            Action::Exec(x) => seen.add_exec(x),
            Action::Open(o) => seen.opens.entry(open_class(o)).or_default().push(o),
            Action::Connect(c) => seen.connects.push(c),
            Action::Tool(_) => seen.tools += 1,
        }
        if let Some(Action::Exec(x)) = &r.loaded {
            seen.add_exec(x);
        }
    }
    let mut w = Writer {
        out: String::new(),
        rules: 0,
        namer: &namer,
        opts,
    };
    w.header(run, ledger_name, base.map(|(_, n)| n), &seen);
    w.execs(&seen);
    w.opens(&seen);
    w.connects(&seen);
    if w.rules == 0 {
        w.out.push_str("  []\n");
    }
    Suggestion {
        yaml: w.out,
        rules: w.rules,
        held_by_base: seen.held_by_base.len(),
    }
}

/// Whether the base policy decides `r` already: it allows it (nothing to
/// add), or refuses it by a rule (an added allow rule cannot change that:
/// noted). `false` when only its default refuses it.
fn note_base<'r>(seen: &mut Seen<'r>, judge: &Judge, r: &'r Recorded) -> bool {
    let Some(d) = judge.judge(r) else {
        return true;
    };
    match (d.verdict, &d.rule) {
        (Verdict::Allow, _) => {
            seen.covered_by_base += 1;
            true
        }
        (v, Some(rule)) => {
            seen.held_by_base
                .push((replay::describe(r), v, rule.clone()));
            true
        }
        (_, None) => false,
    }
}

struct Writer<'n> {
    out: String,
    rules: usize,
    namer: &'n Namer,
    opts: Options,
}

/// A comment line's text: escaped, on one line.
fn comment(s: &str) -> String {
    crate::escape::text(s)
}

impl Writer<'_> {
    fn line(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn header(&mut self, run: &RecordedRun, ledger: &str, base: Option<&str>, seen: &Seen<'_>) {
        let h = &run.header;
        let command: Vec<String> = h.command.iter().map(|a| crate::escape::os(a)).collect();
        let mut head = vec![
            format!(
                "Suggested by `lexecon policy suggest` from the ledger {}, run {} (seq {}).",
                comment(ledger),
                h.run_id,
                h.seq
            ),
            format!("The run: {}", command.join(" ")),
            format!(
                "in {}, policy {} ({} mode).",
                crate::escape::path(&h.cwd),
                h.policy_path
                    .as_deref()
                    .map(crate::escape::path)
                    .unwrap_or_else(|| "not named".into()),
                h.mode
            ),
        ];
        match base {
            Some(b) => head.push(format!(
                "Only additions to {}: paste the rules below into its `rules:` list.",
                comment(b)
            )),
            None => head.push(
                "Everything else is blocked: the defaults are `block`, and each rule allows what the run did."
                    .into(),
            ),
        }
        head.push(format!(
            "Paths are collapsed into globs as docs/policy.md says (\"From observe mode to a policy\"): the workspace, {}, /tmp and the toolchain directories under ${{HOME}} whole; {} or more entries of one directory as DIR/*.",
            "${TMPDIR}", self.opts.siblings
        ));
        head.push(format!(
            "Left out: {} actions that were refused, {} decisions of built-in rules; {} code mappings need no rule.",
            seen.skipped_refused, seen.skipped_builtin, seen.code_maps
        ));
        if seen.tools > 0 {
            head.push(format!(
                "Not suggested: {} tool calls (write `tool:` rules for them by hand; see docs/policy.md).",
                seen.tools
            ));
        }
        if base.is_some() {
            head.push(format!(
                "{} actions are allowed by the base policy already.",
                seen.covered_by_base
            ));
        }
        for l in head {
            self.line(&format!("# {l}"));
        }
        if !seen.held_by_base.is_empty() {
            self.line(&format!(
                "# {} actions are refused by rules of the base policy, which no added rule can allow (block and escalate win over allow); change those rules if the run needs them:",
                seen.held_by_base.len()
            ));
            let mut listed: BTreeMap<(String, &str), (usize, String)> = BTreeMap::new();
            for (what, v, rule) in &seen.held_by_base {
                let e = listed
                    .entry((rule.clone(), v.as_str()))
                    .or_insert((0, what.clone()));
                e.0 += 1;
            }
            for ((rule, v), (n, first)) in listed {
                self.line(&format!(
                    "#   rule {} ({v}): {n} actions, e.g. {}",
                    comment(&rule),
                    comment(&first)
                ));
            }
        }
        self.line("version: 1");
        if base.is_none() {
            self.line("mode: enforce");
            self.line(&format!(
                "description: {}",
                yaml_str(&format!(
                    "Allows what run {} did.",
                    &h.run_id[..8.min(h.run_id.len())]
                ))
            ));
            self.line("defaults:");
            self.line("  exec: block");
            self.line("  open: block");
            self.line("  connect: block");
        }
        self.line("rules:");
    }

    fn section(&mut self, title: &str) {
        self.line(&format!("  # {} {title}", "-".repeat(64)));
    }

    fn rule_head(&mut self, id: &str, kind: &str) {
        self.rules += 1;
        self.line(&format!("  - id: {id}"));
        self.line(&format!("    {kind}:"));
    }

    fn list(&mut self, indent: usize, key: &str, items: &[String]) {
        let pad = " ".repeat(indent);
        self.line(&format!("{pad}{key}:"));
        for i in items {
            self.line(&format!("{pad}  - {}", yaml_str(i)));
        }
    }

    fn rule_tail(&mut self, reason: &str, examples: &[String], omitted: usize) {
        self.line("    decision: allow");
        self.line(&format!("    reason: {}", yaml_str(reason)));
        if !examples.is_empty() {
            self.line("    examples:");
            self.line("      match:");
            for e in examples {
                self.line(&format!("        - {e}"));
            }
        }
        if omitted > 0 {
            self.line(&format!(
                "    # and {omitted} more recorded {} like these",
                if omitted == 1 { "action" } else { "actions" }
            ));
        }
        self.line("");
    }

    fn exec_example(&self, x: &crate::action::ExecAction) -> Option<String> {
        let program = self.namer.example(&lossy(&x.path))?;
        let mut words = Vec::new();
        for a in &x.argv {
            let s = a.to_str()?;
            if s.contains("${") {
                return None;
            }
            words.push(yaml_str(s));
        }
        if words.is_empty() {
            return None;
        }
        let cwd = self.namer.example(&lossy(&x.cwd))?;
        Some(format!(
            "{{exec: [{}], program: {}, cwd: {}}}",
            words.join(", "),
            yaml_str(&program),
            yaml_str(&cwd)
        ))
    }

    fn execs(&mut self, seen: &Seen<'_>) {
        if seen.programs.is_empty() {
            return;
        }
        self.section("programs");
        if self.opts.sha256 {
            for (i, (path, (hashes, unhashed, xs))) in seen.programs.iter().enumerate() {
                if hashes.is_empty() {
                    self.line(&format!(
                        "  # {} ran with no content hash recorded: not allowed by hash",
                        comment(path)
                    ));
                    continue;
                }
                self.rule_head(&format!("learned-exec-{}", i + 1), "exec");
                self.list(6, "program", &[self.namer.pattern(path)]);
                let hs: Vec<String> = hashes.iter().map(hex::encode).collect();
                self.list(6, "sha256", &hs);
                if *unhashed {
                    self.line("    # some of its runs had no content hash recorded: those are not allowed");
                }
                let mut ex = Vec::new();
                for x in xs.iter().filter(|x| x.sha256.is_some()) {
                    if ex.len() >= self.opts.examples {
                        break;
                    }
                    if let Some(e) = self.exec_example(x) {
                        let e = format!(
                            "{}, sha256: {}}}",
                            e.trim_end_matches('}'),
                            yaml_str(&hex::encode(x.sha256.unwrap_or_default()))
                        );
                        if !ex.contains(&e) {
                            ex.push(e);
                        }
                    }
                }
                self.rule_tail(
                    "a program the recorded run ran, with the content it had",
                    &ex,
                    0,
                );
            }
            return;
        }
        self.rule_head("learned-exec", "exec");
        let patterns: Vec<String> = seen
            .programs
            .keys()
            .map(|p| self.namer.pattern(p))
            .collect();
        self.list(6, "program", &patterns);
        let mut ex = Vec::new();
        for (_, _, xs) in seen.programs.values() {
            if ex.len() >= self.opts.examples {
                break;
            }
            if let Some(e) = xs.iter().find_map(|x| self.exec_example(x)) {
                ex.push(e);
            }
        }
        let total: usize = seen.programs.values().map(|v| v.2.len()).sum();
        self.rule_tail(
            "a program the recorded run ran",
            &ex,
            total.saturating_sub(ex.len()),
        );
    }

    fn open_example(&self, o: &crate::action::OpenAction) -> Option<String> {
        let p = self.namer.example(&lossy(&o.path))?;
        if o.access.is_empty() {
            return None;
        }
        Some(format!(
            "{{open: {}, access: [{}], op: {}}}",
            yaml_str(&p),
            o.access.names().join(", "),
            o.op.as_str()
        ))
    }

    fn opens(&mut self, seen: &Seen<'_>) {
        if seen.opens.is_empty() {
            return;
        }
        self.section("files");
        let collapse = Collapse {
            namer: self.namer,
            siblings: self.opts.siblings,
        };
        for (class, os) in &seen.opens {
            let paths: Vec<String> = os.iter().map(|o| lossy(&o.path)).collect();
            let patterns = collapse.collapse(&paths);
            let (id, reason) = match class {
                OpenClass::Read => (
                    "learned-read".to_string(),
                    "read by the recorded run".to_string(),
                ),
                OpenClass::Write => (
                    "learned-write".to_string(),
                    "opened for writing by the recorded run".to_string(),
                ),
                OpenClass::Op(op) => (
                    format!("learned-{}", op.as_str()),
                    format!("the recorded run did this ({})", op.as_str()),
                ),
            };
            self.rule_head(&id, "open");
            let op = match class {
                OpenClass::Read | OpenClass::Write => FileOp::Open,
                OpenClass::Op(op) => *op,
            };
            self.line(&format!("      op: [{}]", op.as_str()));
            let pats: Vec<String> = patterns.keys().cloned().collect();
            self.list(6, "path", &pats);
            if *class == OpenClass::Read {
                self.line("      unless:");
                self.line("        access: [write, create, truncate, append]");
            }
            let mut ex = Vec::new();
            for ps in patterns.values() {
                if ex.len() >= self.opts.examples {
                    break;
                }
                let e = ps.iter().find_map(|p| {
                    os.iter()
                        .filter(|o| lossy(&o.path) == *p)
                        .find_map(|o| self.open_example(o))
                });
                if let Some(e) = e {
                    ex.push(e);
                }
            }
            self.rule_tail(&reason, &ex, os.len().saturating_sub(ex.len()));
        }
    }

    fn connects(&mut self, seen: &Seen<'_>) {
        if seen.connects.is_empty() {
            return;
        }
        self.section("network");
        // One rule per destination: (op, protocol, what it names).
        let mut dests: BTreeMap<(String, &str, String), Vec<&ConnectAction>> = BTreeMap::new();
        let mut unnamed = 0usize;
        let mut bad_names = 0usize;
        for c in &seen.connects {
            let names: Vec<&String> = c.names.iter().filter(|n| host_ok(n)).collect();
            let key = match &c.target {
                NetTarget::Ip { addr, port, .. } if names.is_empty() => {
                    format!("address: [{}], port: [{port}]", yaml_str(&addr.to_string()))
                }
                NetTarget::Ip { port, .. } => format!(
                    "host: [{}], port: [{port}]",
                    names
                        .iter()
                        .map(|n| yaml_str(&glob_literal(n)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                NetTarget::UnixPath(p) => {
                    format!("path: [{}]", yaml_str(&self.namer.pattern(&lossy(p))))
                }
                NetTarget::UnixAbstract(n) => format!(
                    "path: [{}]",
                    yaml_str(&format!("@{}", glob_literal(&String::from_utf8_lossy(n))))
                ),
                NetTarget::Name(n) if host_ok(n) => {
                    format!("host: [{}]", yaml_str(&glob_literal(n)))
                }
                NetTarget::Name(_) => {
                    bad_names += 1;
                    continue;
                }
                NetTarget::UnixUnnamed => {
                    unnamed += 1;
                    continue;
                }
            };
            dests
                .entry((c.op.as_str().to_string(), c.protocol.as_str(), key))
                .or_default()
                .push(c);
        }
        if bad_names > 0 {
            self.line(&format!(
                "  # {bad_names} DNS queries for names a `host:` pattern cannot hold (with a space, `/` or `:`, an address, or not UTF-8): not allowed"
            ));
        }
        if unnamed > 0 {
            self.line(&format!(
                "  # {unnamed} binds of unnamed local sockets: no rule can name them, allow them with a `connect: {{protocol: unix, op: [bind]}}` rule if the run needs them"
            ));
        }
        for (i, ((op, protocol, key), cs)) in dests.iter().enumerate() {
            self.rules += 1;
            self.line(&format!("  - id: learned-connect-{}", i + 1));
            self.line(&format!(
                "    connect: {{{key}, protocol: {protocol}, op: [{op}]}}"
            ));
            let ex: Vec<String> = cs
                .iter()
                .filter_map(|c| connect_example(self.namer, c))
                .take(1)
                .collect();
            let reason = match op.as_str() {
                "resolve" => "a name the recorded run looked up",
                "bind" | "listen" => "an address the recorded run took",
                _ => "a destination the recorded run reached",
            };
            self.rule_tail(reason, &ex, cs.len().saturating_sub(ex.len()));
        }
    }
}

/// Whether a host name can be written in a `host:` pattern.
fn host_ok(n: &str) -> bool {
    !n.is_empty()
        && !n.contains(['/', ':', ' ', '\u{fffd}'])
        && n.parse::<std::net::IpAddr>().is_err()
        && !n.chars().any(|c| c.is_control())
}

fn connect_example(namer: &Namer, c: &ConnectAction) -> Option<String> {
    let target = match &c.target {
        NetTarget::Ip { addr, port, .. } => match addr {
            std::net::IpAddr::V4(a) => format!("{a}:{port}"),
            std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
        },
        // Connect examples are not variable-expanded: the path as the
        // examples' values of the variables make it.
        NetTarget::UnixPath(p) => {
            let e = namer.example(&lossy(p))?;
            let v = crate::policy::example_vars();
            let mut out = e.clone();
            for (name, value) in [
                ("WORKSPACE", &v.workspace),
                ("TMPDIR", &v.tmpdir),
                ("HOME", &v.home),
            ] {
                if let Some(rest) = e.strip_prefix(&format!("${{{name}}}")) {
                    out = format!("{}{rest}", value.display());
                }
            }
            out
        }
        NetTarget::UnixAbstract(n) => {
            let s = std::str::from_utf8(n).ok()?;
            if s.contains("${") || s.trim() != s {
                return None;
            }
            format!("@{s}")
        }
        NetTarget::Name(n) if host_ok(n) => n.clone(),
        NetTarget::Name(_) | NetTarget::UnixUnnamed => return None,
    };
    let mut e = format!(
        "{{connect: {}, op: {}, protocol: {}",
        yaml_str(&target),
        c.op.as_str(),
        c.protocol.as_str()
    );
    if !c.names.is_empty() && c.op != NetOp::Resolve {
        let _ = write!(
            e,
            ", names: [{}]",
            c.names
                .iter()
                .map(|n| yaml_str(n))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    e.push('}');
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn namer() -> Namer {
        Namer::new(&crate::policy::Vars {
            home: PathBuf::from("/home/u"),
            workspace: PathBuf::from("/home/u/ws"),
            tmpdir: PathBuf::from("/tmp"),
        })
    }

    fn collapse(paths: &[&str]) -> Vec<String> {
        let n = namer();
        let c = Collapse {
            namer: &n,
            siblings: 3,
        };
        let ps: Vec<String> = paths.iter().map(|s| s.to_string()).collect();
        c.collapse(&ps).into_keys().collect()
    }

    #[test]
    fn collapsing_follows_its_rules() {
        assert_eq!(
            collapse(&["/home/u/ws", "/home/u/ws/src/a.rs", "/home/u/ws/b"]),
            ["${WORKSPACE}", "${WORKSPACE}/**"]
        );
        assert_eq!(
            collapse(&["/tmp/cc1.s", "/var/tmp/x"]),
            ["${TMPDIR}/**", "/var/tmp/**"]
        );
        assert_eq!(
            collapse(&[
                "/home/u/.cargo/registry/x",
                "/home/u/.cache/pip/http/y",
                "/home/u/.cache/pip",
                "/home/u/.cargo"
            ]),
            [
                "${HOME}/.cache/pip",
                "${HOME}/.cache/pip/**",
                "${HOME}/.cargo",
                "${HOME}/.cargo/**"
            ]
        );
        // A name that only begins like a toolchain directory is not one.
        assert_eq!(collapse(&["/home/u/.cargofake"]), ["${HOME}/.cargofake"]);
        assert_eq!(
            collapse(&["/proc/123/status", "/proc/77/task/78/comm", "/dev/pts/4"]),
            ["/dev/pts/*", "/proc/*/status", "/proc/*/task/*/comm"]
        );
        assert_eq!(collapse(&["pipe:[1234]", "pipe:[99]"]), ["pipe:[*]"]);
        // Below the threshold one by one, from it the directory's entries.
        assert_eq!(collapse(&["/etc/a", "/etc/b"]), ["/etc/a", "/etc/b"]);
        assert_eq!(
            collapse(&["/etc/a", "/etc/b", "/etc/c", "/etc/ssl/x"]),
            ["/etc/*", "/etc/ssl/x"]
        );
        assert_eq!(collapse(&["/x"]), ["/x"]);
    }

    #[test]
    fn paths_are_quoted_and_escaped() {
        let n = namer();
        assert_eq!(
            n.pattern("/opt/a b/c*d{e},f\\g$h"),
            "/opt/a b/c\\*d\\{e\\}\\,f\\\\g\\$h"
        );
        assert_eq!(
            yaml_str("a \"q\" \\ \n\t\u{1b}\u{200b}"),
            "\"a \\\"q\\\" \\\\ \\n\\t\\x1b\\u200b\""
        );
        // Bytes that are not UTF-8 are matched by `*`, and given no example.
        let lossy = String::from_utf8_lossy(b"/opt/caf\xe9/x\xff\xfe").into_owned();
        assert_eq!(n.pattern(&lossy), "/opt/caf*/x*");
        assert_eq!(n.example(&lossy), None);
        assert_eq!(n.example("/home/u/ws/x"), Some("${WORKSPACE}/x".into()));
        assert_eq!(n.example("/home/u/x"), Some("${HOME}/x".into()));
        assert_eq!(n.example("/opt/${x}"), None);
    }

    fn recorded(seq: u64, action: Action) -> Recorded {
        Recorded {
            record: RecordKind::Decision,
            seq,
            time_ns: 1,
            pid: 1,
            ppid: 0,
            action,
            loaded: None,
            verdict: Verdict::Allow,
            outcome: Some(Outcome::Allowed),
            stage: Some(crate::ledger::Stage::Request),
            rule: None,
            matched: vec![],
            reason: "r".into(),
            mode: Some(crate::action::Mode::Observe),
            identity: None,
            note: None,
            syscall: None,
            request: None,
        }
    }

    /// Odd names (spaces, quotes, glob characters, `$`, a newline, bytes
    /// that are not UTF-8) and every kind of action: the suggestion loads,
    /// its examples hold, and it allows every recorded action and not a
    /// neighbour of it.
    #[test]
    fn a_suggestion_loads_and_allows_exactly_what_was_recorded() {
        use crate::action::{ConnectAction, ExecAction, NetFamily, OpDetail, OpenAction, Protocol};
        use std::ffi::{OsStr, OsString};
        let bytes = |b: &[u8]| OsStr::from_bytes(b).to_os_string();
        let open = |p: OsString, access: Access, op: FileOp| {
            Action::Open(OpenAction {
                path: PathBuf::from(p),
                access,
                cwd: "/home/u/ws".into(),
                process: None,
                op,
                detail: (op == FileOp::Chmod).then_some(OpDetail::Mode(0o600)),
            })
        };
        let connect = |op: NetOp, protocol: Protocol, target: NetTarget, names: &[&str]| {
            Action::Connect(ConnectAction {
                op,
                protocol,
                target,
                names: names.iter().map(|n| n.to_string()).collect(),
                process: None,
            })
        };
        let actions = vec![
            Action::Exec(ExecAction {
                path: "/opt/my tools/run \"it\"".into(),
                argv: vec!["run".into(), bytes(b"\xff"), "${HOME}".into()],
                cwd: "/home/u/ws".into(),
                sha256: Some([1; 32]),
            }),
            Action::Exec(ExecAction {
                path: PathBuf::from(bytes(b"/opt/caf\xe9/bin")),
                argv: vec!["bin".into()],
                cwd: "/".into(),
                sha256: None,
            }),
            open("/opt/a b/c*d{e},f\\g$h".into(), Access::READ, FileOp::Open),
            open("/opt/new\nline".into(), Access::READ, FileOp::Open),
            open(
                bytes(b"/opt/x\xff\xfe"),
                Access::READ | Access::DIRECTORY,
                FileOp::Open,
            ),
            open(
                "/home/u/ws/src/a.rs".into(),
                Access::WRITE | Access::CREATE,
                FileOp::Open,
            ),
            open(
                "/home/u/ws/old".into(),
                Access::WRITE | Access::TRUNCATE,
                FileOp::Delete,
            ),
            open("/home/u/ws/f".into(), Access::WRITE, FileOp::Chmod),
            open("/home/u/.cache/pip/x".into(), Access::READ, FileOp::Open),
            open("pipe:[77]".into(), Access::READ, FileOp::Open),
            connect(
                NetOp::Connect,
                Protocol::Tcp,
                NetTarget::Ip {
                    family: NetFamily::Inet,
                    addr: "151.101.0.223".parse().unwrap(),
                    port: 443,
                },
                &["pypi.org"],
            ),
            connect(
                NetOp::Send,
                Protocol::Udp,
                NetTarget::Ip {
                    family: NetFamily::Inet6,
                    addr: "::1".parse().unwrap(),
                    port: 53,
                },
                &[],
            ),
            connect(
                NetOp::Resolve,
                Protocol::Udp,
                NetTarget::Name("pypi.org".into()),
                &[],
            ),
            connect(
                NetOp::Connect,
                Protocol::Unix,
                NetTarget::UnixPath("/home/u/ws/s ock".into()),
                &[],
            ),
            connect(
                NetOp::Connect,
                Protocol::Unix,
                NetTarget::UnixAbstract(b"/tmp/.X11-unix/X0".to_vec()),
                &[],
            ),
        ];
        let header = crate::ledger::decode::RunRecord {
            seq: 0,
            run_id: "0123456789abcdef0123456789abcdef".into(),
            time_ns: 1,
            version: "v".into(),
            command: vec!["agent".into(), "\n$(x)".into()],
            cwd: "/home/u/ws".into(),
            workspace: Some("/home/u/ws".into()),
            policy_sha256: [0; 32],
            policy_path: None,
            mode: crate::action::Mode::Observe,
            ci: BTreeMap::new(),
            vars: Some(BTreeMap::from([
                ("HOME".to_string(), OsString::from("/home/u")),
                ("TMPDIR".to_string(), OsString::from("/tmp")),
            ])),
            policy_layers: Vec::new(),
        };
        let run = RecordedRun {
            header,
            header_line: 1,
            records: actions
                .iter()
                .enumerate()
                .map(|(i, a)| (i as u64 + 2, recorded(i as u64 + 1, a.clone())))
                .collect(),
            undecodable: vec![],
        };
        let vars = RunVars::of(&run.header, &BTreeMap::new()).unwrap();
        for sha256 in [false, true] {
            let opts = Options {
                sha256,
                ..Options::default()
            };
            let s = suggest(&run, &vars, "l\n.jsonl", None, opts);
            let policy = vars
                .load(&s.yaml, "suggested.yaml")
                .unwrap_or_else(|e| panic!("{e}\n{}", s.yaml));
            // The header comment is comment lines only.
            assert!(
                s.yaml.lines().take(6).all(|l| l.starts_with('#')),
                "{}",
                s.yaml
            );
            let judge = Judge::new(policy);
            for (_, r) in &run.records {
                let d = judge.judge(r).unwrap();
                let unhashed = matches!(&r.action, Action::Exec(x) if x.sha256.is_none());
                if sha256 && unhashed {
                    assert_eq!(d.verdict, Verdict::Block, "{:?}", r.action);
                } else {
                    assert_eq!(d.verdict, Verdict::Allow, "{:?}\n{}", r.action, s.yaml);
                }
            }
            // Neighbours are not allowed.
            let mut near = recorded(
                99,
                open("/opt/a b/c*d{e},f\\g$i".into(), Access::READ, FileOp::Open),
            );
            assert_eq!(judge.judge(&near).unwrap().verdict, Verdict::Block);
            near.action = open("/opt/a b/c*d{e},f\\g$h".into(), Access::WRITE, FileOp::Open);
            assert_eq!(judge.judge(&near).unwrap().verdict, Verdict::Block);
            near.action = open("/opt/new\nline".into(), Access::WRITE, FileOp::Delete);
            assert_eq!(judge.judge(&near).unwrap().verdict, Verdict::Block);
            near.action = connect(
                NetOp::Connect,
                Protocol::Tcp,
                NetTarget::Ip {
                    family: NetFamily::Inet,
                    addr: "151.101.0.223".parse().unwrap(),
                    port: 80,
                },
                &["pypi.org"],
            );
            assert_eq!(judge.judge(&near).unwrap().verdict, Verdict::Block);
        }
    }
}
