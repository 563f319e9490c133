//! Config errors that name the file, line and column of the offending value.

use std::fmt;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};

/// Why `agent.toml` was not accepted.
///
/// Every error that comes from the text names the place: `agent.toml:12:5:
/// unknown field `adress`, expected one of ...`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file that was read.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML, or does not fit the schema (unknown or missing field, wrong type).
    #[error("{location}: {message}")]
    Syntax {
        /// Where the parser stopped.
        location: Location,
        /// The parser's message.
        message: String,
    },
    /// The text parsed, but values are not acceptable; one problem per line.
    #[error("{}", render_problems(problems))]
    Invalid {
        /// Every problem found, in file order of the checks.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems of an [`Invalid`](Self::Invalid) error; empty otherwise.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid { problems } => problems,
            Self::Read { .. } | Self::Syntax { .. } => &[],
        }
    }
}

fn render_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A place in a config file. Line and column count from 1; line 0 means the
/// place is unknown and only the file is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name as given to [`parse`](super::parse) or [`load`](super::load).
    pub origin: String,
    /// Line number, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` of `text`.
    pub(crate) fn at(origin: &str, text: &str, offset: usize) -> Self {
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Self {
            origin: origin.to_string(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }

    /// The whole file, when no better place is known.
    pub(crate) fn file(origin: &str) -> Self {
        Self {
            origin: origin.to_string(),
            line: 0,
            column: 0,
        }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.origin)
        } else {
            write!(f, "{}:{}:{}", self.origin, self.line, self.column)
        }
    }
}

/// One value that parsed but is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the value (or, for a missing value, its table) is.
    pub location: Location,
    /// The field, as a path: `devices[1].points[0].address`.
    pub field: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.field, self.message)
    }
}

/// A step in the path from the document root to a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A key of a table.
    Key(&'static str),
    /// An element of an array (of tables).
    Index(usize),
}

/// The path of a value, e.g. `[Key("devices"), Index(1), Key("unit_id")]`.
pub(crate) type FieldPath = Vec<Seg>;

pub(crate) fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(i) => {
                use fmt::Write as _;
                let _ = write!(out, "[{i}]");
            }
        }
    }
    out
}

/// Finds where values are in the source text, for semantic errors.
pub(crate) struct SpanIndex<'t> {
    origin: &'t str,
    text: &'t str,
    root: Option<DeValue<'t>>,
}

impl<'t> SpanIndex<'t> {
    pub(crate) fn new(origin: &'t str, text: &'t str) -> Self {
        let root = DeTable::parse(text)
            .ok()
            .map(|table| DeValue::Table(table.into_inner()));
        Self { origin, text, root }
    }

    /// The location of the value at `path`, or of the nearest enclosing
    /// value that is written in the file (a defaulted field is reported at
    /// its table).
    pub(crate) fn locate(&self, path: &[Seg]) -> Location {
        let Some(root) = &self.root else {
            return Location::file(self.origin);
        };
        let mut current = root;
        let mut best: Option<usize> = None;
        for seg in path {
            let next = match seg {
                Seg::Key(key) => current.get(*key),
                Seg::Index(i) => current.get(*i),
            };
            let Some(next) = next else { break };
            best = Some(next.span().start);
            current = next.get_ref();
        }
        best.map_or_else(
            || Location::file(self.origin),
            |offset| Location::at(self.origin, self.text, offset),
        )
    }

    /// A problem with the value at `path`.
    pub(crate) fn problem(&self, path: &[Seg], message: impl Into<String>) -> Problem {
        Problem {
            location: self.locate(path),
            field: render_path(path),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_lines_and_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(Location::at("f", text, 0).to_string(), "f:1:1");
        assert_eq!(Location::at("f", text, 6).to_string(), "f:2:1");
        // 'é' is two bytes but one column.
        assert_eq!(Location::at("f", text, 10).to_string(), "f:2:4");
        assert_eq!(Location::file("f").to_string(), "f");
    }

    #[test]
    fn locates_nested_values_and_falls_back_to_the_table() {
        let text = "x = 1\n\n[[d]]\nname = \"a\"\n\n[[d]]\nname = \"b\"\n  [[d.p]]\n  addr = 7\n";
        let index = SpanIndex::new("f", text);
        let at = |path: &[Seg]| index.locate(path).to_string();
        assert_eq!(at(&[Seg::Key("x")]), "f:1:5");
        assert_eq!(
            at(&[Seg::Key("d"), Seg::Index(1), Seg::Key("name")]),
            "f:7:8"
        );
        assert_eq!(
            at(&[
                Seg::Key("d"),
                Seg::Index(1),
                Seg::Key("p"),
                Seg::Index(0),
                Seg::Key("addr")
            ]),
            "f:9:10"
        );
        // A field that is not written is reported at its table's header.
        let missing = index.locate(&[Seg::Key("d"), Seg::Index(1), Seg::Key("unit")]);
        assert_eq!(missing.line, 6, "{missing}");
        assert_eq!(
            render_path(&[
                Seg::Key("d"),
                Seg::Index(1),
                Seg::Key("p"),
                Seg::Index(0),
                Seg::Key("addr")
            ]),
            "d[1].p[0].addr"
        );
    }
}
