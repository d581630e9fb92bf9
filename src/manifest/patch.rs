//! go-patch: the ops-file language of `bosh interpolate -o`.
//!
//! Owns pointer parsing (`/instance_groups/name=api/jobs/-`), the operations (`replace`,
//! `remove`, `test`, `copy`) and reading them from an ops-file document. Semantics follow
//! go-patch as bosh-cli uses it, because operators' ops files are written against it:
//! - a `?` suffix makes that segment optional *and every segment after it* (sticky);
//! - `name=value` selects the one array item whose `name` key is the *string* `value` (any key
//!   works; a number or boolean never matches); optional selectors that find nothing append;
//! - numeric indexes may be negative (from the end); `:prev`/`:next` shift an index or a selected
//!   item, `:before`/`:after` insert instead of replacing; `/-` appends;
//! - `~0` `~1` `~2` `~3` `~7` escape `~` `/` `?` `=` `:` inside a segment;
//! - paths are matched literally against the raw document: `name=((x))` matches the text `((x))`
//!   because variables are interpolated only after all ops have applied.
//!
//! Unlike bosh, an op's author-written `error:` text is shown *with* the underlying cause, the
//! op's index and the file it came from. No IO here: ops files arrive as parsed documents.

use std::borrow::Cow;
use std::fmt;

use super::yaml::{self, Mapping, Value};

/// One segment of a [`Pointer`].
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// `/3`, `/-1`, `/0:before`
    Index { index: i64, modifiers: Vec<Modifier> },
    /// `/-` (only as the last segment)
    AfterLast,
    /// `/name=api`, `/name=api?`, `/name=api:after`
    Matching { key: String, value: String, optional: bool, modifiers: Vec<Modifier> },
    /// `/properties`, `/properties?`
    Key { key: String, optional: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    Prev,
    Next,
    Before,
    After,
}

/// A parsed go-patch path. The empty path (`""`) is the document root.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pointer {
    tokens: Vec<Token>,
}

/// Errors of pointer parsing and op application, worded like go-patch's so operators can search
/// for them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    #[error("{0}")]
    InvalidPointer(String),
    #[error("Expected to find {expected} at path '{path}' but found {found}")]
    TypeMismatch { expected: &'static str, path: String, found: &'static str },
    #[error("Expected to find a map key '{key}' for path '{path}' ({siblings})")]
    MissingMapKey { key: String, path: String, siblings: String },
    #[error("Expected to find array index '{index}' but found array of length '{len}' for path '{path}'")]
    MissingIndex { index: i64, len: usize, path: String },
    #[error("Expected to find exactly one matching array item for path '{path}' but found {found}")]
    MatchCount { path: String, found: usize },
    #[error("{0}")]
    Other(String),
}

const ESCAPES: [(&str, &str); 5] = [("~1", "/"), ("~2", "?"), ("~3", "="), ("~7", ":"), ("~0", "~")];

