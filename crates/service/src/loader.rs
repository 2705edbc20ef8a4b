//! A table-driven config loader: a service lists its keys once, each with the function that
//! parses a value into its config, and YAML keys, `PREFIX_…` environment variables and
//! command-line flags all go through the same parsers. Lowest to highest precedence: defaults,
//! the file, the environment, flags (in the order the caller feeds them).
//!
//! Unknown YAML keys and unknown `PREFIX_…` variables are errors with a "did you mean", so a
//! typo cannot fall back to a default silently. A key whose value did not parse is left out of
//! validation, since the default it would judge is not what the operator wrote.

use std::fmt;
use std::path::Path;

use crate::problem::{ConfigErrors, ConfigProblem, Problems, SettingName, Source};
use crate::value::suggest;
use crate::yaml::{Node, Raw, is_null, read_yaml, yaml_raw};

/// Parses one value into the draft config; the error is the message after the key name.
pub type Apply<D> = fn(&mut D, &Raw) -> Result<(), String>;

/// A service's settings.
pub struct Settings<D: 'static> {
    /// For the heading of [`ConfigErrors`].
    pub service: &'static str,
    /// `FERRY_MIGRATOR_`: a key path upper-cased with `.` as `_` follows it.
    pub env_prefix: &'static str,
    /// YAML mappings whose keys are written `section.key` (`origin`, `origin.tls`).
    pub sections: &'static [&'static str],
    /// Every key path with its parser.
    pub keys: &'static [(&'static str, Apply<D>)],
}

impl<D> fmt::Debug for Settings<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Settings({}, {} keys)", self.service, self.keys.len())
    }
}

impl<D> Settings<D> {
    /// `origin.contact_points` → `FERRY_MIGRATOR_ORIGIN_CONTACT_POINTS`.
    pub fn env_name(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.env_prefix,
            path.replace('.', "_").to_ascii_uppercase()
        )
    }

    fn find(&self, path: &str) -> Option<Apply<D>> {
        self.keys.iter().find(|(p, _)| *p == path).map(|(_, f)| *f)
    }

    fn paths(&self) -> Vec<String> {
        self.keys.iter().map(|(p, _)| (*p).to_owned()).collect()
    }
}

/// A config being built from its sources.
pub struct Loader<D: 'static> {
    settings: &'static Settings<D>,
    draft: D,
    problems: Vec<ConfigProblem>,
    /// Keys whose value did not parse.
    failed: Vec<String>,
}

impl<D> fmt::Debug for Loader<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Loader({}, {} problems)",
            self.settings.service,
            self.problems.len()
        )
    }
}

