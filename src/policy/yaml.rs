//! A small located YAML tree built from `saphyr-parser` events.
//!
//! The policy loader needs the line and column of every key and value so that
//! each error can point at the offending text. The tree keeps exactly that and
//! nothing else: scalars stay strings (the loader decides what type it wants),
//! sequences and mappings keep their order. Aliases are refused (a policy is
//! read by people; references make it harder to read and enable
//! "billion laughs" expansion), duplicate keys are refused, nesting deeper than
//! [`MAX_DEPTH`] is refused (so dropping the tree cannot overflow the stack).

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Deepest nesting accepted. Policies need about six levels.
pub(crate) const MAX_DEPTH: usize = 64;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Loc {
    pub line: usize,
    pub col: usize,
}

impl Loc {
    fn of(span: &Span) -> Loc {
        Loc {
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// A scalar and whether it was written plain (unquoted, not a block).
    Scalar(String, bool),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub value: Value,
    pub loc: Loc,
}

impl Node {
    /// True for a plain `~`, `null`, `Null`, `NULL` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s, true) if matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// A short name of the node's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Scalar(..) if self.is_null() => "null",
            Value::Scalar(..) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A syntax problem: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub loc: Loc,
    pub message: String,
}

enum Frame {
    Seq(Loc, Vec<Node>),
    Map(Loc, Vec<(Node, Node)>, Option<Node>),
}

/// Parse one YAML document into a located tree. An empty stream yields
/// `Ok(None)`.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    while let Some(next) = parser.next_event() {
        let (event, span) = match next {
            Ok(ok) => ok,
            Err(e) => {
                return Err(SyntaxError {
                    loc: Loc {
                        line: e.marker().line(),
                        col: e.marker().col() + 1,
                    },
                    message: format!("YAML syntax error: {}", e.info()),
                })
            }
        };
        let loc = Loc::of(&span);
        let complete = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        loc,
                        message: "a policy file holds one YAML document; found a second one".into(),
                    });
                }
                None
            }
            Event::Alias(_) => {
                return Err(SyntaxError {
                    loc,
                    message:
                        "YAML aliases (*name) are not supported in policies; write the value out"
                            .into(),
                })
            }
            Event::Scalar(value, style, _, _) => Some(Node {
                value: Value::Scalar(value.into_owned(), style == ScalarStyle::Plain),
                loc,
            }),
            Event::SequenceStart(_, _) | Event::MappingStart(_, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(SyntaxError {
                        loc,
                        message: format!("nesting deeper than {MAX_DEPTH} levels"),
                    });
                }
                if matches!(event, Event::SequenceStart(..)) {
                    stack.push(Frame::Seq(loc, Vec::new()));
                } else {
                    stack.push(Frame::Map(loc, Vec::new(), None));
                }
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq(l, items)) => Some(Node {
                    value: Value::Seq(items),
                    loc: l,
                }),
                Some(Frame::Map(l, entries, pending)) => {
                    if let Some(key) = pending {
                        return Err(SyntaxError {
                            loc: key.loc,
                            message: "mapping key without a value".into(),
                        });
                    }
                    Some(Node {
                        value: Value::Map(entries),
                        loc: l,
                    })
                }
                None => {
                    return Err(SyntaxError {
                        loc,
                        message: "unbalanced YAML structure".into(),
                    })
                }
            },
        };
        let Some(node) = complete else { continue };
        match stack.last_mut() {
            None => {
                if root.is_some() {
                    return Err(SyntaxError {
                        loc: node.loc,
                        message: "more than one top-level value".into(),
                    });
                }
                root = Some(node);
            }
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, pending)) => match pending.take() {
                None => {
                    let Value::Scalar(key, _) = &node.value else {
                        return Err(SyntaxError {
                            loc: node.loc,
                            message: format!(
                                "a mapping key must be a plain name, found {}",
                                node.type_name()
                            ),
                        });
                    };
                    if let Some((first, _)) = entries
                        .iter()
                        .find(|(k, _)| matches!(&k.value, Value::Scalar(s, _) if s == key))
                    {
                        return Err(SyntaxError {
                            loc: node.loc,
                            message: format!(
                                "duplicate key '{key}' (first at line {}); each key may appear once",
                                first.loc.line
                            ),
                        });
                    }
                    *pending = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
    if !stack.is_empty() {
        return Err(SyntaxError {
            loc: Loc::default(),
            message: "unexpected end of YAML input".into(),
        });
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(n: &Node) -> &str {
        match &n.value {
            Value::Scalar(s, _) => s,
            _ => panic!("not a scalar: {n:?}"),
        }
    }

    #[test]
    fn locations_are_one_based_line_and_column() {
        let root = parse("version: 1\nrules:\n  - id: a\n    decision: block\n")
            .unwrap()
            .unwrap();
        let Value::Map(top) = &root.value else {
            panic!()
        };
        assert_eq!(top[0].0.loc, Loc { line: 1, col: 1 });
        assert_eq!(top[0].1.loc, Loc { line: 1, col: 10 });
        let Value::Seq(rules) = &top[1].1.value else {
            panic!()
        };
        let Value::Map(rule) = &rules[0].value else {
            panic!()
        };
        assert_eq!(scalar(&rule[1].0), "decision");
        assert_eq!(rule[1].0.loc, Loc { line: 4, col: 5 });
        assert_eq!(rule[1].1.loc, Loc { line: 4, col: 15 });
    }

    #[test]
    fn duplicate_keys_aliases_and_deep_nesting_are_errors() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.loc, Loc { line: 3, col: 1 });
        assert!(e.message.contains("duplicate key 'a'"), "{}", e.message);
        let e = parse("a: &x 1\nb: *x\n").unwrap_err();
        assert_eq!(e.loc.line, 2);
        let deep = "[".repeat(100_000);
        assert!(parse(&deep).is_err());
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }

    #[test]
    fn empty_input_is_none_and_quoting_is_kept() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
        let root = parse("a: 'null'\nb: null\n").unwrap().unwrap();
        let Value::Map(m) = &root.value else { panic!() };
        assert!(!m[0].1.is_null());
        assert!(m[1].1.is_null());
    }
}
