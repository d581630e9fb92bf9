//! A fast reader for the everyday subset of YAML that manifests, ops files and vars stores use.
//!
//! Why: libyaml (through serde_yaml_ng) spends most of `rosh interpolate`'s time reading a
//! cf-deployment manifest, its ops files and a vars store full of PEM blocks. This reader handles
//! block mappings and sequences, plain and quoted one-line scalars, literal block scalars
//! (`|`, `|-`, `|+`), one-line flow collections, comments, anchors and aliases, and resolves
//! plain scalars exactly as serde_yaml_ng does (null, booleans, integers, floats, strings). On
//! anything else — tags, folded or multi-line scalars, explicit keys, tabs, several documents,
//! duplicate keys, or input that is not valid — it gives up (`None`) and the caller reads the
//! text with serde_yaml_ng, so results and error messages are always that library's. The tests
//! check it against serde_yaml_ng on every corpus document.

use std::collections::HashMap;

use super::{Mapping, Number, Value};

/// Parses `text`, or `None` when it holds something this reader leaves to serde_yaml_ng.
pub(super) fn parse(text: &str) -> Option<Value> {
    if text.starts_with('\u{feff}') || text.bytes().any(|b| b == b'\t' || b == b'\r') {
        return None;
    }
    let terminated = text.ends_with('\n');
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut lines = Vec::with_capacity(body.len() / 24 + 1);
    let mut seen_content = false;
    for raw in body.split('\n') {
        let text = raw.trim_start_matches(' ');
        let indent = raw.len() - text.len();
        if indent == 0 && (raw.starts_with("---") || raw.starts_with("...") || raw.starts_with('%')) {
            // One leading `---` is a plain document start; anything else is left to libyaml.
            if seen_content || raw != "---" {
                return None;
            }
            seen_content = true;
            lines.push(Line { indent, text: "" });
            continue;
        }
        if !text.is_empty() && !text.starts_with('#') {
            seen_content = true;
        }
        lines.push(Line { indent, text });
    }
    let mut parser =
        Parser { raw: body.split('\n').collect(), lines, pos: 0, terminated, depth: 0, anchors: HashMap::new() };
    parser.skip_blank();
    if parser.pos == parser.lines.len() {
        return None;
    }
    let indent = parser.lines[parser.pos].indent;
    let value = parser.node(indent)?;
    parser.skip_blank();
    (parser.pos == parser.lines.len()).then_some(value)
}

#[derive(Clone, Copy)]
struct Line<'a> {
    indent: usize,
    /// The line after its indentation.
    text: &'a str,
}

#[derive(Clone, Copy, PartialEq)]
enum Context {
    /// After `- `: a compact mapping or sequence may start here.
    SequenceItem,
    /// After `key: ` (or an anchor): only a scalar, flow collection or block scalar.
    Value,
}

enum Chomp {
    Strip,
    Clip,
    Keep,
}

const MAX_DEPTH: usize = 100;

struct Parser<'a> {
    raw: Vec<&'a str>,
    lines: Vec<Line<'a>>,
    pos: usize,
    terminated: bool,
    depth: usize,
    anchors: HashMap<&'a str, Value>,
}

