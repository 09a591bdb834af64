//! Globs: the pattern language of paths, names and arguments, checked at
//! load, and translated to anchored byte-level automata when first matched.
//!
//! Semantics (the reference is `docs/policy.md`):
//! - `*` matches any run of characters except `/` (possibly empty);
//! - `?` matches exactly one character except `/`;
//! - `**` must be a whole path component: `a/**/b` matches `a/b`, `a/x/b`,
//!   `a/x/y/b`; a trailing `a/**` matches everything strictly inside `a` (not
//!   `a` itself); a leading `**/b` matches `b` at any depth; `**` alone matches
//!   anything;
//! - `{x,y,z}` matches any of the alternatives, which are globs themselves
//!   (braces nest);
//! - `${HOME}`, `${WORKSPACE}`, `${TMPDIR}` are replaced by their values at load
//!   time, taken literally (a `*` in a directory name is not a wildcard);
//! - `\c` matches the character `c` literally; every other character,
//!   including `[`, `]` and `.`, matches itself.
//!
//! The whole subject must match (patterns are anchored at both ends).

use std::cell::RefCell;
use std::collections::BTreeMap;

use std::sync::OnceLock;

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input};
use regex_syntax::hir::{Class, ClassBytes, ClassBytesRange, Hir, Look, Repetition};

use super::{Env, Vars};

/// A problem with one pattern: what, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PatternError {
    pub message: String,
    pub hint: Option<String>,
}

impl PatternError {
    fn new(message: impl Into<String>, hint: Option<&str>) -> PatternError {
        PatternError {
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }
}

/// What variable references expand to while a policy loads: the fixed
/// variables, and the environment that `${env.NAME:-DEFAULT}` reads (`None`:
/// every environment variable is taken as unset, so defaults apply, as in the
/// pass that checks examples). Records every environment variable used and
/// the value it expanded to (for the policy hash).
pub(crate) struct Scope<'a> {
    pub vars: &'a Vars,
    env: Option<&'a Env>,
    used: RefCell<BTreeMap<String, String>>,
}

/// How deeply `${env.A:-${env.B:-…}}` defaults may nest.
const MAX_ENV_NESTING: usize = 8;

impl<'a> Scope<'a> {
    pub fn new(vars: &'a Vars, env: Option<&'a Env>) -> Scope<'a> {
        Scope {
            vars,
            env,
            used: RefCell::new(BTreeMap::new()),
        }
    }

    /// The environment variables referenced so far, with their values.
    pub fn used(&self) -> BTreeMap<String, String> {
        self.used.borrow().clone()
    }

    /// The value of the reference `${inner}` in `pattern`.
    fn value(&self, inner: &str, pattern: &str, depth: usize) -> Result<String, PatternError> {
        if let Some(v) = self.vars.get(inner) {
            return Ok(v.to_string_lossy().into_owned());
        }
        let Some(spec) = inner.strip_prefix("env.") else {
            return Err(PatternError::new(
                format!("unknown variable '${{{inner}}}'"),
                Some("the variables are ${HOME}, ${WORKSPACE}, ${TMPDIR} and ${env.NAME:-DEFAULT}"),
            ));
        };
        let (name, default) = match spec.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (spec, None),
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(PatternError::new(
                format!("'{name}' in '${{{inner}}}' is not an environment variable name"),
                Some("write ${env.NAME:-DEFAULT} with NAME of letters, digits and '_'"),
            ));
        }
        let Some(default) = default.filter(|d| !d.is_empty()) else {
            return Err(PatternError::new(
                format!("'${{{inner}}}' has no default; an unset or empty variable would leave the pattern undefined"),
                Some(&format!("write ${{env.{name}:-DEFAULT}}, e.g. ${{env.{name}:-${{HOME}}/…}}")),
            ));
        };
        if depth >= MAX_ENV_NESTING {
            return Err(PatternError::new(
                format!("defaults of environment variables nested deeper than {MAX_ENV_NESTING} levels in '{pattern}'"),
                None,
            ));
        }
        // `/dev/null` is how a file a variable names is switched off
        // (`GIT_CONFIG_GLOBAL=/dev/null`): it names no configuration, and a
        // rule about that file must not make /dev/null itself refused. The
        // default is used, as for an unset variable.
        let set = self
            .env
            .and_then(|e| e.get(name))
            .filter(|v| !v.is_empty() && v.as_os_str() != "/dev/null");
        let value = match set {
            Some(raw) => {
                let Some(text) = raw.to_str() else {
                    return Err(PatternError::new(
                        format!("environment variable {name} is not UTF-8"),
                        Some("give it a UTF-8 value, or unset it to use the default"),
                    ));
                };
                // A relative value is relative to where supervision starts,
                // as the programs started there read it.
                let joined = self.vars.workspace.join(text);
                let mut p = super::normalise_path(&joined);
                if self.env.is_some_and(Env::resolves_symlinks) {
                    if let Ok(c) = std::fs::canonicalize(&p) {
                        p = c;
                    }
                }
                let Some(s) = p.to_str() else {
                    return Err(PatternError::new(
                        format!("environment variable {name} resolves to a path that is not UTF-8"),
                        None,
                    ));
                };
                s.to_string()
            }
            None => {
                let d = expand_at(default, self, &|v| v.to_string(), depth + 1)?;
                if !d.starts_with('/') {
                    return Err(PatternError::new(
                        format!("the default of ${{env.{name}}} is '{d}', not an absolute path"),
                        Some("write an absolute default, e.g. ${HOME}/.cargo"),
                    ));
                }
                super::normalise_path(std::path::Path::new(&d))
                    .to_string_lossy()
                    .into_owned()
            }
        };
        if value == "/" {
            return Err(PatternError::new(
                format!("${{env.{name}}} is '/': its patterns would cover the whole filesystem"),
                Some(&format!(
                    "set {name} to the directory it names, or unset it to use the default"
                )),
            ));
        }
        self.used
            .borrow_mut()
            .insert(name.to_string(), value.clone());
        Ok(value)
    }
}

