//! Reading YAML files with positions. Files are parsed into a node tree that remembers where
//! every key and value started; the typed loaders walk it and report *every* problem as
//! `file:line:col: message` (Prometheus `rulefmt` style) instead of stopping at the first.

use crate::time::{parse_duration, Millis};
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoadError, LoaderOptions, Node, Span};
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

/// A position in a file, 1-based.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    pub fn of(span: &Span) -> Pos {
        span.start()
            .map(|m| Pos {
                line: m.line(),
                col: m.column(),
            })
            .unwrap_or_default()
    }
}

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    pub v: T,
    pub pos: Pos,
}

/// One problem in one file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diag {
    pub file: Arc<str>,
    pub pos: Pos,
    pub msg: String,
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.pos.line, self.pos.col, self.msg
        )
    }
}

/// Every problem found while loading a set of files.
#[derive(Debug, Default, Clone, thiserror::Error)]
pub struct Diags(pub Vec<Diag>);

impl fmt::Display for Diags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// The loading context of one file: its name and the problems found so far.
pub struct Ctx {
    pub file: Arc<str>,
    diags: RefCell<Vec<Diag>>,
    text: RefCell<String>,
}

impl Ctx {
    pub fn new(file: &str) -> Ctx {
        Ctx {
            file: Arc::from(file),
            diags: RefCell::new(Vec::new()),
            text: RefCell::new(String::new()),
        }
    }

    /// The position `offset` characters into the scalar that starts at `pos` (skipping its
    /// opening quote, if it has one).
    pub fn inside(&self, pos: Pos, offset: usize) -> Pos {
        let text = self.text.borrow();
        let quoted = text
            .lines()
            .nth(pos.line.saturating_sub(1))
            .and_then(|l| l.chars().nth(pos.col.saturating_sub(1)))
            .is_some_and(|c| c == '"' || c == '\'');
        Pos {
            line: pos.line,
            col: pos.col + offset + usize::from(quoted),
        }
    }

    pub fn err(&self, pos: Pos, msg: impl Into<String>) {
        self.diags.borrow_mut().push(Diag {
            file: self.file.clone(),
            pos,
            msg: msg.into(),
        });
    }

    pub fn error_count(&self) -> usize {
        self.diags.borrow().len()
    }

    pub fn into_diags(self) -> Vec<Diag> {
        self.diags.into_inner()
    }

    /// Parse a file's text. A syntax error is reported and `None` returned.
    pub fn parse(&self, text: &str) -> Option<Node> {
        *self.text.borrow_mut() = text.to_string();
        let opts = LoaderOptions::default().error_on_duplicate_keys(true);
        match marked_yaml::parse_yaml_with_options(0, text, opts) {
            Ok(n) => Some(n),
            Err(e) => {
                let (pos, msg) = match &e {
                    LoadError::TopLevelMustBeMapping(m) => {
                        (marker_pos(m), "the file must be a YAML mapping".to_string())
                    }
                    LoadError::TopLevelMustBeSequence(m) => (
                        marker_pos(m),
                        "the file must be a YAML sequence".to_string(),
                    ),
                    LoadError::UnexpectedAnchor(m) => (
                        marker_pos(m),
                        "anchors and aliases are not supported".to_string(),
                    ),
                    LoadError::MappingKeyMustBeScalar(m) => (
                        marker_pos(m),
                        "mapping keys must be plain scalars".to_string(),
                    ),
                    LoadError::UnexpectedTag(m) => {
                        (marker_pos(m), "YAML tags are not supported".to_string())
                    }
                    LoadError::ScanError(m, se) => {
                        (marker_pos(m), format!("YAML syntax error: {}", se.info()))
                    }
                    LoadError::DuplicateKey(d) => (
                        Pos::of(d.key.span()),
                        format!(
                            "duplicate key `{}` (first at line {})",
                            d.key.as_str(),
                            Pos::of(d.prev_key.span()).line
                        ),
                    ),
                };
                self.err(pos, msg);
                None
            }
        }
    }

    /// The node as an object whose keys must be among `allowed`; unknown keys are reported.
    pub fn obj<'a>(&'a self, node: &'a Node, what: &str, allowed: &[&str]) -> Option<Obj<'a>> {
        match node.as_mapping() {
            Some(map) => {
                for (k, _) in map.iter() {
                    if !allowed.contains(&k.as_str()) {
                        let hint = suggest(k.as_str(), allowed)
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_else(|| {
                                format!(" (expected one of: {})", allowed.join(", "))
                            });
                        self.err(
                            Pos::of(k.span()),
                            format!("unknown field `{}` in {what}{hint}", k.as_str()),
                        );
                    }
                }
                Some(Obj {
                    ctx: self,
                    map,
                    what: what.to_string(),
                })
            }
            None => {
                self.err(Pos::of(node.span()), format!("{what} must be a mapping"));
                None
            }
        }
    }

