//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! Every ledger line is the canonical form of its record, and its hash is
//! taken over exactly those bytes. This module owns both directions:
//! [`Value::to_canonical`] writes canonical JSON, and [`parse`] reads JSON,
//! in [`Mode::Strict`] refusing any byte sequence that is not already
//! canonical (whitespace, unsorted or duplicate keys, non-minimal escapes,
//! non-canonical numbers), so that one record has exactly one encoding.
//! [`Mode::Lenient`] accepts any JSON (for [`canonicalize`]).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::Write as _;

/// A JSON value. Strings borrow from the parsed text when they contain no
/// escapes, so parsing a ledger line allocates little.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Number(f64),
    String(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    /// Members in the order they appeared (parsed) or were added (built);
    /// [`Value::to_canonical`] sorts them.
    Object(Vec<(Cow<'a, str>, Value<'a>)>),
}

/// Why a text is not (canonical) JSON, with the byte offset where it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JcsError {
    pub offset: usize,
    pub message: String,
}

impl std::fmt::Display for JcsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl std::error::Error for JcsError {}

/// How strictly [`parse`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only the canonical encoding is accepted.
    Strict,
    /// Any RFC 8259 JSON is accepted (duplicate keys are still refused).
    Lenient,
}

/// Compare two keys by their UTF-16 code units, as RFC 8785 §3.2.3 requires.
#[inline]
pub fn cmp_keys(a: &str, b: &str) -> Ordering {
    // UTF-8 byte order is code point order, which equals UTF-16 order up to
    // the first difference as long as that difference is in ASCII.
    let (x, y) = (a.as_bytes(), b.as_bytes());
    for (&p, &q) in x.iter().zip(y) {
        if p != q {
            if p < 0x80 && q < 0x80 {
                return p.cmp(&q);
            }
            return a.encode_utf16().cmp(b.encode_utf16());
        }
    }
    x.len().cmp(&y.len())
}

/// Whether any of the 8 bytes in `w` is `"`, `\` or below 0x20 (SWAR).
#[inline]
fn needs_attention(w: u64) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let below_20 = w.wrapping_sub(LO * 0x20) & !w & HI;
    (zero(w ^ (LO * u64::from(b'"'))) | zero(w ^ (LO * u64::from(b'\\'))) | below_20) != 0
}

