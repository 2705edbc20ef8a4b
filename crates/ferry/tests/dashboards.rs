//! Keeps the Grafana dashboards and the Prometheus alert rules honest.
//!
//! - The dashboards' JSON has the structure Grafana expects: unique panel ids, a grid position
//!   inside 24 columns without overlaps, datasource references that resolve to the provisioned
//!   datasource, and only template variables that exist.
//! - `promtool` accepts the alert rules and the scrape configuration.
//! - Against the real binaries: two sims, `ferry proxy` (best-effort, dual-async) and
//!   `ferry migrate --serve` with a small workload (prepared writes and reads, a dual-read
//!   mismatch, target failures, a failing table), scraped by a real `prometheus` every second.
//!   Every panel target's and every alert's `expr` then runs through `/api/v1/query`; a query
//!   error, or a metric name that no binary's `/metrics` exports, fails the test.
//!
//! `prometheus` and `promtool` come from the Debian package `prometheus` (`bash .ci/setup`
//! installs it); without them these tests fail and say so.
//!
//! Nets: 127.0.160.1–5 (sims, proxy, migrator, Prometheus), on ports no default service uses (a
//! `prometheus` package started by systemd listens on every address's 9090).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferry_cql::protocol::Opcode;
use ferry_sim::exec::Executor;
use ferry_sim::server::Cluster;
use ferry_sim::server::faults::{self, FaultAction, RequestMatcher};
use serde_json::Value;
use yaml_rust2::YamlLoader;

mod common;

use common::{http, session, sim};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const DASHBOARDS: [&str; 2] = [
    "grafana/dashboards/proxy.json",
    "grafana/dashboards/migrator.json",
];
const ALERTS: &str = "deploy/prometheus/alerts.yml";
const DATASOURCES: &str = "grafana/provisioning/datasources/prometheus.yaml";

const PROXY_CQL: &str = "127.0.160.3:19042";
const PROXY_ADMIN: &str = "127.0.160.3:19401";
const PROXY_UPDATE: &str = "127.0.160.3:19410";
const MIGRATOR_ADMIN: &str = "127.0.160.4:19501";
const PROMETHEUS: &str = "127.0.160.5:19090";

/// Grafana's own variables, replaced by the values a dashboard would use.
const GRAFANA_VARIABLES: [(&str, &str); 4] = [
    ("$__rate_interval", "1m"),
    ("$__interval", "5s"),
    ("$__range", "1h"),
    ("${__rate_interval}", "1m"),
];

fn read(rel: &str) -> String {
    fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `name` on PATH; fails the test with how to install it otherwise.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: this test needs Prometheus. Run `bash .ci/setup` \
                 (or `apt-get install -y prometheus` on Debian)"
            )
        })
}

fn dashboard(rel: &str) -> Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// (where, expr) of every panel target.
fn panel_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for rel in DASHBOARDS {
        let d = dashboard(rel);
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap_or_else(|| {
                    panic!("{rel}: panel {} has a target without expr", p["title"])
                });
                out.push((format!("{rel}: {}", p["title"]), expr.to_owned()));
            }
        }
    }
    out
}

/// (alert name, expr) of every rule.
fn alert_queries() -> Vec<(String, String)> {
    let docs = YamlLoader::load_from_str(&read(ALERTS)).unwrap();
    let mut out = Vec::new();
    for group in docs[0]["groups"].as_vec().unwrap() {
        for rule in group["rules"].as_vec().unwrap() {
            let name = rule["alert"].as_str().unwrap().to_owned();
            let expr = rule["expr"].as_str().unwrap().to_owned();
            out.push((format!("{ALERTS}: {name}"), expr));
        }
    }
    out
}

/// The expression as Prometheus gets it: the `instance` variable set to All, Grafana's
/// intervals to real durations.
fn concrete(expr: &str) -> String {
    let mut e = expr.replace("${instance}", ".*").replace("$instance", ".*");
    for (var, value) in GRAFANA_VARIABLES {
        e = e.replace(var, value);
    }
    assert!(!e.contains('$'), "unreplaced variable in {expr}");
    e
}

