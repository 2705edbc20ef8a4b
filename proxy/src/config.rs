//! The proxy's typed configuration: a YAML file overlaid by environment variables, validated at
//! start with every problem listed at once.
//!
//! # Layout
//! - **Types**: [`ProxyConfig`] and its parts ([`ClusterConfig`], [`TopologyConfig`],
//!   [`BackoffConfig`], [`AdminConfig`], [`ServerTlsConfig`], [`ClientTlsConfig`],
//!   [`UpdateConfig`], [`LogConfig`]),
//!   plus [`Secret`] for values that must never be printed. Field docs are the operator's
//!   reference: meaning, default, YAML key, environment names.
//! - **Loading**: [`ProxyConfig::load`] (injectable file text and environment, for tests) and
//!   [`ProxyConfig::from_process`] (the binary). Both return a [`LoadedConfig`].
//! - **Setting tables**: one table of Ferry keys and one of zdm-proxy names, each entry with the
//!   function that parses a value into the config. YAML, `FERRY_PROXY_…` and `ZDM_…` all go
//!   through the same parsers, so a value means the same thing wherever it is written.
//! - **Validation**: [`ProxyConfig::validate`], cross-field and filesystem checks.
//! - **Errors**: [`ConfigErrors`] (every problem, exit code 64) and [`ConfigProblem`].
//!
//! # Sources and precedence
//! Lowest to highest: built-in defaults, zdm-proxy keys in the YAML file, Ferry keys in the YAML
//! file, `ZDM_<NAME>` variables, `FERRY_PROXY_<PATH>` variables. So Ferry's own name wins over
//! zdm-proxy's, and the environment wins over the file.
//!
//! - **Ferry YAML keys** are nested snake_case (`origin: { contact_points: [...] }`); unknown keys
//!   are errors. **Ferry env names** are `FERRY_PROXY_` plus the key path upper-cased with `.`
//!   replaced by `_` (`origin.contact_points` → `FERRY_PROXY_ORIGIN_CONTACT_POINTS`); an unknown
//!   `FERRY_PROXY_…` variable is an error too, so a typo cannot silently fall back to a default.
//! - **zdm-proxy names**: env `ZDM_<NAME>`, or the lower-case name as a top-level YAML key
//!   (`origin_contact_points`, `proxy_request_timeout_ms`). The few zdm-proxy settings Ferry has no
//!   use for are accepted and reported as notices; unknown `ZDM_…` variables are notices, not
//!   errors, because existing zdm deployments set options Ferry does not model.
//! - **Durations**: Ferry keys take humane strings, one or more `<integer><unit>` parts with units
//!   `ms`, `s`, `m`, `h` (`"250ms"`, `"10s"`, `"1m30s"`); a bare number is rejected because its
//!   unit would be a guess. zdm-proxy's `*_MS` names take integer milliseconds, as they always did.
//! - **Lists** are YAML sequences or comma-separated strings (always comma-separated in env).
//! - **Empty env values** count as unset, as in docker-compose files that pass `VAR=`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_cql::protocol::{Consistency, ProtocolVersion};
use ferry_service::problem::Problems;
pub use ferry_service::problem::{ConfigErrors, ConfigProblem, SettingName, Source};
use ferry_service::value::{
    self, boolean, duration, host_ip, humane, log_level, millis, socket_addr, suggest, whole,
};
pub use ferry_service::value::{LogLevel, Secret};
use ferry_service::yaml::{Node, Raw, is_null, read_yaml, yaml_raw};

use crate::settings::{BadSetting, ClusterId, ReadMode, TargetFailurePolicy};

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/// Everything `ferry proxy` can be told. Build one with [`ProxyConfig::load`] or start from
/// [`ProxyConfig::default`] (valid once both clusters have contact points).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// Address clients (drivers, cqlsh) connect to. Default `0.0.0.0:9042`.
    /// YAML `listen`, env `FERRY_PROXY_LISTEN`; zdm `PROXY_LISTEN_ADDRESS` (IP part, `localhost`
    /// accepted) and `PROXY_LISTEN_PORT` (port part).
    pub listen: SocketAddr,
    /// The origin cluster (the one being migrated away from). YAML section `origin`.
    pub origin: ClusterConfig,
    /// The target cluster (the one being migrated to). YAML section `target`.
    pub target: ClusterConfig,
    /// Which cluster serves reads and whose answer the client gets when both succeed: `origin`
    /// (default) or `target`. Changes live through the admin API; this is the value at start.
    /// YAML `primary`, env `FERRY_PROXY_PRIMARY`; zdm `PRIMARY_CLUSTER` (`ORIGIN`/`TARGET`).
    pub primary: ClusterId,
    /// `primary-only` (default) or `dual-async` (reads mirrored to the secondary in the
    /// background and compared). Changes live. YAML `read_mode`; zdm `READ_MODE`
    /// (`PRIMARY_ONLY`/`DUAL_ASYNC_ON_SECONDARY`).
    pub read_mode: ReadMode,
    /// Cluster that serves reads of the `system*` keyspaces and supplies `system.local` data.
    /// Default `origin`. YAML `system_queries`; zdm `SYSTEM_QUERIES_MODE`.
    pub system_queries: ClusterId,
    /// Replace `now()`, `uuid()`, `currentTimestamp()` and friends in writes by literal values
    /// generated once, so both clusters store the same value. Default `true` (zdm-proxy's default
    /// is false; leaving it off makes the copies differ). YAML `replace_cql_functions`; zdm
    /// `REPLACE_CQL_FUNCTIONS`.
    pub replace_cql_functions: bool,
    /// Set the protocol's default timestamp on writes that carry none, so origin and target store
    /// identical writetimes. Default `true`. YAML `inject_timestamps`.
    pub inject_timestamps: bool,
    /// What a write that failed only on the target answers: `strict` (default: the target's
    /// error) or `best-effort` (the primary's answer; the write is recorded for repair).
    /// YAML `target_failure_policy`.
    pub target_failure_policy: TargetFailurePolicy,
    /// A file where the proxy journals what it holds for the migrator: target write failures
    /// not yet repaired (policy `best-effort`), re-migrations (ALTER TABLE) waiting or not yet
    /// acknowledged, and what the migrator settled. Replayed and compacted at start, so a
    /// restart forgets none of it. Unset (default): kept in memory only, lost on restart;
    /// production with `best-effort` should set it, on a volume that outlives the process.
    /// The file must be readable and writable, its directory existing (checked at start:
    /// exit 64). YAML
    /// `repair_journal`, env `FERRY_PROXY_REPAIR_JOURNAL`.
    pub repair_journal: Option<PathBuf>,
    /// Consistency level forced on the secondary's copy of each write (for example `ONE` to keep
    /// a slow target from failing writes); unset (default) keeps the client's level. Serial levels
    /// are rejected: they are not write levels. YAML `secondary_consistency`.
    pub secondary_consistency: Option<Consistency>,
    /// When both clusters need credentials, send the client's to origin and the proxy's own
    /// (`target.username`/`password`) to target. Default `false`: the client's go to target and
    /// `origin.username`/`password` to origin, as in zdm-proxy. YAML
    /// `forward_client_credentials_to_origin`; zdm `FORWARD_CLIENT_CREDENTIALS_TO_ORIGIN`.
    pub forward_client_credentials_to_origin: bool,
    /// Protocol versions the proxy refuses to negotiate, e.g. `[v5]`. Default none. Written as
    /// `v3`, `V4`, `5`, …; `v1`, `v2`, `DseV1`, `DseV2` are accepted and dropped (Ferry never
    /// speaks them). YAML `blocked_protocol_versions`; zdm `BLOCKED_PROTOCOL_VERSIONS` (`"v2,v5"`).
    pub blocked_protocol_versions: Vec<ProtocolVersion>,
    /// How the proxy instances present themselves in `system.local`/`system.peers`. YAML section
    /// `topology`.
    pub topology: TopologyConfig,
    /// How long a request waits for the clusters before the client gets a timeout error.
    /// Default `10s`. YAML `request_timeout`; zdm `PROXY_REQUEST_TIMEOUT_MS`.
    pub request_timeout: Duration,
    /// Client connections accepted at once; more get a clean error and are closed. Default
    /// `1000`, at most 1,000,000. YAML `max_client_connections`; zdm `PROXY_MAX_CLIENT_CONNECTIONS`.
    pub max_client_connections: usize,
    /// Requests in flight on one client connection (and stream ids per backend connection);
    /// beyond it the client gets OVERLOADED. Default `2048`, at most 32768 (the protocol's stream
    /// id space). YAML `max_in_flight_per_connection`; zdm `PROXY_MAX_STREAM_IDS`.
    pub max_in_flight_per_connection: usize,
    /// Let client connections whose handshakes are identical (protocol version, STARTUP
    /// options, credentials, the same two nodes) and which set no keyspace send their requests
    /// over one shared pair of backend connections, so several clients' requests leave in one
    /// write. Each client keeps its own pair for its handshake, `USE`, `REGISTER` and as the
    /// fallback. Default `false`. YAML `share_backend_connections`.
    pub share_backend_connections: bool,
    /// Entries in the prepared-statement id cache (LRU). Default `10000`, at most 10,000,000.
    /// YAML `prepared_cache_capacity`.
    pub prepared_cache_capacity: usize,
    /// Idle interval after which a backend connection sends a heartbeat (OPTIONS). Default `30s`.
    /// YAML `heartbeat_interval`; zdm `HEARTBEAT_INTERVAL_MS`.
    pub heartbeat_interval: Duration,
    /// Reconnect backoff for cluster connections. YAML section `reconnect`.
    pub reconnect: BackoffConfig,
    /// How long shutdown waits for in-flight requests before answering the rest with errors.
    /// Default `10s`. YAML `shutdown_grace`.
    pub shutdown_grace: Duration,
    /// The admin/metrics HTTP server. YAML section `admin`.
    pub admin: AdminConfig,
    /// TLS for client connections; absent (default) means plain TCP. YAML section `tls`.
    pub tls: Option<ServerTlsConfig>,
    /// The Update channel to the migrator; absent (default) means the proxy runs without one.
    /// YAML section `update`.
    pub update: Option<UpdateConfig>,
    /// Logging. YAML section `log`.
    pub log: LogConfig,
}

/// How the proxy reaches one cluster. YAML sections `origin` and `target`; every key below is
/// written `origin.<key>` / `target.<key>` (env `FERRY_PROXY_ORIGIN_<KEY>`, zdm
/// `ORIGIN_<NAME>`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// Nodes to connect to first: `host`, `host:port`, `ip`, `[ipv6]:port`. At least one; more
    /// than one lets the proxy start while a node is down. No default. Key `contact_points`;
    /// zdm `ORIGIN_CONTACT_POINTS` (comma list).
    pub contact_points: Vec<ContactPoint>,
    /// Port for contact points that name none. Default `9042`. Key `port`; zdm `ORIGIN_PORT`.
    pub port: u16,
    /// Data center whose nodes the proxy uses; unset uses the contact points' own. Key
    /// `local_datacenter`; zdm `ORIGIN_LOCAL_DATACENTER`.
    pub local_datacenter: Option<String>,
    /// Username for the proxy's own logins to this cluster (see
    /// [`ProxyConfig::forward_client_credentials_to_origin`]). Key `username`; zdm
    /// `ORIGIN_USERNAME`.
    pub username: Option<String>,
    /// Password that goes with `username`; never printed. Key `password`; zdm `ORIGIN_PASSWORD`.
    pub password: Option<Secret>,
    /// Time allowed to open a connection. Default `30s`. Key `connect_timeout`; zdm
    /// `ORIGIN_CONNECTION_TIMEOUT_MS`.
    pub connect_timeout: Duration,
    /// TLS to this cluster; absent (default) is plain TCP. Section `tls`; any key in it (or an
    /// empty `tls: {}`) turns TLS on.
    pub tls: Option<ClientTlsConfig>,
}