/// The index of the `}` that closes a reference whose text starts at `s`
/// (references nest in `${env.X:-${HOME}/x}`).
fn closing(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && b.get(i + 1) == Some(&b'{') {
            depth += 1;
            i += 2;
            continue;
        }
        if b[i] == b'}' {
            if depth == 0 {
                return Some(i);
            }
            depth -= 1;
        }
        i += 1;
    }
    None
}

/// Replace `${NAME}` by the variable's value. `escape` is applied to each
/// value (to keep it literal in the target language); the rest of the text is
/// kept unchanged. Returns the expanded string.
pub(crate) fn expand(
    pattern: &str,
    scope: &Scope,
    escape: &dyn Fn(&str) -> String,
) -> Result<String, PatternError> {
    expand_at(pattern, scope, escape, 0)
}

fn expand_at(
    pattern: &str,
    scope: &Scope,
    escape: &dyn Fn(&str) -> String,
    depth: usize,
) -> Result<String, PatternError> {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(pos) = rest.find("${") {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let Some(end) = closing(after) else {
            return Err(PatternError::new(
                format!("unclosed variable reference in '{pattern}'"),
                Some("write ${HOME}, ${WORKSPACE}, ${TMPDIR} or ${env.NAME:-DEFAULT}"),
            ));
        };
        let value = scope.value(&after[..end], pattern, depth)?;
        rest = &after[end + 1..];
        // `${WORKSPACE}/x` with WORKSPACE=/ is `/x`, not `//x`.
        let value = match value.strip_suffix('/') {
            Some(trimmed) if rest.starts_with('/') => trimmed,
            _ => &value,
        };
        out.push_str(&escape(value));
    }
    out.push_str(rest);
    Ok(out)
}

/// Escape a string so that the glob compiler takes it literally.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '{' | '}' | ',' | '\\' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A checked glob: its expanded text (translated when first matched), its
/// shape and, when the pattern has no wildcard at all, the literal text it
/// matches.
#[derive(Debug, Clone)]
pub(crate) struct CompiledGlob {
    /// The pattern after variable expansion (values escaped): what
    /// [`hir_of`] translates when the pattern is first matched.
    pub expanded: String,
    /// How large its automaton may be, in characters of the pattern after
    /// variable expansion, a `?` counting as 8 (see [`COMPILE_AT_LOAD_ABOVE`]).
    pub weight: usize,
    pub literal: Option<String>,
    /// The literal text before the first wildcard or brace (the whole text
    /// for a literal pattern): every match starts with it.
    pub prefix: String,
    /// `Some(dir)` when the pattern is exactly `dir/**` with `dir` literal.
    pub subtree: Option<String>,
}

/// Check one glob (variables expanded first) and work out its shape; the
/// expression itself is built when it is first matched ([`hir_of`]).
pub(crate) fn compile(pattern: &str, scope: &Scope) -> Result<CompiledGlob, PatternError> {
    let expanded = expand(pattern, scope, &glob_escape)?;
    let shape = translate(pattern, &expanded, &mut ())?;
    Ok(CompiledGlob { expanded, ..shape })
}

/// The expression of a glob that [`compile`] accepted (`expanded` is its
/// `expanded`); `None` only if it was not such a glob.
fn hir_of(expanded: &str) -> Option<Hir> {
    let mut seq = HirSeq::default();
    translate(expanded, expanded, &mut seq).ok()?;
    Some(seq.finish())
}

/// What the translation of a glob writes, in order.
trait Emit {
    /// A literal character.
    fn lit(&mut self, c: char);
    /// `**/`: any number of whole components, each with its `/`.
    fn dirs(&mut self);
    /// `**` elsewhere: at least `min` characters, `/` included.
    fn any(&mut self, min: u32);
    /// `*`: any run of characters other than `/`.
    fn star(&mut self);
    /// `?`: one character other than `/`.
    fn one(&mut self);
    /// `{`, `,` and `}`.
    fn open(&mut self);
    fn alternative(&mut self);
    fn close(&mut self);
}

/// Checking only.
impl Emit for () {
    fn lit(&mut self, _: char) {}
    fn dirs(&mut self) {}
    fn any(&mut self, _: u32) {}
    fn star(&mut self) {}
    fn one(&mut self) {}
    fn open(&mut self) {}
    fn alternative(&mut self) {}
    fn close(&mut self) {}
}