fn unescape(s: &str) -> String {
    // Decode left to right so that "~01" is "~1", not "/".
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    'outer: while !rest.is_empty() {
        for (code, ch) in ESCAPES {
            if let Some(after) = rest.strip_prefix(code) {
                out.push_str(ch);
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().expect("non-empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            '?' => out.push_str("~2"),
            '=' => out.push_str("~3"),
            ':' => out.push_str("~7"),
            c => out.push(c),
        }
    }
    out
}

impl Pointer {
    pub fn parse(text: &str) -> Result<Self, PatchError> {
        let mut tokens = Vec::new();
        if text.is_empty() {
            return Ok(Self { tokens });
        }
        let Some(body) = text.strip_prefix('/') else {
            return Err(PatchError::InvalidPointer(format!("Expected path '{text}' to start with '/'")));
        };
        let pieces: Vec<&str> = body.split('/').collect();
        let mut optional = false;
        for (i, raw) in pieces.iter().enumerate() {
            let is_last = i == pieces.len() - 1;
            let mut parts = raw.split(':');
            let mut tok = parts.next().unwrap_or_default().to_string();
            let mut modifiers = Vec::new();
            for m in parts {
                modifiers.push(match m {
                    "prev" => Modifier::Prev,
                    "next" => Modifier::Next,
                    "before" => Modifier::Before,
                    "after" => Modifier::After,
                    other => {
                        return Err(PatchError::InvalidPointer(format!(
                            "Expected to find one of the following modifiers: 'prev', 'next', 'before', or 'after' but found '{other}' in path '{text}'"
                        )));
                    }
                });
            }
            if is_last && tok == "-" {
                if !modifiers.is_empty() {
                    return Err(PatchError::InvalidPointer(format!(
                        "Expected not to find any modifiers with after last index token in path '{text}'"
                    )));
                }
                tokens.push(Token::AfterLast);
                continue;
            }
            if let Ok(index) = tok.parse::<i64>() {
                tokens.push(Token::Index { index, modifiers });
                continue;
            }
            if let Some(stripped) = tok.strip_suffix('?') {
                optional = true;
                tok = stripped.to_string();
            }
            if let Some((key, value)) = tok.split_once('=') {
                tokens.push(Token::Matching { key: unescape(key), value: unescape(value), optional, modifiers });
                continue;
            }
            if !modifiers.is_empty() {
                return Err(PatchError::InvalidPointer(format!(
                    "Expected not to find any modifiers with key token '{tok}' in path '{text}'"
                )));
            }
            tokens.push(Token::Key { key: unescape(&tok), optional });
        }
        Ok(Self { tokens })
    }

    /// A pointer made of these tokens (the root is implied).
    pub fn from_tokens(tokens: Vec<Token>) -> Self {
        Self { tokens }
    }

    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    fn prefix(&self, len: usize) -> Pointer {
        Pointer { tokens: self.tokens[..len].to_vec() }
    }

    /// The pointer as text, in go-patch's canonical form (the first optional segment carries `?`).
    fn render(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut optional_shown = false;
        for token in &self.tokens {
            f.write_str("/")?;
            match token {
                Token::Index { index, modifiers } => write!(f, "{index}{}", render_mods(modifiers))?,
                Token::AfterLast => f.write_str("-")?,
                Token::Matching { key, value, optional, modifiers } => {
                    let q = if *optional && !optional_shown {
                        optional_shown = true;
                        "?"
                    } else {
                        ""
                    };
                    write!(f, "{}={}{q}{}", escape(key), escape(value), render_mods(modifiers))?
                }
                Token::Key { key, optional } => {
                    let q = if *optional && !optional_shown {
                        optional_shown = true;
                        "?"
                    } else {
                        ""
                    };
                    write!(f, "{}{q}", escape(key))?
                }
            }
        }
        Ok(())
    }
}

fn render_mods(mods: &[Modifier]) -> String {
    mods.iter()
        .map(|m| match m {
            Modifier::Prev => ":prev",
            Modifier::Next => ":next",
            Modifier::Before => ":before",
            Modifier::After => ":after",
        })
        .collect()
}

/// The first `len` segments of a pointer: where an op is while it walks the document. Rendered
/// only when an error needs it, so walking costs no copies.
#[derive(Clone, Copy)]
struct Here<'p> {
    path: &'p Pointer,
    len: usize,
}

impl Here<'_> {
    fn render(&self) -> String {
        self.path.prefix(self.len).render()
    }
}

impl fmt::Display for Here<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// Resolves an index with `:prev`/`:next` against an array length; negative counts from the end.
fn concrete_index(index: i64, modifiers: &[Modifier], len: usize, path: &Here) -> Result<usize, PatchError> {
    let mut result = index;
    for m in modifiers {
        match m {
            Modifier::Prev => result -= 1,
            Modifier::Next => result += 1,
            Modifier::Before | Modifier::After => {
                return Err(PatchError::Other(format!(
                    "Expected to find one of the following modifiers: 'prev', 'next', but found modifier '{}' at path '{}'",
                    render_mods(&[*m]).trim_start_matches(':'),
                    path
                )));
            }
        }
    }
    let len_i = len as i64;
    if result >= len_i || -result > len_i {
        return Err(PatchError::MissingIndex { index: result, len, path: path.render() });
    }
    Ok(if result < 0 { (len_i + result) as usize } else { result as usize })
}

/// Where a replace lands in an array: overwrite an item, or insert before position `at`.
enum Slot {
    Overwrite(usize),
    Insert(usize),
}