fn is_sequence_entry(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

fn is_comment_or_empty(text: &str) -> bool {
    text.is_empty() || text.starts_with('#')
}

impl<'a> Parser<'a> {
    fn skip_blank(&mut self) {
        while self.pos < self.lines.len() && is_comment_or_empty(self.lines[self.pos].text) {
            self.pos += 1;
        }
    }

    /// The block node whose first line is the current one, at `indent`.
    fn node(&mut self, indent: usize) -> Option<Value> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let value =
            if is_sequence_entry(self.lines[self.pos].text) { self.sequence(indent) } else { self.mapping(indent) };
        self.depth -= 1;
        value
    }

    fn sequence(&mut self, indent: usize) -> Option<Value> {
        let mut items = Vec::new();
        loop {
            self.skip_blank();
            let Some(&line) = self.lines.get(self.pos) else { break };
            if line.indent < indent || (line.indent == indent && !is_sequence_entry(line.text)) {
                break;
            }
            if line.indent > indent {
                return None;
            }
            let after = &line.text[1..];
            let content = after.trim_start_matches(' ');
            let column = indent + 1 + (after.len() - content.len());
            let item = if is_comment_or_empty(content) {
                self.pos += 1;
                self.nested(indent, false)?
            } else {
                self.inline(indent, column, content, Context::SequenceItem)?
            };
            items.push(item);
        }
        Some(Value::Sequence(items))
    }

    fn mapping(&mut self, indent: usize) -> Option<Value> {
        let mut map = Mapping::new();
        loop {
            self.skip_blank();
            let Some(&line) = self.lines.get(self.pos) else { break };
            if line.indent < indent {
                break;
            }
            if line.indent > indent || is_sequence_entry(line.text) {
                return None;
            }
            let (key, rest) = split_key(line.text)?;
            let content = rest.trim_start_matches(' ');
            if !rest.is_empty() && content.len() == rest.len() {
                return None;
            }
            let column = indent + (line.text.len() - content.len());
            let value = if is_comment_or_empty(content) {
                self.pos += 1;
                self.nested(indent, true)?
            } else {
                self.inline(indent, column, content, Context::Value)?
            };
            if map.insert(key, value).is_some() {
                return None;
            }
        }
        Some(Value::Mapping(map))
    }

    /// The value of a `key:` or `-` whose line ended: a deeper block, a sequence at the key's
    /// own indentation (`key:\n- a`), or null.
    fn nested(&mut self, indent: usize, in_mapping: bool) -> Option<Value> {
        self.skip_blank();
        let Some(&line) = self.lines.get(self.pos) else { return Some(Value::Null) };
        if line.indent > indent {
            self.node(line.indent)
        } else if in_mapping && line.indent == indent && is_sequence_entry(line.text) {
            self.depth += 1;
            let value = if self.depth > MAX_DEPTH { None } else { self.sequence(indent) };
            self.depth -= 1;
            value
        } else {
            Some(Value::Null)
        }
    }

    /// A node that starts inside the current line at `column` (after `- ` or `key: `); the
    /// enclosing block is at `indent`.
    fn inline(&mut self, indent: usize, column: usize, content: &'a str, context: Context) -> Option<Value> {
        let compact = context == Context::SequenceItem;
        match content.as_bytes()[0] {
            b'[' | b'{' => {
                let (value, rest) = Flow { depth: self.depth }.node(content)?;
                if !trailing_ok(rest) {
                    return None;
                }
                self.pos += 1;
                Some(value)
            }
            b'"' | b'\'' => {
                let (text, rest) = quoted(content)?;
                if trailing_ok(rest) {
                    self.pos += 1;
                    return Some(Value::String(text));
                }
                if compact && key_separator(rest.trim_start_matches(' ')) {
                    return self.compact_mapping(column, content);
                }
                None
            }
            b'|' => {
                let chomp = block_header(&content[1..])?;
                self.pos += 1;
                self.literal(indent, chomp)
            }
            b'&' => {
                let name_len = content[1..].find(' ').map_or(content.len() - 1, |i| i);
                let name = &content[1..1 + name_len];
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                    return None;
                }
                let rest = content[1 + name_len..].trim_start_matches(' ');
                let value = if is_comment_or_empty(rest) {
                    self.pos += 1;
                    self.nested(indent, context == Context::Value)?
                } else {
                    let column = column + (content.len() - rest.len());
                    self.inline(indent, column, rest, Context::Value)?
                };
                self.anchors.insert(name, value.clone());
                Some(value)
            }
            b'*' => {
                let name_len = content[1..].find(' ').map_or(content.len() - 1, |i| i);
                let name = &content[1..1 + name_len];
                if !trailing_ok(&content[1 + name_len..]) {
                    return None;
                }
                let value = self.anchors.get(name)?.clone();
                self.pos += 1;
                Some(value)
            }
            b'-' if is_sequence_entry(content) => {
                if !compact {
                    return None;
                }
                self.lines[self.pos] = Line { indent: column, text: content };
                self.depth += 1;
                let value = if self.depth > MAX_DEPTH { None } else { self.sequence(column) };
                self.depth -= 1;
                value
            }
            b'>' | b'!' | b'?' | b'%' | b'@' | b'`' | b',' | b']' | b'}' | b':' | b'#' => None,
            _ => {
                let text = plain_text(content);
                if has_key_separator(content) {
                    return if compact { self.compact_mapping(column, content) } else { None };
                }
                self.pos += 1;
                resolve(text)
            }
        }
    }

    /// `- key: value` — a mapping whose first key is on the sequence item's line.
    fn compact_mapping(&mut self, column: usize, content: &'a str) -> Option<Value> {
        self.lines[self.pos] = Line { indent: column, text: content };
        self.depth += 1;
        let value = if self.depth > MAX_DEPTH { None } else { self.mapping(column) };
        self.depth -= 1;
        value
    }

    /// A literal block scalar whose header line was just consumed.
    fn literal(&mut self, indent: usize, chomp: Chomp) -> Option<Value> {
        let first = *self.raw.get(self.pos)?;
        let block_indent = first.len() - first.trim_start_matches(' ').len();
        if block_indent == first.len() || block_indent <= indent {
            return None;
        }
        let mut body = String::with_capacity(first.len() * 8);
        let mut empty = 0usize;
        let mut started = false;
        while let Some(&raw) = self.raw.get(self.pos) {
            let spaces = raw.len() - raw.trim_start_matches(' ').len();
            if spaces == raw.len() {
                if spaces > block_indent {
                    return None;
                }
                empty += 1;
                self.pos += 1;
                continue;
            }
            if spaces < block_indent {
                break;
            }
            let content = &raw[block_indent..];
            if content.ends_with(' ') {
                return None;
            }
            if started {
                for _ in 0..=empty {
                    body.push('\n');
                }
            }
            empty = 0;
            started = true;
            body.push_str(content);
            self.pos += 1;
        }
        if self.pos == self.raw.len() && !self.terminated {
            // The last line has no line break: leave the chomping subtleties to libyaml.
            return None;
        }
        match chomp {
            Chomp::Strip => {}
            Chomp::Clip => body.push('\n'),
            Chomp::Keep => body.extend(std::iter::repeat_n('\n', empty + 1)),
        }
        Some(Value::String(body))
    }
}

