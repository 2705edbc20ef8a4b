//! `ferry`: the one binary. Thin by design: it parses arguments, builds a service's config and
//! calls the library that runs it, so tests and benchmarks drive the same code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use ferry_proxy::Proxy;
use ferry_proxy::config::ProxyConfig;
use ferry_sim::exec::Executor;
use ferry_sim::server::{Cluster, ClusterConfig, TlsFiles};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

mod admin_client;
mod bars;
mod cutover;
mod demo;
mod migrate;
mod status;
mod validate;

/// jemalloc: the sim keeps millions of small long-lived values; glibc malloc fragments them
/// between per-request allocations (3x the live heap in RSS, see crates/sim/BENCHMARKS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit code for bad configuration (BSD `EX_CONFIG`-style usage error, as DESIGN.md fixes it).
pub(crate) const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Moves live applications between Cassandra-compatible clusters with zero downtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an in-memory cluster with Cassandra 5.0 semantics (development, tests, demos; not for
    /// production data).
    Sim(SimArgs),
    /// Run the dual-write CQL proxy in front of origin and target.
    Proxy(ProxyArgs),
    /// Copy tables from origin to target, each cell with its writetime and TTL; resumable.
    Migrate(Box<migrate::MigrateArgs>),
    /// Compare origin and target cell by cell (value, writetime, TTL) and list the differing
    /// keys; with --repair, rewrite origin's cells on target.
    Validate(Box<validate::ValidateArgs>),
    /// One screen over the proxies' and the migrator's admin APIs: primary, read mode,
    /// per-table migration, mismatches, repairs.
    Status(status::StatusArgs),
    /// Switch the primary or the read mode on every proxy instance, or on none.
    Cutover(cutover::CutoverArgs),
    /// A whole live migration on this machine: two sim clusters, the proxy, a workload,
    /// migrate, validate, cutover, report.
    Demo(demo::DemoArgs),
}

#[derive(Debug, Args)]
struct ProxyArgs {
    /// YAML configuration file; `FERRY_PROXY_…` and zdm-proxy's `ZDM_…` environment variables
    /// override it. Without a file, the environment alone configures the proxy.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SimArgs {
    /// Number of nodes; node i listens on the IPv4 address i above --listen, same port.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Address of node 0 (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9042")]
    listen: SocketAddr,
    /// Turn on PasswordAuthenticator with this user, as USER:PASSWORD (repeatable).
    #[arg(long, value_name = "USER:PASSWORD", value_parser = parse_user)]
    auth: Vec<(String, String)>,
    /// Vnode tokens per node.
    #[arg(long, default_value_t = 16)]
    vnodes: usize,
    /// Seed for tokens and host ids, so a cluster can be recreated identically.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Serve the admin HTTP API (faults, node stop/start, table dumps) on this address.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Speak TLS on every node: PEM certificate chain the nodes present (needs --tls-key).
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by a CA in this PEM file (mutual TLS).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
}

fn parse_user(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok((u.to_owned(), p.to_owned())),
        _ => Err(format!("expected USER:PASSWORD, got {s:?}")),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(EXIT_BAD_CONFIG),
            };
        }
    };
    // The services' log settings come from their config, so logging starts after loading it.
    let mut migrator_config = None;
    let proxy_config = match &cli.command {
        Command::Proxy(args) => match ProxyConfig::from_process(args.config.as_deref()) {
            Ok(loaded) => {
                init_logging(loaded.config.log.level.as_str(), loaded.config.log.json);
                for notice in &loaded.notices {
                    tracing::info!("config: {notice}");
                }
                Some(loaded.config)
            }
            Err(e) => {
                eprintln!("ferry proxy: invalid configuration:");
                for problem in &e.problems {
                    eprintln!("  - {problem}");
                }
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        },
        Command::Sim(_) => {
            init_logging("info", false);
            None
        }
        // Operator commands print their own lines; logs only for warnings.
        Command::Status(_) | Command::Cutover(_) => {
            init_logging("warn", false);
            None
        }
        Command::Demo(args) => {
            init_logging(args.log_level(), false);
            None
        }
        Command::Migrate(args) => {
            let config = match args.load() {
                Ok(c) => c,
                Err(code) => return code,
            };
            let json = config.log_format == ferry_migrator::config::LogFormat::Json;
            init_logging(config.log_level.as_str(), json);
            migrator_config = Some(config);
            None
        }
        Command::Validate(args) => {
            let config = match args.load() {
                Ok(c) => c,
                Err(code) => return code,
            };
            let json = config.log_format == ferry_migrator::config::LogFormat::Json;
            init_logging(config.log_level.as_str(), json);
            migrator_config = Some(config);
            None
        }
    };
    let runtime = match runtime_builder().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match (cli.command, proxy_config) {
        (Command::Sim(args), _) => runtime.block_on(sim(args)),
        (Command::Proxy(_), Some(config)) => runtime.block_on(proxy(config)),
        (Command::Proxy(_), None) => ExitCode::FAILURE,
        (Command::Migrate(args), _) => match migrator_config {
            Some(config) => runtime.block_on(migrate::run(*args, config)),
            None => ExitCode::FAILURE,
        },
        (Command::Validate(args), _) => match migrator_config {
            Some(config) => runtime.block_on(validate::run(*args, config)),
            None => ExitCode::FAILURE,
        },
        (Command::Status(args), _) => runtime.block_on(status::run(args)),
        (Command::Cutover(args), _) => runtime.block_on(cutover::run(args)),
        (Command::Demo(args), _) => runtime.block_on(demo::run(args)),
    }
}