    pub fn scalar<'a>(&self, node: &'a Node, what: &str) -> Option<&'a MarkedScalarNode> {
        let s = node.as_scalar();
        if s.is_none() {
            self.err(
                Pos::of(node.span()),
                format!("{what} must be a single value"),
            );
        }
        s
    }

    pub fn string(&self, node: &Node, what: &str) -> Option<Spanned<String>> {
        self.scalar(node, what).map(|s| Spanned {
            v: s.as_str().to_string(),
            pos: Pos::of(s.span()),
        })
    }

    pub fn number(&self, node: &Node, what: &str) -> Option<Spanned<f64>> {
        let s = self.scalar(node, what)?;
        let pos = Pos::of(s.span());
        match s.as_str().trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Some(Spanned { v, pos }),
            _ => {
                self.err(pos, format!("{what}: `{}` is not a number", s.as_str()));
                None
            }
        }
    }

    pub fn duration(&self, node: &Node, what: &str) -> Option<Spanned<Millis>> {
        let s = self.scalar(node, what)?;
        let pos = Pos::of(s.span());
        match parse_duration(s.as_str()) {
            Ok(v) if v >= 0 => Some(Spanned { v, pos }),
            Ok(_) => {
                self.err(pos, format!("{what}: duration must not be negative"));
                None
            }
            Err(e) => {
                self.err(pos, format!("{what}: {e}"));
                None
            }
        }
    }

    /// A list of strings; a single scalar is taken as a one-element list.
    pub fn strings(&self, node: &Node, what: &str) -> Vec<Spanned<String>> {
        match node {
            Node::Scalar(_) => self.string(node, what).into_iter().collect(),
            Node::Sequence(seq) => seq.iter().filter_map(|n| self.string(n, what)).collect(),
            Node::Mapping(_) => {
                self.err(
                    Pos::of(node.span()),
                    format!("{what} must be a list of values"),
                );
                Vec::new()
            }
        }
    }

    pub fn seq<'a>(&self, node: &'a Node, what: &str) -> &'a [Node] {
        match node.as_sequence() {
            Some(s) => s.as_slice(),
            None => {
                self.err(Pos::of(node.span()), format!("{what} must be a list"));
                &[]
            }
        }
    }
}

fn marker_pos(m: &marked_yaml::Marker) -> Pos {
    Pos {
        line: m.line(),
        col: m.column(),
    }
}

/// A mapping being read; field getters report type errors at the value's position.
pub struct Obj<'a> {
    pub ctx: &'a Ctx,
    pub map: &'a MarkedMappingNode,
    what: String,
}

impl<'a> Obj<'a> {
    pub fn pos(&self) -> Pos {
        Pos::of(self.map.span())
    }
    /// Name the object in messages, e.g. ``rule `dust_pm10_1h` ``.
    pub fn rename(&mut self, what: &str) {
        self.what = what.to_string();
    }
    pub fn has(&self, key: &str) -> bool {
        self.map.get_node(key).is_some()
    }
    pub fn node(&self, key: &str) -> Option<&'a Node> {
        self.map.get_node(key)
    }
    /// Position of a key (for errors about the field as a whole).
    pub fn key_pos(&self, key: &str) -> Pos {
        self.map
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(k, _)| Pos::of(k.span()))
            .unwrap_or_else(|| self.pos())
    }
    fn label(&self, key: &str) -> String {
        format!("{}.{key}", self.what)
    }
    pub fn required(&self, key: &str) -> Option<&'a Node> {
        let n = self.map.get_node(key);
        if n.is_none() {
            self.ctx.err(
                self.pos(),
                format!("{} is missing the required field `{key}`", self.what),
            );
        }
        n
    }
    pub fn string(&self, key: &str) -> Option<Spanned<String>> {
        self.node(key)
            .and_then(|n| self.ctx.string(n, &self.label(key)))
    }
    pub fn req_string(&self, key: &str) -> Option<Spanned<String>> {
        self.required(key)
            .and_then(|n| self.ctx.string(n, &self.label(key)))
    }
    pub fn number(&self, key: &str) -> Option<Spanned<f64>> {
        self.node(key)
            .and_then(|n| self.ctx.number(n, &self.label(key)))
    }
    pub fn duration(&self, key: &str) -> Option<Spanned<Millis>> {
        self.node(key)
            .and_then(|n| self.ctx.duration(n, &self.label(key)))
    }
    pub fn strings(&self, key: &str) -> Vec<Spanned<String>> {
        self.node(key)
            .map(|n| self.ctx.strings(n, &self.label(key)))
            .unwrap_or_default()
    }
    /// Iterate over this mapping's entries with each key's position.
    pub fn entries(&self) -> impl Iterator<Item = (Spanned<String>, &'a Node)> + 'a {
        self.map.iter().map(|(k, v)| {
            (
                Spanned {
                    v: k.as_str().to_string(),
                    pos: Pos::of(k.span()),
                },
                v,
            )
        })
    }
}

/// The closest allowed name to a misspelt one (edit distance at most 2).
pub fn suggest<'s>(word: &str, allowed: &[&'s str]) -> Option<&'s str> {
    allowed
        .iter()
        .map(|a| (edit_distance(word, a), *a))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_reported_with_position_and_hint() {
        let ctx = Ctx::new("r.yaml");
        let node = ctx.parse("id: a\nwindwo: 5m\n").unwrap();
        let _ = ctx.obj(&node, "rule", &["id", "window"]);
        let d = ctx.into_diags();
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].to_string(),
            "r.yaml:2:1: unknown field `windwo` in rule; did you mean `window`?"
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let ctx = Ctx::new("bad.yaml");
        assert!(ctx.parse("a: [1, 2\nb: 3\n").is_none());
        let d = ctx.into_diags();
        assert_eq!(d.len(), 1);
        assert!(d[0].msg.contains("YAML syntax error"), "{}", d[0]);
        assert!(d[0].pos.line >= 1);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let ctx = Ctx::new("d.yaml");
        assert!(ctx.parse("a: 1\na: 2\n").is_none());
        assert!(ctx.into_diags()[0].msg.contains("duplicate key `a`"));
    }
}
