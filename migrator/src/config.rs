//! The migrator's typed configuration ([`MigratorConfig`]): a YAML file (`ferry migrate
//! --config FILE`) overlaid by `FERRY_MIGRATOR_…` environment variables and then by command-line
//! flags, validated with every problem listed at once (exit code 64). The config builds the
//! core's [`JobSpec`] ([`MigratorConfig::job_spec`]); a job posted to the HTTP API is the same
//! keys as JSON, over the service's config ([`MigratorConfig::with_job`]).
//!
//! # Layout
//! - **Types**: [`MigratorConfig`], [`ClusterSettings`], [`AdminSettings`], [`LogFormat`],
//!   [`UpdateSettings`] (the Update channel to proxies, keys `update.*`).
//! - **Keys**: one table (`KEYS`), each key with its parser; the job's keys first, then the
//!   service's (`admin.*`, `log.*`), which a posted job may not set. The key reference with
//!   defaults is `deploy/config/migrator.yaml` (a test loads it).
//! - **Validation**: [`MigratorConfig`]'s own checks plus [`JobSpec::validate`].
//!
//! Env names: `FERRY_MIGRATOR_` + the key path upper-cased, `.` as `_`
//! (`origin.contact_points` → `FERRY_MIGRATOR_ORIGIN_CONTACT_POINTS`). Lists are YAML
//! sequences or comma-separated; `replication` entries (`KS={'class': …}`, which contain
//! commas) are separated by `;` in one string.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_service::loader::{Apply, Loader, Settings};
use ferry_service::problem::{ConfigErrors, Problems, Source};
use ferry_service::tls::{ClusterTlsConfig, cluster_client_config};
use ferry_service::value::{
    LogLevel, Secret, boolean, contact_point, duration, log_level, socket_addr, whole,
};
use ferry_service::yaml::Raw;

use crate::job::{ClusterSpec, CountersMode, JobSpec, RangeCount, TableSelector};

/// How to reach one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterSettings {
    /// `host:port` (port 9042 when left out). Key `<cluster>.contact_points`; required.
    pub contact_points: Vec<String>,
    /// PasswordAuthenticator user; `password` goes with it.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Datacenter whose nodes serve the scans or writes. Key `<cluster>.local_dc`.
    pub local_dc: Option<String>,
    /// Per-request limit in the driver (a scan page, a write). Default `12s`.
    pub request_timeout: Duration,
    /// TLS to the cluster; `None` (default) is plain TCP. Section `<cluster>.tls`, the proxy's
    /// keys and meaning; any key written in it turns TLS on. Its files are read and checked by
    /// validation.
    pub tls: Option<ClusterTlsConfig>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            contact_points: Vec::new(),
            username: None,
            password: None,
            local_dc: None,
            request_timeout: Duration::from_secs(12),
            tls: None,
        }
    }
}

/// The admin HTTP API (jobs, metrics, health).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminSettings {
    /// Key `admin.listen`. Unset by default: a one-shot `ferry migrate` serves no API unless
    /// asked; `--serve` uses [`DEFAULT_ADMIN_LISTEN`].
    pub listen: Option<SocketAddr>,
    /// When set, `POST /jobs` and `POST /jobs/{id}/cancel` need `Authorization: Bearer …`.
    pub bearer_token: Option<Secret>,
}

/// The Update channel: the proxies this migrator reports to and takes requests from
/// (see [`crate::update`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct UpdateSettings {
    /// `host:port` of each proxy's Update listener (port 14100 when left out); empty (the
    /// default) means no channel. Key `update.proxies`, env `FERRY_MIGRATOR_UPDATE_PROXIES`
    /// (comma-separated), flag `--update-proxy` (repeatable).
    pub proxies: Vec<String>,
    /// The name this migrator gives the proxies; `None` is [`crate::update::CHANNEL_NAME`].
    /// A proxy keeps a queue per name, so the workers of one job reporting to the same
    /// proxies each need their own (`migrator-0`, `migrator-1`); a worker restarted under its
    /// name gets its queue back. Key `update.name`, env `FERRY_MIGRATOR_UPDATE_NAME`.
    pub name: Option<String>,
    /// TLS to the proxies; absent means plain TCP. Keys `update.tls.ca_path` (required with
    /// TLS), `cert_path` + `key_path` (when the proxy asks for client certificates),
    /// `server_name` (default: the host dialed).
    pub tls: Option<ferry_update::ClientTlsFiles>,
}