/// One configured contact point, as written (resolution happens at connect time, so a DNS name
/// can move).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContactPoint {
    /// Host name or IP literal, without brackets.
    pub host: String,
    /// Port given with the host; `None` means the cluster's `port`.
    pub port: Option<u16>,
}

/// TLS from the proxy to a cluster (keys `<cluster>.tls.*`; zdm `ORIGIN_TLS_SERVER_CA_PATH`,
/// `ORIGIN_TLS_CLIENT_CERT_PATH`, `ORIGIN_TLS_CLIENT_KEY_PATH` and the `TARGET_` ones): the
/// migrator's too, so both read a cluster's TLS section alike.
pub use ferry_service::tls::ClusterTlsConfig as ClientTlsConfig;

/// TLS on the client-facing listener.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ServerTlsConfig {
    /// PEM certificate chain the proxy presents. Required. Key `tls.cert_path`; zdm
    /// `PROXY_TLS_CERT_PATH`.
    pub cert_path: PathBuf,
    /// PEM private key of the certificate. Required. Key `tls.key_path`; zdm `PROXY_TLS_KEY_PATH`.
    pub key_path: PathBuf,
    /// PEM CAs that sign client certificates; required when `require_client_auth`. Key
    /// `tls.ca_path`; zdm `PROXY_TLS_CA_PATH`.
    pub ca_path: Option<PathBuf>,
    /// Refuse clients without a certificate signed by `ca_path` (mutual TLS). Default `false`.
    /// Key `tls.require_client_auth`; zdm `PROXY_TLS_REQUIRE_CLIENT_AUTH`.
    pub require_client_auth: bool,
}

/// The proxy instances as drivers see them (topology virtualization): every instance lists all
/// of them, in the same order, in `system.local`/`system.peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopologyConfig {
    /// Client-visible address of every proxy instance, identical on all instances. An entry
    /// without a port takes `listen`'s port. Default empty: this instance alone, advertised at
    /// `listen` (see [`ProxyConfig::topology_addresses`]). Key `topology.addresses`; zdm
    /// `PROXY_TOPOLOGY_ADDRESSES`.
    pub addresses: Vec<SocketAddr>,
    /// This instance's position in `addresses`. Default `0`. Key `topology.index`; zdm
    /// `PROXY_TOPOLOGY_INDEX`.
    pub index: usize,
    /// Tokens each instance claims, evenly spaced on the ring; 1..=256. Default `8`. Key
    /// `topology.num_tokens`; zdm `PROXY_TOPOLOGY_NUM_TOKENS`.
    pub num_tokens: u16,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        Self {
            addresses: Vec::new(),
            index: 0,
            num_tokens: 8,
        }
    }
}

/// Exponential reconnect backoff for cluster connections, and when readiness gives up.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BackoffConfig {
    /// First delay after a failure. Default `250ms`. Key `reconnect.min_delay`; zdm
    /// `HEARTBEAT_RETRY_INTERVAL_MIN_MS`.
    pub min_delay: Duration,
    /// Largest delay. Default `30s`. Key `reconnect.max_delay`; zdm
    /// `HEARTBEAT_RETRY_INTERVAL_MAX_MS`.
    pub max_delay: Duration,
    /// Each delay is the previous one times this, at least 1. Default `2`. Key `reconnect.factor`;
    /// zdm `HEARTBEAT_RETRY_BACKOFF_FACTOR`.
    pub factor: f64,
    /// Consecutive failures before the cluster counts as DOWN in `/health/readiness`. Default
    /// `1`. Key `reconnect.failure_threshold`; zdm `HEARTBEAT_FAILURE_THRESHOLD`.
    pub failure_threshold: u32,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            factor: 2.0,
            failure_threshold: 1,
        }
    }
}

/// The admin HTTP server: metrics, health, live primary/read-mode switches.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminConfig {
    /// Address of the admin server. Default `0.0.0.0:14001`. Key `admin.listen`; zdm
    /// `METRICS_ADDRESS` (IP part) and `METRICS_PORT` (port part).
    pub listen: SocketAddr,
    /// Serve `/metrics`. Default `true`. Key `admin.metrics_enabled`; zdm `METRICS_ENABLED`.
    pub metrics_enabled: bool,
    /// When set, mutating endpoints (`PUT /primary`, `PUT /read-mode`) require
    /// `Authorization: Bearer <token>`; never printed. Key `admin.bearer_token`.
    pub bearer_token: Option<Secret>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 14001),
            metrics_enabled: true,
            bearer_token: None,
        }
    }
}

/// The Update channel: the proxy listens, `ferry migrate` dials in and reports its job; the
/// proxy sends repair and re-migrate requests back. Setting any key switches it on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpdateConfig {
    /// Address migrators connect to. Default `0.0.0.0:14100`. Key `update.listen`, env
    /// `FERRY_PROXY_UPDATE_LISTEN`.
    pub listen: SocketAddr,
    /// `ferry migrate` workers reporting at once (a job split over several, each with its
    /// own `update.name`); one more is refused with the reason, which it logs. Default 16,
    /// at most 256. Key `update.max_migrators`.
    pub max_migrators: usize,
    /// The `update.name` of every `ferry migrate` worker of the job (`migrator-0`, …): the
    /// cutover to target is refused until each has reported its job and all its tables are
    /// validated, so a worker that never started cannot be missed. Empty (default): the gate
    /// covers the workers that reported. Unique, non-empty names, at most
    /// `update.max_migrators`. Key `update.expect_migrators`, env
    /// `FERRY_PROXY_UPDATE_EXPECT_MIGRATORS` (comma-separated).
    pub expect_migrators: Vec<String>,
    /// How long a worker may stay away before its lane is dropped and the requests queued
    /// for it go to another worker (a connected one at once). A worker back within it gets
    /// them itself. Default 60s, between 100ms and 1h. Key `update.peer_linger`.
    pub peer_linger: Duration,
    /// After a worker refuses a repair as "not now" (it is exiting, or cannot reach origin),
    /// repairs go to it again only once it reconnects or this passes; others take them
    /// meanwhile. Default 30s, between 1s and 1h. Key `update.not_now_retry`.
    pub not_now_retry: Duration,
    /// TLS on the channel; absent (default) means plain TCP. Section `update.tls`.
    pub tls: Option<UpdateTlsConfig>,
}

/// The most `update.max_migrators` may be: each one is a connection and a queue.
const MAX_MIGRATORS: usize = 256;
/// `update.peer_linger`: shorter hands a restarting worker's requests to another; longer keeps
/// a vanished worker's requests from the others past any plausible restart.
const PEER_LINGER: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(3600);
/// `update.not_now_retry`: shorter asks a worker that cannot repair again and again; longer
/// leaves repairs pending for an hour with no other worker.
const NOT_NOW_RETRY: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(3600);
/// The longest worker name, as the migrator's `update.name` allows.
const MAX_MIGRATOR_NAME: usize = 128;

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 14100),
            max_migrators: 16,
            expect_migrators: Vec::new(),
            peer_linger: Duration::from_secs(60),
            not_now_retry: Duration::from_secs(30),
            tls: None,
        }
    }
}

/// TLS on the Update listener.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct UpdateTlsConfig {
    /// PEM certificate chain the proxy presents. Required. Key `update.tls.cert_path`.
    pub cert_path: PathBuf,
    /// PEM private key of the certificate. Required. Key `update.tls.key_path`.
    pub key_path: PathBuf,
    /// PEM CAs that sign migrator certificates; when set, a migrator must present one (mutual
    /// TLS: the channel makes the migrator write to target). Key `update.tls.client_ca_path`.
    pub client_ca_path: Option<PathBuf>,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LogConfig {
    /// `error`, `warn`, `info` (default), `debug` or `trace`, any case. Key `log.level`; zdm
    /// `LOG_LEVEL`.
    pub level: LogLevel,
    /// One JSON object per line instead of human-readable text. Default `false`. Key `log.json`.
    pub json: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            contact_points: Vec::new(),
            port: 9042,
            local_datacenter: None,
            username: None,
            password: None,
            connect_timeout: Duration::from_secs(30),
            tls: None,
        }
    }
}

impl ClusterConfig {
    /// Every contact point as `(host, port)`, the form `tokio::net::lookup_host` takes (IPv6
    /// literals without brackets work there).
    pub fn endpoints(&self) -> impl Iterator<Item = (&str, u16)> + '_ {
        self.contact_points
            .iter()
            .map(|c| (c.host.as_str(), c.port.unwrap_or(self.port)))
    }
}

impl ContactPoint {
    pub fn new(host: impl Into<String>, port: Option<u16>) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }
}

impl From<SocketAddr> for ContactPoint {
    fn from(addr: SocketAddr) -> Self {
        Self::new(addr.ip().to_string(), Some(addr.port()))
    }
}

impl fmt::Display for ContactPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bracket = self.host.contains(':');
        match (bracket, self.port) {
            (true, Some(p)) => write!(f, "[{}]:{p}", self.host),
            (false, Some(p)) => write!(f, "{}:{p}", self.host),
            (_, None) => f.write_str(&self.host),
        }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9042),
            origin: ClusterConfig::default(),
            target: ClusterConfig::default(),
            primary: ClusterId::Origin,
            read_mode: ReadMode::PrimaryOnly,
            system_queries: ClusterId::Origin,
            replace_cql_functions: true,
            inject_timestamps: true,
            target_failure_policy: TargetFailurePolicy::Strict,
            repair_journal: None,
            secondary_consistency: None,
            forward_client_credentials_to_origin: false,
            blocked_protocol_versions: Vec::new(),
            topology: TopologyConfig::default(),
            request_timeout: Duration::from_secs(10),
            max_client_connections: 1000,
            max_in_flight_per_connection: 2048,
            share_backend_connections: false,
            prepared_cache_capacity: 10_000,
            heartbeat_interval: Duration::from_secs(30),
            reconnect: BackoffConfig::default(),
            shutdown_grace: Duration::from_secs(10),
            admin: AdminConfig::default(),
            tls: None,
            update: None,
            log: LogConfig::default(),
        }
    }
}

impl ProxyConfig {
    /// The cluster with this identity.
    pub fn cluster(&self, id: ClusterId) -> &ClusterConfig {
        match id {
            ClusterId::Origin => &self.origin,
            ClusterId::Target => &self.target,
        }
    }

    /// The addresses advertised in `system.local`/`system.peers`, this instance at
    /// `topology.index`. With no `topology.addresses` it is `[listen]`; when that is an
    /// unspecified address (`0.0.0.0`) the caller should advertise the local address of the
    /// client's connection instead, since no driver can connect to `0.0.0.0`.
    pub fn topology_addresses(&self) -> &[SocketAddr] {
        if self.topology.addresses.is_empty() {
            std::slice::from_ref(&self.listen)
        } else {
            &self.topology.addresses
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// A loaded and validated config, and what the operator should be told about it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoadedConfig {
    pub config: ProxyConfig,
    /// Settings that were accepted but have no effect (zdm-proxy options Ferry has no use for,
    /// unknown `ZDM_…` variables). Worth one log line each at start.
    pub notices: Vec<String>,
}

/// For the heading of [`ConfigErrors`]: "bad proxy configuration".
const SERVICE: &str = "proxy";
const FERRY_ENV_PREFIX: &str = "FERRY_PROXY_";
const ZDM_ENV_PREFIX: &str = "ZDM_";
impl ProxyConfig {
    /// Builds the config from the YAML file's text (if any) and environment variables, then
    /// validates it. Only `FERRY_PROXY_…` and `ZDM_…` variables are looked at; pass
    /// `std::env::vars()` or, in tests, a literal list. Every problem (unreadable YAML, unknown
    /// keys, bad values, failed validation) comes back at once.
    pub fn load<I, K, V>(yaml: Option<&str>, env: I) -> Result<LoadedConfig, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut loader = Loader::default();
        if let Some(text) = yaml {
            loader.yaml(text);
        }
        loader.env(env);
        loader.finish()
    }

    /// [`ProxyConfig::load`] with the file at `path` (the `--config` option) and the process's
    /// environment.
    pub fn from_process(path: Option<&Path>) -> Result<LoadedConfig, ConfigErrors> {
        let mut loader = Loader::default();
        if let Some(path) = path {
            match std::fs::read_to_string(path) {
                Ok(text) => loader.yaml(&text),
                Err(e) => loader.problems.push(ConfigProblem::Unreadable {
                    path: path.to_owned(),
                    reason: e.to_string(),
                }),
            }
        }
        // vars_os: std::env::vars panics on any non-UTF-8 variable, even one that is not ours.
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(FERRY_ENV_PREFIX) && !name.starts_with(ZDM_ENV_PREFIX) {
                continue;
            }
            match value.into_string() {
                Ok(value) => env.push((name.to_owned(), value)),
                Err(_) => loader.problems.push(ConfigProblem::NotUtf8 {
                    name: name.to_owned(),
                }),
            }
        }
        loader.env(env);
        loader.finish()
    }
}

