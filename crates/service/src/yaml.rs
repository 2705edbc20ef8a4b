//! The YAML file of a service's config, read into a small tree that keeps each scalar's exact
//! text (a password `0123` stays `0123`, where a typed YAML value would turn it into the number
//! 123) and each key's line; and [`Raw`], a value as written in the file or the environment,
//! before a setting's parser reads it.

use yaml_rust2::parser::Event;
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Nesting limit for a config file: Ferry's keys are at most three deep, and a bound keeps a
/// hostile file from recursing the reader off the stack.
pub const MAX_YAML_DEPTH: usize = 8;

/// Exhaustive on purpose: loaders match every shape to say what they expected.
#[derive(Debug)]
pub enum Node {
    /// `plain` is false for quoted and block scalars, which are never null.
    Scalar {
        text: String,
        plain: bool,
        line: usize,
    },
    List {
        items: Vec<Node>,
        line: usize,
    },
    /// Entries in file order: (key, line of the key, value).
    Map {
        entries: Vec<(String, usize, Node)>,
        line: usize,
    },
}

impl Node {
    /// The line the node starts on (1-based).
    pub fn line(&self) -> usize {
        match self {
            Node::Scalar { line, .. } | Node::List { line, .. } | Node::Map { line, .. } => *line,
        }
    }

    /// What the node is, for messages ("a list").
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Scalar { .. } => "a single value",
            Node::List { .. } => "a list",
            Node::Map { .. } => "a mapping",
        }
    }
}

/// YAML's spellings of null (and the empty plain scalar).
pub fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// The file's one document, or `None` for an empty file.
pub fn read_yaml(text: &str) -> Result<Option<Node>, String> {
    let mut parser = yaml_rust2::parser::Parser::new_from_str(text);
    let mut next = move || parser.next_token().map_err(|e| e.to_string());
    let mut root = None;
    loop {
        let (event, mark) = next()?;
        match event {
            Event::StreamStart | Event::DocumentEnd => {}
            Event::StreamEnd => return Ok(root),
            Event::DocumentStart if root.is_some() => {
                return Err(format!(
                    "line {}: a second YAML document; the config is one document",
                    mark.line()
                ));
            }
            Event::DocumentStart => {
                let (event, mark) = next()?;
                root = Some(read_node(&mut next, event, mark, 0)?);
            }
            other => return Err(format!("line {}: unexpected {other:?}", mark.line())),
        }
    }
}

fn read_node(
    next: &mut impl FnMut() -> Result<(Event, Marker), String>,
    event: Event,
    mark: Marker,
    depth: usize,
) -> Result<Node, String> {
    let line = mark.line();
    if depth > MAX_YAML_DEPTH {
        return Err(format!(
            "line {line}: nested deeper than {MAX_YAML_DEPTH} levels"
        ));
    }
    match event {
        Event::Scalar(text, style, _, _) => Ok(Node::Scalar {
            text,
            plain: style == TScalarStyle::Plain,
            line,
        }),
        Event::SequenceStart(..) => {
            let mut items = Vec::new();
            loop {
                let (event, mark) = next()?;
                if event == Event::SequenceEnd {
                    return Ok(Node::List { items, line });
                }
                items.push(read_node(next, event, mark, depth + 1)?);
            }
        }
        Event::MappingStart(..) => {
            let mut entries: Vec<(String, usize, Node)> = Vec::new();
            loop {
                let (event, mark) = next()?;
                let key = match event {
                    Event::MappingEnd => return Ok(Node::Map { entries, line }),
                    Event::Scalar(key, ..) => key,
                    _ => {
                        return Err(format!("line {}: a key must be a plain name", mark.line()));
                    }
                };
                if entries.iter().any(|(k, _, _)| *k == key) {
                    return Err(format!("line {}: key {key} appears twice", mark.line()));
                }
                let (event, value_mark) = next()?;
                let value = read_node(next, event, value_mark, depth + 1)?;
                entries.push((key, mark.line(), value));
            }
        }
        Event::Alias(_) => Err(format!(
            "line {line}: YAML aliases are not supported in the config"
        )),
        other => Err(format!("line {line}: unexpected {other:?}")),
    }
}

/// A value as written, before it is parsed for its setting.
/// Exhaustive on purpose: setting parsers match every shape.
#[derive(Debug)]
pub enum Raw {
    Text(String),
    List(Vec<String>),
    Null,
}

impl Raw {
    /// One value; a list or nothing is a mistake.
    pub fn text(&self) -> Result<&str, String> {
        match self {
            Raw::Text(s) => Ok(s.trim()),
            // Never echo the items: this may be a password.
            Raw::List(_) => Err("expected one value, found a list".to_owned()),
            Raw::Null => Err("needs a value".to_owned()),
        }
    }

    /// One value, where nothing or an empty string means "not set".
    pub fn optional(&self) -> Result<Option<&str>, String> {
        match self {
            Raw::Null => Ok(None),
            Raw::Text(s) if s.trim().is_empty() => Ok(None),
            _ => self.text().map(Some),
        }
    }

    /// A list: a YAML sequence or a comma-separated string; empty items are dropped.
    pub fn list(&self) -> Vec<&str> {
        let items: Vec<&str> = match self {
            Raw::Text(s) => s.split(',').collect(),
            Raw::List(items) => items.iter().map(String::as_str).collect(),
            Raw::Null => Vec::new(),
        };
        items
            .into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// A leaf value of the file as a [`Raw`]; a mapping is a mistake.
pub fn yaml_raw(node: &Node) -> Result<Raw, String> {
    match node {
        Node::Scalar { text, plain, .. } if *plain && is_null(text) => Ok(Raw::Null),
        Node::Scalar { text, .. } => Ok(Raw::Text(text.clone())),
        Node::List { items, .. } => items
            .iter()
            .map(|item| match item {
                Node::Scalar { text, .. } => Ok(text.clone()),
                other => Err(format!(
                    "list items must be single values, found {}",
                    other.kind()
                )),
            })
            .collect::<Result<_, _>>()
            .map(Raw::List),
        Node::Map { .. } => Err("expected a value, found a mapping".to_owned()),
    }
}