impl Emit for HirSeq {
    fn lit(&mut self, c: char) {
        self.text.push(c);
    }
    fn dirs(&mut self) {
        self.push(Hir::repetition(Repetition {
            min: 0,
            max: Some(1),
            greedy: true,
            sub: Box::new(Hir::concat(vec![any_bytes(0), Hir::literal(*b"/")])),
        }));
    }
    fn any(&mut self, min: u32) {
        self.push(any_bytes(min));
    }
    fn star(&mut self) {
        self.push(Hir::repetition(Repetition {
            min: 0,
            max: None,
            greedy: true,
            sub: Box::new(not_slash_byte()),
        }));
    }
    fn one(&mut self) {
        self.push(one_char());
    }
    fn open(&mut self) {
        self.flush();
        self.frames.push(vec![Vec::new()]);
    }
    fn alternative(&mut self) {
        self.flush();
        if let Some(f) = self.frames.last_mut() {
            f.push(Vec::new());
        }
    }
    fn close(&mut self) {
        self.flush();
        if let Some(f) = self.frames.pop() {
            let alt = Hir::alternation(f.into_iter().map(Hir::concat).collect());
            self.push(alt);
        }
    }
}

/// Translate the glob `expanded` (named `pattern` in errors), writing it to
/// `e`; returns its shape (`expanded` left empty).
fn translate(
    pattern: &str,
    expanded: &str,
    e: &mut dyn Emit,
) -> Result<CompiledGlob, PatternError> {
    let chars: Vec<char> = expanded.chars().collect();
    let mut literal = String::new();
    let mut is_literal = true;
    let mut prefix: Option<String> = None;
    let mut wild_tokens = 0usize;
    let mut questions = 0usize;
    let mut trailing_subtree = false;
    let mut depth = 0usize;
    let mut i = 0;
    // Whether the previous pattern character was an unescaped component
    // boundary (start, `/`, or `{` / `,` inside braces).
    let mut at_boundary = true;
    while i < chars.len() {
        let c = chars[i];
        let mut boundary = false;
        match c {
            '\\' => {
                i += 1;
                let Some(&next) = chars.get(i) else {
                    return Err(PatternError::new(
                        format!("'{pattern}' ends with a lone backslash"),
                        Some("write '\\\\' for a literal backslash"),
                    ));
                };
                e.lit(next);
                literal.push(next);
            }
            '*' if chars.get(i + 1) == Some(&'*') => {
                if is_literal {
                    prefix = Some(literal.clone());
                }
                is_literal = false;
                wild_tokens += 1;
                if chars.get(i + 2) == Some(&'*') {
                    return Err(PatternError::new(
                        format!("'***' in '{pattern}'"),
                        Some("use '*' within a name or '**' as a whole path component"),
                    ));
                }
                let after = chars.get(i + 2).copied();
                let after_ok = match after {
                    None | Some('/') => true,
                    Some('}' | ',') => depth > 0,
                    _ => false,
                };
                if !at_boundary || !after_ok {
                    return Err(PatternError::new(
                        format!("'**' is not a whole path component in '{pattern}'"),
                        Some("write 'dir/**/name' or 'dir/**'; use '*' to match within one name"),
                    ));
                }
                if after == Some('/') {
                    e.dirs();
                    i += 3;
                    at_boundary = true;
                    continue;
                }
                let after_slash = i > 0 && chars[i - 1] == '/';
                e.any(u32::from(after_slash));
                trailing_subtree = after_slash && depth == 0 && i + 2 == chars.len();
                i += 2;
                at_boundary = false;
                continue;
            }
            '*' | '?' | '{' if is_literal => {
                prefix = Some(literal.clone());
                is_literal = false;
                continue;
            }
            '*' => {
                wild_tokens += 1;
                e.star();
            }
            '?' => {
                wild_tokens += 1;
                questions += 1;
                e.one();
            }
            '{' => {
                wild_tokens += 1;
                depth += 1;
                if depth > 16 {
                    return Err(PatternError::new(
                        format!("braces nested deeper than 16 levels in '{pattern}'"),
                        None,
                    ));
                }
                e.open();
                boundary = true;
            }
            '}' if depth > 0 => {
                depth -= 1;
                e.close();
            }
            '}' => {
                return Err(PatternError::new(
                    format!("unmatched '}}' in '{pattern}'"),
                    Some("write '\\}' for a literal brace"),
                ));
            }
            ',' if depth > 0 => {
                e.alternative();
                boundary = true;
            }
            '/' => {
                e.lit('/');
                literal.push('/');
                boundary = true;
            }
            _ => {
                e.lit(c);
                literal.push(c);
            }
        }
        at_boundary = boundary;
        i += 1;
    }
    if depth > 0 {
        return Err(PatternError::new(
            format!("unclosed '{{' in '{pattern}'"),
            Some("close the alternatives with '}', or write '\\{' for a literal brace"),
        ));
    }
    let subtree = (wild_tokens == 1 && trailing_subtree)
        .then(|| literal.strip_suffix('/').map(str::to_owned))
        .flatten();
    Ok(CompiledGlob {
        expanded: String::new(),
        weight: chars.len() + 7 * questions,
        prefix: prefix.unwrap_or_else(|| literal.clone()),
        literal: is_literal.then_some(literal),
        subtree,
    })
}

/// A sequence of expressions being built, with one frame per open brace
/// (each frame: its alternatives so far, each a concatenation), and the
/// literal text not yet added (a run of literal characters is one
/// expression).
#[derive(Default)]
struct HirSeq {
    frames: Vec<Vec<Vec<Hir>>>,
    top: Vec<Hir>,
    text: String,
}

impl HirSeq {
    fn current(&mut self) -> &mut Vec<Hir> {
        match self.frames.last_mut().and_then(|f| f.last_mut()) {
            Some(alt) => alt,
            None => &mut self.top,
        }
    }
    fn flush(&mut self) {
        if !self.text.is_empty() {
            let lit = Hir::literal(std::mem::take(&mut self.text).into_bytes());
            self.current().push(lit);
        }
    }
    fn push(&mut self, h: Hir) {
        self.flush();
        self.current().push(h);
    }
    fn finish(mut self) -> Hir {
        self.flush();
        Hir::concat(self.top)
    }
}