/// After a complete node: nothing, or a comment after whitespace.
fn trailing_ok(rest: &str) -> bool {
    let trimmed = rest.trim_start_matches(' ');
    trimmed.is_empty() || (trimmed.starts_with('#') && trimmed.len() < rest.len())
}

/// `|`, `|-` or `|+`, then nothing or a comment.
fn block_header(header: &str) -> Option<Chomp> {
    let (chomp, rest) = match header.as_bytes().first() {
        Some(b'-') => (Chomp::Strip, &header[1..]),
        Some(b'+') => (Chomp::Keep, &header[1..]),
        _ => (Chomp::Clip, header),
    };
    (rest.is_empty() || trailing_ok(rest)).then_some(chomp)
}

/// True when `rest` (after a quoted key) is `:` then a space or the end of the line.
fn key_separator(rest: &str) -> bool {
    rest == ":" || rest.starts_with(": ")
}

/// True when a plain line holds `key: ` (or ends in `key:`) before any comment.
fn has_key_separator(text: &str) -> bool {
    find_key_separator(text).is_some()
}

fn find_key_separator(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b':' if i + 1 == bytes.len() || bytes[i + 1] == b' ' => return Some(i),
            b'#' if i > 0 && bytes[i - 1] == b' ' => return None,
            _ => {}
        }
    }
    None
}

/// A plain one-line scalar: up to a comment, without trailing spaces.
fn plain_text(content: &str) -> &str {
    let end = content.find(" #").unwrap_or(content.len());
    content[..end].trim_end_matches(' ')
}