impl<'a> Value<'a> {
    /// A string value.
    pub fn str(s: impl Into<Cow<'a, str>>) -> Value<'a> {
        Value::String(s.into())
    }

    /// The canonical encoding. Fails only for non-finite numbers.
    pub fn to_canonical(&self) -> Result<String, JcsError> {
        let mut out = String::with_capacity(256);
        self.write_canonical(&mut out)?;
        Ok(out)
    }

    /// Append the canonical encoding to `out`.
    pub fn write_canonical(&self, out: &mut String) -> Result<(), JcsError> {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(true) => out.push_str("true"),
            Value::Bool(false) => out.push_str("false"),
            Value::Number(n) => write_number(*n, out)?,
            Value::String(s) => write_string(s, out),
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_canonical(out)?;
                }
                out.push(']');
            }
            Value::Object(members) => {
                // Records are built in key order already; sort only if not.
                let sorted = members
                    .windows(2)
                    .all(|w| cmp_keys(&w[0].0, &w[1].0) == Ordering::Less);
                if sorted {
                    // No duplicates either (strictly increasing keys).
                    out.push('{');
                    for (i, (k, v)) in members.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        write_string(k, out);
                        out.push(':');
                        v.write_canonical(out)?;
                    }
                    out.push('}');
                    return Ok(());
                }
                let mut order: Vec<usize> = (0..members.len()).collect();
                order.sort_by(|&x, &y| cmp_keys(&members[x].0, &members[y].0));
                out.push('{');
                for (i, &m) in order.iter().enumerate() {
                    if i > 0 {
                        if members[order[i - 1]].0 == members[m].0 {
                            return Err(JcsError {
                                offset: 0,
                                message: format!("duplicate key {:?}", members[m].0),
                            });
                        }
                        out.push(',');
                    }
                    write_string(&members[m].0, out);
                    out.push(':');
                    members[m].1.write_canonical(out)?;
                }
                out.push('}');
            }
        }
        Ok(())
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// Write a string with exactly the escapes RFC 8785 §3.2.2.2 prescribes.
pub fn write_string(s: &str, out: &mut String) {
    out.push('"');
    let bytes = s.as_bytes();
    // Skip 8 bytes at a time while none needs escaping.
    let mut clean = 0;
    while let Some(chunk) = bytes.get(clean..clean + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        if needs_attention(u64::from_le_bytes(w)) {
            break;
        }
        clean += 8;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(clean) {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Format a number as ECMAScript's `Number.prototype.toString` does
/// (RFC 8785 §3.2.2.3).
pub fn format_number(v: f64) -> Result<String, JcsError> {
    let mut s = String::new();
    write_number(v, &mut s)?;
    Ok(s)
}

fn write_number(v: f64, out: &mut String) -> Result<(), JcsError> {
    if !v.is_finite() {
        return Err(JcsError {
            offset: 0,
            message: format!("{v} cannot be represented in JSON"),
        });
    }
    if v == 0.0 {
        out.push('0');
        return Ok(());
    }
    // Fast path: integers below 2^53 print as integers (their shortest
    // round-trip form); larger ones go through the general rule.
    if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        let _ = write!(out, "{}", v as i128);
        return Ok(());
    }
    if v < 0.0 {
        out.push('-');
    }
    // `{:e}` yields the shortest digit string that round-trips, e.g. "1.5e-7".
    let sci = format!("{:e}", v.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: String = mant.chars().filter(|c| *c != '.').collect();
    break_tie_to_even(v.abs(), exp, &mut digits);
    let k = digits.len() as i32;
    let n = exp + 1;
    if k <= n && n <= 21 {
        out.push_str(&digits);
        for _ in 0..(n - k) {
            out.push('0');
        }
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        for _ in 0..(-n) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if n > 0 { '+' } else { '-' });
        let _ = write!(out, "{}", (n - 1).abs());
    }
    Ok(())
}

/// ECMAScript picks, among the shortest digit strings that round-trip, the
/// one closest to the exact value, and the even one on a tie; the shortest
/// form from `{:e}` may round a tie up. `digits` (k significant digits,
/// decimal exponent `exp`) is corrected in that case.
fn break_tie_to_even(a: f64, exp: i32, digits: &mut String) {
    let k = digits.len();
    // The exact decimal expansion of a double has at most 767 significant
    // digits, so this is exact.
    let exact = format!("{a:.800e}");
    let Some((em, ee)) = exact.split_once('e') else {
        return;
    };
    if ee.parse::<i32>().ok() != Some(exp) {
        return;
    }
    let ed: String = em.chars().filter(|c| *c != '.').collect();
    if ed.len() <= k {
        return;
    }
    let rest = &ed[k..];
    if !(rest.starts_with('5') && rest[1..].bytes().all(|c| c == b'0')) {
        return;
    }
    let Ok(low) = ed[..k].parse::<u64>() else {
        return;
    };
    let even = if low % 2 == 0 { low } else { low + 1 };
    let cand = format!("{even:0k$}");
    if cand.len() != k {
        return;
    }
    let as_num = format!("{}.{}e{}", &cand[..1], &cand[1..], exp);
    if as_num.parse::<f64>().ok() == Some(a) {
        *digits = cand;
    }
}

/// Parse `text` as one JSON value. In [`Mode::Strict`] the text must be the
/// canonical encoding of the value it denotes.
pub fn parse(text: &str, mode: Mode) -> Result<Value<'_>, JcsError> {
    let mut p = Parser {
        s: text,
        b: text.as_bytes(),
        i: 0,
        strict: mode == Mode::Strict,
        depth: 0,
    };
    p.ws();
    let v = p.value().map_err(|e| *e)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(*p.err("trailing characters after the value"));
    }
    Ok(v)
}

/// Canonicalize any JSON text (RFC 8785).
pub fn canonicalize(text: &str) -> Result<String, JcsError> {
    parse(text, Mode::Lenient)?.to_canonical()
}

const MAX_DEPTH: usize = 64;

/// Parser results carry a boxed error so that the common `Ok` path moves
/// less data.
type PResult<T> = Result<T, Box<JcsError>>;

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    strict: bool,
    depth: usize,
}

