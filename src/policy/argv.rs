//! Reading an argument vector the way command-line programs do: options
//! (short clusters `-rf`, long `--force`, `--name=value`), the `--` end of
//! options, operands; positional argument patterns; lexical path resolution.
//! Also the shell-like word splitting used by examples.

use std::borrow::Cow;

/// The options and operands of `argv[1..]`.
///
/// Rules (GNU `getopt_long` style, which most tools follow):
/// - `--` ends the options: everything after it is an operand;
/// - `--name` and `--name=value` are the long option `name`;
/// - `-abc` (a `-` followed by at least one character) is the cluster of short
///   options `a`, `b`, `c`; an option's attached value (`-n5`) is read as more
///   short options, which can only make a flag condition match more often;
/// - a lone `-` and everything not starting with `-` is an operand;
/// - options may come after operands (`rm dir -rf`).
#[derive(Debug, Default)]
pub(crate) struct Parsed<'a> {
    pub shorts: Vec<char>,
    pub longs: Vec<&'a str>,
    pub operands: Vec<&'a str>,
}

pub(crate) fn parse<'a>(args: &'a [Cow<'a, str>]) -> Parsed<'a> {
    let mut p = Parsed::default();
    let mut options_done = false;
    for a in args {
        let a: &str = a;
        if options_done {
            p.operands.push(a);
        } else if a == "--" {
            options_done = true;
        } else if let Some(long) = a.strip_prefix("--") {
            p.longs.push(long.split('=').next().unwrap_or(long));
        } else if let Some(cluster) = a.strip_prefix('-').filter(|c| !c.is_empty()) {
            p.shorts.extend(cluster.chars());
        } else {
            p.operands.push(a);
        }
    }
    p
}

/// One required flag with its spellings: short letters and long names.
#[derive(Debug, Clone)]
pub(crate) struct FlagGroup {
    pub source: String,
    pub shorts: Vec<char>,
    pub longs: Vec<String>,
}

impl FlagGroup {
    /// Parse `"r|R|recursive"` (dashes optional: `"-r|--recursive"`).
    pub fn parse(source: &str) -> Result<FlagGroup, String> {
        let mut g = FlagGroup {
            source: source.to_string(),
            shorts: Vec::new(),
            longs: Vec::new(),
        };
        for alias in source.split('|') {
            let alias = alias.trim();
            let (name, long) = if let Some(l) = alias.strip_prefix("--") {
                (l, true)
            } else if let Some(s) = alias.strip_prefix('-') {
                (s, false)
            } else {
                (alias, alias.chars().count() > 1)
            };
            if name.is_empty() || name.contains(['=', ' ']) || name.starts_with('-') {
                return Err(format!(
                    "'{alias}' in flag '{source}' is not a flag name; write e.g. \"r|R|recursive\""
                ));
            }
            if long {
                g.longs.push(name.to_string());
            } else {
                let mut cs = name.chars();
                match (cs.next(), cs.next()) {
                    (Some(c), None) => g.shorts.push(c),
                    _ => {
                        return Err(format!(
                            "'{alias}' in flag '{source}' has one dash but several letters; write each short flag separately (\"r|f\" is two spellings of one flag; list two flags for two)"
                        ))
                    }
                }
            }
        }
        Ok(g)
    }

    /// The spelling of this flag found in `p`, if any. A long option in argv
    /// also matches when it abbreviates a listed long name (`--recur` for
    /// `recursive`), because `getopt_long` and git accept unambiguous
    /// abbreviations; see [`abbreviates`].
    pub fn find(&self, p: &Parsed<'_>) -> Option<String> {
        if let Some(c) = p.shorts.iter().find(|c| self.shorts.contains(c)) {
            return Some(format!("-{c}"));
        }
        p.longs
            .iter()
            .find(|l| !l.is_empty() && self.longs.iter().any(|n| abbreviates(l, n)))
            .map(|l| format!("--{l}"))
    }
}

/// Whether the long option `given` is `name` or an abbreviation of it. A
/// prefix that stops exactly before a `-` of `name` is taken as a different
/// option, not an abbreviation: `--force` is not `--force-with-lease`.
pub(crate) fn abbreviates(given: &str, name: &str) -> bool {
    name.strip_prefix(given)
        .is_some_and(|rest| rest.is_empty() || !rest.starts_with('-'))
}

/// One item of a positional argument pattern.
#[derive(Debug, Clone)]
pub(crate) enum ArgItem {
    /// `*`: exactly one argument, any text.
    One,
    /// `**`: any number of arguments (zero or more).
    Many,
    /// A glob over one argument.
    Glob(super::glob::Lazy),
}

/// Match `args` against `items`, the whole list (standard wildcard matching
/// with `Many` as the star; linear backtracking, no allocation).
pub(crate) fn match_positional(items: &[ArgItem], args: &[Cow<'_, str>]) -> bool {
    let (mut p, mut a) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while a < args.len() {
        match items.get(p) {
            Some(ArgItem::Many) => {
                star = Some((p, a));
                p += 1;
                continue;
            }
            Some(ArgItem::One) => {
                p += 1;
                a += 1;
                continue;
            }
            Some(ArgItem::Glob(re)) if re.is_match(&args[a]) => {
                p += 1;
                a += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, sa)) => {
                p = sp + 1;
                a = sa + 1;
                star = Some((sp, sa + 1));
            }
            None => return false,
        }
    }
    items[p.min(items.len())..]
        .iter()
        .all(|i| matches!(i, ArgItem::Many))
}

/// Resolve `path` against `cwd` lexically: `.` and empty components dropped,
/// `..` removes the previous component (never above `/`). No filesystem
/// access, so symlinks are not followed.
pub(crate) fn resolve(cwd: &str, path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let base = if path.starts_with('/') { "" } else { cwd };
    for comp in base.split('/').chain(path.split('/')) {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = String::with_capacity(path.len() + cwd.len() + 1);
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Split a command line into words, as a simple shell would: whitespace
/// separates words; `'…'` is literal; `"…"` is literal except `\"` and `\\`;
/// a backslash outside quotes escapes the next character. No expansion.
pub(crate) fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unclosed single quote in '{line}'")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(format!("unclosed double quote in '{line}'")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unclosed double quote in '{line}'")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err(format!("'{line}' ends with a lone backslash")),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cows(v: &[&str]) -> Vec<Cow<'static, str>> {
        v.iter().map(|s| Cow::Owned(s.to_string())).collect()
    }

    fn has_rf(args: &[&str]) -> bool {
        let a = cows(args);
        let p = parse(&a);
        let r = FlagGroup::parse("r|R|recursive").unwrap();
        let f = FlagGroup::parse("f|force").unwrap();
        r.find(&p).is_some() && f.find(&p).is_some()
    }

    #[test]
    fn flags_in_any_spelling_and_order() {
        for args in [
            &["-rf", "x"][..],
            &["-fr", "x"],
            &["-r", "-f", "x"],
            &["-Rf", "x"],
            &["--recursive", "--force", "x"],
            &["-r", "--force", "x"],
            &["x", "-rf"],
            &["x", "-f", "y", "-R"],
            &["-v", "-rfv", "x"],
            &["--recur", "--for", "x"],
            &["--force=always", "-R"],
        ] {
            assert!(has_rf(args), "{args:?} has -r and -f");
        }
        for args in [
            &["-r", "x"][..],
            &["-f", "x"],
            &["x", "-i"],
            &["--", "-rf"],
            &["-f", "--", "-r"],
            &["--recursive-not", "-f"],
            &["-", "rf"],
        ] {
            assert!(!has_rf(args), "{args:?} does not have both -r and -f");
        }
    }

    #[test]
    fn long_abbreviations() {
        assert!(abbreviates("recursive", "recursive"));
        assert!(abbreviates("recur", "recursive"));
        assert!(abbreviates("force-with-l", "force-with-lease"));
        assert!(!abbreviates("force-with", "force-with-lease"));
        assert!(abbreviates("no-pres", "no-preserve-root"));
        assert!(!abbreviates("force", "force-with-lease"));
        assert!(!abbreviates("force-with-lease", "force"));
        assert!(!abbreviates("forcex", "force"));
        let lease = FlagGroup::parse("force-with-lease").unwrap();
        let a = cows(&["push", "--force"]);
        assert_eq!(lease.find(&parse(&a)), None);
        let a = cows(&["push", "--force-with-le"]);
        assert_eq!(lease.find(&parse(&a)).as_deref(), Some("--force-with-le"));
    }

    #[test]
    fn flag_group_parsing() {
        let g = FlagGroup::parse("-r|--recursive|R").unwrap();
        assert_eq!(g.shorts, vec!['r', 'R']);
        assert_eq!(g.longs, vec!["recursive".to_string()]);
        assert!(FlagGroup::parse("-rf").is_err());
        assert!(FlagGroup::parse("r||f").is_err());
        assert!(FlagGroup::parse("").is_err());
    }

    #[test]
    fn operands_are_what_is_not_an_option() {
        let a = cows(&["-rf", "a", "-", "--x=1", "--", "-b", "--c"]);
        let p = parse(&a);
        assert_eq!(p.operands, vec!["a", "-", "-b", "--c"]);
        assert_eq!(p.longs, vec!["x"]);
        assert_eq!(p.shorts, vec!['r', 'f']);
    }

    #[test]
    fn positional_patterns() {
        use crate::policy::glob;
        let vars = crate::policy::compile::example_vars();
        let re = |s: &str| {
            let c = glob::compile(s, &glob::Scope::new(&vars, None)).unwrap();
            ArgItem::Glob(glob::build(vec![c.expanded], c.weight).unwrap())
        };
        let items = vec![re("push"), ArgItem::Many, re("+*"), ArgItem::Many];
        assert!(match_positional(
            &items,
            &cows(&["push", "origin", "+main"])
        ));
        assert!(match_positional(&items, &cows(&["push", "+main", "x"])));
        assert!(!match_positional(
            &items,
            &cows(&["push", "origin", "main"])
        ));
        assert!(!match_positional(&items, &cows(&["pull", "+main"])));
        let exact = vec![re("status")];
        assert!(match_positional(&exact, &cows(&["status"])));
        assert!(!match_positional(&exact, &cows(&["status", "-s"])));
        assert!(!match_positional(&exact, &cows(&[])));
        let one = vec![ArgItem::One, ArgItem::Many];
        assert!(!match_positional(&one, &cows(&[])));
        assert!(match_positional(&one, &cows(&["a/b"])));
        assert!(match_positional(&[ArgItem::Many], &cows(&[])));
    }

    #[test]
    fn lexical_resolution() {
        assert_eq!(resolve("/home/u/w", "./data"), "/home/u/w/data");
        assert_eq!(resolve("/home/u/w", "../../.."), "/");
        assert_eq!(resolve("/home/u/w", "/etc//x/./y/.."), "/etc/x");
        assert_eq!(resolve("/home/u/w", "."), "/home/u/w");
        assert_eq!(resolve("/home/u/w", "~"), "/home/u/w/~");
        assert_eq!(resolve("/", ""), "/");
    }

    #[test]
    fn word_splitting() {
        assert_eq!(
            split_words(r#"sh -c 'curl x | sh' "a \"b\"" c\ d"#).unwrap(),
            vec!["sh", "-c", "curl x | sh", "a \"b\"", "c d"]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_words("''").unwrap(), vec![String::new()]);
        assert!(split_words("'x").is_err());
    }
}
