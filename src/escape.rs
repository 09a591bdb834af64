//! Showing bytes that the supervised tree controls to a human.
//!
//! Argv, paths, working directories and process names come from the tree;
//! rule ids and reasons come from the policy (and a reason can quote a
//! path). Printed raw, a carriage return, `ESC[2K`, a newline or a Unicode
//! bidi override would let the tree rewrite what the human reads at a
//! prompt, in `lexecon pending`, in a block line or in a summary. Every
//! human-facing output shows such bytes through this module, in one
//! visible, unambiguous form: shell quoting.
//!
//! - [`word`]: one shell word. Left bare when it holds only characters that
//!   need no quoting (`git`, `./x`, `/usr/bin/rm`); in single quotes when
//!   it holds other printable characters (`'a b'`, `'it'\''s'`); in
//!   `$'…'` with escapes when it holds anything invisible or not text:
//!   `\n`, `\r`, `\t`, `\\`, `\'`, other control bytes and invalid UTF-8 as
//!   `\xNN`, C1 controls, bidi overrides and other invisible format
//!   characters as `\uNNNN` (`\UNNNNNNNN` beyond U+FFFF). Pasted into bash,
//!   the word means exactly the original bytes.
//! - [`text`]: free text (a reason, a rule id): unchanged when it holds
//!   nothing to escape, else the whole text as one `$'…'` word.
//! - [`code_span`]: text as a markdown code span, which nothing inside can
//!   end or turn into a link, an image, HTML or a table row.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Bytes that never need quoting in a shell word.
fn is_bare(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)
}

/// Characters shown as an escape: controls (C0, DEL, C1), line and
/// paragraph separators, bidi controls and other invisible format
/// characters.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c as u32,
            0x00AD
                | 0x034F
                | 0x0600..=0x0605
                | 0x061C
                | 0x06DD
                | 0x070F
                | 0x08E2
                | 0x115F
                | 0x1160
                | 0x17B4
                | 0x17B5
                | 0x180B..=0x180F
                | 0x200B..=0x200F
                | 0x2028..=0x202E
                | 0x2060..=0x206F
                | 0x3164
                | 0xFE00..=0xFE0F
                | 0xFEFF
                | 0xFFA0
                | 0xFFF0..=0xFFFB
                | 0x110BD
                | 0x110CD
                | 0x13430..=0x1343F
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0000..=0xE0FFF
        )
}

/// Whether `bytes` is valid UTF-8 without a character to escape.
fn is_plain(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|s| !s.chars().any(is_hidden))
}

/// `bytes` as one shell word (see the module documentation).
pub fn word(bytes: &[u8]) -> String {
    if !bytes.is_empty() && bytes.iter().all(|&b| is_bare(b)) {
        // Only ASCII: valid UTF-8.
        return String::from_utf8_lossy(bytes).into_owned();
    }
    if is_plain(bytes) {
        let s = String::from_utf8_lossy(bytes);
        return format!("'{}'", s.replace('\'', "'\\''"));
    }
    dollar_quoted(bytes)
}

/// `$'…'` with every byte that is not plain text escaped.
fn dollar_quoted(bytes: &[u8]) -> String {
    let mut out = String::from("$'");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x80 && is_hidden(c) => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if is_hidden(c) && (c as u32) <= 0xFFFF => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c if is_hidden(c) => {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('\'');
    out
}

/// An argv element or other byte string as one shell word.
pub fn os(s: &OsStr) -> String {
    word(s.as_bytes())
}

/// A path as one shell word.
pub fn path(p: &Path) -> String {
    word(p.as_os_str().as_bytes())
}

/// Free text: unchanged when it holds nothing to escape, else one `$'…'`
/// word.
pub fn text(s: &str) -> String {
    text_bytes(s.as_bytes())
}

/// [`text`] of bytes that may not be UTF-8.
pub fn text_bytes(bytes: &[u8]) -> String {
    if is_plain(bytes) {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        dollar_quoted(bytes)
    }
}

/// `s` as a markdown code span: escaped with [`text`] (so it holds no line
/// break), between backtick fences longer than any run of backticks in it.
/// Inside a code span nothing is a link, an image, HTML or emphasis.
pub fn code_span(s: &str) -> String {
    let s = text(s);
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    // One space inside each fence is removed by the renderer: the text can
    // begin or end with a backtick and still be shown exactly.
    format!("{fence} {s} {fence}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_bare_quoted_or_escaped() {
        assert_eq!(word(b"git"), "git");
        assert_eq!(word(b"/usr/bin/rm"), "/usr/bin/rm");
        assert_eq!(word(b"-rf"), "-rf");
        assert_eq!(word(b""), "''");
        assert_eq!(word(b"a b"), "'a b'");
        assert_eq!(word(b"it's"), "'it'\\''s'");
        assert_eq!(word("café".as_bytes()), "'café'");
        assert_eq!(word(b"a\nb"), "$'a\\nb'");
        assert_eq!(
            word(b"x\r\x1b[2K  exec git status\x1b[8m"),
            "$'x\\r\\x1b[2K  exec git status\\x1b[8m'"
        );
        assert_eq!(word(b"\x7f\x00\t"), "$'\\x7f\\x00\\t'");
        assert_eq!(word(b"caf\xe9"), "$'caf\\xe9'");
        assert_eq!(word(b"a\\b'\x01"), "$'a\\\\b\\'\\x01'");
        assert_eq!(word("a\u{202e}b".as_bytes()), "$'a\\u202eb'");
        assert_eq!(word("\u{2066}x\u{2069}".as_bytes()), "$'\\u2066x\\u2069'");
        assert_eq!(word("\u{85}".as_bytes()), "$'\\u0085'");
        assert_eq!(word("\u{200b}".as_bytes()), "$'\\u200b'");
        assert_eq!(word("\u{e0041}".as_bytes()), "$'\\U000e0041'");
        assert_eq!(word("\u{2028}".as_bytes()), "$'\\u2028'");
    }

    #[test]
    fn escaped_forms_hold_no_hidden_characters() {
        let nasty: &[&[u8]] = &[
            b"\r\x1b[2K\x1b]0;title\x07\x08\x0b\x0c",
            "\u{202a}\u{202b}\u{202c}\u{202d}\u{202e}\u{2066}\u{2067}\u{2068}\u{2069}".as_bytes(),
            b"\xff\xfe\xc3",
            "\u{feff}\u{ad}\u{61c}".as_bytes(),
        ];
        for n in nasty {
            for shown in [word(n), text_bytes(n)] {
                assert!(
                    shown.is_ascii() && !shown.chars().any(|c| c.is_ascii_control()),
                    "{shown:?}"
                );
            }
            let span = code_span(&String::from_utf8_lossy(n));
            assert!(!span.chars().any(is_hidden), "{span:?}");
        }
    }

    #[test]
    fn text_is_unchanged_unless_it_must_be_escaped() {
        assert_eq!(
            text("touching files needs a human"),
            "touching files needs a human"
        );
        assert_eq!(text("it's `fine` | here"), "it's `fine` | here");
        assert_eq!(text("line\nbreak"), "$'line\\nbreak'");
        // Already escaped output stays as it is.
        let once = word(b"a\x1bb");
        assert_eq!(text(&once), once);
    }

    #[test]
    fn code_spans_cannot_be_ended_from_inside() {
        assert_eq!(code_span("exec rm"), "` exec rm `");
        assert_eq!(code_span("a`b"), "`` a`b ``");
        assert_eq!(code_span("``x`"), "``` ``x` ```");
        assert_eq!(code_span("a\n| x |"), "` $'a\\n| x |' `");
    }
}
