//! What Ferry's services (the proxy, the migrator, `ferry sim`) share, so each behaves the same
//! to an operator: a YAML + environment config loader that lists every problem at once (exit
//! code 64), value parsers with the same spellings everywhere, secrets that never print, and
//! the admin HTTP server (`/health/…`, `/metrics`, JSON errors, bearer tokens).
//!
//! # Layout
//! - [`yaml`]: the config file as a tree of exact scalar texts with line numbers; [`yaml::Raw`]
//!   values.
//! - [`value`]: parsers (durations like `10s`, booleans, whole numbers, addresses, contact
//!   points, log levels), [`value::Secret`], and "did you mean" suggestions.
//! - [`problem`]: [`ConfigErrors`] and [`ConfigProblem`], naming each key and where it was
//!   written; [`problem::Problems`] for validation.
//! - [`loader`]: a table-driven loader (file, `PREFIX_…` environment, flags) for services
//!   whose keys are all their own.
//! - [`http`]: the admin server (accept loop, connection limit, header timeout, graceful stop)
//!   and response/body/token helpers.
//! - [`tls`]: TLS towards a cluster (`<cluster>.tls` keys → a rustls client config) and PEM
//!   loading whose errors name the config key and file.

pub mod http;
pub mod loader;
pub mod problem;
pub mod tls;
pub mod value;
pub mod yaml;

pub use problem::{ConfigErrors, ConfigProblem};