/// The Update port DESIGN.md gives proxies, used when `update.proxies` names a host only.
pub const DEFAULT_UPDATE_PORT: u16 = 14100;

/// Proxies the migrator keeps a channel to: each is a connection and a queue.
pub const MAX_UPDATE_PROXIES: usize = 64;

/// The longest `update.name`: it is logged and shown in every proxy's `/status`.
const MAX_UPDATE_NAME: usize = 128;

/// How progress and logs are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// Progress bars on a terminal, text logs otherwise (default).
    #[default]
    Auto,
    /// Text logs, no bars.
    Text,
    /// One JSON object per line, no bars.
    Json,
}

/// Everything `ferry migrate` can be told.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MigratorConfig {
    pub origin: ClusterSettings,
    pub target: ClusterSettings,
    /// Allow-list in migration order (`ks`, `ks.table`, patterns with `*`/`?`). Key `tables`.
    pub tables: Vec<TableSelector>,
    /// Deny-list. Key `exclude`.
    pub exclude: Vec<TableSelector>,
    pub table_parallelism: usize,
    pub scan_parallelism: usize,
    /// Key `ranges`: a number, or `auto` (from size estimates, `partitions_per_range` each).
    pub ranges: RangeCount,
    pub concurrency: usize,
    pub page_size: i32,
    pub max_rows_per_second: Option<u64>,
    pub max_bytes_per_second: Option<u64>,
    pub retries: u32,
    pub retry_backoff: Duration,
    pub floor_timestamp: i64,
    /// Key `counters`: copy counter tables by applying differences.
    pub counters: bool,
    pub replication: BTreeMap<String, String>,
    pub job_dir: PathBuf,
    pub admin: AdminSettings,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    pub update: UpdateSettings,
}

impl Default for MigratorConfig {
    fn default() -> Self {
        let spec = JobSpec::new(
            ClusterSpec::new(Vec::new()),
            ClusterSpec::new(Vec::new()),
            Vec::new(),
        );
        Self {
            origin: ClusterSettings::default(),
            target: ClusterSettings::default(),
            tables: Vec::new(),
            exclude: Vec::new(),
            table_parallelism: spec.table_parallelism,
            scan_parallelism: spec.scan_parallelism,
            ranges: spec.ranges,
            concurrency: spec.concurrency,
            page_size: spec.page_size,
            max_rows_per_second: None,
            max_bytes_per_second: None,
            retries: spec.retries,
            retry_backoff: spec.retry_backoff,
            floor_timestamp: spec.floor_timestamp,
            counters: false,
            replication: BTreeMap::new(),
            job_dir: spec.job_dir,
            admin: AdminSettings {
                listen: None,
                bearer_token: None,
            },
            log_level: LogLevel::Info,
            log_format: LogFormat::Auto,
            update: UpdateSettings::default(),
        }
    }
}

/// DESIGN.md's migrator admin port, on loopback: the API can start jobs, so exposing it is a
/// decision (`admin.listen: 0.0.0.0:14101`, ideally with `admin.bearer_token`).
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    14101,
));

/// The prefix of the migrator's environment variables.
pub const ENV_PREFIX: &str = "FERRY_MIGRATOR_";