fn insertion_slot(index: i64, modifiers: &[Modifier], len: usize, path: &Here) -> Result<Slot, PatchError> {
    let mut before = false;
    let mut after = false;
    let mut shifts = Vec::new();
    for m in modifiers {
        if before || after {
            return Err(PatchError::Other(format!(
                "Expected to not find any modifiers after '{}' modifier at path '{path}'",
                if before { "before" } else { "after" }
            )));
        }
        match m {
            Modifier::Before => before = true,
            Modifier::After => after = true,
            other => shifts.push(*other),
        }
    }
    let mut at = concrete_index(index, &shifts, len, path)?;
    if after && at != len {
        at += 1;
    }
    Ok(if before || after { Slot::Insert(at) } else { Slot::Overwrite(at) })
}

fn matching_indexes(items: &[Value], key: &str, value: &str) -> Vec<usize> {
    items
        .iter()
        .enumerate()
        .filter(|(_, item)| matches!(item.get(key), Some(Value::String(s)) if s == value))
        .map(|(i, _)| i)
        .collect()
}

fn siblings(map: &Mapping) -> String {
    let mut keys: Vec<String> = map.keys().filter_map(|k| k.as_str().map(str::to_string)).collect();
    if keys.is_empty() {
        return "found no other map keys".to_string();
    }
    keys.sort();
    format!("found map keys: '{}'", keys.join("', '"))
}

fn mismatch(expected: &'static str, path: Here, found: &Value) -> PatchError {
    PatchError::TypeMismatch { expected, path: path.render(), found: yaml::kind(found) }
}

/// Replaces (or creates) the value at `path`. The value is cloned, so later ops never see
/// shared nodes.
pub fn replace(doc: &mut Value, path: &Pointer, value: &Value) -> Result<(), PatchError> {
    if path.tokens.is_empty() {
        *doc = value.clone();
        return Ok(());
    }
    replace_at(doc, path, 0, value)
}

fn replace_at(node: &mut Value, path: &Pointer, i: usize, value: &Value) -> Result<(), PatchError> {
    let tokens = &path.tokens;
    let is_last = i == tokens.len() - 1;
    let here = Here { path, len: i + 1 };
    match &tokens[i] {
        Token::Index { index, modifiers } => {
            let Value::Sequence(items) = node else { return Err(mismatch("an array", here, node)) };
            if is_last {
                match insertion_slot(*index, modifiers, items.len(), &here)? {
                    Slot::Overwrite(at) => items[at] = value.clone(),
                    Slot::Insert(at) => items.insert(at, value.clone()),
                }
                Ok(())
            } else {
                let at = concrete_index(*index, modifiers, items.len(), &here)?;
                replace_at(&mut items[at], path, i + 1, value)
            }
        }
        Token::AfterLast => {
            let Value::Sequence(items) = node else { return Err(mismatch("an array", here, node)) };
            if !is_last {
                return Err(PatchError::Other(format!("Expected after last index token to be last in path '{path}'")));
            }
            items.push(value.clone());
            Ok(())
        }
        Token::Matching { key, value: wanted, optional, modifiers } => {
            let Value::Sequence(items) = node else { return Err(mismatch("an array", here, node)) };
            let found = matching_indexes(items, key, wanted);
            if *optional && found.is_empty() {
                if is_last {
                    items.push(value.clone());
                    return Ok(());
                }
                let mut fresh = Mapping::new();
                fresh.insert(Value::from(key.as_str()), Value::from(wanted.as_str()));
                items.push(Value::Mapping(fresh));
                let last = items.len() - 1;
                return replace_at(&mut items[last], path, i + 1, value);
            }
            if found.len() != 1 {
                return Err(PatchError::MatchCount { path: here.render(), found: found.len() });
            }
            if is_last {
                match insertion_slot(found[0] as i64, modifiers, items.len(), &here)? {
                    Slot::Overwrite(at) => items[at] = value.clone(),
                    Slot::Insert(at) => items.insert(at, value.clone()),
                }
                Ok(())
            } else {
                let at = concrete_index(found[0] as i64, modifiers, items.len(), &here)?;
                replace_at(&mut items[at], path, i + 1, value)
            }
        }
        Token::Key { key, optional } => {
            let Value::Mapping(map) = node else { return Err(mismatch("a map", here, node)) };
            let present = map.contains_key(key.as_str());
            if !present && !optional {
                return Err(PatchError::MissingMapKey {
                    key: key.clone(),
                    path: here.render(),
                    siblings: siblings(map),
                });
            }
            if is_last {
                match map.get_mut(key.as_str()) {
                    Some(slot) => *slot = value.clone(),
                    None => {
                        map.insert(Value::from(key.as_str()), value.clone());
                    }
                }
                return Ok(());
            }
            if !present {
                let fresh = match &tokens[i + 1] {
                    Token::AfterLast | Token::Matching { .. } => Value::Sequence(Vec::new()),
                    Token::Key { .. } => Value::Mapping(Mapping::new()),
                    Token::Index { .. } => {
                        return Err(PatchError::Other(format!(
                            "Expected to find key, matching index or after last index token at path '{}'",
                            path.prefix(i + 2)
                        )));
                    }
                };
                map.insert(Value::from(key.as_str()), fresh);
            }
            let child = map.get_mut(key.as_str()).expect("present or just inserted");
            replace_at(child, path, i + 1, value)
        }
    }
}