/// The config being built, plus what cannot be final until every source is read.
#[derive(Debug, Default)]
struct Draft {
    config: ProxyConfig,
    /// Topology entries without a port take `listen`'s, which a later source may still change.
    topology_addresses: Option<Vec<(IpAddr, Option<u16>)>>,
}

impl Draft {
    fn cluster_mut(&mut self, id: ClusterId) -> &mut ClusterConfig {
        match id {
            ClusterId::Origin => &mut self.config.origin,
            ClusterId::Target => &mut self.config.target,
        }
    }
}

#[derive(Debug, Default)]
struct Loader {
    draft: Draft,
    problems: Vec<ConfigProblem>,
    notices: Vec<String>,
    /// Keys whose value did not parse: validation stays quiet about them, since the default it
    /// would judge is not what the operator wrote.
    failed: Vec<String>,
}

impl Loader {
    fn yaml(&mut self, text: &str) {
        let root = match read_yaml(text) {
            Ok(Some(root)) => root,
            Ok(None) => return,
            Err(reason) => {
                self.problems.push(ConfigProblem::Syntax { reason });
                return;
            }
        };
        let entries = match root {
            Node::Map { entries, .. } => entries,
            Node::Scalar {
                ref text,
                plain: true,
                ..
            } if is_null(text) => return,
            other => {
                self.problems.push(ConfigProblem::Syntax {
                    reason: format!(
                        "line {}: the file must be a mapping of keys, found {}",
                        other.line(),
                        other.kind()
                    ),
                });
                return;
            }
        };
        // zdm-proxy's flat keys first, so Ferry's own keys in the same file win.
        let mut ferry = Vec::new();
        for (key, line, value) in entries {
            if find_ferry(&key).is_some() || is_section(&key) {
                ferry.push((key, line, value));
                continue;
            }
            let upper = key.to_ascii_uppercase();
            if let Some(found) = find_zdm(&upper) {
                let source = Source::AliasFile {
                    alias: format!("zdm key {key}"),
                    line,
                };
                match yaml_raw(&value) {
                    Ok(raw) => self.apply(found, &raw, source),
                    Err(message) => self.bad(found.path, source, message),
                }
            } else if upper == ZDM_METRICS_PREFIX {
                let text = match yaml_raw(&value) {
                    Ok(Raw::Text(t)) => t,
                    _ => String::new(),
                };
                match zdm_metrics_prefix(&format!("config key {key}"), &text) {
                    Ok(notice) => self.notices.push(notice),
                    Err(problem) => self.problems.push(problem),
                }
            } else if let Some(reason) = zdm_ignored(&upper) {
                self.notices
                    .push(format!("config key {key} is ignored: {reason}"));
            } else {
                ferry.push((key, line, value));
            }
        }
        for (key, line, value) in ferry {
            self.walk(key, line, &value);
        }
    }

    /// Applies one Ferry key of the file, descending into sections.
    fn walk(&mut self, path: String, line: usize, value: &Node) {
        if let Some(&(_, toggle)) = SECTIONS.iter().find(|(name, _)| *name == path) {
            match value {
                Node::Map { entries, .. } => {
                    if let Some(toggle) = toggle {
                        toggle(&mut self.draft, true);
                    }
                    for (key, line, value) in entries {
                        self.walk(format!("{path}.{key}"), *line, value);
                    }
                }
                Node::Scalar {
                    text, plain: true, ..
                } if is_null(text) => {
                    // `tls:` with nothing under it (or `tls: null`) turns the section off.
                    if let Some(toggle) = toggle {
                        toggle(&mut self.draft, false);
                    }
                }
                other => self.bad(
                    path,
                    Source::File { line },
                    format!("expected a mapping of keys, found {}", other.kind()),
                ),
            }
            return;
        }
        match find_ferry(&path) {
            Some(found) => match yaml_raw(value) {
                Ok(raw) => self.apply(found, &raw, Source::File { line }),
                Err(message) => self.bad(found.path, Source::File { line }, message),
            },
            None => {
                let suggestion = suggest(&path, yaml_key_candidates());
                self.problems.push(ConfigProblem::Unknown {
                    key: path,
                    line: Some(line),
                    suggestion,
                });
            }
        }
    }