impl MigratorConfig {
    /// Loads from the file's text (if any), then `env`, then `flags` (key path, value, flag
    /// name), and validates. Every problem comes back at once.
    pub fn load<I, K, V>(
        yaml: Option<&str>,
        env: I,
        flags: &[(&str, String, &str)],
    ) -> Result<Self, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut loader = Loader::new(&SERVICE_SETTINGS, Self::default());
        if let Some(text) = yaml {
            loader.yaml(text);
        }
        loader.env(env);
        Self::finish(loader, flags)
    }

    /// [`MigratorConfig::load`] with the file at `path` and the process's environment.
    pub fn from_process(
        path: Option<&Path>,
        flags: &[(&str, String, &str)],
    ) -> Result<Self, ConfigErrors> {
        let mut loader = Loader::new(&SERVICE_SETTINGS, Self::default());
        if let Some(path) = path {
            loader.file(path);
        }
        loader.process_env();
        Self::finish(loader, flags)
    }

    fn finish(
        mut loader: Loader<Self>,
        flags: &[(&str, String, &str)],
    ) -> Result<Self, ConfigErrors> {
        for (path, value, flag) in flags {
            loader.set(
                path,
                &Raw::Text(value.clone()),
                Source::Flag {
                    name: (*flag).to_owned(),
                },
            );
        }
        loader.finish(Self::check)
    }

    /// A job posted to the API: its keys (JSON, same names as the file's job keys) over this
    /// config. `admin.*` and `log.*` are the service's and unknown here.
    pub fn with_job(&self, json: &str) -> Result<Self, ConfigErrors> {
        let mut loader = Loader::new(&JOB_SETTINGS, self.clone());
        loader.yaml(json);
        loader.finish(|c, out| {
            c.check(out);
            if c.tables.is_empty() {
                out.add("tables", "a job needs at least one table".into());
            }
        })
    }

    /// The core's job.
    pub fn job_spec(&self) -> JobSpec {
        let cluster = |c: &ClusterSettings| {
            let mut spec = ClusterSpec::new(c.contact_points.clone());
            spec.local_dc = c.local_dc.clone();
            spec.request_timeout = c.request_timeout;
            spec.tls = c.tls.clone();
            if let (Some(u), Some(p)) = (&c.username, &c.password) {
                spec.credentials = Some((u.clone(), p.expose().to_owned()));
            }
            spec
        };
        let mut spec = JobSpec::new(
            cluster(&self.origin),
            cluster(&self.target),
            self.tables.clone(),
        );
        spec.exclude = self.exclude.clone();
        spec.table_parallelism = self.table_parallelism;
        spec.scan_parallelism = self.scan_parallelism;
        spec.ranges = self.ranges;
        spec.concurrency = self.concurrency;
        spec.page_size = self.page_size;
        spec.max_rows_per_second = self.max_rows_per_second;
        spec.max_bytes_per_second = self.max_bytes_per_second;
        spec.retries = self.retries;
        spec.retry_backoff = self.retry_backoff;
        spec.floor_timestamp = self.floor_timestamp;
        spec.counters = if self.counters {
            CountersMode::ApplyDifference
        } else {
            CountersMode::Refuse
        };
        spec.replication = self.replication.clone();
        spec.job_dir = self.job_dir.clone();
        spec
    }

    /// Checks on the final values (the core's [`JobSpec::validate`] included).
    fn check(&self, out: &mut Problems) {
        for (name, c) in [("origin", &self.origin), ("target", &self.target)] {
            if c.contact_points.is_empty() {
                out.add(
                    &format!("{name}.contact_points"),
                    "at least one contact point is required".into(),
                );
            }
            match (&c.username, &c.password) {
                (Some(_), None) => out.add(
                    &format!("{name}.password"),
                    format!("is required: {name}.username is set"),
                ),
                (None, Some(_)) => out.add(
                    &format!("{name}.username"),
                    format!("is required: {name}.password is set"),
                ),
                _ => {}
            }
            out.duration(&format!("{name}.request_timeout"), c.request_timeout, false);
            // The files are loaded here, so a bad one stops the start (exit 64) naming its key.
            if let Some(tls) = &c.tls
                && let Err(e) = cluster_client_config(&format!("{name}.tls"), tls)
            {
                out.add(&e.key, e.problem.to_string());
            }
        }
        if self
            .admin
            .bearer_token
            .as_ref()
            .is_some_and(|t| t.expose().trim().is_empty())
        {
            out.add(
                "admin.bearer_token",
                "is empty; remove it to leave the API open, or set a token".into(),
            );
        }
        out.duration("retry_backoff", self.retry_backoff, false);
        self.update.check(out);
        if let Err(e) = self.job_spec().validate() {
            // The core's rules, worded with the core's names; the contact point problems are
            // already listed above under their keys, and the tables are a job's (a server's
            // config has none; a one-shot run and a posted job check them).
            for p in e.problems {
                if !p.contains("no contact points") && p != "no tables selected" {
                    out.add("job", p);
                }
            }
        }
    }
}