impl<D> Loader<D> {
    /// Starts from `defaults`.
    pub fn new(settings: &'static Settings<D>, defaults: D) -> Self {
        Self {
            settings,
            draft: defaults,
            problems: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// The config file at `path` (an unreadable file is a problem, not an error).
    pub fn file(&mut self, path: &Path) {
        match std::fs::read_to_string(path) {
            Ok(text) => self.yaml(&text),
            Err(e) => self.problems.push(ConfigProblem::Unreadable {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// A config file's text.
    pub fn yaml(&mut self, text: &str) {
        match read_yaml(text) {
            Ok(None) => {}
            Ok(Some(Node::Map { entries, .. })) => {
                for (key, line, value) in entries {
                    self.walk(key, line, &value);
                }
            }
            Ok(Some(Node::Scalar {
                ref text,
                plain: true,
                ..
            })) if is_null(text) => {}
            Ok(Some(other)) => self.problems.push(ConfigProblem::Syntax {
                reason: format!(
                    "line {}: the file must be a mapping of keys, found {}",
                    other.line(),
                    other.kind()
                ),
            }),
            Err(reason) => self.problems.push(ConfigProblem::Syntax { reason }),
        }
    }

    fn walk(&mut self, path: String, line: usize, value: &Node) {
        if self.settings.sections.contains(&path.as_str()) {
            match value {
                Node::Map { entries, .. } => {
                    for (key, line, value) in entries {
                        self.walk(format!("{path}.{key}"), *line, value);
                    }
                }
                Node::Scalar {
                    text, plain: true, ..
                } if is_null(text) => {}
                other => self.bad(
                    path,
                    Source::File { line },
                    format!("expected a mapping of keys, found {}", other.kind()),
                ),
            }
            return;
        }
        if self.settings.find(&path).is_none() {
            let suggestion = suggest(&path, self.settings.paths());
            self.problems.push(ConfigProblem::Unknown {
                key: path,
                line: Some(line),
                suggestion,
            });
            return;
        }
        match yaml_raw(value) {
            Ok(raw) => self.set(&path, &raw, Source::File { line }),
            Err(message) => self.bad(path, Source::File { line }, message),
        }
    }

    /// Environment variables; only `PREFIX_…` ones are looked at, empty values count as unset
    /// (docker-compose's `VAR=`). Pass a literal list in tests.
    pub fn env<I, K, V>(&mut self, vars: I)
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut ours: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(n, v)| {
                n.as_ref().starts_with(self.settings.env_prefix) && !v.as_ref().trim().is_empty()
            })
            .map(|(n, v)| (n.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        // The environment has no order; sorting makes problems reproducible.
        ours.sort();
        for (name, value) in ours {
            let path = self
                .settings
                .keys
                .iter()
                .map(|(p, _)| *p)
                .find(|p| self.settings.env_name(p) == name);
            match path {
                Some(path) => self.set(path, &Raw::Text(value), Source::Env { name }),
                None => {
                    let candidates = self
                        .settings
                        .keys
                        .iter()
                        .map(|(p, _)| self.settings.env_name(p))
                        .collect();
                    let suggestion = suggest(&name, candidates);
                    self.problems.push(ConfigProblem::Unknown {
                        key: name,
                        line: None,
                        suggestion,
                    });
                }
            }
        }
    }

    /// The process's `PREFIX_…` variables.
    pub fn process_env(&mut self) {
        // vars_os: std::env::vars panics on any non-UTF-8 variable, even one that is not ours.
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(self.settings.env_prefix) {
                continue;
            }
            match value.into_string() {
                Ok(value) => env.push((name.to_owned(), value)),
                Err(_) => self.problems.push(ConfigProblem::NotUtf8 {
                    name: name.to_owned(),
                }),
            }
        }
        self.env(env);
    }

    /// One value for key `path` (a flag, or a test). An unknown path is a problem.
    pub fn set(&mut self, path: &str, raw: &Raw, source: Source) {
        let Some(apply) = self.settings.find(path) else {
            self.problems.push(ConfigProblem::Unknown {
                key: path.to_owned(),
                line: None,
                suggestion: suggest(path, self.settings.paths()),
            });
            return;
        };
        // A bad value stays listed even if a later source overrides it: the operator should
        // fix the file too.
        if let Err(message) = apply(&mut self.draft, raw) {
            self.bad(path.to_owned(), source, message);
        }
    }

    fn bad(&mut self, path: String, source: Source, message: String) {
        self.failed.push(path.clone());
        self.problems.push(ConfigProblem::Value {
            key: SettingName { path, source },
            message,
        });
    }

    /// The config, once `validate` (cross-field checks on the final values) found nothing
    /// either; otherwise every problem.
    pub fn finish(self, validate: impl FnOnce(&D, &mut Problems)) -> Result<D, ConfigErrors> {
        let Self {
            settings,
            draft,
            mut problems,
            failed,
        } = self;
        let mut checks = Problems::default();
        validate(&draft, &mut checks);
        problems.extend(
            checks
                .list
                .into_iter()
                .filter(|p| p.key().is_none_or(|k| !failed.iter().any(|f| f == k))),
        );
        if problems.is_empty() {
            Ok(draft)
        } else {
            Err(ConfigErrors::new(settings.service, problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{boolean, whole};

    #[derive(Debug, Default)]
    struct Demo {
        n: u32,
        on: bool,
    }

    static DEMO: Settings<Demo> = Settings {
        service: "demo",
        env_prefix: "DEMO_",
        sections: &["inner"],
        keys: &[
            ("inner.n", |d, v| {
                d.n = whole(v.text()?)?;
                Ok(())
            }),
            ("on", |d, v| {
                d.on = boolean(v.text()?)?;
                Ok(())
            }),
        ],
    };

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Demo, ConfigErrors> {
        let mut l = Loader::new(&DEMO, Demo::default());
        l.yaml(yaml);
        l.env(env.iter().copied());
        l.finish(|d, p| {
            if d.n == 0 {
                p.add("inner.n", "must be above 0".into());
            }
        })
    }

    #[test]
    fn env_beats_file_and_flags_beat_env() {
        let d = load(
            "inner: {n: 3}\non: no\n",
            &[("DEMO_INNER_N", "4"), ("OTHER", "x")],
        );
        let d = d.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((d.n, d.on), (4, false));
        let mut l = Loader::new(&DEMO, Demo::default());
        l.env([("DEMO_INNER_N", "4")]);
        l.set(
            "inner.n",
            &Raw::Text("5".into()),
            Source::Flag { name: "--n".into() },
        );
        assert_eq!(l.finish(|_, _| {}).map(|d| d.n), Ok(5));
    }

    #[test]
    fn every_problem_is_listed_once() {
        let e = load("inner: {n: x, m: 1}\nonn: true\n", &[("DEMO_ON", "maybe")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("bad demo configuration (4 problems):"), "{e}");
        assert!(
            e.contains("inner.n (line 1): \"x\" is not a whole number"),
            "{e}"
        );
        assert!(
            e.contains("inner.m (line 1): unknown setting (did you mean inner.n?)"),
            "{e}"
        );
        assert!(
            e.contains("onn (line 2): unknown setting (did you mean on?)"),
            "{e}"
        );
        assert!(
            e.contains("on (from DEMO_ON): \"maybe\" is not true or false"),
            "{e}"
        );
        // inner.n failed to parse, so "must be above 0" about its default is not reported.
        assert!(!e.contains("above 0"), "{e}");
    }
}