fn init_logging(level: &str, json: bool) {
    let level = level.parse().unwrap_or(tracing::Level::INFO);
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn proxy(config: ProxyConfig) -> ExitCode {
    // One signal listener from the start: polled during startup, so a signal is never lost
    // between "listening" and the wait below.
    let stop = wait_for_signal();
    tokio::pin!(stop);
    // Starting waits for both clusters (with backoff): a signal meanwhile stops the wait.
    let proxy = tokio::select! {
        started = Proxy::start(config) => match started {
            Ok(p) => p,
            Err(e) => {
                eprintln!("ferry proxy: cannot start: {e}");
                // An unusable TLS file or repair journal is a configuration problem like any
                // other.
                if matches!(
                    e,
                    ferry_proxy::StartError::Tls(_) | ferry_proxy::StartError::Journal(_)
                ) {
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
                return ExitCode::FAILURE;
            }
        },
        () = &mut stop => {
            println!("ferry proxy: stopped before the clusters answered");
            return ExitCode::FAILURE;
        }
    };
    println!("ferry proxy: listening on {}", proxy.local_addr());
    println!(
        "ferry proxy: admin (metrics, health, primary, read mode) on http://{}",
        proxy.admin_addr()
    );
    println!("ferry proxy: Ctrl-C or SIGTERM stops it (in-flight requests drain first)");
    stop.await;
    println!("ferry proxy: stopping");
    proxy.shutdown().await;
    println!("ferry proxy: stopped");
    ExitCode::SUCCESS
}

async fn sim(args: SimArgs) -> ExitCode {
    let auth = !args.auth.is_empty();
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert_path), Some(key_path)) => Some(TlsFiles {
            cert_path,
            key_path,
            client_ca_path: args.tls_ca,
        }),
        _ => None,
    };
    let tls_note = match &tls {
        Some(TlsFiles {
            client_ca_path: Some(_),
            ..
        }) => "TLS with client certificates",
        Some(_) => "TLS",
        None => "plain TCP",
    };
    let config = ClusterConfig {
        nodes: args.nodes,
        listen: args.listen,
        users: args.auth,
        vnodes: args.vnodes,
        seed: args.seed,
        tls,
        ..ClusterConfig::default()
    };
    if let Err(e) = config.validate() {
        eprintln!("ferry sim: invalid configuration:");
        for problem in &e.problems {
            eprintln!("  - {problem}");
        }
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    // Bound before the cluster starts, so a taken admin port fails fast with nothing to undo.
    let admin_listener = match args.admin {
        None => None,
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("ferry sim: cannot listen for admin on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let cluster = match Cluster::start(config, Arc::new(Executor::default())).await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("ferry sim: cannot start: {e}");
            if matches!(e, ferry_sim::server::StartError::Tls(_)) {
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            return ExitCode::FAILURE;
        }
    };
    let stop = wait_for_signal();
    for (i, addr) in cluster.addresses().iter().enumerate() {
        println!("ferry sim: node {i} listening on {addr}");
    }
    let (stop_admin, admin_stopped) = oneshot::channel::<()>();
    let admin = admin_listener.map(|listener| {
        let addr = listener
            .local_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        println!("ferry sim: admin on {addr}");
        tokio::spawn(ferry_sim::admin::serve(
            listener,
            cluster.clone(),
            async move {
                let _ = admin_stopped.await;
            },
        ))
    });
    println!(
        "ferry sim: protocol v3, v4, v5 over {tls_note}; authentication {}; Ctrl-C or SIGTERM \
         stops it",
        if auth { "on" } else { "off" }
    );
    stop.await;
    println!("ferry sim: stopping");
    let _ = stop_admin.send(());
    if let Some(admin) = admin
        && let Err(e) = admin.await
    {
        eprintln!("ferry sim: admin server failed: {e}");
    }
    cluster.shutdown().await;
    println!("ferry sim: stopped");
    ExitCode::SUCCESS
}

/// Completes on Ctrl-C or SIGTERM (how Kubernetes and most supervisors stop a process). The
/// handlers are installed when this is called, not when the future is first polled, so a
/// signal that arrives right after a "listening" line is not lost.
pub(crate) fn wait_for_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, int) {
                (Some(mut term), Some(mut int)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A multi-thread runtime, or a current-thread one when the process may use only one CPU (an
/// affinity mask or a CPU quota of one): one worker gains nothing from work stealing and pays
/// for its bookkeeping on every poll.
fn runtime_builder() -> tokio::runtime::Builder {
    match std::thread::available_parallelism() {
        Ok(n) if n.get() == 1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
}