fn byte_class(ranges: &[(u8, u8)]) -> Hir {
    Hir::class(Class::Bytes(ClassBytes::new(
        ranges.iter().map(|&(a, b)| ClassBytesRange::new(a, b)),
    )))
}

/// Any byte but `/` (inside `*`).
fn not_slash_byte() -> Hir {
    byte_class(&[(0, b'/' - 1), (b'/' + 1, 0xFF)])
}

/// At least `min` bytes, any (`**`).
fn any_bytes(min: u32) -> Hir {
    Hir::repetition(Repetition {
        min,
        max: None,
        greedy: true,
        sub: Box::new(byte_class(&[(0, 0xFF)])),
    })
}

/// One character other than `/`, as bytes: the translation of `?`.
///
/// Expressions here match the subject's UTF-8 bytes (a byte-level automaton
/// costs a fraction of a Unicode one to build). On valid UTF-8, which every
/// subject is, the byte forms accept exactly what the character forms would:
/// literals are whole encoded characters, `*` and `**` are runs of bytes that
/// can only begin and end where a literal, a `/`, this class or the end of
/// the subject does, i.e. on character boundaries, and this class is one
/// complete encoded character.
fn one_char() -> Hir {
    let cont = || byte_class(&[(0x80, 0xBF)]);
    Hir::alternation(vec![
        byte_class(&[(0x00, b'/' - 1), (b'/' + 1, 0x7F)]),
        Hir::concat(vec![byte_class(&[(0xC0, 0xDF)]), cont()]),
        Hir::concat(vec![byte_class(&[(0xE0, 0xEF)]), cont(), cont()]),
        Hir::concat(vec![byte_class(&[(0xF0, 0xF7)]), cont(), cont(), cont()]),
    ])
}

/// Several glob expressions as one, anchored at both ends: matches when one
/// of them matches the whole subject.
fn anchored_any(bodies: &[Hir]) -> Hir {
    Hir::concat(vec![
        Hir::look(Look::Start),
        Hir::alternation(bodies.to_vec()),
        Hir::look(Look::End),
    ])
}

/// A pattern shape that needs no regular expression.
#[derive(Debug, Clone)]
enum Fast {
    /// The whole subject equals this text.
    Exact(String),
    /// `dir/**`: the subject is strictly inside `dir`.
    Subtree(String),
}

impl Fast {
    fn matches(&self, s: &str) -> bool {
        match self {
            Fast::Exact(e) => s == e,
            Fast::Subtree(d) => {
                s.len() > d.len() + 1 && s.starts_with(d.as_str()) && s.as_bytes()[d.len()] == b'/'
            }
        }
    }
}

/// Globs up to this weight (characters after variable expansion, a `?`
/// counting as 8; for several patterns combined, in total) are compiled when
/// first used, heavier ones at load, where one over the size limit is an
/// error. Every character of a glob becomes a bounded number of automaton
/// states (a `?`, a complete UTF-8 character, the most) and nothing is
/// repeated a counted number of times beyond three, so a glob this light
/// stays below a quarter of the size limit (a unit test compiles the worst
/// cases): compiling it later cannot fail, and the policy that loaded is the
/// policy that judges.
const COMPILE_AT_LOAD_ABOVE: usize = 4096;

/// Largest automaton of one compiled pattern (as the `regex` crate's
/// `size_limit`).
const SIZE_LIMIT: usize = 4 << 20;

/// An anchored regular expression over the subject's bytes, compiled on
/// first use (see [`COMPILE_AT_LOAD_ABOVE`]). Most rules of a large policy
/// are never consulted by the index for a given run, and a policy's embedded
/// examples touch a few patterns each: compiling everything at load was most
/// of the time a policy took to load. Clones share the compiled expression.
#[derive(Debug, Clone)]
pub(crate) struct Lazy(std::sync::Arc<LazyInner>);

#[derive(Debug)]
struct LazyInner {
    /// The globs (their `expanded` text), any of which may match.
    globs: Vec<String>,
    re: OnceLock<Option<Regex>>,
}

type CacheFn =
    Box<dyn Fn() -> Cache + Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>;

/// A compiled glob expression: a lazy DFA (states built as subjects need
/// them, in a cache per thread), forward only, anchored at the start. That
/// is all a whole-subject match needs; a general regular-expression engine
/// also compiles a reverse automaton and literal prefilters, which cost
/// more to build than these patterns ever save.
struct Regex {
    dfa: DFA,
    caches: Pool<Cache, CacheFn>,
}

impl std::fmt::Debug for Regex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Regex").finish_non_exhaustive()
    }
}

impl Regex {
    /// Whether `s` matches: `None` if the DFA could not tell (it gives up
    /// only when configured to, which it is not).
    fn is_match(&self, s: &[u8]) -> Option<bool> {
        let mut cache = self.caches.get();
        let input = Input::new(s).anchored(Anchored::Yes).earliest(true);
        self.dfa
            .try_search_fwd(&mut cache, &input)
            .ok()
            .map(|m| m.is_some())
    }
}