/// Removes the value at `path`. Optional segments that find nothing make it a no-op.
pub fn remove(doc: &mut Value, path: &Pointer) -> Result<(), PatchError> {
    if path.tokens.is_empty() {
        return Err(PatchError::Other("Cannot remove entire document".to_string()));
    }
    remove_at(doc, path, 0)
}

fn remove_at(node: &mut Value, path: &Pointer, i: usize) -> Result<(), PatchError> {
    let tokens = &path.tokens;
    let is_last = i == tokens.len() - 1;
    let here = Here { path, len: i + 1 };
    match &tokens[i] {
        Token::Index { index, modifiers } => {
            let Value::Sequence(items) = node else { return Err(mismatch("an array", here, node)) };
            let at = concrete_index(*index, modifiers, items.len(), &here)?;
            if is_last {
                items.remove(at);
                Ok(())
            } else {
                remove_at(&mut items[at], path, i + 1)
            }
        }
        Token::Matching { key, value, optional, modifiers } => {
            let Value::Sequence(items) = node else { return Err(mismatch("an array", here, node)) };
            let found = matching_indexes(items, key, value);
            if *optional && found.is_empty() {
                return Ok(());
            }
            if found.len() != 1 {
                return Err(PatchError::MatchCount { path: here.render(), found: found.len() });
            }
            let at = concrete_index(found[0] as i64, modifiers, items.len(), &here)?;
            if is_last {
                items.remove(at);
                Ok(())
            } else {
                remove_at(&mut items[at], path, i + 1)
            }
        }
        Token::Key { key, optional } => {
            let Value::Mapping(map) = node else { return Err(mismatch("a map", here, node)) };
            if !map.contains_key(key.as_str()) {
                if *optional {
                    return Ok(());
                }
                return Err(PatchError::MissingMapKey {
                    key: key.clone(),
                    path: here.render(),
                    siblings: siblings(map),
                });
            }
            if is_last {
                map.shift_remove(key.as_str());
                Ok(())
            } else {
                remove_at(map.get_mut(key.as_str()).expect("checked"), path, i + 1)
            }
        }
        Token::AfterLast => Err(PatchError::Other(format!(
            "Expected not to find after last index token in path '{here}' (not supported in remove operations)"
        ))),
    }
}

/// Finds the value at `path` (what `--path` prints and what `test` compares). Optional segments
/// that find nothing yield what a replace would have created there (null at the end).
pub fn find(doc: &Value, path: &Pointer) -> Result<Value, PatchError> {
    find_ref(doc, path).map(Cow::into_owned)
}

/// As [`find`], borrowing from `doc` unless an optional segment had to make a value up, so a
/// lookup copies only what it returns.
pub fn find_ref<'a>(doc: &'a Value, path: &Pointer) -> Result<Cow<'a, Value>, PatchError> {
    let mut node = Cow::Borrowed(doc);
    for i in 0..path.tokens.len() {
        node = match node {
            Cow::Borrowed(n) => find_step(n, path, i)?,
            Cow::Owned(n) => Cow::Owned(find_step(&n, path, i)?.into_owned()),
        };
    }
    Ok(node)
}