/// Keywords and aggregations (`sum by (x) (…)` puts a word between `sum` and its parenthesis).
const PROMQL_WORDS: [&str; 25] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
];

/// Metric names in a PromQL expression: identifiers outside label matchers, strings, ranges
/// and grouping clauses that are not functions, aggregations or keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut after_grouping = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' | '[' | '"' => {
                let close = match c {
                    '{' => '}',
                    '[' => ']',
                    _ => '"',
                };
                i += 1;
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if after_grouping => {
                // `by (a, b)`: label names, not metrics.
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                after_grouping = false;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j] == ' ' {
                    j += 1;
                }
                let is_call = chars.get(j) == Some(&'(');
                after_grouping = matches!(
                    word.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                );
                if !is_call && !PROMQL_WORDS.contains(&word.to_ascii_lowercase().as_str()) {
                    names.insert(word);
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // A number, with an exponent or a duration unit: never a name.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn metric_names_are_found_outside_labels_and_functions() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, cluster) (rate(a_bucket{kind="read", x=~"$i"}[1m]))) / on (instance) b > 1e-9 unless c offset 5m"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["a_bucket", "b", "c"]
    );
}

/// The provisioned datasource's uid.
fn provisioned_uid() -> String {
    let docs = YamlLoader::load_from_str(&read(DATASOURCES)).unwrap();
    let sources = docs[0]["datasources"].as_vec().unwrap();
    assert_eq!(sources.len(), 1, "{DATASOURCES}: one datasource expected");
    assert_eq!(sources[0]["type"].as_str(), Some("prometheus"));
    sources[0]["uid"].as_str().unwrap().to_owned()
}

#[test]
fn dashboards_have_the_structure_grafana_loads() {
    let uid = provisioned_uid();
    let mut dashboard_uids = BTreeSet::new();
    for rel in DASHBOARDS {
        let d = dashboard(rel);
        assert!(
            dashboard_uids.insert(d["uid"].as_str().unwrap().to_owned()),
            "{rel}: uid"
        );
        assert!(
            d["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{rel}: title"
        );
        assert!(
            d["schemaVersion"].as_u64().is_some(),
            "{rel}: schemaVersion"
        );
        let vars = d["templating"]["list"].as_array().unwrap();
        let var_names: BTreeSet<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(
            var_names.len(),
            vars.len(),
            "{rel}: duplicate template variables"
        );
        // A datasource variable must default to the provisioned datasource.
        let ds_var = vars.iter().find(|v| v["type"] == "datasource");
        if let Some(v) = ds_var {
            assert_eq!(v["query"], "prometheus", "{rel}: datasource variable type");
            assert_eq!(v["current"]["value"].as_str(), Some(uid.as_str()), "{rel}");
        }
        let datasource_ok = |ds: &Value, what: &str| {
            assert_eq!(ds["type"], "prometheus", "{rel}: {what}: {ds}");
            let u = ds["uid"].as_str().unwrap_or_default();
            let via_var = u.strip_prefix("${").and_then(|v| v.strip_suffix('}'));
            match via_var {
                Some(v) => assert!(
                    ds_var.is_some_and(|d| d["name"] == v),
                    "{rel}: {what} uses ${{{v}}}, which is no datasource variable"
                ),
                None => assert_eq!(u, uid, "{rel}: {what}: not the provisioned datasource"),
            }
        };
        for v in vars.iter().filter(|v| v["type"] == "query") {
            datasource_ok(&v["datasource"], &format!("variable {}", v["name"]));
            let q = v["query"]["query"].as_str().unwrap();
            assert!(q.starts_with("label_values("), "{rel}: {q}");
        }

        let mut ids = BTreeSet::new();
        let mut cells: HashMap<(u64, u64), String> = HashMap::new();
        let all = panels(&d);
        assert!(all.len() > 5, "{rel}: too few panels");
        for p in all {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{rel}: a panel without a title");
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{rel}: {title}: id"));
            assert!(ids.insert(id), "{rel}: panel id {id} ({title}) used twice");
            let g = &p["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| {
                g[k].as_u64()
                    .unwrap_or_else(|| panic!("{rel}: {title}: gridPos.{k}"))
            });
            assert!(
                w >= 1 && h >= 1 && x + w <= 24,
                "{rel}: {title}: gridPos {g}"
            );
            for cx in x..x + w {
                for cy in y..y + h {
                    if let Some(other) = cells.insert((cx, cy), title.to_owned()) {
                        panic!("{rel}: {title} overlaps {other} at ({cx}, {cy})");
                    }
                }
            }
            if p["type"] == "row" {
                continue;
            }
            datasource_ok(&p["datasource"], title);
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{rel}: {title}: no targets");
            let mut ref_ids = BTreeSet::new();
            for t in targets {
                datasource_ok(&t["datasource"], title);
                assert!(
                    ref_ids.insert(t["refId"].as_str().unwrap()),
                    "{rel}: {title}: refId"
                );
                let expr = t["expr"].as_str().unwrap();
                for var in expr.split('$').skip(1) {
                    let name: String = var
                        .trim_start_matches('{')
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(
                        var_names.contains(name.as_str())
                            || GRAFANA_VARIABLES.iter().any(|(g, _)| g.contains(&name)),
                        "{rel}: {title}: ${name} is not a template variable"
                    );
                }
                assert!(
                    !metric_names(expr).is_empty(),
                    "{rel}: {title}: {expr} names no metric"
                );
            }
        }
    }
}