/// Splits a mapping line into its key and what follows the `:`.
fn split_key(text: &str) -> Option<(Value, &str)> {
    match text.as_bytes()[0] {
        b'"' | b'\'' => {
            let (key, rest) = quoted(text)?;
            let rest = rest.trim_start_matches(' ');
            if !key_separator(rest) {
                return None;
            }
            Some((Value::String(key), &rest[1..]))
        }
        b'-' if text.as_bytes().get(1).is_none_or(|b| *b == b' ') => None,
        b'[' | b'{' | b'&' | b'*' | b'!' | b'|' | b'>' | b'?' | b'%' | b'@' | b'`' | b',' | b']' | b'}' | b':'
        | b'#' => None,
        _ => {
            let at = find_key_separator(text)?;
            let key = text[..at].trim_end_matches(' ');
            if key.is_empty() || key.len() > 1000 || key.contains(" #") {
                return None;
            }
            Some((resolve(key)?, &text[at + 1..]))
        }
    }
}

/// A one-line quoted scalar at the start of `text`; answers it and what follows.
fn quoted(text: &str) -> Option<(String, &str)> {
    let quote = text.as_bytes()[0];
    let mut out = String::new();
    let mut chars = text[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' if quote == b'\'' => {
                if text[1 + i + 1..].starts_with('\'') {
                    chars.next();
                    out.push('\'');
                } else {
                    return Some((out, &text[1 + i + 1..]));
                }
            }
            '"' if quote == b'"' => return Some((out, &text[1 + i + 1..])),
            '\\' if quote == b'"' => {
                let (_, e) = chars.next()?;
                let hex = |chars: &mut std::str::CharIndices, n: usize| -> Option<char> {
                    let mut v = 0u32;
                    for _ in 0..n {
                        v = v * 16 + chars.next()?.1.to_digit(16)?;
                    }
                    char::from_u32(v)
                };
                out.push(match e {
                    '0' => '\0',
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    't' => '\t',
                    'n' => '\n',
                    'v' => '\u{b}',
                    'f' => '\u{c}',
                    'r' => '\r',
                    'e' => '\u{1b}',
                    ' ' => ' ',
                    '"' => '"',
                    '\\' => '\\',
                    'N' => '\u{85}',
                    '_' => '\u{a0}',
                    'L' => '\u{2028}',
                    'P' => '\u{2029}',
                    'x' => hex(&mut chars, 2)?,
                    'u' => hex(&mut chars, 4)?,
                    'U' => hex(&mut chars, 8)?,
                    _ => return None,
                });
            }
            c => out.push(c),
        }
    }
    None
}

/// A one-line flow collection (`[a, b]`, `{k: v}`), nested ones included.
struct Flow {
    depth: usize,
}

impl Flow {
    fn node<'t>(&mut self, text: &'t str) -> Option<(Value, &'t str)> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let result = match text.as_bytes().first()? {
            b'[' => self.sequence(&text[1..]),
            b'{' => self.mapping(&text[1..]),
            b'"' | b'\'' => quoted(text).map(|(s, rest)| (Value::String(s), rest)),
            _ => {
                let end = text.find([',', ']', '}', '[', '{']).unwrap_or(text.len());
                if matches!(text.as_bytes().get(end), Some(b'[' | b'{')) {
                    return None;
                }
                Some((flow_plain(&text[..end])?, &text[end..]))
            }
        };
        self.depth -= 1;
        result
    }

    fn sequence<'t>(&mut self, text: &'t str) -> Option<(Value, &'t str)> {
        let mut items = Vec::new();
        let mut rest = text.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix(']') {
            return Some((Value::Sequence(items), after));
        }
        loop {
            let (item, after) = self.node(rest)?;
            items.push(item);
            rest = after.trim_start_matches(' ');
            if let Some(after) = rest.strip_prefix(']') {
                return Some((Value::Sequence(items), after));
            }
            rest = rest.strip_prefix(',')?.trim_start_matches(' ');
            if rest.starts_with(']') {
                return None;
            }
        }
    }

    fn mapping<'t>(&mut self, text: &'t str) -> Option<(Value, &'t str)> {
        let mut map = Mapping::new();
        let mut rest = text.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((Value::Mapping(map), after));
        }
        loop {
            let (key, after) = match rest.as_bytes().first()? {
                b'"' | b'\'' => {
                    let (s, after) = quoted(rest)?;
                    (Value::String(s), after.trim_start_matches(' '))
                }
                b'[' | b'{' => return None,
                _ => {
                    let end = rest.find([':', ',', ']', '}', '[', '{'])?;
                    (flow_plain(&rest[..end])?, &rest[end..])
                }
            };
            let after = after.strip_prefix(": ")?;
            let (value, after) = self.node(after.trim_start_matches(' '))?;
            if map.insert(key, value).is_some() {
                return None;
            }
            rest = after.trim_start_matches(' ');
            if let Some(after) = rest.strip_prefix('}') {
                return Some((Value::Mapping(map), after));
            }
            rest = rest.strip_prefix(',')?.trim_start_matches(' ');
            if rest.starts_with('}') {
                return None;
            }
        }
    }
}