impl Lazy {
    /// Prepare the globs `globs` (each the `expanded` text of a compiled
    /// glob), of `weight` in all: compiled now if they are heavy.
    pub fn new(globs: Vec<String>, weight: usize) -> Result<Lazy, PatternError> {
        let inner = LazyInner {
            globs,
            re: OnceLock::new(),
        };
        if weight > COMPILE_AT_LOAD_ABOVE {
            let re = inner.compile(Some(SIZE_LIMIT))?;
            let _ = inner.re.set(Some(re));
        }
        Ok(Lazy(std::sync::Arc::new(inner)))
    }

    fn regex(&self) -> Option<&Regex> {
        self.0.re.get_or_init(|| self.0.compile(None).ok()).as_ref()
    }

    /// Whether the whole of `s` matches. Should compiling or matching ever
    /// fail (neither can for the expressions globs translate to, see
    /// [`COMPILE_AT_LOAD_ABOVE`]), [`evaluation_failed`] says so from then
    /// on, and the policy refuses every action (it cannot tell which rule
    /// would have matched: nothing unknown may help the tree).
    pub fn is_match(&self, s: &str) -> bool {
        match self.regex().and_then(|re| re.is_match(s.as_bytes())) {
            Some(hit) => hit,
            None => {
                EVALUATION_FAILED.store(true, std::sync::atomic::Ordering::SeqCst);
                true
            }
        }
    }
}