fn find_step<'a>(node: &'a Value, path: &Pointer, i: usize) -> Result<Cow<'a, Value>, PatchError> {
    let tokens = &path.tokens;
    let here = Here { path, len: i + 1 };
    Ok(match &tokens[i] {
        Token::Index { index, modifiers } => {
            let Value::Sequence(items) = node else { return Err(mismatch("an array", here, node)) };
            let at = concrete_index(*index, modifiers, items.len(), &here)?;
            Cow::Borrowed(&items[at])
        }
        Token::AfterLast => {
            return Err(PatchError::Other(format!(
                "Expected not to find after last index token in path '{path}' (not supported in find operations)"
            )));
        }
        Token::Matching { key, value, optional, modifiers } => {
            let Value::Sequence(items) = node else { return Err(mismatch("an array", here, node)) };
            let found = matching_indexes(items, key, value);
            if *optional && found.is_empty() {
                let mut fresh = Mapping::new();
                fresh.insert(Value::from(key.as_str()), Value::from(value.as_str()));
                Cow::Owned(Value::Mapping(fresh))
            } else if found.len() != 1 {
                return Err(PatchError::MatchCount { path: here.render(), found: found.len() });
            } else {
                let at = concrete_index(found[0] as i64, modifiers, items.len(), &here)?;
                Cow::Borrowed(&items[at])
            }
        }
        Token::Key { key, optional } => {
            let Value::Mapping(map) = node else { return Err(mismatch("a map", here, node)) };
            match map.get(key.as_str()) {
                Some(v) => Cow::Borrowed(v),
                None if !optional => {
                    return Err(PatchError::MissingMapKey {
                        key: key.clone(),
                        path: here.render(),
                        siblings: siblings(map),
                    });
                }
                None => Cow::Owned(match tokens.get(i + 1) {
                    None => Value::Null,
                    Some(Token::Matching { .. }) => Value::Sequence(Vec::new()),
                    Some(Token::Key { .. }) => Value::Mapping(Mapping::new()),
                    Some(_) => {
                        return Err(PatchError::Other(format!(
                            "Expected to find key or matching index token at path '{}'",
                            path.prefix(i + 2)
                        )));
                    }
                }),
            }
        }
    })
}

/// One operation of an ops file.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Replace { path: Pointer, value: Value },
    Remove { path: Pointer },
    Test { path: Pointer, expected: TestExpectation },
    Copy { from: Pointer, path: Pointer },
}

#[derive(Debug, Clone, PartialEq)]
pub enum TestExpectation {
    Value(Value),
    Absent,
}

impl Op {
    /// Applies the operation to `doc` in place. On error `doc` may be partly changed; callers
    /// that need atomicity work on a copy.
    pub fn apply(&self, doc: &mut Value) -> Result<(), PatchError> {
        match self {
            Op::Replace { path, value } => replace(doc, path, value),
            Op::Remove { path } => remove(doc, path),
            Op::Copy { from, path } => {
                let value = find(doc, from)?;
                replace(doc, path, &value)
            }
            Op::Test { path, expected: TestExpectation::Value(want) } => {
                let found = find_ref(doc, path)?;
                if found.as_ref() != want {
                    return Err(PatchError::Other(format!(
                        "Found value does not match expected value at path '{path}'"
                    )));
                }
                Ok(())
            }
            Op::Test { path, expected: TestExpectation::Absent } => match find_ref(doc, path) {
                Ok(_) => Err(PatchError::Other(format!("Expected to not find '{path}'"))),
                Err(PatchError::MissingMapKey { path: p, .. } | PatchError::MissingIndex { path: p, .. })
                    if p == path.render() =>
                {
                    Ok(())
                }
                Err(e) => Err(e),
            },
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Op::Replace { .. } => "replace",
            Op::Remove { .. } => "remove",
            Op::Test { .. } => "test",
            Op::Copy { .. } => "copy",
        }
    }

    fn path(&self) -> &Pointer {
        match self {
            Op::Replace { path, .. } | Op::Remove { path } | Op::Test { path, .. } | Op::Copy { path, .. } => path,
        }
    }
}

/// An operation together with where it came from, so failures can say which op of which file.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcedOp {
    pub op: Op,
    /// The author's `error:` text, shown together with the cause when the op fails.
    pub error: Option<String>,
    pub source: String,
    pub index: usize,
}

/// An ops file could not be read, or one of its operations failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpsError {
    #[error("{source_name}: {message}")]
    Invalid { source_name: String, message: String },
    #[error("{source_name}: operation [{index}] ({kind} {path}) failed: {}{cause}", custom.as_ref().map(|c| format!("{c}: ")).unwrap_or_default())]
    Failed {
        source_name: String,
        index: usize,
        kind: &'static str,
        path: String,
        custom: Option<String>,
        cause: Box<PatchError>,
    },
}