/// A plain scalar inside a flow collection; only the unremarkable ones.
fn flow_plain(text: &str) -> Option<Value> {
    let text = text.trim_end_matches(' ');
    let first = *text.as_bytes().first()?;
    if matches!(first, b'-' | b'?' | b':' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`' | b'#' | b'\'' | b'"')
        && !(first == b'-' && text.as_bytes().get(1).is_some_and(u8::is_ascii_digit))
    {
        return None;
    }
    if text.contains([':', '#']) {
        return None;
    }
    resolve(text)
}

/// What serde_yaml_ng makes of a plain scalar: null, a boolean, an integer, a float or a string.
/// `None` for integers beyond 64 bits, which it rejects.
fn resolve(text: &str) -> Option<Value> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.')) {
        return Some(Value::String(text.to_string()));
    }
    if let Some(n) = unsigned(text) {
        return u64::try_from(n).ok().map(|n| Value::Number(n.into()));
    }
    if let Some(n) = negative(text) {
        return i64::try_from(n).ok().map(|n| Value::Number(n.into()));
    }
    if !leading_zero_digits(text)
        && let Some(f) = float(text)
    {
        return Some(Value::Number(Number::from(f)));
    }
    Some(Value::String(text.to_string()))
}

/// Digits in the given radix, without a sign of their own.
fn radix(digits: &str, base: u32) -> Option<u128> {
    if digits.starts_with(['+', '-']) {
        return None;
    }
    u128::from_str_radix(digits, base).ok()
}

fn unsigned(text: &str) -> Option<u128> {
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    for (prefix, base) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(digits) = unsigned.strip_prefix(prefix) {
            if digits.starts_with(['+', '-']) {
                return None;
            }
            if let Some(n) = radix(digits, base) {
                return Some(n);
            }
        }
    }
    if unsigned.starts_with(['+', '-']) || leading_zero_digits(text) {
        return None;
    }
    radix(unsigned, 10)
}

fn negative(text: &str) -> Option<i128> {
    for (prefix, base) in [("-0x", 16), ("-0o", 8), ("-0b", 2)] {
        if let Some(digits) = text.strip_prefix(prefix)
            && let Ok(n) = i128::from_str_radix(&format!("-{digits}"), base)
        {
            return Some(n);
        }
    }
    if leading_zero_digits(text) {
        return None;
    }
    text.parse::<i128>().ok()
}

/// `007`, `-01`: digits after a leading zero are a string in YAML 1.2.
fn leading_zero_digits(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    digits.len() > 1 && digits.starts_with('0') && digits[1..].bytes().all(|b| b.is_ascii_digit())
}

fn float(text: &str) -> Option<f64> {
    let unsigned = match text.strip_prefix('+') {
        Some(rest) if rest.starts_with(['+', '-']) => return None,
        Some(rest) => rest,
        None => text,
    };
    match unsigned {
        ".inf" | ".Inf" | ".INF" => return Some(f64::INFINITY),
        _ => {}
    }
    match text {
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    unsigned.parse::<f64>().ok().filter(|f| f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    /// The fast reader either declines or agrees with serde_yaml_ng.
    fn agrees(text: &str) -> bool {
        match parse(text) {
            Some(fast) => {
                let slow: Result<Value, _> = serde_yaml_ng::from_str(text);
                assert_eq!(Some(&fast), slow.as_ref().ok(), "fast reader differs on:\n{text}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn everyday_documents_are_read_like_serde_yaml() {
        for text in [
            "a: 1\nb: two\nc:\n  d: [x, 'y', \"z\"]\n  e: {}\n  f: []\n",
            "list:\n- a\n- name: b\n  v: 2\n- - nested\n  - again\n-\n  k: v\n- \n",
            "---\n# comment\nk: v # trailing\nq: 'it''s'\ndq: \"tab\\there \\u00e9 \\\\ \\\"\"\n",
            "n: ~\nt: true\nf: False\ni: -12\nh: 0x1F\no: 0o17\nfl: 1.5\ne: 1e3\ninf: .inf\nz: 007\nv: 1.2.3\n",
            "s: |\n  line one\n\n  line three\nkeep: |+\n  a\n\nstrip: |-\n  b\n  c\nafter: 1\n",
            "base: &b {x: 1, y: 2}\nchild:\n  <<: *b\n  y: 3\nl: &l\n- 1\nm: *l\n",
            "- &item\n  name: a\n- *item\n- &s scalar\n- *s\n",
            "url: http://example.com:8080/a#frag\nempty_key_value:\nport: 80\n'quoted key': 1\n\"dq\": 2\n",
            "1: int key\ntrue: bool key\n~: null key\n",
            "a:\n- x\nb: y\n",
            "k: [1, -2, 3.5, true, null, a b, {q: r}]\n",
            "big: 18446744073709551615\nneg: -9223372036854775808\n",
        ] {
            assert!(agrees(text), "declined:\n{text}");
        }
    }

    #[test]
    fn unusual_documents_are_left_to_serde_yaml() {
        for text in [
            "a: >\n  folded\n",
            "a: !tag x\n",
            "a: multi\n  line\n",
            "a: 1\na: 2\n",
            "? complex\n: key\n",
            "a: 1\n---\nb: 2\n",
            "a:\tb\n",
            "a: 'open\n  quote'\n",
            "a: [1,\n  2]\n",
            "just a scalar\n",
            "a: b: c\n",
            "a: |2\n   x\n",
            "a: *missing\n",
            "a: 99999999999999999999999\n",
            "a: |\n  no final newline",
            "  a: 1\n b: 2\n",
        ] {
            assert!(parse(text).is_none(), "accepted:\n{text}");
        }
    }

    #[test]
    fn every_corpus_document_reads_the_same() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
        let (mut accepted, mut total) = (0, 0);
        for path in super::super::corpus_yaml_files() {
            let text = std::fs::read_to_string(&path).unwrap();
            total += 1;
            if agrees(&text) {
                accepted += 1;
            }
            // What rosh writes (a vars store, an interpolated manifest) reads back fast.
            if let Ok(doc) = serde_yaml_ng::from_str::<Value>(&text) {
                let mut doc = doc;
                if doc.apply_merge().is_ok() && super::super::emit::emit(&doc).is_some() {
                    let out = super::super::to_string(&doc);
                    if !agrees(&out) && doc.is_mapping() && doc.as_mapping().is_some_and(|m| !m.is_empty()) {
                        panic!("emitted form of {} declined", path.display());
                    }
                }
            }
        }
        eprintln!("fast reader took {accepted} of {total} corpus documents");
        assert!(total > 300 && accepted * 10 > total * 8, "accepted {accepted} of {total}");
        let cf = root.join("cf-deployment/v58.0.0");
        for file in [
            "cf-deployment.yml",
            "operations/use-compiled-releases.yml",
            "operations/windows2019-cell.yml",
            "operations/use-external-dbs.yml",
        ] {
            assert!(parse(&std::fs::read_to_string(cf.join(file)).unwrap()).is_some(), "{file} declined");
        }
        assert_eq!(reference("a: 1\n"), parse("a: 1\n").unwrap());
    }
}
