//! What is wrong with a configuration: [`ConfigErrors`] (every problem at once, exit code 64)
//! and its parts. Messages never contain a secret's value.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::value::{MAX_DURATION, humane};

/// Every problem found while loading or validating; the binary prints it and exits with
/// [`ConfigErrors::EXIT_CODE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct ConfigErrors {
    /// The service, for the heading ("bad proxy configuration").
    pub service: &'static str,
    pub problems: Vec<ConfigProblem>,
}

impl ConfigErrors {
    /// Exit status for a bad config (DESIGN.md; sysexits' `EX_USAGE`).
    pub const EXIT_CODE: i32 = 64;

    pub fn new(service: &'static str, problems: Vec<ConfigProblem>) -> Self {
        Self { service, problems }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "bad {} configuration ({n} problem{}):",
            self.service,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigProblem {
    #[error("cannot read config file {}: {reason}", .path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("config file is not valid YAML: {reason}")]
    Syntax { reason: String },
    #[error("{key}{}: unknown setting{}", at_line(*.line), did_you_mean(.suggestion))]
    Unknown {
        /// As written: a YAML key path or an environment variable name.
        key: String,
        line: Option<usize>,
        suggestion: Option<String>,
    },
    #[error("environment variable {name} is not valid UTF-8")]
    NotUtf8 { name: String },
    /// A setting whose value the service cannot honour (e.g. a zdm-proxy option).
    #[error("{name}: {reason}")]
    Refused {
        /// As written: the environment variable or `config key <key>`.
        name: String,
        reason: String,
    },
    #[error("{key}: {message}")]
    Value { key: SettingName, message: String },
}

impl ConfigProblem {
    /// The key path the problem is about, when it is about a known setting.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Value { key, .. } => Some(&key.path),
            _ => None,
        }
    }
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean {s}?)"))
        .unwrap_or_default()
}

/// A setting named for the operator: its key and where the value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingName {
    /// The key path, e.g. `origin.contact_points`.
    pub path: String,
    pub source: Source,
}

/// Where a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The final value, from whichever source set it last (or the default). `aliases` names
    /// the setting's other spellings, as shown (`zdm ORIGIN_PORT`).
    Merged { aliases: Option<String> },
    /// A key of the YAML file.
    File { line: usize },
    /// A key of the YAML file in another naming scheme, as shown (`zdm key origin_port`).
    AliasFile { alias: String, line: usize },
    /// An environment variable.
    Env { name: String },
    /// A command-line flag.
    Flag { name: String },
}

impl fmt::Display for SettingName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        match &self.source {
            Source::Merged { aliases: None } => Ok(()),
            Source::Merged {
                aliases: Some(aliases),
            } => write!(f, " ({aliases})"),
            Source::File { line } => write!(f, " (line {line})"),
            Source::AliasFile { alias, line } => write!(f, " ({alias}, line {line})"),
            Source::Env { name } | Source::Flag { name } => write!(f, " (from {name})"),
        }
    }
}

/// Validation problems under construction, each about the final value of a key.
#[derive(Debug)]
pub struct Problems {
    pub list: Vec<ConfigProblem>,
    /// A key's other spellings for messages (see [`Source::Merged`]).
    aliases: fn(&str) -> Option<String>,
}

impl Default for Problems {
    fn default() -> Self {
        Self::with_aliases(|_| None)
    }
}

impl Problems {
    /// Problems whose messages name each key's other spellings too.
    pub fn with_aliases(aliases: fn(&str) -> Option<String>) -> Self {
        Self {
            list: Vec::new(),
            aliases,
        }
    }

    pub fn add(&mut self, path: &str, message: String) {
        self.list.push(ConfigProblem::Value {
            key: SettingName {
                path: path.to_owned(),
                source: Source::Merged {
                    aliases: (self.aliases)(path),
                },
            },
            message,
        });
    }

    /// Above zero (unless `zero_ok`) and at most [`MAX_DURATION`].
    pub fn duration(&mut self, path: &str, value: Duration, zero_ok: bool) {
        if value.is_zero() && !zero_ok {
            self.add(path, "must be longer than 0".into());
        } else if value > MAX_DURATION {
            self.add(
                path,
                format!("{} is longer than the limit of 24h", humane(value)),
            );
        }
    }

    /// `file` exists and is a file.
    pub fn file(&mut self, path: &str, file: &Path) {
        match std::fs::metadata(file) {
            Ok(m) if m.is_file() => {}
            Ok(_) => self.add(path, format!("{} is not a file", file.display())),
            Err(e) => self.add(path, format!("cannot read {}: {e}", file.display())),
        }
    }
}