/// Reads the operations of one ops-file document. Null (an empty or comment-only file) is no ops.
pub fn parse_ops(doc: &Value, source_name: &str) -> Result<Vec<SourcedOp>, OpsError> {
    let invalid = |message: String| OpsError::Invalid { source_name: source_name.to_string(), message };
    let items = match doc {
        Value::Null => return Ok(Vec::new()),
        Value::Sequence(items) => items,
        other => return Err(invalid(format!("expected an array of operations, found {}", yaml::kind(other)))),
    };
    let mut ops = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let at = |message: String| invalid(format!("operation [{index}]: {message}"));
        let Value::Mapping(map) = item else {
            return Err(at(format!("expected a map, found {}", yaml::kind(item))));
        };
        // Other keys are ignored, as go-patch does: real ops files carry `name:` as a label.
        let text = |key: &str| -> Result<Option<String>, OpsError> {
            match map.get(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(at(format!("'{key}' must be a string, found {}", yaml::kind(other)))),
            }
        };
        let pointer = |key: &str| -> Result<Pointer, OpsError> {
            let raw = text(key)?.ok_or_else(|| at(format!("missing {key}")))?;
            Pointer::parse(&raw).map_err(|e| at(format!("invalid {key} '{raw}': {e}")))
        };
        let op_type = text("type")?.ok_or_else(|| at("missing type".to_string()))?;
        let value = map.get("value");
        let op = match op_type.as_str() {
            "replace" => {
                let path = pointer("path")?;
                let value = value.ok_or_else(|| at("missing value".to_string()))?.clone();
                Op::Replace { path, value }
            }
            "remove" => {
                if value.is_some() {
                    return Err(at("a remove operation cannot specify value".to_string()));
                }
                Op::Remove { path: pointer("path")? }
            }
            "test" => {
                let path = pointer("path")?;
                let absent = match map.get("absent") {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(other) => return Err(at(format!("'absent' must be a boolean, found {}", yaml::kind(other)))),
                };
                let expected = match (absent, value) {
                    (true, Some(_)) => {
                        return Err(at("a test operation cannot specify both value and absent".to_string()));
                    }
                    (true, None) => TestExpectation::Absent,
                    (false, Some(v)) => TestExpectation::Value(v.clone()),
                    (false, None) => return Err(at("a test operation needs value or absent: true".to_string())),
                };
                Op::Test { path, expected }
            }
            "copy" => {
                if value.is_some() {
                    return Err(at("a copy operation cannot specify value".to_string()));
                }
                Op::Copy { from: pointer("from")?, path: pointer("path")? }
            }
            other => {
                return Err(at(format!("unknown type '{other}' (expected replace, remove, test or copy)")));
            }
        };
        ops.push(SourcedOp { op, error: text("error")?, source: source_name.to_string(), index });
    }
    Ok(ops)
}

