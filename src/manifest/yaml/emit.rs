//! A block-style YAML emitter for documents, in the layout `bosh interpolate` prints.
//!
//! Why not libyaml's emitter (through serde_yaml_ng): on a cf-deployment manifest full of PEM
//! certificates it was a quarter of `rosh interpolate`'s run time, and this one writes the same
//! layout in a single pass. The layout: two-space indented mappings; sequences not indented under
//! their key (`key:\n- a`); multi-line strings as literal blocks (`|`, `|-`, `|+`); a string is
//! written plain only when it would read back as that same string, otherwise single- or
//! double-quoted. Documents it cannot lay out (non-scalar keys, tags) are left to
//! serde_yaml_ng. The tests check that every corpus document reads back identical.

use std::fmt::Write;

use super::{Mapping, Value};

/// Emits `value`, or `None` when it holds something this emitter leaves to serde_yaml_ng.
pub(super) fn emit(value: &Value) -> Option<String> {
    if !supported(value) {
        return None;
    }
    let mut out = String::with_capacity(4096);
    match value {
        Value::Mapping(map) if !map.is_empty() => mapping(map, 0, false, &mut out),
        Value::Sequence(items) if !items.is_empty() => sequence(items, 0, false, &mut out),
        scalar => {
            inline_scalar(scalar, 0, &mut out);
            out.push('\n');
        }
    }
    Some(out)
}

fn supported(value: &Value) -> bool {
    match value {
        Value::Mapping(map) => map.iter().all(|(k, v)| is_plain_key(k) && supported(v)),
        Value::Sequence(items) => items.iter().all(supported),
        Value::Tagged(_) => false,
        _ => true,
    }
}

fn is_plain_key(key: &Value) -> bool {
    matches!(key, Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null)
}

fn pad(indent: usize, out: &mut String) {
    const SPACES: &str = "                                                                ";
    let mut left = indent;
    while left > 0 {
        let n = left.min(SPACES.len());
        out.push_str(&SPACES[..n]);
        left -= n;
    }
}

/// Writes a non-empty mapping at `indent`. With `inline_first`, the first key continues the
/// current line (after `- `).
fn mapping(map: &Mapping, indent: usize, inline_first: bool, out: &mut String) {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 || !inline_first {
            pad(indent, out);
        }
        key_text(key, out);
        out.push(':');
        match value {
            Value::Mapping(m) if !m.is_empty() => {
                out.push('\n');
                mapping(m, indent + 2, false, out);
            }
            Value::Sequence(s) if !s.is_empty() => {
                out.push('\n');
                sequence(s, indent, false, out);
            }
            scalar => {
                out.push(' ');
                inline_scalar(scalar, indent + 2, out);
                out.push('\n');
            }
        }
    }
}

/// Writes a non-empty sequence with its dashes at `indent`.
fn sequence(items: &[Value], indent: usize, inline_first: bool, out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 || !inline_first {
            pad(indent, out);
        }
        out.push_str("- ");
        match item {
            Value::Mapping(m) if !m.is_empty() => mapping(m, indent + 2, true, out),
            Value::Sequence(s) if !s.is_empty() => sequence(s, indent + 2, true, out),
            scalar => {
                inline_scalar(scalar, indent + 2, out);
                out.push('\n');
            }
        }
    }
}

/// A scalar (or empty collection) after `key: ` or `- `; block scalars' lines go at `indent`.
fn inline_scalar(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => string(s, indent, true, out),
        Value::Mapping(_) => out.push_str("{}"),
        Value::Sequence(_) => out.push_str("[]"),
        Value::Tagged(_) => unreachable!("tagged values are left to serde_yaml_ng"),
    }
}

fn key_text(key: &Value, out: &mut String) {
    match key {
        Value::String(s) => string(s, 0, false, out),
        other => inline_scalar(other, 0, out),
    }
}

fn string(s: &str, indent: usize, block_ok: bool, out: &mut String) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else if block_ok && literal_block_ok(s) {
        literal_block(s, indent, out);
    } else if !s.chars().any(|c| c.is_control() || c == '\u{feff}') {
        out.push('\'');
        out.push_str(&s.replace('\'', "''"));
        out.push('\'');
    } else {
        double_quoted(s, out);
    }
}

/// Words YAML 1.1 or 1.2 readers (bosh's Go library among them) take as null or booleans.
const RESERVED: [&str; 22] = [
    "null", "Null", "NULL", "~", "true", "True", "TRUE", "false", "False", "FALSE", "yes", "Yes", "YES", "no", "No",
    "NO", "on", "On", "ON", "off", "Off", "OFF",
];

fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else { return false };
    if RESERVED.contains(&s) || matches!(s, "y" | "Y" | "n" | "N" | "=" | "<<") {
        return false;
    }
    // Anything that could read as a number (or a date, or .inf/.nan) is quoted.
    if first.is_ascii_digit() || matches!(first, '+' | '.') || s.starts_with("---") {
        return false;
    }
    if first == '-' && s.chars().nth(1).is_none_or(|c| c.is_ascii_digit() || c == '.' || c == ' ') {
        return false;
    }
    if matches!(
        first,
        '?' | ':'
            | ','
            | '['
            | ']'
            | '{'
            | '}'
            | '#'
            | '&'
            | '*'
            | '!'
            | '|'
            | '>'
            | '\''
            | '"'
            | '%'
            | '@'
            | '`'
            | ' '
    ) {
        return false;
    }
    if s.ends_with([' ', ':']) || s.contains(": ") || s.contains(" #") {
        return false;
    }
    !has_special(s, false)
}