impl UpdateSettings {
    fn check(&self, out: &mut Problems) {
        if self.proxies.len() > MAX_UPDATE_PROXIES {
            out.add(
                "update.proxies",
                format!(
                    "{} proxies; at most {MAX_UPDATE_PROXIES}",
                    self.proxies.len()
                ),
            );
        }
        for (i, p) in self.proxies.iter().enumerate() {
            if self.proxies[..i].contains(p) {
                out.add("update.proxies", format!("{p} is listed twice"));
            }
        }
        if let Some(name) = &self.name
            && (name.is_empty()
                || name.len() > MAX_UPDATE_NAME
                || name.chars().any(char::is_control))
        {
            out.add(
                "update.name",
                format!("{name:?} must be 1 to {MAX_UPDATE_NAME} bytes without control characters"),
            );
        }
        if let Some(tls) = &self.tls {
            if tls.ca_path.as_os_str().is_empty() {
                out.add(
                    "update.tls.ca_path",
                    "is required when update.tls is set".into(),
                );
            }
            if tls.cert_path.is_some() != tls.key_path.is_some() {
                out.add(
                    "update.tls",
                    "cert_path and key_path go together (a client certificate and its key)".into(),
                );
            }
            if self.proxies.is_empty() {
                out.add(
                    "update.tls",
                    "is set but update.proxies is empty (no channel to secure)".into(),
                );
            }
        }
    }
}

fn update_tls(d: &mut MigratorConfig) -> &mut ferry_update::ClientTlsFiles {
    d.update
        .tls
        .get_or_insert_with(|| ferry_update::ClientTlsFiles::new(PathBuf::new()))
}

fn proxies(v: &Raw) -> Result<Vec<String>, String> {
    v.list()
        .into_iter()
        .map(|s| {
            contact_point(s).map(|(host, port)| {
                let port = port.unwrap_or(DEFAULT_UPDATE_PORT);
                if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                }
            })
        })
        .collect()
}

fn optional_text(v: &Raw) -> Result<Option<String>, String> {
    Ok(v.optional()?.map(str::to_owned))
}

fn selectors(v: &Raw) -> Result<Vec<TableSelector>, String> {
    v.list().into_iter().map(TableSelector::parse).collect()
}

fn limit(v: &Raw) -> Result<Option<u64>, String> {
    match v.optional()? {
        None | Some("none" | "unlimited") => Ok(None),
        Some(s) => whole(s).map(Some),
    }
}

fn contact_points(v: &Raw) -> Result<Vec<String>, String> {
    v.list()
        .into_iter()
        .map(|s| {
            contact_point(s).map(|(host, port)| {
                let port = port.unwrap_or(9042);
                if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                }
            })
        })
        .collect()
}

fn replication(v: &Raw) -> Result<BTreeMap<String, String>, String> {
    let items: Vec<String> = match v {
        Raw::List(items) => items.clone(),
        Raw::Text(s) => s.split(';').map(str::to_owned).collect(),
        Raw::Null => Vec::new(),
    };
    let mut out = BTreeMap::new();
    for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        match item.split_once('=') {
            Some((ks, map)) if !ks.trim().is_empty() && map.trim_start().starts_with('{') => {
                out.insert(ks.trim().to_owned(), map.trim().to_owned());
            }
            _ => return Err(format!("{item:?}: expected KS={{'class': …}}")),
        }
    }
    Ok(out)
}