/// Applies operations in order.
pub fn apply_all(doc: &mut Value, ops: &[SourcedOp]) -> Result<(), OpsError> {
    for sourced in ops {
        sourced.op.apply(doc).map_err(|cause| OpsError::Failed {
            source_name: sourced.source.clone(),
            index: sourced.index,
            kind: sourced.op.kind(),
            path: sourced.op.path().to_string(),
            custom: sourced.error.clone(),
            cause: Box::new(cause),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Value {
        yaml::parse(text, "doc.yml").unwrap()
    }

    fn ops(text: &str) -> Vec<SourcedOp> {
        parse_ops(&doc(text), "ops.yml").unwrap()
    }

    fn patched(base: &str, ops_text: &str) -> Result<Value, OpsError> {
        let mut d = doc(base);
        apply_all(&mut d, &ops(ops_text))?;
        Ok(d)
    }

    fn p(s: &str) -> Pointer {
        Pointer::parse(s).unwrap()
    }

    #[test]
    fn pointer_round_trips_and_optional_is_sticky() {
        let ptr = p("/a?/name=x/b/-");
        assert_eq!(ptr.to_string(), "/a?/name=x/b/-");
        match &ptr.tokens()[2] {
            Token::Key { key, optional } => {
                assert_eq!(key, "b");
                assert!(optional, "segments after a ? are optional too");
            }
            t => panic!("unexpected {t:?}"),
        }
    }

    #[test]
    fn pointer_escapes() {
        let ptr = p("/a~1b/c~0d/e~3f/g~7h");
        let keys: Vec<String> = ptr
            .tokens()
            .iter()
            .map(|t| match t {
                Token::Key { key, .. } => key.clone(),
                t => panic!("{t:?}"),
            })
            .collect();
        assert_eq!(keys, ["a/b", "c~d", "e=f", "g:h"]);
        assert_eq!(ptr.to_string(), "/a~1b/c~0d/e~3f/g~7h");
    }

    #[test]
    fn pointer_rejects_bad_modifiers_and_relative_paths() {
        assert!(Pointer::parse("a/b").is_err());
        assert!(Pointer::parse("/a:sideways").is_err());
        assert!(Pointer::parse("/key:before").is_err());
        assert!(Pointer::parse("/-:after").is_err());
    }

    #[test]
    fn replace_key_creates_with_optional_only() {
        let out = patched("a: {}\n", "- {type: replace, path: /a/b?/c, value: 1}\n").unwrap();
        assert_eq!(out["a"]["b"]["c"], Value::from(1));
        let err = patched("a: {}\n", "- {type: replace, path: /a/b/c, value: 1}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "ops.yml: operation [0] (replace /a/b/c) failed: Expected to find a map key 'b' for path '/a/b' (found no other map keys)"
        );
    }

    #[test]
    fn replace_keeps_key_position() {
        let out = patched("a: 1\nb: 2\nc: 3\n", "- {type: replace, path: /b, value: 9}\n").unwrap();
        assert_eq!(yaml::to_string(&out), "a: 1\nb: 9\nc: 3\n");
    }

    #[test]
    fn append_and_selectors() {
        let base = "groups:\n- name: a\n  jobs: []\n- name: b\n  jobs: [x]\n";
        let out = patched(
            base,
            "- {type: replace, path: /groups/name=a/jobs/-, value: {name: j}}\n- {type: replace, path: /groups/name=c?/jobs, value: [k]}\n",
        )
        .unwrap();
        assert_eq!(out["groups"][0]["jobs"][0]["name"], Value::from("j"));
        assert_eq!(out["groups"][2]["name"], Value::from("c"));
        assert_eq!(out["groups"][2]["jobs"][0], Value::from("k"));
    }

    #[test]
    fn selector_matches_strings_only_and_literally() {
        let base = "items:\n- {name: '((x))', v: 1}\n- {name: 5, v: 2}\n";
        let out = patched(base, "- {type: replace, path: /items/name=((x))/v, value: 10}\n").unwrap();
        assert_eq!(out["items"][0]["v"], Value::from(10));
        let err = patched(base, "- {type: replace, path: /items/name=5/v, value: 10}\n").unwrap_err();
        assert!(
            err.to_string().contains("exactly one matching array item for path '/items/name=5' but found 0"),
            "{err}"
        );
    }

    #[test]
    fn selectors_work_on_any_key() {
        let out = patched(
            "s:\n- {alias: default, version: '1'}\n",
            "- {type: replace, path: /s/alias=default/version, value: latest}\n",
        )
        .unwrap();
        assert_eq!(out["s"][0]["version"], Value::from("latest"));
    }

    #[test]
    fn negative_indexes_and_modifiers() {
        let base = "l: [a, b, c]\n";
        let out = patched(base, "- {type: replace, path: /l/-1, value: z}\n").unwrap();
        assert_eq!(out["l"], doc("[a, b, z]"));
        let out = patched(base, "- {type: replace, path: /l/0:before, value: z}\n").unwrap();
        assert_eq!(out["l"], doc("[z, a, b, c]"));
        let out = patched(base, "- {type: replace, path: /l/0:after, value: z}\n").unwrap();
        assert_eq!(out["l"], doc("[a, z, b, c]"));
        let out = patched(base, "- {type: replace, path: /l/1:next, value: z}\n").unwrap();
        assert_eq!(out["l"], doc("[a, b, z]"));
        let out = patched(base, "- {type: replace, path: /l/1:prev, value: z}\n").unwrap();
        assert_eq!(out["l"], doc("[z, b, c]"));
        let err = patched(base, "- {type: replace, path: /l/5, value: z}\n").unwrap_err();
        assert!(err.to_string().contains("Expected to find array index '5' but found array of length '3'"), "{err}");
    }

    #[test]
    fn selector_with_insertion_modifiers() {
        let base = "l:\n- {name: a}\n- {name: b}\n";
        let out = patched(base, "- {type: replace, path: /l/name=b:before, value: {name: x}}\n").unwrap();
        assert_eq!(out["l"][1]["name"], Value::from("x"));
        let out = patched(base, "- {type: replace, path: /l/name=a:after, value: {name: x}}\n").unwrap();
        assert_eq!(out["l"][1]["name"], Value::from("x"));
        assert_eq!(out["l"][2]["name"], Value::from("b"));
        let out = patched(base, "- {type: remove, path: /l/name=b:prev}\n").unwrap();
        assert_eq!(out["l"], doc("[{name: b}]"));
    }

    #[test]
    fn remove_optional_missing_is_noop_and_keeps_order() {
        let out = patched("a: 1\nb: 2\nc: 3\n", "- {type: remove, path: /b}\n- {type: remove, path: /zz?}\n").unwrap();
        assert_eq!(yaml::to_string(&out), "a: 1\nc: 3\n");
        let err = patched("a: 1\n", "- {type: remove, path: /zz}\n").unwrap_err();
        assert!(err.to_string().contains("map key 'zz'"), "{err}");
    }

    #[test]
    fn test_op_value_and_absent() {
        let base = "a: {b: 1}\n";
        assert!(patched(base, "- {type: test, path: /a/b, value: 1}\n").is_ok());
        assert!(patched(base, "- {type: test, path: /a/b, value: 2}\n").is_err());
        assert!(patched(base, "- {type: test, path: /a/c, absent: true}\n").is_ok());
        assert!(patched(base, "- {type: test, path: /a/b, absent: true}\n").is_err());
        // A missing parent is an error, not absence of the leaf.
        assert!(patched(base, "- {type: test, path: /x/c, absent: true}\n").is_err());
    }

    #[test]
    fn replaced_values_are_independent_copies() {
        let out = patched(
            "a: []\nb: []\n",
            "- {type: replace, path: /a/-, value: &v {k: 1}}\n- {type: replace, path: /b/-, value: *v}\n- {type: replace, path: /a/0/k, value: 2}\n",
        )
        .unwrap();
        assert_eq!(out["b"][0]["k"], Value::from(1));
    }

    #[test]
    fn custom_error_text_is_shown_with_cause_index_and_file() {
        let err = patched(
            "a: 1\n",
            "- {type: replace, path: /a, value: 2}\n- {type: replace, path: /missing/x, value: 1, error: 'needs the foo ops file first'}\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "ops.yml: operation [1] (replace /missing/x) failed: needs the foo ops file first: Expected to find a map key 'missing' for path '/missing' (found map keys: 'a')"
        );
    }

    #[test]
    fn empty_and_malformed_ops_files() {
        assert!(parse_ops(&Value::Null, "e.yml").unwrap().is_empty());
        let err = parse_ops(&doc("- {type: frobnicate, path: /a}"), "bad.yml").unwrap_err().to_string();
        assert_eq!(err, "bad.yml: operation [0]: unknown type 'frobnicate' (expected replace, remove, test or copy)");
        let err = parse_ops(&doc("- {type: replace, path: /a}"), "bad.yml").unwrap_err().to_string();
        assert_eq!(err, "bad.yml: operation [0]: missing value");
        let err = parse_ops(&doc("- {type: remove, path: a}"), "bad.yml").unwrap_err().to_string();
        assert!(err.contains("to start with '/'"), "{err}");
    }

    #[test]
    fn replace_root_and_copy() {
        let out = patched("a: 1\n", "- {type: replace, path: '', value: {b: 2}}\n").unwrap();
        assert_eq!(out, doc("b: 2"));
        let out = patched("a: {x: 1}\n", "- {type: copy, from: /a, path: /b?}\n").unwrap();
        assert_eq!(out["b"]["x"], Value::from(1));
    }

    #[test]
    fn find_for_path_flag() {
        let d = doc("stemcells:\n- {alias: default, version: '1.1'}\n");
        assert_eq!(find(&d, &p("/stemcells/alias=default/version")).unwrap(), Value::from("1.1"));
        assert_eq!(find(&d, &p("/stemcells/0/version")).unwrap(), Value::from("1.1"));
        assert!(find(&d, &p("/nope")).is_err());
    }
}