/// True when `s` holds a control character (a line break too, unless `newline_ok`), a BOM, or a
/// Unicode line or paragraph separator. One pass over the bytes: certificates are long.
fn has_special(s: &str, newline_ok: bool) -> bool {
    let bytes = s.as_bytes();
    // Printable ASCII (and line breaks) is the common case, and checks quickest.
    if bytes.iter().all(|&b| (0x20..0x7f).contains(&b) || b == b'\n') {
        return !newline_ok && bytes.contains(&b'\n');
    }
    bytes.iter().enumerate().any(|(i, &b)| match b {
        b'\n' => !newline_ok,
        0..=0x1f | 0x7f => true,
        // U+0080..U+009F (C1 controls, U+0085 among them)
        0xc2 => matches!(bytes.get(i + 1), Some(0x80..=0x9f)),
        // U+2028, U+2029
        0xe2 => bytes.get(i + 1) == Some(&0x80) && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9)),
        // U+FEFF
        0xef => bytes.get(i + 1) == Some(&0xbb) && bytes.get(i + 2) == Some(&0xbf),
        _ => false,
    })
}

fn literal_block_ok(s: &str) -> bool {
    // No line may end in a space (`\r` is a control character, refused above).
    s.contains('\n') && !s.starts_with([' ', '\n']) && !has_special(s, true) && !s.contains(" \n") && !s.ends_with(' ')
}

fn literal_block(s: &str, indent: usize, out: &mut String) {
    let trailing = s.len() - s.trim_end_matches('\n').len();
    out.push_str(match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    });
    let body = s.trim_end_matches('\n');
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            pad(indent, out);
            out.push_str(line);
        }
    }
    for _ in 1..trailing {
        out.push('\n');
    }
}

fn double_quoted(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || matches!(c, '\u{feff}' | '\u{85}' | '\u{2028}' | '\u{2029}') => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::super::{parse, to_string};
    use super::*;

    fn round_trip(text: &str) -> String {
        let doc = parse(text, "t").unwrap();
        let out = to_string(&doc);
        assert_eq!(parse(&out, "again").unwrap(), doc, "round trip of:\n{out}");
        out
    }

    #[test]
    fn layout_matches_bosh_interpolate() {
        let out = round_trip("a: 1\nlist:\n- x\n- {k: v, j: [1, 2]}\n- [p, q]\nempty: {}\nnone: []\nnothing: ~\n");
        assert_eq!(
            out,
            "a: 1\nlist:\n- x\n- k: v\n  j:\n  - 1\n  - 2\n- - p\n  - q\nempty: {}\nnone: []\nnothing: null\n"
        );
    }

    #[test]
    fn strings_that_would_change_type_are_quoted() {
        for s in [
            "1.1",
            "80",
            "true",
            "no",
            "~",
            "",
            " lead",
            "trail ",
            "a: b",
            "-1",
            ".inf",
            "0x1f",
            "#c",
            "*x",
            "2024-01-01",
        ] {
            let doc = Value::String(s.to_string());
            let out = to_string(&doc);
            assert_eq!(parse(&out, "t").unwrap(), doc, "{s:?} emitted as {out:?}");
        }
        assert_eq!(to_string(&Value::from("latest")), "latest\n");
        assert_eq!(to_string(&Value::from("/var/vcap")), "/var/vcap\n");
    }

    #[test]
    fn multi_line_strings_are_literal_blocks() {
        let out = round_trip(
            "k:\n  cert: |\n    -----BEGIN-----\n    abc\n    -----END-----\n  chomp: |-\n    a\n    b\n  keep: |+\n    a\n\n",
        );
        assert!(out.contains("cert: |\n    -----BEGIN-----\n    abc\n"), "{out}");
        assert!(out.contains("chomp: |-\n    a\n    b\n"), "{out}");
        round_trip("s: \"line one\\n  indented\\n\\nafter blank\\n\"\n");
        round_trip("s: \"tabs\\tand\\u0001control\\nx\"\n");
        round_trip("- |\n  in a list\n  here\n");
    }

    #[test]
    fn special_characters_are_found_byte_wise() {
        let slow = |s: &str, newline_ok: bool| {
            s.chars().any(|c| {
                (c.is_control() && !(newline_ok && c == '\n'))
                    || matches!(c, '\u{feff}' | '\u{85}' | '\u{2028}' | '\u{2029}')
            })
        };
        for s in [
            "plain",
            "a\nb",
            "tab\t",
            "\u{7f}",
            "\u{80}",
            "\u{85}",
            "\u{9f}",
            "\u{a0}",
            "é ü ß",
            "\u{2027}",
            "\u{2028}",
            "\u{2029}",
            "\u{202a}",
            "\u{feff}",
            "\u{fefe}",
            "\u{fffd}",
            "日本",
            "\u{1f600}",
        ] {
            for newline_ok in [false, true] {
                assert_eq!(has_special(s, newline_ok), slow(s, newline_ok), "{s:?} newline_ok={newline_ok}");
            }
        }
    }

    #[test]
    fn every_corpus_yaml_file_reads_back_identical() {
        let mut checked = 0;
        for path in super::super::corpus_yaml_files() {
            let text = std::fs::read_to_string(&path).unwrap();
            let Ok(doc) = parse(&text, "corpus") else { continue };
            let out = to_string(&doc);
            assert_eq!(parse(&out, "emitted").unwrap(), doc, "{}", path.display());
            checked += 1;
        }
        assert!(checked > 300, "checked {checked} corpus files");
    }
}