macro_rules! cluster_keys {
    ($c:ident, $cluster:literal) => {
        [
            (concat!($cluster, ".contact_points"), |d, v| {
                d.$c.contact_points = contact_points(v)?;
                Ok(())
            }),
            (concat!($cluster, ".username"), |d, v| {
                d.$c.username = optional_text(v)?;
                Ok(())
            }),
            (concat!($cluster, ".password"), |d, v| {
                // Untrimmed: a password's spaces are part of it.
                d.$c.password = match v {
                    Raw::Text(s) if !s.is_empty() => Some(Secret::new(s.as_str())),
                    Raw::Text(_) | Raw::Null => None,
                    Raw::List(_) => return v.text().map(|_| ()),
                };
                Ok(())
            }),
            (concat!($cluster, ".local_dc"), |d, v| {
                d.$c.local_dc = optional_text(v)?;
                Ok(())
            }),
            (concat!($cluster, ".request_timeout"), |d, v| {
                d.$c.request_timeout = duration(v.text()?)?;
                Ok(())
            }),
            (concat!($cluster, ".tls.ca_path"), |d, v| {
                tls_path(v, |p| tls(&mut d.$c).ca_path = p)
            }),
            (concat!($cluster, ".tls.cert_path"), |d, v| {
                tls_path(v, |p| tls(&mut d.$c).cert_path = p)
            }),
            (concat!($cluster, ".tls.key_path"), |d, v| {
                tls_path(v, |p| tls(&mut d.$c).key_path = p)
            }),
            (concat!($cluster, ".tls.server_name"), |d, v| {
                if let Some(name) = v.optional()? {
                    tls(&mut d.$c).server_name = Some(name.to_owned());
                }
                Ok(())
            }),
            (concat!($cluster, ".tls.verify_hostname"), |d, v| {
                tls(&mut d.$c).verify_hostname = boolean(v.text()?)?;
                Ok(())
            }),
        ]
    };
}

/// The cluster's TLS section, turned on by the first key written in it.
fn tls(c: &mut ClusterSettings) -> &mut ClusterTlsConfig {
    c.tls.get_or_insert_with(ClusterTlsConfig::default)
}

/// A TLS file key: a path turns TLS on; null (or empty) leaves the section as it is.
fn tls_path(v: &Raw, set: impl FnOnce(Option<PathBuf>)) -> Result<(), String> {
    if let Some(path) = v.optional()? {
        set(Some(PathBuf::from(path)));
    }
    Ok(())
}

const ORIGIN_KEYS: [(&str, Apply<MigratorConfig>); 10] = cluster_keys!(origin, "origin");
const TARGET_KEYS: [(&str, Apply<MigratorConfig>); 10] = cluster_keys!(target, "target");

const JOB_KEYS: [(&str, Apply<MigratorConfig>); 16] = [
    ("tables", |d, v| {
        d.tables = selectors(v)?;
        Ok(())
    }),
    ("exclude", |d, v| {
        d.exclude = selectors(v)?;
        Ok(())
    }),
    ("table_parallelism", |d, v| {
        d.table_parallelism = whole(v.text()?)?;
        Ok(())
    }),
    ("scan_parallelism", |d, v| {
        d.scan_parallelism = whole(v.text()?)?;
        Ok(())
    }),
    ("ranges", |d, v| {
        let text = v.text()?;
        d.ranges = if text.eq_ignore_ascii_case("auto") {
            match d.ranges {
                RangeCount::Fixed(_) => RangeCount::Auto {
                    partitions_per_range: 50_000,
                },
                auto => auto,
            }
        } else {
            RangeCount::Fixed(whole(text).map_err(|e| format!("{e} (or \"auto\")"))?)
        };
        Ok(())
    }),
    ("partitions_per_range", |d, v| {
        let n = whole(v.text()?)?;
        if let RangeCount::Auto {
            partitions_per_range,
        } = &mut d.ranges
        {
            *partitions_per_range = n;
        }
        Ok(())
    }),
    ("concurrency", |d, v| {
        d.concurrency = whole(v.text()?)?;
        Ok(())
    }),
    ("page_size", |d, v| {
        d.page_size = whole(v.text()?)?;
        Ok(())
    }),
    ("rows_per_second", |d, v| {
        d.max_rows_per_second = limit(v)?;
        Ok(())
    }),
    ("bytes_per_second", |d, v| {
        d.max_bytes_per_second = limit(v)?;
        Ok(())
    }),
    ("retries", |d, v| {
        d.retries = whole(v.text()?)?;
        Ok(())
    }),
    ("retry_backoff", |d, v| {
        d.retry_backoff = duration(v.text()?)?;
        Ok(())
    }),
    ("floor_timestamp", |d, v| {
        let n: u64 = whole(v.text()?)?;
        d.floor_timestamp = i64::try_from(n).map_err(|_| format!("{n} is too large"))?;
        Ok(())
    }),
    ("counters", |d, v| {
        d.counters = boolean(v.text()?)?;
        Ok(())
    }),
    ("replication", |d, v| {
        d.replication = replication(v)?;
        Ok(())
    }),
    ("job_dir", |d, v| {
        d.job_dir = PathBuf::from(v.text()?);
        Ok(())
    }),
];