impl<'a> Parser<'a> {
    #[cold]
    fn err(&self, msg: impl Into<String>) -> Box<JcsError> {
        Box::new(JcsError {
            offset: self.i,
            message: msg.into(),
        })
    }

    fn ws(&mut self) {
        if self.strict {
            return;
        }
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn value(&mut self) -> PResult<Value<'a>> {
        match self.b.get(self.i) {
            None => Err(self.err("unexpected end of input")),
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b' ' | b'\t' | b'\n' | b'\r') => Err(self.err("whitespace is not canonical")),
            Some(_) => Err(self.err("expected a JSON value")),
        }
    }

    fn literal(&mut self, word: &str, v: Value<'a>) -> PResult<Value<'a>> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        Ok(())
    }

    fn object(&mut self) -> PResult<Value<'a>> {
        self.enter()?;
        self.i += 1;
        let mut members: Vec<(Cow<'a, str>, Value<'a>)> =
            Vec::with_capacity(if self.depth == 1 { 20 } else { 4 });
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return Err(self.err("expected an object key"));
            }
            let key_at = self.i;
            let key = self.string()?;
            if let Some((last, _)) = members.last() {
                match cmp_keys(last, &key) {
                    Ordering::Less => {}
                    Ordering::Equal => {
                        return Err(Box::new(JcsError {
                            offset: key_at,
                            message: format!("duplicate key {key:?}"),
                        }))
                    }
                    Ordering::Greater if self.strict => {
                        return Err(Box::new(JcsError {
                            offset: key_at,
                            message: format!("key {key:?} is out of canonical order"),
                        }))
                    }
                    Ordering::Greater => {
                        if members.iter().any(|(k, _)| *k == key) {
                            return Err(Box::new(JcsError {
                                offset: key_at,
                                message: format!("duplicate key {key:?}"),
                            }));
                        }
                    }
                }
            }
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return Err(self.err("expected ':'"));
            }
            self.i += 1;
            self.ws();
            let v = self.value()?;
            members.push((key, v));
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
        self.depth -= 1;
        Ok(Value::Object(members))
    }

    fn array(&mut self) -> PResult<Value<'a>> {
        self.enter()?;
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value()?);
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
        self.depth -= 1;
        Ok(Value::Array(items))
    }

    fn hex4(&mut self) -> PResult<u16> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("truncated \\u escape"))?;
        if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(self.err("invalid \\u escape"));
        }
        if self.strict && h.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(self.err("\\u escape must use lowercase hex"));
        }
        self.i += 4;
        // Four hex digits always fit in u16.
        u16::from_str_radix(h, 16).map_err(|_| self.err("invalid \\u escape"))
    }

    fn string(&mut self) -> PResult<Cow<'a, str>> {
        self.i += 1; // opening quote
        let start = self.i;
        // Fast scan, 8 bytes at a time, over bytes that need no attention.
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            if needs_attention(u64::from_le_bytes(w)) {
                break;
            }
            self.i += 8;
        }
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'"' => {
                    let s = &self.s[start..self.i];
                    self.i += 1;
                    return Ok(Cow::Borrowed(s));
                }
                b'\\' => break,
                0..=0x1f => return Err(self.err("unescaped control character in string")),
                _ => self.i += 1,
            }
        }
        let mut out = String::from(&self.s[start..self.i]);
        loop {
            let c = match self.b.get(self.i) {
                None => return Err(self.err("unterminated string")),
                Some(&c) => c,
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(Cow::Owned(out));
                }
                0..=0x1f => return Err(self.err("unescaped control character in string")),
                b'\\' => {
                    let at = self.i;
                    self.i += 1;
                    let e = *self
                        .b
                        .get(self.i)
                        .ok_or_else(|| self.err("truncated escape"))?;
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' if !self.strict => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let u = self.hex4()?;
                            let ch = if (0xd800..0xdc00).contains(&u) {
                                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return Err(self.err("unpaired surrogate"));
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Err(self.err("unpaired surrogate"));
                                }
                                let cp = 0x10000
                                    + (((u as u32) - 0xd800) << 10)
                                    + ((lo as u32) - 0xdc00);
                                char::from_u32(cp).ok_or_else(|| self.err("invalid code point"))?
                            } else {
                                char::from_u32(u as u32)
                                    .ok_or_else(|| self.err("unpaired surrogate"))?
                            };
                            let short = matches!(ch, '\u{8}' | '\u{c}' | '\n' | '\r' | '\t');
                            if self.strict && (ch > '\u{1f}' || short) {
                                return Err(Box::new(JcsError {
                                    offset: at,
                                    message: "\\u escape is not canonical here".into(),
                                }));
                            }
                            out.push(ch);
                        }
                        _ => {
                            return Err(Box::new(JcsError {
                                offset: at,
                                message: "invalid or non-canonical escape".into(),
                            }))
                        }
                    }
                }
                _ => {
                    // Copy one UTF-8 character.
                    let ch_len = utf8_len(c);
                    let end = (self.i + ch_len).min(self.b.len());
                    out.push_str(&self.s[self.i..end]);
                    self.i = end;
                }
            }
        }
    }

    fn number(&mut self) -> PResult<Value<'a>> {
        let start = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = self.b.get(self.i) {
                    self.i += 1;
                }
            }
            _ => return Err(self.err("invalid number")),
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            let d = self.i;
            while let Some(b'0'..=b'9') = self.b.get(self.i) {
                self.i += 1;
            }
            if d == self.i {
                return Err(self.err("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            let d = self.i;
            while let Some(b'0'..=b'9') = self.b.get(self.i) {
                self.i += 1;
            }
            if d == self.i {
                return Err(self.err("invalid number"));
            }
        }
        let text = &self.s[start..self.i];
        // Fast path: a plain integer of at most 15 digits is exact, and the
        // grammar above already refused leading zeros; only "-0" is not
        // canonical.
        let digits = text.strip_prefix('-').unwrap_or(text);
        if digits.len() <= 15 && digits.bytes().all(|c| c.is_ascii_digit()) {
            if self.strict && text == "-0" {
                return Err(Box::new(JcsError {
                    offset: start,
                    message: "number -0 is not in canonical form".into(),
                }));
            }
            let n = digits
                .bytes()
                .fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0'));
            let n = if text.starts_with('-') { -n } else { n };
            return Ok(Value::Number(n as f64));
        }
        let v: f64 = text.parse().map_err(|_| {
            Box::new(JcsError {
                offset: start,
                message: "invalid number".into(),
            })
        })?;
        if !v.is_finite() {
            return Err(Box::new(JcsError {
                offset: start,
                message: "number out of range".into(),
            }));
        }
        if self.strict && format_number(v).map_err(Box::new)? != text {
            return Err(Box::new(JcsError {
                offset: start,
                message: format!("number {text} is not in canonical form"),
            }));
        }
        Ok(Value::Number(v))
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_round_trip_and_rejections() {
        let c = r#"{"a":[1,"x\n",null,true],"b":{"c":-2.5}}"#;
        let v = parse(c, Mode::Strict).expect("canonical");
        assert_eq!(v.to_canonical().expect("finite"), c);
        for bad in [
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a": 1}"#,
            r#"{"a":1.0}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":"\u000A"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a":1e2}"#,
            r#"{"a":01}"#,
            r#" {"a":1}"#,
            "{\"a\":\"\t\"}",
        ] {
            assert!(parse(bad, Mode::Strict).is_err(), "accepted {bad}");
        }
        assert!(parse(r#"{"a":"\u001f"}"#, Mode::Strict).is_ok());
    }

    #[test]
    fn strings_with_specials_at_every_offset_round_trip() {
        for special in ["\"", "\\", "\n", "\u{1}", "é", "\u{1F600}", "\u{7f}"] {
            for at in 0..20 {
                let s: String = "x".repeat(at) + special + &"y".repeat(20 - at);
                let v = Value::String(s.clone().into());
                let c = v.to_canonical().expect("finite");
                assert_eq!(parse(&c, Mode::Strict).expect("canonical"), v, "{c}");
                let raw = format!("\"{}{}\"", "x".repeat(at), '\u{1}');
                assert!(parse(&raw, Mode::Strict).is_err());
            }
        }
        assert_eq!(cmp_keys("a", "ab"), Ordering::Less);
        assert_eq!(cmp_keys("\u{e000}", "\u{1F600}"), Ordering::Greater);
        assert_eq!(cmp_keys("z", "\u{e9}"), Ordering::Less);
    }
}
