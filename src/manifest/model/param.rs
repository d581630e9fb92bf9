//! [`Param`]: a value of the model that may still be an unresolved `((variable))`.
//!
//! Manifests are validated before, as well as after, interpolation: `rosh validate` without
//! `-v`/`-l` still has to say something useful about `instances: ((cell_instances))` or
//! `azs: ((azs))`. So wherever the schema expects a number, a list or a reference to a name, the
//! model holds a `Param`: either the literal written there, or the variable text. Checks that
//! need the literal skip a `Var` instead of calling it a type error. Names that *define*
//! something (an instance group's `name`) stay plain strings: a variable there is just a name.

use std::fmt;

/// A value as the manifest gives it: a literal, or text that still holds a `((variable))`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Param<T> {
    Literal(T),
    /// The text as written, e.g. `((cell_instances))` or `router-((suffix))`.
    Var(String),
}

impl<T> Param<T> {
    /// The literal, or `None` for an unresolved variable.
    pub fn literal(&self) -> Option<&T> {
        match self {
            Param::Literal(value) => Some(value),
            Param::Var(_) => None,
        }
    }

    /// The variable text, or `None` for a literal.
    pub fn var(&self) -> Option<&str> {
        match self {
            Param::Literal(_) => None,
            Param::Var(text) => Some(text),
        }
    }

    /// What a best-effort read ([`super::Outcome`]) puts where a required value was missing or
    /// malformed: a variable with empty text, i.e. "not known here", so checks skip it. A strict
    /// read never returns one.
    pub fn unknown() -> Self {
        Param::Var(String::new())
    }

    pub fn is_var(&self) -> bool {
        matches!(self, Param::Var(_))
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Param<U> {
        match self {
            Param::Literal(value) => Param::Literal(f(value)),
            Param::Var(text) => Param::Var(text),
        }
    }

    pub fn as_ref(&self) -> Param<&T> {
        match self {
            Param::Literal(value) => Param::Literal(value),
            Param::Var(text) => Param::Var(text.clone()),
        }
    }
}

impl Param<String> {
    /// A name as written: a `Var` when it contains a `((variable))` anywhere (`router-((az))`
    /// cannot be looked up either), a `Literal` otherwise.
    pub fn from_text(text: String) -> Self {
        if has_var(&text) { Param::Var(text) } else { Param::Literal(text) }
    }

    /// The text as written, literal or not.
    pub fn text(&self) -> &str {
        match self {
            Param::Literal(text) | Param::Var(text) => text,
        }
    }
}

impl<T: Default> Default for Param<T> {
    fn default() -> Self {
        Param::Literal(T::default())
    }
}

impl<T: fmt::Display> fmt::Display for Param<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::Literal(value) => value.fmt(f),
            Param::Var(text) => f.write_str(text),
        }
    }
}

/// True when `text` holds a `((name))` reference somewhere.
pub fn has_var(text: &str) -> bool {
    match text.find("((") {
        Some(start) => text[start + 2..].contains("))"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_recognised() {
        assert!(has_var("((cell_instances))"));
        assert!(has_var("((min))-((max))"));
        assert!(has_var("router-((suffix))"));
        assert!(!has_var("plain (text)"));
        assert_eq!(Param::from_text("z1".into()), Param::Literal("z1".to_string()));
        assert!(Param::from_text("((az))".into()).is_var());
    }
}