const SERVICE_KEYS: [(&str, Apply<MigratorConfig>); 4] = [
    ("admin.listen", |d, v| {
        d.admin.listen = v.optional()?.map(socket_addr).transpose()?;
        Ok(())
    }),
    ("admin.bearer_token", |d, v| {
        // An empty token stays Some(""), so validation can say so instead of leaving the API
        // open.
        d.admin.bearer_token = match v {
            Raw::Null => None,
            _ => Some(Secret::new(v.text()?)),
        };
        Ok(())
    }),
    ("log.level", |d, v| {
        d.log_level = log_level(v.text()?)?;
        Ok(())
    }),
    ("log.format", |d, v| {
        d.log_format = match v.text()?.to_ascii_lowercase().as_str() {
            "auto" => LogFormat::Auto,
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(format!("{other:?} is not one of auto, text, json")),
        };
        Ok(())
    }),
];

const UPDATE_KEYS: [(&str, Apply<MigratorConfig>); 6] = [
    ("update.proxies", |d, v| {
        d.update.proxies = proxies(v)?;
        Ok(())
    }),
    ("update.name", |d, v| {
        d.update.name = optional_text(v)?;
        Ok(())
    }),
    ("update.tls.ca_path", |d, v| {
        update_tls(d).ca_path = PathBuf::from(v.text()?);
        Ok(())
    }),
    ("update.tls.cert_path", |d, v| {
        update_tls(d).cert_path = v.optional()?.map(PathBuf::from);
        Ok(())
    }),
    ("update.tls.key_path", |d, v| {
        update_tls(d).key_path = v.optional()?.map(PathBuf::from);
        Ok(())
    }),
    ("update.tls.server_name", |d, v| {
        update_tls(d).server_name = optional_text(v)?;
        Ok(())
    }),
];

/// Every key: the job's first, then the service's, so [`JOB_SETTINGS`] is a prefix.
static KEYS: [(&str, Apply<MigratorConfig>); 46] = {
    let mut all = [SERVICE_KEYS[0]; 46];
    let mut i = 0;
    while i < 10 {
        all[i] = ORIGIN_KEYS[i];
        all[10 + i] = TARGET_KEYS[i];
        i += 1;
    }
    let mut j = 0;
    while j < 16 {
        all[20 + j] = JOB_KEYS[j];
        j += 1;
    }
    let mut k = 0;
    while k < 4 {
        all[36 + k] = SERVICE_KEYS[k];
        k += 1;
    }
    let mut u = 0;
    while u < 6 {
        all[40 + u] = UPDATE_KEYS[u];
        u += 1;
    }
    all
};

const SECTIONS: &[&str] = &[
    "origin",
    "target",
    "origin.tls",
    "target.tls",
    "admin",
    "log",
    "update",
    "update.tls",
];

static SERVICE_SETTINGS: Settings<MigratorConfig> = Settings {
    service: "migrator",
    env_prefix: ENV_PREFIX,
    sections: SECTIONS,
    keys: &KEYS,
};

static JOB_SETTINGS: Settings<MigratorConfig> = Settings {
    service: "job",
    env_prefix: ENV_PREFIX,
    sections: &["origin", "target", "origin.tls", "target.tls"],
    keys: KEYS.split_at(36).0,
};

#[cfg(test)]
mod tests {
    use super::*;

    const NO_ENV: [(&str, &str); 0] = [];
    const EXAMPLE: &str = include_str!("../../deploy/config/migrator.yaml");

    fn problems(e: ConfigErrors) -> String {
        e.to_string()
    }

    #[test]
    fn example_file_loads_and_builds_a_job() {
        let c = MigratorConfig::load(Some(EXAMPLE), NO_ENV, &[]).unwrap_or_else(|e| panic!("{e}"));
        let spec = c.job_spec();
        assert_eq!(
            spec.origin.contact_points,
            ["10.0.0.1:9042", "10.0.0.2:9042"]
        );
        assert_eq!(spec.target.contact_points, ["10.1.0.1:9042"]);
        assert_eq!(spec.tables.len(), 2);
        assert_eq!(spec.exclude.len(), 1);
        assert_eq!(spec.max_rows_per_second, Some(50_000));
        assert_eq!(spec.max_bytes_per_second, None);
        assert_eq!(c.admin.listen, Some(DEFAULT_ADMIN_LISTEN));
        assert_eq!(spec.replication.len(), 1);
        assert!(spec.validate().is_ok());
        // Every key of the table appears in the example, so it stays the reference.
        for (key, _) in &KEYS {
            let leaf = key.rsplit('.').next().unwrap_or(key);
            assert!(
                EXAMPLE.contains(&format!("{leaf}:")),
                "{key} is not in the example"
            );
        }
    }