#[test]
fn promtool_accepts_the_rules_and_the_scrape_config() {
    let promtool = tool("promtool");
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(Path::new(ROOT).join(ALERTS))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The config names the rules where the compose stack mounts them; point it at the file here.
    let dir = TempDir::new("promtool");
    let config = read("deploy/prometheus/prometheus.yml").replace(
        "/etc/prometheus/alerts.yml",
        &Path::new(ROOT).join(ALERTS).to_string_lossy(),
    );
    assert!(
        config.contains(ALERTS),
        "prometheus.yml does not load the alert rules"
    );
    let path = dir.0.join("prometheus.yml");
    fs::write(&path, config).unwrap();
    let out = Command::new(&promtool)
        .args(["check", "config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ferry-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child process killed when the test ends, however it ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Process {
    let file = fs::File::create(log).unwrap();
    Process(
        cmd.stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `/api/v1/query`: the result vector, or Prometheus' error.
async fn query(expr: &str) -> Result<Vec<Value>, String> {
    let path = format!("/api/v1/query?query={}", url_encode(expr));
    let (status, body) = http("GET", PROMETHEUS, &path, "")
        .await
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
    if v["status"] != "success" {
        return Err(format!("{status}: {} {}", v["errorType"], v["error"]));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Metric names in a Prometheus text exposition.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Polls `check` every 250 ms until it returns `Some`, at most `tries` times.
async fn eventually<T, F: AsyncFnMut() -> Option<T>>(tries: u32, mut check: F) -> Option<T> {
    for _ in 0..tries {
        if let Some(v) = check().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// Traffic that gives every metric the dashboards use at least one series: prepared writes and
/// reads of `dash.t`, a row only origin has (a dual-read mismatch), and `dash.flaky`, whose
/// target overloads (target write failures recorded for repair, secondary read failures).
async fn workload(origin: &Cluster<Executor>, target: &Cluster<Executor>) {
    let proxy = session(PROXY_CQL.parse().unwrap()).await;
    for ddl in [
        "CREATE KEYSPACE dash WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE dash.t (k int PRIMARY KEY, v text)",
        "CREATE TABLE dash.flaky (k int PRIMARY KEY, v text)",
    ] {
        proxy.query_unpaged(ddl, ()).await.unwrap();
    }
    let insert = proxy
        .prepare("INSERT INTO dash.t (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    let select = proxy
        .prepare("SELECT v FROM dash.t WHERE k = ?")
        .await
        .unwrap();
    for k in 0..200i32 {
        proxy
            .execute_unpaged(&insert, (k, format!("v{k}")))
            .await
            .unwrap();
    }
    for k in 0..100i32 {
        proxy.execute_unpaged(&select, (k,)).await.unwrap();
    }
    // Only origin has this row: reading it through the proxy is a mismatch.
    let direct = session(origin.addresses()[0]).await;
    direct
        .query_unpaged("INSERT INTO dash.t (k, v) VALUES (1000, 'origin only')", ())
        .await
        .unwrap();
    proxy.execute_unpaged(&select, (1000i32,)).await.unwrap();

    let target_faults = target.node(0).faults();
    for opcode in [Opcode::Query, Opcode::Execute, Opcode::Batch] {
        target_faults.add(
            RequestMatcher::any().opcode(opcode).table("dash", "flaky"),
            FaultAction::Error(faults::overloaded()),
        );
    }
    // best-effort: the client gets origin's answer, the failure is recorded for repair.
    for k in 0..5 {
        proxy
            .query_unpaged(
                format!("INSERT INTO dash.flaky (k, v) VALUES ({k}, 'x')"),
                (),
            )
            .await
            .unwrap();
    }
    proxy
        .query_unpaged("SELECT v FROM dash.flaky WHERE k = 1", ())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_and_alert_query_runs_on_the_binaries_metrics() {
    let prometheus = tool("prometheus");
    let dir = TempDir::new("dashboards");
    let origin = sim("127.0.160.1").await;
    let target = sim("127.0.160.2").await;
    let (o, t) = (
        origin.addresses()[0].to_string(),
        target.addresses()[0].to_string(),
    );

    let _proxy = spawn(
        Command::new(FERRY)
            .arg("proxy")
            .env("FERRY_PROXY_LISTEN", PROXY_CQL)
            .env("FERRY_PROXY_ADMIN_LISTEN", PROXY_ADMIN)
            .env("FERRY_PROXY_ORIGIN_CONTACT_POINTS", &o)
            .env("FERRY_PROXY_TARGET_CONTACT_POINTS", &t)
            .env("FERRY_PROXY_READ_MODE", "dual-async")
            .env("FERRY_PROXY_TARGET_FAILURE_POLICY", "best-effort")
            .env("FERRY_PROXY_UPDATE_LISTEN", PROXY_UPDATE),
        &dir.0.join("proxy.log"),
    );
    let _migrator = spawn(
        Command::new(FERRY)
            .args([
                "migrate",
                "--serve",
                "--admin",
                MIGRATOR_ADMIN,
                "--log-format",
                "text",
            ])
            .args([
                "--origin",
                &o,
                "--target",
                &t,
                "--tables",
                "dash.t",
                "--retries",
                "1",
                "--update-proxy",
                PROXY_UPDATE,
            ])
            .arg("--job-dir")
            .arg(dir.0.join("job")),
        &dir.0.join("migrator.log"),
    );
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files: [{rules:?}]\n\
         scrape_configs:\n\
         - job_name: ferry-proxy\n  static_configs: [{{targets: [\"{PROXY_ADMIN}\"]}}]\n\
         - job_name: ferry-migrator\n  static_configs: [{{targets: [\"{MIGRATOR_ADMIN}\"]}}]\n",
        rules = Path::new(ROOT).join(ALERTS).to_string_lossy()
    );
    fs::write(dir.0.join("prometheus.yml"), config).unwrap();
    let _prometheus = spawn(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.0.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS}")),
        &dir.0.join("prometheus.log"),
    );
    let logs = || {
        ["proxy.log", "migrator.log", "prometheus.log"]
            .map(|f| {
                format!(
                    "== {f}\n{}",
                    fs::read_to_string(dir.0.join(f)).unwrap_or_default()
                )
            })
            .join("\n")
    };

    let ready = eventually(120, async || {
        let (s, _) = http("GET", PROXY_ADMIN, "/health/readiness", "")
            .await
            .ok()?;
        (s == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "the proxy never became ready\n{}", logs());
    // The migrator process starts beside the proxy; its admin API may come up later.
    let live = eventually(120, async || {
        let (s, _) = http("GET", MIGRATOR_ADMIN, "/health/liveness", "")
            .await
            .ok()?;
        (s == 200).then_some(())
    })
    .await;
    assert!(live.is_some(), "the migrator never listened\n{}", logs());
    workload(&origin, &target).await;

    // A job over the healthy table and the one whose target overloads (it ends FAILED).
    let (status, body) = http(
        "POST",
        MIGRATOR_ADMIN,
        "/jobs",
        r#"{"tables": ["dash.t", "dash.flaky"]}"#,
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{body}\n{}", logs());
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let finished = eventually(240, async || {
        let (_, body) = http("GET", MIGRATOR_ADMIN, &format!("/jobs/{id}"), "")
            .await
            .ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let state = v["state"].as_str()?.to_owned();
        (state != "running" && state != "cancelling").then_some(v)
    })
    .await
    .unwrap_or_else(|| panic!("the job did not finish\n{}", logs()));
    assert_eq!(finished["state"], "failed", "{finished}");

    let mut names = BTreeSet::new();
    for addr in [PROXY_ADMIN, MIGRATOR_ADMIN] {
        let (status, text) = http("GET", addr, "/metrics", "").await.unwrap();
        assert_eq!(status, 200, "{addr}/metrics");
        names.extend(exported(&text));
    }
    // Series Prometheus itself adds to every target.
    names.insert("up".to_owned());

    let queries: Vec<(String, String)> =
        panel_queries().into_iter().chain(alert_queries()).collect();
    let mut unknown = Vec::new();
    for (place, expr) in &queries {
        for name in metric_names(expr) {
            if !names.contains(&name) {
                unknown.push(format!("{place}: {name}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics no binary exports:\n{}\nexported: {names:?}",
        unknown.join("\n")
    );

    // Every metric the queries name stored, then two more scrapes of both targets (rates need
    // two samples).
    let used: BTreeSet<String> = queries.iter().flat_map(|(_, e)| metric_names(e)).collect();
    let selector = used.iter().cloned().collect::<Vec<_>>().join("|");
    let stored = eventually(120, async || {
        let stored = query(&format!(
            "count by (__name__) ({{__name__=~\"{selector}\"}})"
        ))
        .await
        .ok()?;
        let have: BTreeSet<&str> = stored
            .iter()
            .filter_map(|s| s["metric"]["__name__"].as_str())
            .collect();
        (have.len() == used.len()).then_some(())
    })
    .await;
    assert!(
        stored.is_some(),
        "Prometheus never stored every series of {used:?}\n{}",
        logs()
    );
    let scrapes = async || -> Option<f64> {
        let v = query("min(count_over_time(up[1h]))").await.ok()?;
        v.first()?["value"][1].as_str()?.parse().ok()
    };
    let before = scrapes().await.unwrap_or(0.0);
    let scraped = eventually(120, async || {
        (scrapes().await? >= before + 2.0).then_some(())
    })
    .await;
    assert!(scraped.is_some(), "Prometheus stopped scraping\n{}", logs());

    let mut errors = Vec::new();
    let mut with_data = 0;
    for (place, expr) in &queries {
        match query(&concrete(expr)).await {
            Ok(result) => with_data += usize::from(!result.is_empty()),
            Err(e) => errors.push(format!("{place}: {expr}: {e}")),
        }
    }
    assert!(
        errors.is_empty(),
        "queries Prometheus refused:\n{}",
        errors.join("\n")
    );
    // Most panels have data after this workload (the rest show failures that did not happen).
    assert!(
        with_data * 2 > queries.len(),
        "{with_data} of {} queries returned data",
        queries.len()
    );

    // The rules Prometheus loaded evaluate without errors.
    let healthy = eventually(120, async || {
        let (_, body) = http("GET", PROMETHEUS, "/api/v1/rules", "").await.ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated =
            rules.len() == alert_queries().len() && rules.iter().all(|r| r["health"] != "unknown");
        evaluated.then_some(rules)
    })
    .await
    .unwrap_or_else(|| panic!("Prometheus did not evaluate every rule\n{}", logs()));
    for r in &healthy {
        assert_eq!(r["health"], "ok", "{r}");
    }
    // The workload's failing table fires its alert's condition.
    let failed = query(&concrete(
        &alert_queries()
            .into_iter()
            .find(|(p, _)| p.ends_with("FerryMigrationTableFailed"))
            .unwrap()
            .1,
    ))
    .await
    .unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["metric"]["table"], "dash.flaky");
}