/// Set once a pattern could not be compiled or run when first matched.
static EVALUATION_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether some pattern of some policy could not be evaluated (see
/// [`Lazy::is_match`]): decisions can no longer be trusted.
pub(crate) fn evaluation_failed() -> bool {
    EVALUATION_FAILED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Marks pattern evaluation as failed, as [`Lazy::is_match`] does when it
/// cannot tell (for the test that shows every action is then refused).
pub(crate) fn fail_evaluation() {
    EVALUATION_FAILED.store(true, std::sync::atomic::Ordering::SeqCst);
}

impl LazyInner {
    fn compile(&self, limit: Option<usize>) -> Result<Regex, PatternError> {
        let hirs = self
            .globs
            .iter()
            .map(|g| hir_of(g))
            .collect::<Option<Vec<Hir>>>()
            .ok_or_else(|| {
                PatternError::new("internal error: a checked glob did not translate", None)
            })?;
        compile_regex(&anchored_any(&hirs), limit)
    }
}

/// A non-empty list of globs: matches when any of them matches.
#[derive(Debug, Clone)]
pub(crate) struct Globs {
    /// The patterns as written (before variable expansion), for explanations.
    pub sources: Vec<String>,
    /// Literal values of patterns without wildcards (same order as `sources`).
    pub literals: Vec<Option<String>>,
    /// Literal text every match of each pattern starts with.
    pub prefixes: Vec<String>,
    /// The patterns that need no regular expression, with their index.
    fast: Vec<(usize, Fast)>,
    /// The patterns that need a regular expression, combined.
    rest: Rest,
    /// Each pattern alone (for naming the one that matched).
    each: Vec<Lazy>,
    /// Each pattern after expansion (the source of `beneath`).
    bodies: Vec<String>,
    /// A DFA of each pattern, built on first use: whether some path below a
    /// directory can match. `None` when one could not be built (too large):
    /// then the pattern is taken as possibly matching.
    beneath: std::sync::OnceLock<Vec<Option<regex_automata::dfa::dense::DFA<Vec<u32>>>>>,
}

/// The patterns of a [`Globs`] that need a regular expression.
#[derive(Debug, Clone)]
enum Rest {
    None,
    /// Just one: its own expression (in `each`) serves.
    One(usize),
    /// Several, combined into one expression.
    Many(Lazy),
}

/// Largest DFA built to decide what lies below a directory.
const BENEATH_DFA_LIMIT: usize = 8 << 20;

impl Globs {
    /// Compile several patterns. Errors carry the index of the bad pattern.
    #[cfg(test)]
    pub fn new(patterns: &[String], scope: &Scope) -> Result<Globs, (usize, PatternError)> {
        let compiled = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| compile(p, scope).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        Globs::from_compiled(patterns, compiled)
    }

    /// [`Globs::new`] from patterns already checked: `compiled[i]` is what
    /// [`compile`] made of `patterns[i]` (each is translated once).
    pub fn from_compiled(
        patterns: &[String],
        compiled: Vec<CompiledGlob>,
    ) -> Result<Globs, (usize, PatternError)> {
        let mut literals = Vec::with_capacity(patterns.len());
        let mut prefixes = Vec::with_capacity(patterns.len());
        let mut each = Vec::with_capacity(patterns.len());
        let mut fast = Vec::new();
        let mut rest_bodies = Vec::new();
        let mut bodies = Vec::new();
        let mut total = 0;
        for (i, c) in compiled.into_iter().enumerate() {
            let re = build(vec![c.expanded.clone()], c.weight).map_err(|e| (i, e))?;
            each.push(re);
            match (&c.literal, &c.subtree) {
                (Some(l), _) => fast.push((i, Fast::Exact(l.clone()))),
                (None, Some(d)) => fast.push((i, Fast::Subtree(d.clone()))),
                (None, None) => {
                    rest_bodies.push(i);
                    total += c.weight;
                }
            }
            bodies.push(c.expanded);
            literals.push(c.literal);
            prefixes.push(c.prefix);
        }
        let rest = match rest_bodies.as_slice() {
            [] => Rest::None,
            [only] => Rest::One(*only),
            _ => Rest::Many(
                build(
                    rest_bodies.iter().map(|&i| bodies[i].clone()).collect(),
                    total,
                )
                .map_err(|e| (0, e))?,
            ),
        };
        Ok(Globs {
            sources: patterns.to_vec(),
            literals,
            prefixes,
            fast,
            rest,
            each,
            bodies,
            beneath: std::sync::OnceLock::new(),
        })
    }

    /// Whether renaming directory `dir` would carry away paths this glob
    /// protects by where they are: some pattern can match a path strictly
    /// below `dir` but not below a sibling of `dir` with a fresh name. Such a
    /// pattern depends on `dir`'s name or place, so after the move the same
    /// files would no longer match it. Patterns that match anywhere (`**/x`)
    /// or through a wildcard at `dir`'s level (`/**`, `/opt/*/keys/**` for a
    /// move of `/opt/app`) would match the moved files at a new place of the
    /// same shape as well: they are judged on `dir` itself only. Decided by a
    /// DFA of each pattern; one too large to build counts as a match.
    pub fn could_match_beneath(&self, dir: &str) -> bool {
        use regex_automata::dfa::{dense::DFA, Automaton};
        use regex_automata::{Anchored, Input};
        let dir = dir.strip_suffix('/').unwrap_or(dir);
        let below = format!("{dir}/");
        let sibling = match dir.rfind('/') {
            // A name no pattern spells out: it matches only wildcards.
            Some(i) => format!("{}\u{1}\u{2}lexecon\u{2}\u{1}/", &dir[..=i]),
            None => String::new(),
        };
        // Whether some string starting with `prefix` can match.
        let alive = |dfa: &DFA<Vec<u32>>, prefix: &str| -> bool {
            let input = Input::new("").anchored(Anchored::Yes);
            let Ok(mut state) = dfa.start_state_forward(&input) else {
                return true;
            };
            for b in prefix.bytes() {
                state = dfa.next_state(state, b);
                if dfa.is_dead_state(state) {
                    return false;
                }
                if dfa.is_quit_state(state) {
                    return true;
                }
            }
            true
        };
        let dfas = self.beneath.get_or_init(|| {
            self.bodies
                .iter()
                .map(|body| {
                    let nfa = regex_automata::nfa::thompson::Compiler::new()
                        .configure(
                            regex_automata::nfa::thompson::Config::new()
                                .utf8(false)
                                .nfa_size_limit(Some(BENEATH_DFA_LIMIT)),
                        )
                        .build_from_hir(&anchored_any(&[hir_of(body)?]))
                        .ok()?;
                    regex_automata::dfa::dense::Builder::new()
                        .configure(
                            regex_automata::dfa::dense::Config::new()
                                .dfa_size_limit(Some(BENEATH_DFA_LIMIT))
                                .determinize_size_limit(Some(BENEATH_DFA_LIMIT)),
                        )
                        .build_from_nfa(&nfa)
                        .ok()
                })
                .collect()
        });
        dfas.iter().any(|dfa| match dfa {
            None => true,
            Some(dfa) => alive(dfa, &below) && (sibling.is_empty() || !alive(dfa, &sibling)),
        })
    }

    /// Whether any pattern matches the whole of `s`.
    pub fn is_match(&self, s: &str) -> bool {
        self.fast.iter().any(|(_, f)| f.matches(s))
            || match &self.rest {
                Rest::None => false,
                Rest::One(i) => self.each[*i].is_match(s),
                Rest::Many(re) => re.is_match(s),
            }
    }

    /// The first pattern (as written) that matches `s`.
    pub fn first_match(&self, s: &str) -> Option<&str> {
        let mut fast = self.fast.iter().peekable();
        (0..self.sources.len())
            .find(|&i| match fast.next_if(|(j, _)| *j == i) {
                Some((_, f)) => f.matches(s),
                None => self.each[i].is_match(s),
            })
            .map(|i| self.sources[i].as_str())
    }

    /// The patterns as written, joined for messages.
    pub fn describe(&self) -> String {
        self.sources
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// An expression matching any of `globs` (the `expanded` texts of compiled
/// globs, of `weight` in all), compiled on first use; see [`Lazy`].
pub(crate) fn build(globs: Vec<String>, weight: usize) -> Result<Lazy, PatternError> {
    Lazy::new(globs, weight)
}

/// Compile an expression over bytes: no captures and no full DFA (the lazy
/// DFA is as fast on these anchored patterns and costs nothing up front);
/// `limit` bounds the automaton's size.
fn compile_regex(hir: &Hir, limit: Option<usize>) -> Result<Regex, PatternError> {
    use regex_automata::nfa::thompson;
    let too_large = |e: &dyn std::fmt::Display| {
        PatternError::new(
            format!("pattern is too large or invalid: {e}"),
            Some("split it into several simpler patterns"),
        )
    };
    let nfa = thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .utf8(false)
                .which_captures(thompson::WhichCaptures::None)
                .nfa_size_limit(limit),
        )
        .build_from_hir(hir)
        .map_err(|e| too_large(&e))?;
    // Room for a good number of states of even the largest automaton (the
    // default, 2 MiB, is less than the least some large ones need).
    let capacity = (2usize << 20).max(nfa.memory_usage().saturating_mul(4));
    let dfa = DFA::builder()
        .configure(
            DFA::config()
                .minimum_cache_clear_count(None)
                .cache_capacity(capacity),
        )
        .build_from_nfa(nfa)
        .map_err(|e| too_large(&e))?;
    let for_caches = dfa.clone();
    let create: CacheFn = Box::new(move || for_caches.create_cache());
    Ok(Regex {
        dfa,
        caches: Pool::new(create),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn vars() -> Vars {
        Vars {
            home: PathBuf::from("/home/u"),
            workspace: PathBuf::from("/home/u/w*rk"),
            tmpdir: PathBuf::from("/tmp"),
        }
    }

    /// The translation as regular-expression text over characters (`?` as
    /// `[^/]`, `**` as `.*`): the reference the byte-level form is tested
    /// against.
    fn char_regex(expanded: &str) -> String {
        struct Text(String);
        impl Emit for Text {
            fn lit(&mut self, c: char) {
                self.0.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
            }
            fn dirs(&mut self) {
                self.0.push_str("(?:.*/)?");
            }
            fn any(&mut self, min: u32) {
                self.0.push_str(if min == 0 { ".*" } else { ".+" });
            }
            fn star(&mut self) {
                self.0.push_str("[^/]*");
            }
            fn one(&mut self) {
                self.0.push_str("[^/]");
            }
            fn open(&mut self) {
                self.0.push_str("(?:");
            }
            fn alternative(&mut self) {
                self.0.push('|');
            }
            fn close(&mut self) {
                self.0.push(')');
            }
        }
        let mut t = Text(String::new());
        translate(expanded, expanded, &mut t).unwrap();
        t.0
    }

    fn m(pattern: &str, s: &str) -> bool {
        let g = Globs::new(&[pattern.to_string()], &Scope::new(&vars(), None)).unwrap();
        g.is_match(s)
    }

    #[test]
    fn star_does_not_cross_slash_and_question_is_one_char() {
        assert!(m("/etc/*.conf", "/etc/a.conf"));
        assert!(!m("/etc/*.conf", "/etc/x/a.conf"));
        assert!(m("/a/?", "/a/é"));
        assert!(!m("/a/?", "/a/bc"));
        assert!(!m("/a/?", "/a//"));
        assert!(m("*", ""));
    }

    #[test]
    fn double_star_components() {
        assert!(m("/a/**/b", "/a/b"));
        assert!(m("/a/**/b", "/a/x/y/b"));
        assert!(!m("/a/**/b", "/a/xb"));
        assert!(m("/a/**", "/a/x"));
        assert!(m("/a/**", "/a/x/y"));
        assert!(!m("/a/**", "/a"));
        assert!(!m("/a/**", "/ab"));
        assert!(m("**/.env", "/x/y/.env"));
        assert!(m("**/.env", ".env"));
        assert!(!m("**/.env", "/x/y/a.env"));
        assert!(m("**", "/anything/at all"));
        assert!(m("/a/**", "/a/x\ny"));
    }

    #[test]
    fn braces_and_escapes() {
        assert!(m("/x/{a,b/**}", "/x/a"));
        assert!(m("/x/{a,b/**}", "/x/b/c/d"));
        assert!(!m("/x/{a,b/**}", "/x/b"));
        assert!(m("/x/{a,{b,c}d}", "/x/cd"));
        assert!(m(r"/x/\*", "/x/*"));
        assert!(!m(r"/x/\*", "/x/a"));
        assert!(m("pipe:[*]", "pipe:[1234]"));
        assert!(m("/a.b", "/a.b"));
        assert!(!m("/a.b", "/axb"));
    }

    #[test]
    fn variables_are_literal_and_unknown_ones_are_errors() {
        assert!(m("${WORKSPACE}/**", "/home/u/w*rk/src/a.rs"));
        assert!(!m("${WORKSPACE}/**", "/home/u/wxrk/src/a.rs"));
        assert!(m("${HOME}/.ssh/*", "/home/u/.ssh/id_rsa"));
        let e = compile("${USER}/x", &Scope::new(&vars(), None)).unwrap_err();
        assert!(e.message.contains("unknown variable '${USER}'"), "{e:?}");
        assert!(compile("${HOME", &Scope::new(&vars(), None)).is_err());
    }

    #[test]
    fn root_variable_joins_without_double_slash() {
        let v = Vars {
            home: PathBuf::from("/"),
            workspace: PathBuf::from("/"),
            tmpdir: PathBuf::from("/tmp"),
        };
        let g = Globs::new(&["${WORKSPACE}/**".to_string()], &Scope::new(&v, None)).unwrap();
        assert!(g.is_match("/build"));
        let g = Globs::new(&["${HOME}".to_string()], &Scope::new(&v, None)).unwrap();
        assert!(g.is_match("/"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        for bad in ["/a**", "/**b", "/a/***", "/{a", "/a}", "/a\\", "a**/b"] {
            assert!(
                compile(bad, &Scope::new(&vars(), None)).is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn fast_shapes_agree_with_regexes() {
        let pats = [
            "/a/**",
            "/**",
            "/a/b",
            "/a/*.rs",
            "/a/{b,c}/**",
            "${HOME}/.ssh/**",
        ];
        let subjects = [
            "/a",
            "/a/",
            "/a/b",
            "/a/b/c",
            "/ab",
            "/",
            "/x.rs",
            "/a/x.rs",
            "/a/c/d",
            "/home/u/.ssh/k",
            "/home/u/.ssh",
            "a/b",
            "",
        ];
        for p in pats {
            let g = Globs::new(&[p.to_string()], &Scope::new(&vars(), None)).unwrap();
            for s in subjects {
                let by_regex = g.each[0].is_match(s);
                assert_eq!(g.is_match(s), by_regex, "{p} on {s}");
            }
        }
        let c = compile("/a/b/**", &Scope::new(&vars(), None)).unwrap();
        assert_eq!(c.subtree.as_deref(), Some("/a/b"));
        assert_eq!(c.prefix, "/a/b/");
        assert_eq!(
            compile("/**", &Scope::new(&vars(), None))
                .unwrap()
                .subtree
                .as_deref(),
            Some("")
        );
        assert_eq!(
            compile("/a/*/**", &Scope::new(&vars(), None))
                .unwrap()
                .subtree,
            None
        );
        assert_eq!(
            compile("/a/{b,c}/**", &Scope::new(&vars(), None))
                .unwrap()
                .subtree,
            None
        );
        assert_eq!(
            compile("/a/{b,c}/**", &Scope::new(&vars(), None))
                .unwrap()
                .prefix,
            "/a/"
        );
        assert_eq!(
            compile("**/.env", &Scope::new(&vars(), None))
                .unwrap()
                .prefix,
            ""
        );
        assert_eq!(
            compile("/x/a?c", &Scope::new(&vars(), None))
                .unwrap()
                .prefix,
            "/x/a"
        );
    }

    /// The byte-level expressions accept exactly what the character-level
    /// translation (`?` as `[^/]`, `.` as any character) accepts, on
    /// subjects with multi-byte characters and U+FFFD.
    #[test]
    fn byte_level_matching_agrees_with_character_level() {
        use proptest::prelude::*;
        let atom = prop::sample::select(vec![
            "a", "é", "\u{fffd}", "€", "😀", "/", "*", "?", "**/", "/**", "{a,é}", "{?,**/x}", ".",
            "b",
        ]);
        let subject_atom =
            prop::sample::select(vec!["a", "é", "\u{fffd}", "€", "😀", "/", ".", "b", "x"]);
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            cases: 3000,
            ..Default::default()
        });
        runner
            .run(
                &(
                    prop::collection::vec(atom, 1..6),
                    prop::collection::vec(prop::collection::vec(subject_atom, 0..7), 8),
                ),
                |(atoms, subjects)| {
                    let pattern: String = atoms.concat();
                    let Ok(c) = compile(&pattern, &Scope::new(&vars(), None)) else {
                        return Ok(());
                    };
                    let chars = format!(r"(?s)\A(?:(?:{}))\z", char_regex(&c.expanded));
                    let by_chars = regex::Regex::new(&chars).unwrap();
                    let by_bytes = build(vec![c.expanded.clone()], c.weight).unwrap();
                    let g = Globs::new(std::slice::from_ref(&pattern), &Scope::new(&vars(), None))
                        .unwrap();
                    for s in subjects {
                        let s: String = s.concat();
                        prop_assert_eq!(
                            by_bytes.is_match(&s),
                            by_chars.is_match(&s),
                            "{} on {:?}",
                            pattern,
                            s
                        );
                        prop_assert_eq!(
                            g.is_match(&s),
                            by_chars.is_match(&s),
                            "{} on {:?}",
                            pattern,
                            s
                        );
                    }
                    Ok(())
                },
            )
            .unwrap();
    }

    #[test]
    fn long_expressions_are_checked_at_load() {
        // Over the lazy threshold: compiled (and size-checked) at once.
        let long = "/x/".to_string() + &"?".repeat(30_000);
        let e = Globs::new(&[long], &Scope::new(&vars(), None)).unwrap_err();
        assert!(e.1.message.contains("too large"), "{:?}", e.1);
        // Heavy but within the limit: compiled at load, and it matches.
        let heavy = "/x/".to_string() + &"?".repeat(3_000);
        let g = Globs::new(std::slice::from_ref(&heavy), &Scope::new(&vars(), None)).unwrap();
        assert!(g.is_match(&("/x/".to_string() + &"é".repeat(3_000))));
        assert!(!g.is_match(&("/x/".to_string() + &"é".repeat(2_999))));
        let fine = "/x/".to_string() + &"?".repeat(40);
        let g = Globs::new(std::slice::from_ref(&fine), &Scope::new(&vars(), None)).unwrap();
        assert!(g.is_match(&("/x/".to_string() + &"é".repeat(40))));
        assert!(!g.is_match(&("/x/".to_string() + &"é".repeat(39))));
        // The longest lazily compiled globs are well below the limit.
        for worst in ["?", "é", "{a,?}", "**/", "*a"] {
            let one = compile(worst, &Scope::new(&vars(), None)).unwrap().weight;
            let c = compile(
                &worst.repeat(COMPILE_AT_LOAD_ABOVE / one),
                &Scope::new(&vars(), None),
            )
            .unwrap();
            assert!(c.weight <= COMPILE_AT_LOAD_ABOVE);
            compile_regex(
                &anchored_any(&[hir_of(&c.expanded).unwrap()]),
                Some(SIZE_LIMIT / 4),
            )
            .expect("well under the limit");
        }
    }

    #[test]
    fn literal_detection() {
        assert_eq!(
            compile("rm", &Scope::new(&vars(), None))
                .unwrap()
                .literal
                .as_deref(),
            Some("rm")
        );
        assert_eq!(
            compile("rm*", &Scope::new(&vars(), None)).unwrap().literal,
            None
        );
        assert_eq!(
            compile("${HOME}/x", &Scope::new(&vars(), None))
                .unwrap()
                .literal
                .as_deref(),
            Some("/home/u/x")
        );
        assert_eq!(
            compile("${WORKSPACE}", &Scope::new(&vars(), None))
                .unwrap()
                .literal
                .as_deref(),
            Some("/home/u/w*rk")
        );
    }
}