    #[test]
    fn env_overrides_the_file_and_flags_override_env() {
        let c = MigratorConfig::load(
            Some(EXAMPLE),
            [
                ("FERRY_MIGRATOR_CONCURRENCY", "8"),
                ("FERRY_MIGRATOR_TARGET_CONTACT_POINTS", "t1,t2:9043"),
            ],
            &[("concurrency", "9".to_owned(), "--concurrency")],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.concurrency, 9);
        assert_eq!(c.target.contact_points, ["t1:9042", "t2:9043"]);
    }

    #[test]
    fn every_problem_is_listed() {
        let yaml = "origin: {contact_points: [a], username: u}\n\
                    concurrency: 0\nrange: 4\ntables: ['a b']\n\
                    target: {tls: {ca_path: /x}}\nlog: {format: fancy}\n";
        let e = MigratorConfig::load(Some(yaml), [("FERRY_MIGRATOR_RETRIES", "many")], &[])
            .err()
            .map(problems)
            .unwrap_or_default();
        for expected in [
            "bad migrator configuration",
            "origin.password: is required: origin.username is set",
            "range (line 3): unknown setting (did you mean ranges?)",
            "tables (line 4): table selector \"a b\"",
            "target.contact_points: at least one contact point is required",
            "target.tls.ca_path: cannot read /x: ",
            "log.format (line 6): \"fancy\" is not one of auto, text, json",
            "retries (from FERRY_MIGRATOR_RETRIES): \"many\" is not a whole number",
            "job: concurrency must be 1..=4096 (got 0)",
        ] {
            assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
        }
    }

    #[test]
    fn update_proxies_come_from_file_env_and_flags_with_their_problems() {
        let base = "origin: {contact_points: [o]}\ntarget: {contact_points: [t]}\n";
        let c = MigratorConfig::load(Some(EXAMPLE), NO_ENV, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.update.proxies, ["10.0.2.1:14100", "10.0.2.2:14100"]);
        // The example shows TLS commented out, so it runs as shipped.
        assert_eq!(c.update.tls, None);
        assert_eq!(c.update.name, None);
        let named = format!("{base}update: {{proxies: [p], name: migrator-1}}\n");
        let c = MigratorConfig::load(Some(&named), NO_ENV, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.update.name.as_deref(), Some("migrator-1"));
        let env = [("FERRY_MIGRATOR_UPDATE_NAME", "migrator-2")];
        let c = MigratorConfig::load(Some(&named), env, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.update.name.as_deref(), Some("migrator-2"));
        let long = format!(
            "{base}update: {{proxies: [p], name: {}}}\n",
            "n".repeat(129)
        );
        let e = MigratorConfig::load(Some(&long), NO_ENV, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("update.name"), "{e}");
        let with_tls =
            format!("{base}update: {{proxies: [p], tls: {{ca_path: /etc/ferry/update-ca.pem}}}}\n");
        let c =
            MigratorConfig::load(Some(&with_tls), NO_ENV, &[]).unwrap_or_else(|e| panic!("{e}"));
        let tls = c.update.tls.unwrap_or_else(|| panic!("tls"));
        assert_eq!(tls.ca_path, PathBuf::from("/etc/ferry/update-ca.pem"));
        assert_eq!(tls.cert_path, None);
        let c = MigratorConfig::load(
            Some(base),
            [("FERRY_MIGRATOR_UPDATE_PROXIES", "p1,p2:9")],
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.update.proxies, ["p1:14100", "p2:9"]);
        assert_eq!(c.update.tls, None);
        let c = MigratorConfig::load(
            Some(base),
            [("FERRY_MIGRATOR_UPDATE_PROXIES", "p1")],
            &[("update.proxies", "q:1,[::1]".into(), "--update-proxy")],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.update.proxies, ["q:1", "[::1]:14100"]);
        assert!(
            MigratorConfig::load(Some(base), NO_ENV, &[])
                .is_ok_and(|c| c.update.proxies.is_empty())
        );

        let yaml =
            format!("{base}update: {{proxies: [a, 'a:14100', 'b:x'], tls: {{cert_path: /c}}}}\n");
        let e = MigratorConfig::load(Some(&yaml), NO_ENV, &[])
            .err()
            .map(problems)
            .unwrap_or_default();
        for expected in [
            "update.proxies (line 3)",
            "update.tls.ca_path: is required when update.tls is set",
        ] {
            assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
        }
        let yaml = format!(
            "{base}update: {{proxies: [a, 'a:14100'], tls: {{ca_path: /ca, key_path: /k}}}}\n"
        );
        let e = MigratorConfig::load(Some(&yaml), NO_ENV, &[])
            .err()
            .map(problems)
            .unwrap_or_default();
        for expected in [
            "update.proxies: a:14100 is listed twice",
            "update.tls: cert_path and key_path go together",
        ] {
            assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
        }
        let yaml = format!("{base}update: {{tls: {{ca_path: /ca}}}}\n");
        let e = MigratorConfig::load(Some(&yaml), NO_ENV, &[])
            .err()
            .map(problems)
            .unwrap_or_default();
        assert!(
            e.contains("update.tls: is set but update.proxies is empty"),
            "{e}"
        );
    }