    fn env<I, K, V>(&mut self, vars: I)
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut zdm = Vec::new();
        let mut ferry = Vec::new();
        for (name, value) in vars {
            let (name, value) = (name.as_ref(), value.as_ref());
            if value.trim().is_empty() {
                continue;
            }
            if name.starts_with(FERRY_ENV_PREFIX) {
                ferry.push((name.to_owned(), value.to_owned()));
            } else if let Some(rest) = name.strip_prefix(ZDM_ENV_PREFIX) {
                zdm.push((rest.to_owned(), name.to_owned(), value.to_owned()));
            }
        }
        // The environment has no order; sorting makes problems and notices reproducible.
        zdm.sort();
        ferry.sort();
        for (rest, name, value) in zdm {
            if let Some(found) = find_zdm(&rest) {
                self.apply(found, &Raw::Text(value), Source::Env { name });
            } else if rest == ZDM_METRICS_PREFIX {
                match zdm_metrics_prefix(&name, &value) {
                    Ok(notice) => self.notices.push(notice),
                    Err(problem) => self.problems.push(problem),
                }
            } else if let Some(reason) = zdm_ignored(&rest) {
                self.notices.push(format!("{name} is ignored: {reason}"));
            } else {
                self.notices
                    .push(format!("{name} is not a setting Ferry knows; ignored"));
            }
        }
        for (name, value) in ferry {
            let path = ferry_paths().into_iter().find(|p| env_name(p) == name);
            match path.and_then(|p| find_ferry(&p)) {
                Some(found) => self.apply(found, &Raw::Text(value), Source::Env { name }),
                None => {
                    let candidates = ferry_paths().iter().map(|p| env_name(p)).collect();
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

    fn apply(&mut self, found: Found, raw: &Raw, source: Source) {
        let result = match found.apply {
            Apply::Proxy(f) => f(&mut self.draft, raw),
            Apply::Cluster(id, f) => f(self.draft.cluster_mut(id), raw),
        };
        // A bad value stays listed even if a later source overrides it: the operator should fix
        // the file too.
        if let Err(message) = result {
            self.bad(found.path, source, message);
        }
    }

    fn bad(&mut self, path: String, source: Source, message: String) {
        self.failed.push(path.clone());
        self.problems.push(ConfigProblem::Value {
            key: SettingName { path, source },
            message,
        });
    }

    fn finish(self) -> Result<LoadedConfig, ConfigErrors> {
        let Loader {
            draft,
            mut problems,
            notices,
            failed,
        } = self;
        let mut config = draft.config;
        if let Some(addresses) = draft.topology_addresses {
            let port = config.listen.port();
            config.topology.addresses = addresses
                .into_iter()
                .map(|(ip, p)| SocketAddr::new(ip, p.unwrap_or(port)))
                .collect();
        }
        problems.extend(
            config
                .problems()
                .into_iter()
                .filter(|p| p.key().is_none_or(|k| !failed.iter().any(|f| f == k))),
        );
        if problems.is_empty() {
            Ok(LoadedConfig { config, notices })
        } else {
            Err(ConfigErrors::new(SERVICE, problems))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Setting tables
// ---------------------------------------------------------------------------------------------

type ProxyApply = fn(&mut Draft, &Raw) -> Result<(), String>;
type ClusterApply = fn(&mut ClusterConfig, &Raw) -> Result<(), String>;

#[derive(Clone, Copy)]
enum Apply {
    Proxy(ProxyApply),
    Cluster(ClusterId, ClusterApply),
}

/// A setting found by name: its Ferry key path and how to apply a value.
struct Found {
    path: String,
    apply: Apply,
}

/// Sections of the nested YAML; the optional ones (TLS) have a switch: `true` when the section
/// appears with keys, `false` when it is written empty.
type SectionSwitch = fn(&mut Draft, bool);

const SECTIONS: &[(&str, Option<SectionSwitch>)] = &[
    ("origin", None),
    ("target", None),
    ("topology", None),
    ("reconnect", None),
    ("admin", None),
    ("log", None),
    ("tls", Some(|d, on| toggle(&mut d.config.tls, on))),
    (
        "origin.tls",
        Some(|d, on| toggle(&mut d.config.origin.tls, on)),
    ),
    (
        "target.tls",
        Some(|d, on| toggle(&mut d.config.target.tls, on)),
    ),
    ("update", Some(|d, on| toggle(&mut d.config.update, on))),
    (
        "update.tls",
        Some(|d, on| match (on, &mut d.config.update) {
            (true, _) => toggle(&mut update(d).tls, true),
            (false, Some(u)) => u.tls = None,
            (false, None) => {}
        }),
    ),
];

fn toggle<T: Default>(section: &mut Option<T>, on: bool) {
    if on {
        section.get_or_insert_with(T::default);
    } else {
        *section = None;
    }
}

fn is_section(path: &str) -> bool {
    SECTIONS.iter().any(|(name, _)| *name == path)
}

/// Ferry's keys outside the `origin`/`target` sections.
const PROXY_SETTINGS: &[(&str, ProxyApply)] = &[
    ("listen", |d, v| {
        d.config.listen = socket_addr(v.text()?)?;
        Ok(())
    }),
    ("primary", |d, v| {
        d.config.primary = named(v.text()?)?;
        Ok(())
    }),
    ("read_mode", |d, v| {
        d.config.read_mode = named(v.text()?)?;
        Ok(())
    }),
    ("system_queries", |d, v| {
        d.config.system_queries = named(v.text()?)?;
        Ok(())
    }),
    ("replace_cql_functions", |d, v| {
        d.config.replace_cql_functions = boolean(v.text()?)?;
        Ok(())
    }),
    ("inject_timestamps", |d, v| {
        d.config.inject_timestamps = boolean(v.text()?)?;
        Ok(())
    }),
    ("target_failure_policy", |d, v| {
        d.config.target_failure_policy = named(v.text()?)?;
        Ok(())
    }),
    ("repair_journal", |d, v| {
        d.config.repair_journal = v.optional()?.map(PathBuf::from);
        Ok(())
    }),
    ("secondary_consistency", |d, v| {
        d.config.secondary_consistency = v.optional()?.map(consistency).transpose()?;
        Ok(())
    }),
    ("forward_client_credentials_to_origin", |d, v| {
        d.config.forward_client_credentials_to_origin = boolean(v.text()?)?;
        Ok(())
    }),
    ("blocked_protocol_versions", |d, v| {
        d.config.blocked_protocol_versions = protocol_versions(&v.list())?;
        Ok(())
    }),
    ("request_timeout", |d, v| {
        d.config.request_timeout = duration(v.text()?)?;
        Ok(())
    }),
    ("max_client_connections", |d, v| {
        d.config.max_client_connections = whole(v.text()?)?;
        Ok(())
    }),
    ("max_in_flight_per_connection", |d, v| {
        d.config.max_in_flight_per_connection = whole(v.text()?)?;
        Ok(())
    }),
    ("share_backend_connections", |d, v| {
        d.config.share_backend_connections = boolean(v.text()?)?;
        Ok(())
    }),
    ("prepared_cache_capacity", |d, v| {
        d.config.prepared_cache_capacity = whole(v.text()?)?;
        Ok(())
    }),
    ("heartbeat_interval", |d, v| {
        d.config.heartbeat_interval = duration(v.text()?)?;
        Ok(())
    }),
    ("shutdown_grace", |d, v| {
        d.config.shutdown_grace = duration(v.text()?)?;
        Ok(())
    }),
    ("topology.addresses", |d, v| {
        let list = v
            .list()
            .into_iter()
            .map(advertised)
            .collect::<Result<_, _>>()?;
        d.topology_addresses = Some(list);
        Ok(())
    }),
    ("topology.index", |d, v| {
        d.config.topology.index = whole(v.text()?)?;
        Ok(())
    }),
    ("topology.num_tokens", |d, v| {
        d.config.topology.num_tokens = whole(v.text()?)?;
        Ok(())
    }),
    ("reconnect.min_delay", |d, v| {
        d.config.reconnect.min_delay = duration(v.text()?)?;
        Ok(())
    }),
    ("reconnect.max_delay", |d, v| {
        d.config.reconnect.max_delay = duration(v.text()?)?;
        Ok(())
    }),
    ("reconnect.factor", |d, v| {
        let text = v.text()?;
        d.config.reconnect.factor = text
            .parse()
            .map_err(|_| format!("{text:?} is not a number"))?;
        Ok(())
    }),
    ("reconnect.failure_threshold", |d, v| {
        d.config.reconnect.failure_threshold = whole(v.text()?)?;
        Ok(())
    }),
    ("admin.listen", |d, v| {
        d.config.admin.listen = socket_addr(v.text()?)?;
        Ok(())
    }),
    ("admin.metrics_enabled", |d, v| {
        d.config.admin.metrics_enabled = boolean(v.text()?)?;
        Ok(())
    }),
    ("admin.bearer_token", |d, v| {
        // An empty token stays Some(""), so validation can say it is empty instead of silently
        // leaving the admin API open.
        d.config.admin.bearer_token = match v {
            Raw::Null => None,
            _ => Some(Secret::new(v.text()?)),
        };
        Ok(())
    }),
    ("tls.cert_path", |d, v| {
        server_tls(d).cert_path = PathBuf::from(v.text()?);
        Ok(())
    }),
    ("tls.key_path", |d, v| {
        server_tls(d).key_path = PathBuf::from(v.text()?);
        Ok(())
    }),
    ("tls.ca_path", |d, v| {
        server_tls(d).ca_path = v.optional()?.map(PathBuf::from);
        Ok(())
    }),
    ("tls.require_client_auth", |d, v| {
        server_tls(d).require_client_auth = boolean(v.text()?)?;
        Ok(())
    }),
    ("update.listen", |d, v| {
        update(d).listen = socket_addr(v.text()?)?;
        Ok(())
    }),
    ("update.max_migrators", |d, v| {
        update(d).max_migrators = whole(v.text()?)?;
        Ok(())
    }),
    ("update.expect_migrators", |d, v| {
        update(d).expect_migrators = v.list().into_iter().map(str::to_owned).collect();
        Ok(())
    }),
    ("update.peer_linger", |d, v| {
        update(d).peer_linger = duration(v.text()?)?;
        Ok(())
    }),
    ("update.not_now_retry", |d, v| {
        update(d).not_now_retry = duration(v.text()?)?;
        Ok(())
    }),
    ("update.tls.cert_path", |d, v| {
        update_tls(d).cert_path = PathBuf::from(v.text()?);
        Ok(())
    }),
    ("update.tls.key_path", |d, v| {
        update_tls(d).key_path = PathBuf::from(v.text()?);
        Ok(())
    }),
    ("update.tls.client_ca_path", |d, v| {
        update_tls(d).client_ca_path = v.optional()?.map(PathBuf::from);
        Ok(())
    }),
    ("log.level", |d, v| {
        d.config.log.level = log_level(v.text()?)?;
        Ok(())
    }),
    ("log.json", |d, v| {
        d.config.log.json = boolean(v.text()?)?;
        Ok(())
    }),
];

fn server_tls(d: &mut Draft) -> &mut ServerTlsConfig {
    d.config.tls.get_or_insert_with(ServerTlsConfig::default)
}

fn update(d: &mut Draft) -> &mut UpdateConfig {
    d.config.update.get_or_insert_with(UpdateConfig::default)
}

fn update_tls(d: &mut Draft) -> &mut UpdateTlsConfig {
    update(d).tls.get_or_insert_with(UpdateTlsConfig::default)
}

fn client_tls(c: &mut ClusterConfig) -> &mut ClientTlsConfig {
    c.tls.get_or_insert_with(ClientTlsConfig::default)
}

/// Ferry's keys under `origin.` and `target.`.
const CLUSTER_SETTINGS: &[(&str, ClusterApply)] = &[
    ("contact_points", |c, v| {
        c.contact_points = v
            .list()
            .into_iter()
            .map(contact_point)
            .collect::<Result<_, _>>()?;
        Ok(())
    }),
    ("port", |c, v| {
        c.port = whole(v.text()?)?;
        Ok(())
    }),
    ("local_datacenter", |c, v| {
        c.local_datacenter = v.optional()?.map(str::to_owned);
        Ok(())
    }),
    ("username", |c, v| {
        c.username = v.optional()?.map(str::to_owned);
        Ok(())
    }),
    ("password", |c, v| {
        // Untrimmed: a password's spaces are part of it.
        c.password = match v {
            Raw::Text(s) if !s.is_empty() => Some(Secret::new(s.as_str())),
            Raw::Text(_) | Raw::Null => None,
            Raw::List(_) => return v.text().map(|_| ()),
        };
        Ok(())
    }),
    ("connect_timeout", |c, v| {
        c.connect_timeout = duration(v.text()?)?;
        Ok(())
    }),
    ("tls.ca_path", |c, v| {
        client_tls(c).ca_path = v.optional()?.map(PathBuf::from);
        Ok(())
    }),
    ("tls.cert_path", |c, v| {
        client_tls(c).cert_path = v.optional()?.map(PathBuf::from);
        Ok(())
    }),
    ("tls.key_path", |c, v| {
        client_tls(c).key_path = v.optional()?.map(PathBuf::from);
        Ok(())
    }),
    ("tls.server_name", |c, v| {
        client_tls(c).server_name = v.optional()?.map(str::to_owned);
        Ok(())
    }),
    ("tls.verify_hostname", |c, v| {
        client_tls(c).verify_hostname = boolean(v.text()?)?;
        Ok(())
    }),
];

/// zdm-proxy names (without `ZDM_`) outside the per-cluster ones: (name, Ferry key, how to apply
/// when the value is written differently; `None` when it reads exactly like Ferry's key).
const ZDM_PROXY: &[(&str, &str, Option<ProxyApply>)] = &[
    ("PRIMARY_CLUSTER", "primary", None),
    ("READ_MODE", "read_mode", None),
    ("REPLACE_CQL_FUNCTIONS", "replace_cql_functions", None),
    ("LOG_LEVEL", "log.level", None),
    (
        "BLOCKED_PROTOCOL_VERSIONS",
        "blocked_protocol_versions",
        None,
    ),
    ("SYSTEM_QUERIES_MODE", "system_queries", None),
    (
        "FORWARD_CLIENT_CREDENTIALS_TO_ORIGIN",
        "forward_client_credentials_to_origin",
        None,
    ),
    ("PROXY_TOPOLOGY_INDEX", "topology.index", None),
    ("PROXY_TOPOLOGY_ADDRESSES", "topology.addresses", None),
    ("PROXY_TOPOLOGY_NUM_TOKENS", "topology.num_tokens", None),
    (
        "PROXY_LISTEN_ADDRESS",
        "listen",
        Some(|d, v| {
            d.config.listen.set_ip(host_ip(v.text()?)?);
            Ok(())
        }),
    ),
    (
        "PROXY_LISTEN_PORT",
        "listen",
        Some(|d, v| {
            d.config.listen.set_port(whole(v.text()?)?);
            Ok(())
        }),
    ),
    (
        "PROXY_REQUEST_TIMEOUT_MS",
        "request_timeout",
        Some(|d, v| {
            d.config.request_timeout = millis(v.text()?)?;
            Ok(())
        }),
    ),
    (
        "PROXY_MAX_CLIENT_CONNECTIONS",
        "max_client_connections",
        None,
    ),
    ("PROXY_MAX_STREAM_IDS", "max_in_flight_per_connection", None),
    ("PROXY_TLS_CA_PATH", "tls.ca_path", None),
    ("PROXY_TLS_CERT_PATH", "tls.cert_path", None),
    ("PROXY_TLS_KEY_PATH", "tls.key_path", None),
    (
        "PROXY_TLS_REQUIRE_CLIENT_AUTH",
        "tls.require_client_auth",
        None,
    ),
    ("METRICS_ENABLED", "admin.metrics_enabled", None),
    (
        "METRICS_ADDRESS",
        "admin.listen",
        Some(|d, v| {
            d.config.admin.listen.set_ip(host_ip(v.text()?)?);
            Ok(())
        }),
    ),
    (
        "METRICS_PORT",
        "admin.listen",
        Some(|d, v| {
            d.config.admin.listen.set_port(whole(v.text()?)?);
            Ok(())
        }),
    ),
    (
        "HEARTBEAT_INTERVAL_MS",
        "heartbeat_interval",
        Some(|d, v| {
            d.config.heartbeat_interval = millis(v.text()?)?;
            Ok(())
        }),
    ),
    (
        "HEARTBEAT_RETRY_INTERVAL_MIN_MS",
        "reconnect.min_delay",
        Some(|d, v| {
            d.config.reconnect.min_delay = millis(v.text()?)?;
            Ok(())
        }),
    ),
    (
        "HEARTBEAT_RETRY_INTERVAL_MAX_MS",
        "reconnect.max_delay",
        Some(|d, v| {
            d.config.reconnect.max_delay = millis(v.text()?)?;
            Ok(())
        }),
    ),
    ("HEARTBEAT_RETRY_BACKOFF_FACTOR", "reconnect.factor", None),
    (
        "HEARTBEAT_FAILURE_THRESHOLD",
        "reconnect.failure_threshold",
        None,
    ),
];

/// zdm-proxy's per-cluster names: `ORIGIN_<suffix>` / `TARGET_<suffix>` → `origin.<key>`.
const ZDM_CLUSTER: &[(&str, &str, Option<ClusterApply>)] = &[
    ("CONTACT_POINTS", "contact_points", None),
    ("PORT", "port", None),
    ("LOCAL_DATACENTER", "local_datacenter", None),
    ("USERNAME", "username", None),
    ("PASSWORD", "password", None),
    (
        "CONNECTION_TIMEOUT_MS",
        "connect_timeout",
        Some(|c, v| {
            c.connect_timeout = millis(v.text()?)?;
            Ok(())
        }),
    ),
    ("TLS_SERVER_CA_PATH", "tls.ca_path", None),
    ("TLS_CLIENT_CERT_PATH", "tls.cert_path", None),
    ("TLS_CLIENT_KEY_PATH", "tls.key_path", None),
];

/// zdm-proxy settings Ferry accepts so existing deployments start, but has no use for.
const ZDM_IGNORED: &[(&str, &str)] = &[
    (
        "ASYNC_HANDSHAKE_TIMEOUT_MS",
        "Ferry's dual-async reads share the clusters' connections and request_timeout",
    ),
    (
        "CONTROL_CONN_MAX_PROTOCOL_VERSION",
        "Ferry negotiates the highest version both clusters support",
    ),
];

/// zdm-proxy's METRICS_PREFIX. Its default (`zdm`) is what zdm-proxy deployments often spell
/// out and is ignored; any other prefix is refused, since Ferry cannot honour it: its metric
/// names are fixed (the dashboards query them) and differ from zdm-proxy's beyond the prefix.
const ZDM_METRICS_PREFIX: &str = "METRICS_PREFIX";
const ZDM_DEFAULT_METRICS_PREFIX: &str = "zdm";
const FIXED_METRIC_NAMES: &str = "Ferry's metric names always start with ferry_proxy_";

/// What METRICS_PREFIX's `value` gets: a notice for zdm-proxy's default, a problem otherwise.
fn zdm_metrics_prefix(name: &str, value: &str) -> Result<String, ConfigProblem> {
    if value.trim() == ZDM_DEFAULT_METRICS_PREFIX {
        Ok(format!("{name} is ignored: {FIXED_METRIC_NAMES}"))
    } else {
        Err(ConfigProblem::Refused {
            name: name.to_owned(),
            reason: format!(
                "{FIXED_METRIC_NAMES} and take no other prefix (not {:?}): remove the setting",
                value.trim()
            ),
        })
    }
}

fn zdm_ignored(name: &str) -> Option<&'static str> {
    ZDM_IGNORED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, reason)| *reason)
}

/// A Ferry key path (`origin.tls.ca_path`).
fn find_ferry(path: &str) -> Option<Found> {
    if let Some(&(p, f)) = PROXY_SETTINGS.iter().find(|(p, _)| *p == path) {
        return Some(Found {
            path: p.to_owned(),
            apply: Apply::Proxy(f),
        });
    }
    for id in ClusterId::BOTH {
        let Some(leaf) = path
            .strip_prefix(id.name())
            .and_then(|rest| rest.strip_prefix('.'))
        else {
            continue;
        };
        if let Some(&(_, f)) = CLUSTER_SETTINGS.iter().find(|(l, _)| *l == leaf) {
            return Some(Found {
                path: path.to_owned(),
                apply: Apply::Cluster(id, f),
            });
        }
    }
    None
}

/// A zdm-proxy name, upper case, without `ZDM_`.
fn find_zdm(name: &str) -> Option<Found> {
    if let Some(&(_, path, custom)) = ZDM_PROXY.iter().find(|(n, _, _)| *n == name) {
        return match custom {
            Some(f) => Some(Found {
                path: path.to_owned(),
                apply: Apply::Proxy(f),
            }),
            None => find_ferry(path),
        };
    }
    for id in ClusterId::BOTH {
        let prefix = id.name().to_ascii_uppercase();
        let Some(suffix) = name
            .strip_prefix(prefix.as_str())
            .and_then(|rest| rest.strip_prefix('_'))
        else {
            continue;
        };
        if let Some(&(_, leaf, custom)) = ZDM_CLUSTER.iter().find(|(s, _, _)| *s == suffix) {
            let path = format!("{id}.{leaf}");
            return match custom {
                Some(f) => Some(Found {
                    path,
                    apply: Apply::Cluster(id, f),
                }),
                None => find_ferry(&path),
            };
        }
    }
    None
}

/// Every Ferry key path, in table order.
fn ferry_paths() -> Vec<String> {
    let mut paths: Vec<String> = PROXY_SETTINGS
        .iter()
        .map(|(p, _)| (*p).to_owned())
        .collect();
    for id in ClusterId::BOTH {
        paths.extend(
            CLUSTER_SETTINGS
                .iter()
                .map(|(leaf, _)| format!("{id}.{leaf}")),
        );
    }
    paths
}

/// Every zdm-proxy name (without `ZDM_`), with the Ferry key it sets.
fn zdm_names() -> Vec<(String, String)> {
    let mut names: Vec<(String, String)> = ZDM_PROXY
        .iter()
        .map(|(n, p, _)| ((*n).to_owned(), (*p).to_owned()))
        .collect();
    for id in ClusterId::BOTH {
        let prefix = id.name().to_ascii_uppercase();
        names.extend(
            ZDM_CLUSTER
                .iter()
                .map(|(s, leaf, _)| (format!("{prefix}_{s}"), format!("{id}.{leaf}"))),
        );
    }
    names
}

/// zdm-proxy's names for a Ferry key, as validation messages show them (`zdm ORIGIN_PORT`).
fn zdm_aliases(path: &str) -> Option<String> {
    let zdm: Vec<String> = zdm_names()
        .into_iter()
        .filter(|(_, p)| p == path)
        .map(|(n, _)| n)
        .collect();
    (!zdm.is_empty()).then(|| format!("zdm {}", zdm.join(", ")))
}

/// `origin.contact_points` → `FERRY_PROXY_ORIGIN_CONTACT_POINTS`.
fn env_name(path: &str) -> String {
    format!(
        "{FERRY_ENV_PREFIX}{}",
        path.replace('.', "_").to_ascii_uppercase()
    )
}

fn yaml_key_candidates() -> Vec<String> {
    let mut keys = ferry_paths();
    keys.extend(zdm_names().into_iter().map(|(n, _)| n.to_ascii_lowercase()));
    keys
}

// ---------------------------------------------------------------------------------------------
// Value parsers: each returns the message that follows the key name.
// ---------------------------------------------------------------------------------------------

fn named<T: std::str::FromStr<Err = BadSetting>>(s: &str) -> Result<T, String> {
    s.parse()
        .map_err(|e: BadSetting| format!("{:?} is not one of {}", e.value, e.expected))
}

fn advertised(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok((addr.ip(), Some(addr.port())));
    }
    s.parse::<IpAddr>()
        .map(|ip| (ip, None))
        .map_err(|_| format!("{s:?} is not an IP address or ip:port"))
}

/// `host`, `host:port`, an IPv6 literal, or `[ipv6]:port`.
fn contact_point(s: &str) -> Result<ContactPoint, String> {
    value::contact_point(s).map(|(host, port)| ContactPoint { host, port })
}

fn consistency(s: &str) -> Result<Consistency, String> {
    let wanted = s.trim().to_ascii_uppercase().replace('-', "_");
    (0..=u16::MAX)
        .map_while(|code| Consistency::try_from(code).ok())
        .find(|c| c.name() == wanted)
        .ok_or_else(|| {
            format!("{s:?} is not a consistency level (ONE, QUORUM, LOCAL_QUORUM, ALL, …)")
        })
}

fn protocol_versions(items: &[&str]) -> Result<Vec<ProtocolVersion>, String> {
    let mut versions = Vec::new();
    for item in items {
        let lower = item.to_ascii_lowercase();
        let number = lower.strip_prefix('v').unwrap_or(&lower);
        let version = match number {
            // Versions Ferry never speaks: blocking them changes nothing.
            "1" | "2" | "dsev1" | "dsev2" => continue,
            _ => number
                .parse::<u8>()
                .ok()
                .and_then(|n| ProtocolVersion::try_from(n).ok())
                .ok_or_else(|| format!("{item:?} is not a protocol version (v3, v4, v5)"))?,
        };
        if !versions.contains(&version) {
            versions.push(version);
        }
    }
    Ok(versions)
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Bounds that catch unit mistakes and keep every queue and table finite.
const MAX_CLIENT_CONNECTIONS: usize = 1_000_000;
/// Stream ids are signed 16-bit from v3 on, so a connection cannot carry more.
const MAX_IN_FLIGHT: usize = 32_768;
const MAX_PREPARED_CACHE: usize = 10_000_000;
const NUM_TOKENS: std::ops::RangeInclusive<u16> = 1..=256;

impl ProxyConfig {
    /// Checks what parsing alone cannot: required values, ranges, combinations, that files
    /// exist. Returns every problem, each naming its key (and zdm-proxy's name for it).
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors::new(SERVICE, problems))
        }
    }

    fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Problems::with_aliases(zdm_aliases);
        for id in ClusterId::BOTH {
            self.check_cluster(id, &mut out);
        }
        for (host, port) in self.target.endpoints() {
            let same = self
                .origin
                .endpoints()
                .any(|(h, p)| p == port && h.eq_ignore_ascii_case(host));
            if same {
                out.add(
                    "target.contact_points",
                    format!(
                        "{} is also an origin contact point; origin and target must be \
                         different clusters",
                        ContactPoint {
                            host: host.to_owned(),
                            port: Some(port)
                        }
                    ),
                );
            }
        }
        self.check_topology(&mut out);

        for (key, value) in [
            ("request_timeout", self.request_timeout),
            ("heartbeat_interval", self.heartbeat_interval),
            ("reconnect.min_delay", self.reconnect.min_delay),
            ("reconnect.max_delay", self.reconnect.max_delay),
        ] {
            out.duration(key, value, false);
        }
        out.duration("shutdown_grace", self.shutdown_grace, true);
        if self.reconnect.min_delay > self.reconnect.max_delay {
            out.add(
                "reconnect.min_delay",
                format!(
                    "{} is longer than reconnect.max_delay ({})",
                    humane(self.reconnect.min_delay),
                    humane(self.reconnect.max_delay)
                ),
            );
        }
        let factor = self.reconnect.factor;
        if !(factor.is_finite() && (1.0..=100.0).contains(&factor)) {
            out.add(
                "reconnect.factor",
                format!("{factor} is not between 1 and 100"),
            );
        }
        if self.reconnect.failure_threshold == 0 {
            out.add("reconnect.failure_threshold", "must be at least 1".into());
        }

        for (key, value, max) in [
            (
                "max_client_connections",
                self.max_client_connections,
                MAX_CLIENT_CONNECTIONS,
            ),
            (
                "max_in_flight_per_connection",
                self.max_in_flight_per_connection,
                MAX_IN_FLIGHT,
            ),
            (
                "prepared_cache_capacity",
                self.prepared_cache_capacity,
                MAX_PREPARED_CACHE,
            ),
        ] {
            if !(1..=max).contains(&value) {
                out.add(key, format!("{value} is not between 1 and {max}"));
            }
        }

        if let Some(c) = self.secondary_consistency.filter(|c| c.is_serial()) {
            out.add(
                "secondary_consistency",
                format!("{c} is a serial level, not a write consistency level"),
            );
        }
        if ProtocolVersion::ALL
            .iter()
            .all(|v| self.blocked_protocol_versions.contains(v))
        {
            out.add(
                "blocked_protocol_versions",
                "blocks v3, v4 and v5: no client could connect".into(),
            );
        }

        if self
            .admin
            .bearer_token
            .as_ref()
            .is_some_and(|t| t.expose().trim().is_empty())
        {
            out.add(
                "admin.bearer_token",
                "is empty; remove it to leave the admin API open, or set a token".into(),
            );
        }
        let (a, l) = (self.admin.listen, self.listen);
        let overlap = a.ip() == l.ip() || a.ip().is_unspecified() || l.ip().is_unspecified();
        if a.port() != 0 && a.port() == l.port() && overlap {
            out.add(
                "admin.listen",
                format!("{a} uses the same port as listen ({l})"),
            );
        }