    #[test]
    fn a_posted_job_overlays_the_service_config_and_cannot_move_the_api() {
        let base =
            MigratorConfig::load(Some(EXAMPLE), NO_ENV, &[]).unwrap_or_else(|e| panic!("{e}"));
        let job = base
            .with_job(
                r#"{"tables": ["ks2.t"], "origin": {"contact_points": ["o:1"]}, "ranges": 16}"#,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            job.tables,
            [TableSelector::parse("ks2.t").unwrap_or_else(|e| panic!("{e}"))]
        );
        assert_eq!(job.origin.contact_points, ["o:1"]);
        assert_eq!(job.target.contact_points, base.target.contact_points);
        assert_eq!(job.ranges, RangeCount::Fixed(16));
        let e = base
            .with_job(r#"{"admin": {"listen": "0.0.0.0:1"}}"#)
            .err()
            .map(problems)
            .unwrap_or_default();
        assert!(e.contains("admin (line 1): unknown setting"), "{e}");
    }

    #[test]
    fn tls_keys_turn_tls_on_and_reach_the_job() {
        let yaml = "origin: {contact_points: [a]}\n\
                    target: {contact_points: [b], tls: {verify_hostname: false}}\n\
                    tables: [ks]\n";
        let c = MigratorConfig::load(
            Some(yaml),
            [("FERRY_MIGRATOR_TARGET_TLS_SERVER_NAME", "db.example")],
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.origin.tls, None);
        let spec = c.job_spec();
        let tls = spec.target.tls.unwrap_or_default();
        assert!(!tls.verify_hostname);
        assert_eq!(tls.server_name.as_deref(), Some("db.example"));
        assert_eq!(tls.ca_path, None);

        let e = MigratorConfig::load(
            Some(yaml),
            [
                ("FERRY_MIGRATOR_ORIGIN_TLS_CA_PATH", "/nonexistent/ca.pem"),
                ("FERRY_MIGRATOR_TARGET_TLS_CERT_PATH", "/nonexistent/c.pem"),
            ],
            &[],
        )
        .err()
        .map(problems)
        .unwrap_or_default();
        for expected in [
            "origin.tls.ca_path: cannot read /nonexistent/ca.pem",
            "target.tls.key_path: is required: target.tls.cert_path is set",
        ] {
            assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
        }
    }

    #[test]
    fn secrets_stay_hidden() {
        let c = MigratorConfig::load(
            Some("origin: {contact_points: [a], username: u, password: s3cret}\ntarget: {contact_points: [b]}\ntables: [ks]\n"),
            NO_ENV,
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(
            c.job_spec().origin.credentials,
            Some(("u".into(), "s3cret".into()))
        );
    }
}