        if let Some(update) = &self.update {
            self.check_update(update, &mut out);
        }
        // Only the shape here, so a config validates away from its volume (the deploy tests);
        // reading and writing the file are checked at start (exit 64 too).
        if let Some(path) = &self.repair_journal
            && (path.as_os_str().is_empty() || path.file_name().is_none())
        {
            out.add(
                "repair_journal",
                format!("{path:?} is not a file path; remove it to keep repairs in memory only"),
            );
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [
                ("tls.cert_path", &tls.cert_path),
                ("tls.key_path", &tls.key_path),
            ] {
                if path.as_os_str().is_empty() {
                    out.add(key, "is required when tls is configured".into());
                } else {
                    out.file(key, path);
                }
            }
            match &tls.ca_path {
                Some(ca) => out.file("tls.ca_path", ca),
                None if tls.require_client_auth => out.add(
                    "tls.ca_path",
                    "is required when tls.require_client_auth is true".into(),
                ),
                None => {}
            }
        }
        out.list
    }

    fn check_cluster(&self, id: ClusterId, out: &mut Problems) {
        let c = self.cluster(id);
        let key = |leaf: &str| format!("{id}.{leaf}");
        if c.contact_points.is_empty() {
            out.add(
                &key("contact_points"),
                "at least one contact point is required".into(),
            );
        }
        if c.port == 0 {
            out.add(&key("port"), "0 is not a port (1..=65535)".into());
        }
        match (&c.username, &c.password) {
            (Some(_), None) => out.add(
                &key("password"),
                format!("is required: {id}.username is set"),
            ),
            (None, Some(_)) => out.add(
                &key("username"),
                format!("is required: {id}.password is set"),
            ),
            _ => {}
        }
        out.duration(&key("connect_timeout"), c.connect_timeout, false);
        if let Some(tls) = &c.tls {
            match (&tls.cert_path, &tls.key_path) {
                (Some(_), None) => out.add(
                    &key("tls.key_path"),
                    format!("is required: {id}.tls.cert_path is set"),
                ),
                (None, Some(_)) => out.add(
                    &key("tls.cert_path"),
                    format!("is required: {id}.tls.key_path is set"),
                ),
                _ => {}
            }
            for (leaf, path) in [
                ("tls.ca_path", &tls.ca_path),
                ("tls.cert_path", &tls.cert_path),
                ("tls.key_path", &tls.key_path),
            ] {
                if let Some(path) = path {
                    out.file(&key(leaf), path);
                }
            }
        }
    }

    fn check_update(&self, update: &UpdateConfig, out: &mut Problems) {
        if !(1..=MAX_MIGRATORS).contains(&update.max_migrators) {
            out.add(
                "update.max_migrators",
                format!(
                    "{} is not between 1 and {MAX_MIGRATORS}",
                    update.max_migrators
                ),
            );
        }
        if !PEER_LINGER.contains(&update.peer_linger) {
            out.add(
                "update.peer_linger",
                format!("{} is not between 100ms and 1h", humane(update.peer_linger)),
            );
        }
        if !NOT_NOW_RETRY.contains(&update.not_now_retry) {
            out.add(
                "update.not_now_retry",
                format!("{} is not between 1s and 1h", humane(update.not_now_retry)),
            );
        }
        let expected = &update.expect_migrators;
        if expected.len() > update.max_migrators {
            out.add(
                "update.expect_migrators",
                format!(
                    "{} workers are more than update.max_migrators ({}) lets report at once",
                    expected.len(),
                    update.max_migrators
                ),
            );
        }
        for (i, name) in expected.iter().enumerate() {
            if name.trim().is_empty()
                || name.len() > MAX_MIGRATOR_NAME
                || name.chars().any(char::is_control)
            {
                out.add(
                    "update.expect_migrators",
                    format!(
                        "{name:?} must be 1 to {MAX_MIGRATOR_NAME} bytes without control \
                         characters, as a migrator's update.name"
                    ),
                );
            } else if expected[..i].contains(name) {
                out.add(
                    "update.expect_migrators",
                    format!("{name} is listed twice; every worker needs its own update.name"),
                );
            }
        }
        let u = update.listen;
        for (other, addr) in [("listen", self.listen), ("admin.listen", self.admin.listen)] {
            let overlap =
                u.ip() == addr.ip() || u.ip().is_unspecified() || addr.ip().is_unspecified();
            if u.port() != 0 && u.port() == addr.port() && overlap {
                out.add(
                    "update.listen",
                    format!("{u} uses the same port as {other} ({addr})"),
                );
            }
        }
        if let Some(tls) = &update.tls {
            for (key, path) in [
                ("update.tls.cert_path", &tls.cert_path),
                ("update.tls.key_path", &tls.key_path),
            ] {
                if path.as_os_str().is_empty() {
                    out.add(key, "is required when update.tls is configured".into());
                } else {
                    out.file(key, path);
                }
            }
            if let Some(ca) = &tls.client_ca_path {
                out.file("update.tls.client_ca_path", ca);
            }
        }
    }

    fn check_topology(&self, out: &mut Problems) {
        let addresses = self.topology_addresses();
        if self.topology.index >= addresses.len() {
            out.add(
                "topology.index",
                format!(
                    "{} is out of range for {} address(es) (0..={})",
                    self.topology.index,
                    addresses.len(),
                    addresses.len() - 1
                ),
            );
        }
        if !NUM_TOKENS.contains(&self.topology.num_tokens) {
            out.add(
                "topology.num_tokens",
                format!("{} is not between 1 and 256", self.topology.num_tokens),
            );
        }
        for (i, addr) in self.topology.addresses.iter().enumerate() {
            if addr.ip().is_unspecified() {
                out.add(
                    "topology.addresses",
                    format!("{addr} cannot be advertised: drivers cannot connect to it"),
                );
            }
            if self.topology.addresses[..i].contains(addr) {
                out.add(
                    "topology.addresses",
                    format!("{addr} is listed twice; every instance needs its own address"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const NO_ENV: [(&str, &str); 0] = [];
    const CLUSTERS: &str = "origin: {contact_points: [o1]}\ntarget: {contact_points: [t1]}\n";
    const EXAMPLE_YAML: &str = include_str!("../../deploy/config/proxy.yaml");
    const EXAMPLE_ZDM_ENV: &str = include_str!("../../deploy/config/proxy-zdm.env");

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<LoadedConfig, ConfigErrors> {
        ProxyConfig::load(Some(yaml), env.iter().copied())
    }

    fn ok(yaml: &str, env: &[(&str, &str)]) -> ProxyConfig {
        match load(yaml, env) {
            Ok(loaded) => loaded.config,
            Err(e) => panic!("{e}"),
        }
    }

    fn keys(errors: &ConfigErrors) -> Vec<&str> {
        errors.problems.iter().filter_map(|p| p.key()).collect()
    }

    fn cp(host: &str, port: Option<u16>) -> ContactPoint {
        ContactPoint {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = ProxyConfig::default();
        assert_eq!(c.listen, "0.0.0.0:9042".parse().unwrap());
        assert_eq!(c.admin.listen, "0.0.0.0:14001".parse().unwrap());
        assert_eq!(
            (c.primary, c.read_mode, c.system_queries),
            (ClusterId::Origin, ReadMode::PrimaryOnly, ClusterId::Origin)
        );
        assert!(c.replace_cql_functions && c.inject_timestamps && c.admin.metrics_enabled);
        assert_eq!(c.target_failure_policy, TargetFailurePolicy::Strict);
        assert_eq!(c.repair_journal, None);
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.reconnect.min_delay, Duration::from_millis(250));
        assert_eq!(c.origin.connect_timeout, Duration::from_secs(30));
        assert_eq!(
            (c.max_client_connections, c.max_in_flight_per_connection),
            (1000, 2048)
        );
        assert_eq!(
            (c.topology.num_tokens, c.prepared_cache_capacity),
            (8, 10_000)
        );
        assert_eq!(c.topology_addresses(), &[c.listen]);
        assert_eq!(c.log.level, LogLevel::Info);
        assert!(c.tls.is_none() && c.origin.tls.is_none());
        assert!(c.update.is_none());
        assert_eq!(
            UpdateConfig::default().listen,
            "0.0.0.0:14100".parse().unwrap()
        );
    }

    #[test]
    fn the_update_section_switches_on_from_any_key_and_is_validated() {
        let on = ok(
            CLUSTERS,
            &[("FERRY_PROXY_UPDATE_LISTEN", "127.0.0.1:14200")],
        );
        let update = on.update.unwrap();
        assert_eq!(update.listen, "127.0.0.1:14200".parse().unwrap());
        assert_eq!(update.max_migrators, 16);
        assert!(update.tls.is_none());
        let two = format!("{CLUSTERS}update:\n  max_migrators: 2\n");
        assert_eq!(ok(&two, &[]).update.unwrap().max_migrators, 2);
        let yaml = format!("{CLUSTERS}update:\n  listen: 0.0.0.0:14100\n");
        assert_eq!(ok(&yaml, &[]).update, Some(UpdateConfig::default()));
        let off = format!("{CLUSTERS}update:\n");
        assert!(ok(&off, &[]).update.is_none());
        let yaml = format!("{CLUSTERS}update:\n  expect_migrators: [migrator-0, migrator-1]\n");
        assert_eq!(
            ok(&yaml, &[]).update.unwrap().expect_migrators,
            ["migrator-0", "migrator-1"]
        );
        let yaml = format!("{CLUSTERS}update:\n  peer_linger: 5m\n");
        assert_eq!(
            ok(&yaml, &[]).update.unwrap().peer_linger,
            Duration::from_secs(300)
        );
        let env = [("FERRY_PROXY_UPDATE_NOT_NOW_RETRY", "2m")];
        let update = ok(CLUSTERS, &env).update.unwrap();
        assert_eq!(update.not_now_retry, Duration::from_secs(120));
        assert_eq!(
            UpdateConfig::default().not_now_retry,
            Duration::from_secs(30)
        );
        let env = [("FERRY_PROXY_UPDATE_EXPECT_MIGRATORS", "m-0, m-1,m-2")];
        assert_eq!(
            ok(CLUSTERS, &env).update.unwrap().expect_migrators,
            ["m-0", "m-1", "m-2"]
        );
        let yaml = format!(
            "{CLUSTERS}listen: 0.0.0.0:9042\nupdate:\n  listen: 127.0.0.1:9042\n  \
             max_migrators: 0\n  tls:\n    client_ca_path: /nonexistent/ca.pem\n"
        );
        let errors = load(&yaml, &[]).unwrap_err().to_string();
        for part in [
            "update.listen: 127.0.0.1:9042 uses the same port as listen (0.0.0.0:9042)",
            "update.max_migrators: 0 is not between 1 and 256",
            "update.tls.cert_path: is required when update.tls is configured",
            "update.tls.key_path: is required",
            "update.tls.client_ca_path: cannot read /nonexistent/ca.pem",
        ] {
            assert!(errors.contains(part), "{part} in {errors}");
        }
        let long = "x".repeat(129);
        let yaml = format!(
            "{CLUSTERS}update:\n  max_migrators: 2\n  expect_migrators: [a, b, a, {long}]\n  peer_linger: 50ms\n  not_now_retry: 2h\n"
        );
        let errors = load(&yaml, &[]).unwrap_err().to_string();
        for part in [
            "update.expect_migrators: 4 workers are more than update.max_migrators (2) lets \
             report at once",
            "update.expect_migrators: a is listed twice",
            "update.not_now_retry: 2h is not between 1s and 1h",
            "update.peer_linger: 50ms is not between 100ms and 1h",
            "xxx\" must be 1 to 128 bytes without control characters",
        ] {
            assert!(errors.contains(part), "{part} in {errors}");
        }
    }

    #[test]
    fn the_repair_journal_is_a_file_path() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let path = format!("{dir}/journal.jsonl");
        let c = ok(CLUSTERS, &[("FERRY_PROXY_REPAIR_JOURNAL", &path)]);
        assert_eq!(c.repair_journal, Some(PathBuf::from(&path)));
        let yaml = format!("{CLUSTERS}repair_journal: {path}\n");
        assert_eq!(ok(&yaml, &[]).repair_journal, Some(PathBuf::from(&path)));
        let errors = load(CLUSTERS, &[("FERRY_PROXY_REPAIR_JOURNAL", "/")]).unwrap_err();
        assert_eq!(keys(&errors), ["repair_journal"]);
    }

    #[test]
    fn nothing_configured_asks_for_both_clusters_contact_points() {
        let errors = ProxyConfig::load(None, NO_ENV).unwrap_err();
        assert_eq!(
            keys(&errors),
            ["origin.contact_points", "target.contact_points"]
        );
        let text = errors.to_string();
        assert!(
            text.starts_with("bad proxy configuration (2 problems):"),
            "{text}"
        );
        assert!(
            text.contains("origin.contact_points (zdm ORIGIN_CONTACT_POINTS)"),
            "{text}"
        );
    }

    #[test]
    fn nested_yaml_sets_every_kind_of_value() {
        let manifest = env!("CARGO_MANIFEST_PATH");
        let yaml = format!(
            r#"
listen: 127.0.0.1:19000
origin:
  contact_points: ["db1", "db2:9142", "[::1]:9043", "::2"]
  port: 9999
  local_datacenter: dc1
  username: app
  password: "0123"
  connect_timeout: 1m30s
  tls:
    ca_path: {manifest}
    server_name: cassandra.internal
    verify_hostname: false
target:
  contact_points: t1, t2
  tls: {{}}
primary: TARGET
read_mode: dual-async
system_queries: target
replace_cql_functions: false
inject_timestamps: no
target_failure_policy: best-effort
secondary_consistency: local_one
blocked_protocol_versions: [v5, DseV2, "4"]
topology: {{addresses: ["10.0.0.1", "10.0.0.2:9050"], index: 1, num_tokens: 16}}
request_timeout: 250ms
reconnect: {{min_delay: 1s, max_delay: 2m, factor: 1.5, failure_threshold: 3}}
admin: {{listen: "localhost:8080", metrics_enabled: false, bearer_token: s3cret}}
log: {{level: DEBUG, json: true}}
"#
        );
        let c = ok(&yaml, &[]);
        assert_eq!(c.listen, "127.0.0.1:19000".parse().unwrap());
        assert_eq!(
            c.origin.contact_points,
            [
                cp("db1", None),
                cp("db2", Some(9142)),
                cp("::1", Some(9043)),
                cp("::2", None)
            ]
        );
        assert_eq!(
            c.origin.endpoints().collect::<Vec<_>>(),
            [("db1", 9999), ("db2", 9142), ("::1", 9043), ("::2", 9999)]
        );
        assert_eq!(c.origin.contact_points[2].to_string(), "[::1]:9043");
        assert_eq!(c.origin.local_datacenter.as_deref(), Some("dc1"));
        assert_eq!(c.origin.password.as_ref().map(Secret::expose), Some("0123"));
        assert_eq!(c.origin.connect_timeout, Duration::from_secs(90));
        let tls = c.origin.tls.as_ref().unwrap();
        assert_eq!(tls.ca_path.as_deref(), Some(Path::new(manifest)));
        assert!(!tls.verify_hostname && tls.cert_path.is_none());
        assert_eq!(c.target.contact_points, [cp("t1", None), cp("t2", None)]);
        assert_eq!(c.target.tls, Some(ClientTlsConfig::default()));
        assert_eq!(
            (c.primary, c.read_mode),
            (ClusterId::Target, ReadMode::DualAsync)
        );
        assert_eq!(c.system_queries, ClusterId::Target);
        assert!(!c.replace_cql_functions && !c.inject_timestamps);
        assert_eq!(c.target_failure_policy, TargetFailurePolicy::BestEffort);
        assert_eq!(c.secondary_consistency, Some(Consistency::LocalOne));
        assert_eq!(
            c.blocked_protocol_versions,
            [ProtocolVersion::V5, ProtocolVersion::V4]
        );
        assert_eq!(
            c.topology.addresses,
            [
                "10.0.0.1:19000".parse().unwrap(),
                "10.0.0.2:9050".parse().unwrap()
            ]
        );
        assert_eq!((c.topology.index, c.topology.num_tokens), (1, 16));
        assert_eq!(c.request_timeout, Duration::from_millis(250));
        assert_eq!(c.reconnect.max_delay, Duration::from_secs(120));
        assert_eq!(
            (c.reconnect.factor, c.reconnect.failure_threshold),
            (1.5, 3)
        );
        assert_eq!(c.admin.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(!c.admin.metrics_enabled);
        assert_eq!(
            c.admin.bearer_token.as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert_eq!((c.log.level, c.log.json), (LogLevel::Debug, true));
    }

    #[test]
    fn zdm_flat_yaml_keys_are_accepted() {
        let yaml = "
origin_contact_points: 10.0.0.1,10.0.0.2
origin_port: 9043
origin_username: u
origin_password: p
target_contact_points: 10.1.0.1
target_connection_timeout_ms: 5000
primary_cluster: TARGET
read_mode: DUAL_ASYNC_ON_SECONDARY
proxy_listen_address: localhost
proxy_listen_port: 14002
proxy_request_timeout_ms: 2500
proxy_max_stream_ids: 512
proxy_topology_addresses: 10.0.0.9
heartbeat_retry_interval_max_ms: 60000
metrics_port: 14011
metrics_prefix: zdm
";
        let loaded = load(yaml, &[]).unwrap();
        let c = loaded.config;
        assert_eq!(
            c.origin.endpoints().collect::<Vec<_>>(),
            [("10.0.0.1", 9043), ("10.0.0.2", 9043)]
        );
        assert_eq!(c.origin.username.as_deref(), Some("u"));
        assert_eq!(c.target.connect_timeout, Duration::from_secs(5));
        assert_eq!(
            (c.primary, c.read_mode),
            (ClusterId::Target, ReadMode::DualAsync)
        );
        assert_eq!(c.listen, "127.0.0.1:14002".parse().unwrap());
        assert_eq!(c.topology.addresses, ["10.0.0.9:14002".parse().unwrap()]);
        assert_eq!(c.request_timeout, Duration::from_millis(2500));
        assert_eq!(c.max_in_flight_per_connection, 512);
        assert_eq!(c.reconnect.max_delay, Duration::from_secs(60));
        assert_eq!(c.admin.listen, "0.0.0.0:14011".parse().unwrap());
        assert_eq!(loaded.notices.len(), 1);
        assert!(
            loaded.notices[0].contains("metrics_prefix"),
            "{:?}",
            loaded.notices
        );
    }

    #[test]
    fn a_metrics_prefix_other_than_zdms_default_is_refused() {
        // zdm-proxy's default changes nothing and is accepted with a notice (see above).
        let loaded = load(CLUSTERS, &[("ZDM_METRICS_PREFIX", "zdm")]).unwrap();
        assert_eq!(
            loaded.notices,
            ["ZDM_METRICS_PREFIX is ignored: Ferry's metric names always start with ferry_proxy_"]
        );
        let yaml = format!("{CLUSTERS}metrics_prefix: acme\n");
        let errors = load(&yaml, &[("ZDM_METRICS_PREFIX", "shop")]).unwrap_err();
        let text = errors.to_string();
        for needle in [
            "ZDM_METRICS_PREFIX: Ferry's metric names always start with ferry_proxy_ and take no \
             other prefix (not \"shop\"): remove the setting",
            "config key metrics_prefix: Ferry's metric names always start with ferry_proxy_ and \
             take no other prefix (not \"acme\")",
        ] {
            assert!(text.contains(needle), "{needle}\n{text}");
        }
    }

    #[test]
    fn ferry_env_beats_zdm_env_beats_yaml() {
        let yaml = format!(
            "{CLUSTERS}request_timeout: 5s\nproxy_request_timeout_ms: 1000\nmax_client_connections: 7\n"
        );
        let zdm = ("ZDM_PROXY_REQUEST_TIMEOUT_MS", "7000");
        let ferry = ("FERRY_PROXY_REQUEST_TIMEOUT", "9s");
        // In the file, Ferry's key beats zdm-proxy's whatever their order.
        assert_eq!(ok(&yaml, &[]).request_timeout, Duration::from_secs(5));
        assert_eq!(ok(&yaml, &[zdm]).request_timeout, Duration::from_secs(7));
        assert_eq!(
            ok(&yaml, &[ferry, zdm]).request_timeout,
            Duration::from_secs(9)
        );
        assert_eq!(
            ok(&yaml, &[zdm, ferry]).request_timeout,
            Duration::from_secs(9)
        );
        // Untouched keys keep the file's value; an empty variable counts as unset.
        let c = ok(&yaml, &[("FERRY_PROXY_MAX_CLIENT_CONNECTIONS", "")]);
        assert_eq!(c.max_client_connections, 7);

        let env = [
            ("FERRY_PROXY_ORIGIN_CONTACT_POINTS", "a, b:1"),
            ("ZDM_ORIGIN_CONTACT_POINTS", "z"),
            ("ZDM_TARGET_CONTACT_POINTS", "t"),
            ("ZDM_PROXY_LISTEN_PORT", "14002"),
            ("FERRY_PROXY_TOPOLOGY_ADDRESSES", "10.0.0.1,10.0.0.2"),
            (
                "FERRY_PROXY_ORIGIN_TLS_CA_PATH",
                env!("CARGO_MANIFEST_PATH"),
            ),
        ];
        let c = ProxyConfig::load(None, env).unwrap().config;
        assert_eq!(c.origin.contact_points, [cp("a", None), cp("b", Some(1))]);
        assert_eq!(c.target.contact_points, [cp("t", None)]);
        // A topology entry without a port takes the listen port, whichever source set it.
        assert_eq!(c.topology.addresses[1], "10.0.0.2:14002".parse().unwrap());
        assert!(c.origin.tls.is_some());
    }

    #[test]
    fn every_validation_problem_is_reported_together() {
        let yaml = "
listen: 0.0.0.0:9042
origin: {contact_points: [db1, 'db2:9042'], port: 0, username: u, connect_timeout: 0s,
         tls: {cert_path: /nonexistent/ferry/cert.pem}}
target: {contact_points: ['db2:9042'], password: p}
topology: {addresses: [10.0.0.1, 10.0.0.1, 0.0.0.0], index: 3, num_tokens: 0}
request_timeout: 0ms
heartbeat_interval: 25h
max_client_connections: 0
max_in_flight_per_connection: 40000
prepared_cache_capacity: 0
reconnect: {min_delay: 10s, max_delay: 1s, factor: 0.5, failure_threshold: 0}
secondary_consistency: SERIAL
blocked_protocol_versions: v3,v4,v5
admin: {listen: '127.0.0.1:9042', bearer_token: ''}
tls: {key_path: /nonexistent/ferry/key.pem, require_client_auth: true}
";
        let errors = load(yaml, &[]).unwrap_err();
        let mut found = keys(&errors);
        found.sort_unstable();
        found.dedup();
        let mut expected = vec![
            "origin.port",
            "origin.password",
            "origin.connect_timeout",
            "origin.tls.key_path",
            "origin.tls.cert_path",
            "target.username",
            "target.contact_points",
            "topology.addresses",
            "topology.index",
            "topology.num_tokens",
            "request_timeout",
            "heartbeat_interval",
            "max_client_connections",
            "max_in_flight_per_connection",
            "prepared_cache_capacity",
            "reconnect.min_delay",
            "reconnect.factor",
            "reconnect.failure_threshold",
            "secondary_consistency",
            "blocked_protocol_versions",
            "admin.bearer_token",
            "admin.listen",
            "tls.cert_path",
            "tls.key_path",
            "tls.ca_path",
        ];
        expected.sort_unstable();
        assert_eq!(found, expected, "{errors}");
        let text = errors.to_string();
        for needle in [
            "topology.index (zdm PROXY_TOPOLOGY_INDEX): 3 is out of range for 3 address(es)",
            "10.0.0.1:9042 is listed twice",
            "db2:9042 is also an origin contact point",
            "/nonexistent/ferry/cert.pem",
            "40000 is not between 1 and 32768",
            "heartbeat_interval (zdm HEARTBEAT_INTERVAL_MS): 25h is longer than the limit",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
    }

    #[test]
    fn bad_values_are_all_listed_with_where_they_were_written() {
        let yaml = format!(
            "{CLUSTERS}request_timeout: 10\nheartbeat_interval: 3 parsecs\nprimary: both\n\
             proxy_max_stream_ids: many\norigin_port: 70000\n"
        );
        let env = [
            ("ZDM_PROXY_REQUEST_TIMEOUT_MS", "10s"),
            ("FERRY_PROXY_LOG_LEVEL", "loud"),
            ("FERRY_PROXY_ADMIN_LISTEN", "14001"),
        ];
        let errors = load(&yaml, &env).unwrap_err();
        let text = errors.to_string();
        for needle in [
            "request_timeout (line 3): \"10\" has no unit: write \"10s\" or \"10ms\"",
            "heartbeat_interval (line 4): \"3 parsecs\" is not a duration",
            "primary (line 5): \"both\" is not one of origin, target",
            "max_in_flight_per_connection (zdm key proxy_max_stream_ids, line 6): \"many\" is \
             not a whole number",
            "origin.port (zdm key origin_port, line 7): 70000 is too large",
            "request_timeout (from ZDM_PROXY_REQUEST_TIMEOUT_MS): \"10s\" is not a whole number \
             of milliseconds",
            "log.level (from FERRY_PROXY_LOG_LEVEL): \"loud\" is not one of error",
            "admin.listen (from FERRY_PROXY_ADMIN_LISTEN): \"14001\" is not an address",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        // No second complaint about a key whose written value was already rejected.
        assert_eq!(errors.problems.len(), 8, "{text}");
    }

    #[test]
    fn unknown_keys_are_errors_that_name_them() {
        let yaml = format!("{CLUSTERS}origin_contact_point: x\nreconnect: {{max_dealy: 1s}}\n");
        let errors = load(&yaml, &[("FERRY_PROXY_REQEST_TIMEOUT", "1s")]).unwrap_err();
        let text = errors.to_string();
        for needle in [
            "origin_contact_point (line 3): unknown setting (did you mean origin_contact_points?)",
            "reconnect.max_dealy (line 4): unknown setting (did you mean reconnect.max_delay?)",
            "FERRY_PROXY_REQEST_TIMEOUT: unknown setting (did you mean FERRY_PROXY_REQUEST_TIMEOUT?)",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        assert_eq!(errors.problems.len(), 3, "{text}");

        // zdm-proxy deployments set options Ferry does not model: told, not refused.
        let loaded = load(CLUSTERS, &[("ZDM_SOME_FUTURE_OPTION", "1")]).unwrap();
        assert_eq!(
            loaded.notices,
            ["ZDM_SOME_FUTURE_OPTION is not a setting Ferry knows; ignored"]
        );
    }

    #[test]
    fn malformed_yaml_is_one_clear_problem() {
        for (yaml, needle) in [
            ("listen: [", "not valid YAML"),
            ("listen: a\nlisten: b\n", "line 2: key listen appears twice"),
            (
                "- a\n- b\n",
                "the file must be a mapping of keys, found a list",
            ),
            ("a: 1\n---\nb: 2\n", "a second YAML document"),
            (
                "origin: 5\n",
                "origin (line 1): expected a mapping of keys, found a single value",
            ),
            ("base: &b {x: 1}\nother: *b\n", "aliases are not supported"),
        ] {
            let text = load(yaml, &[]).unwrap_err().to_string();
            assert!(
                text.contains(needle),
                "{yaml:?}: {needle:?} missing from:\n{text}"
            );
        }
        // An empty or comments-only file is no file at all.
        assert!(
            load(
                "# nothing\n",
                &[
                    ("ZDM_ORIGIN_CONTACT_POINTS", "o"),
                    ("ZDM_TARGET_CONTACT_POINTS", "t")
                ]
            )
            .is_ok()
        );
    }

    #[test]
    fn secrets_never_reach_debug_or_messages() {
        let env = [
            ("FERRY_PROXY_ORIGIN_CONTACT_POINTS", "o"),
            ("FERRY_PROXY_ORIGIN_USERNAME", "u"),
            ("FERRY_PROXY_ORIGIN_PASSWORD", " hunter2 "),
            ("FERRY_PROXY_TARGET_CONTACT_POINTS", "t"),
            ("FERRY_PROXY_ADMIN_BEARER_TOKEN", "tok-hunter4"),
        ];
        let c = ProxyConfig::load(None, env).unwrap().config;
        assert_eq!(
            c.origin.password.as_ref().map(Secret::expose),
            Some(" hunter2 ")
        );
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter") && debug.contains("***"),
            "{debug}"
        );
        assert_eq!(Secret::new("hunter5").to_string(), "***");

        let bad = "origin: {contact_points: [o], password: [hunter6, x]}\n\
                   target: {contact_points: [t], password: hunter7}\n";
        let text = load(bad, &[]).unwrap_err().to_string();
        assert!(
            text.contains("origin.password (line 1): expected one value"),
            "{text}"
        );
        assert!(text.contains("target.username"), "{text}");
        assert!(!text.contains("hunter"), "{text}");
    }

    #[test]
    fn an_unreadable_file_is_a_problem_not_a_panic() {
        let errors = ProxyConfig::from_process(Some(Path::new("/nonexistent/ferry/proxy.yaml")))
            .unwrap_err();
        assert!(
            matches!(&errors.problems[0], ConfigProblem::Unreadable { path, .. }
                if path == Path::new("/nonexistent/ferry/proxy.yaml")),
            "{errors}"
        );
    }

    #[test]
    fn values_parse_in_every_accepted_spelling() {
        assert_eq!(duration("1h2m3s4ms"), Ok(Duration::from_millis(3_723_004)));
        assert!(duration("").is_err() && duration("s").is_err() && duration("5x").is_err());
        assert!(duration("99999999999999999999h").is_err());
        assert_eq!(humane(Duration::from_millis(1500)), "1500ms");
        assert_eq!(humane(Duration::from_secs(90)), "90s");
        assert_eq!(humane(Duration::from_secs(120)), "2m");
        assert_eq!(humane(Duration::ZERO), "0s");
        assert_eq!(
            contact_point("h_1.example-x:9"),
            Ok(cp("h_1.example-x", Some(9)))
        );
        for bad in [
            "", "a b", "http://x", "h:0", "h:", "[::1", "[::1]x", "1:2:zz",
        ] {
            assert!(contact_point(bad).is_err(), "{bad:?}");
        }
        assert_eq!(consistency("each-quorum"), Ok(Consistency::EachQuorum));
        assert!(consistency("MOST").is_err());
        assert_eq!(
            protocol_versions(&["V2", "v3", "3", "dsev1"]),
            Ok(vec![ProtocolVersion::V3])
        );
        assert!(protocol_versions(&["v6"]).is_err());
        assert_eq!(socket_addr("[::1]:1"), Ok("[::1]:1".parse().unwrap()));
        assert_eq!(boolean("ON"), Ok(true));
        assert!(boolean("maybe").is_err());
        assert_eq!(whole::<u16>("65536"), Err("65536 is too large".to_owned()));
    }

    #[test]
    fn tls_sections_switch_on_and_off() {
        let manifest = env!("CARGO_MANIFEST_PATH");
        let yaml = format!(
            "{CLUSTERS}tls: {{cert_path: {manifest}, key_path: {manifest}, ca_path: {manifest}, \
             require_client_auth: true}}\n"
        );
        let tls = ok(&yaml, &[]).tls.unwrap();
        assert!(tls.require_client_auth && tls.cert_path == Path::new(manifest));
        // `tls:` written empty turns it off again (e.g. in an override file section).
        let off = format!("{CLUSTERS}tls:\n");
        assert!(ok(&off, &[]).tls.is_none());
        let one_way = ok(CLUSTERS, &[("ZDM_ORIGIN_TLS_SERVER_CA_PATH", manifest)]);
        assert!(one_way.origin.tls.unwrap().cert_path.is_none());
    }

    #[test]
    fn setting_tables_agree_with_each_other() {
        let paths = ferry_paths();
        let mut envs: Vec<String> = paths.iter().map(|p| env_name(p)).collect();
        envs.sort();
        envs.dedup();
        assert_eq!(
            envs.len(),
            paths.len(),
            "two keys share an environment name"
        );
        for (name, path) in zdm_names() {
            assert!(paths.contains(&path), "ZDM_{name} sets unknown key {path}");
            let found = find_zdm(&name).unwrap();
            assert_eq!(found.path, path);
            // A zdm name spelled like a Ferry key must mean that key, since the file reader
            // tries Ferry's keys first.
            let lower = name.to_ascii_lowercase();
            if let Some(ferry) = find_ferry(&lower) {
                assert_eq!(ferry.path, path, "{lower}");
            }
        }
        for (name, _) in ZDM_IGNORED {
            assert!(find_zdm(name).is_none(), "{name} is both used and ignored");
        }
    }

    #[test]
    fn example_yaml_loads_documents_every_key_and_matches_the_defaults() {
        let loaded = load(EXAMPLE_YAML, &[]).unwrap();
        assert!(loaded.notices.is_empty());
        let mut expected = ProxyConfig::default();
        expected.origin.contact_points = vec![
            cp("origin-cassandra-1", None),
            cp("origin-cassandra-2", None),
        ];
        expected.target.contact_points = vec![
            cp("target-cassandra-1", None),
            cp("target-cassandra-2", None),
        ];
        assert_eq!(loaded.config, expected);

        // Every key appears: set to its default, or (TLS, which changes behaviour when present)
        // in a commented-out section.
        fn leaves(node: &Node, prefix: &str, out: &mut Vec<String>) {
            if let Node::Map { entries, .. } = node {
                for (key, _, value) in entries {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    if is_section(&path) {
                        leaves(value, &path, out);
                    } else {
                        out.push(path);
                    }
                }
            }
        }
        let mut written = Vec::new();
        leaves(&read_yaml(EXAMPLE_YAML).unwrap().unwrap(), "", &mut written);
        for path in ferry_paths() {
            let leaf = path.rsplit('.').next().unwrap();
            let commented_tls = path.contains("tls.")
                && !path.starts_with("target.")
                && EXAMPLE_YAML.contains(&format!("#   {leaf}:"));
            // The Update channel changes behaviour when present too: commented out, any depth.
            let commented_update = path.starts_with("update.")
                && EXAMPLE_YAML.lines().any(|l| {
                    l.trim_start().starts_with('#')
                        && l.trim_start_matches(['#', ' '])
                            .starts_with(&format!("{leaf}:"))
                });
            let target_tls = path.starts_with("target.tls.");
            assert!(
                written.contains(&path) || commented_tls || commented_update || target_tls,
                "{path} is not in deploy/config/proxy.yaml"
            );
        }
    }

    #[test]
    fn example_zdm_env_loads() {
        let env: Vec<(&str, &str)> = EXAMPLE_ZDM_ENV
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.split_once('=').unwrap())
            .collect();
        let loaded = ProxyConfig::load(None, env).unwrap();
        let c = &loaded.config;
        assert_eq!(c.listen, "0.0.0.0:14002".parse().unwrap());
        assert_eq!(c.origin.contact_points.len(), 2);
        assert_eq!(
            c.origin.password.as_ref().map(Secret::expose),
            Some("change-me")
        );
        assert!(c.target.username.is_none() && c.target.password.is_none());
        assert_eq!(c.topology.index, 1);
        assert_eq!(c.topology_addresses()[1], "10.0.0.6:14002".parse().unwrap());
        assert!(c.blocked_protocol_versions.is_empty());
        assert_eq!(
            loaded.notices,
            ["ZDM_METRICS_PREFIX is ignored: Ferry's metric names always start with ferry_proxy_"]
        );
    }
}
