//! The deployment files name only what the binaries really have: the docker-compose file and
//! the Kubernetes manifests are parsed, their services' configuration (environment variables,
//! ConfigMap files) goes through the real config loaders, and every port, HTTP path, config
//! file and mounted directory they name is checked against the configs, the admin modules and
//! the repository. (The example configs under `deploy/config/` are loaded by the proxy's and
//! migrator's own config tests.)

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ferry_migrator::config::MigratorConfig;
use ferry_proxy::config::ProxyConfig;
use yaml_rust2::{Yaml, YamlLoader};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const COMPOSE: &str = "deploy/compose/docker-compose.yml";

fn path(rel: &str) -> PathBuf {
    Path::new(ROOT).join(rel)
}

fn read(rel: &str) -> String {
    fs::read_to_string(path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml_docs(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn str_of(y: &Yaml) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// A map of scalars; YAML merge keys (`<<`, which the parser leaves unresolved) are skipped.
fn map_of(y: &Yaml) -> BTreeMap<String, String> {
    y.as_hash()
        .map(|h| {
            h.iter()
                .filter(|(k, _)| k.as_str() != Some("<<"))
                .map(|(k, v)| (str_of(k), str_of(v)))
                .collect()
        })
        .unwrap_or_default()
}

/// Paths the admin servers answer, from the method/path tables in their module docs.
fn served_paths() -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for rel in ["proxy/src/admin.rs", "migrator/src/api.rs"] {
        for line in read(rel).lines().filter(|l| l.starts_with("//! | `")) {
            for part in line.split('`') {
                if let Some((_, p)) = part.split_once(' ')
                    && p.starts_with('/')
                {
                    paths.insert(p.trim().to_owned());
                }
            }
        }
    }
    for p in ["/metrics", "/health/liveness", "/health/readiness", "/jobs"] {
        assert!(
            paths.contains(p),
            "{p} missing from the admin docs: {paths:?}"
        );
    }
    paths
}

fn proxy_config(yaml: Option<&str>, env: &BTreeMap<String, String>, what: &str) -> ProxyConfig {
    match ProxyConfig::load(yaml, env) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("{what}: the proxy refuses its configuration: {e}"),
    }
}

fn migrator_config(
    yaml: Option<&str>,
    env: &BTreeMap<String, String>,
    what: &str,
) -> MigratorConfig {
    MigratorConfig::load(yaml, env, &[])
        .unwrap_or_else(|e| panic!("{what}: the migrator refuses its configuration: {e}"))
}

/// `http://host:port/path` → (host, port, path).
fn url(u: &str) -> (String, u16, String) {
    let rest = u.strip_prefix("http://").unwrap_or_else(|| panic!("{u}"));
    let (hostport, p) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = hostport.rsplit_once(':').unwrap();
    (host.to_owned(), port.parse().unwrap(), format!("/{p}"))
}

#[test]
fn compose_file_names_real_ports_paths_and_files() {
    let served = served_paths();
    let doc = &yaml_docs(COMPOSE)[0];
    let dir = path("deploy/compose");
    let services = doc["services"].as_hash().unwrap();
    let names: BTreeSet<String> = services.keys().map(str_of).collect();
    for expected in [
        "origin",
        "target",
        "proxy",
        "migrator",
        "prometheus",
        "grafana",
    ] {
        assert!(names.contains(expected), "{COMPOSE}: no {expected} service");
    }
    // The port each ferry service's admin API listens on, from its loaded config.
    let mut admin_ports = BTreeMap::new();
    for (name, s) in services {
        let name = str_of(name);
        let env = map_of(&s["environment"]);
        let command: Vec<String> = s["command"]
            .as_vec()
            .map(|c| c.iter().map(str_of).collect())
            .unwrap_or_default();
        let published: BTreeSet<u16> = s["ports"]
            .as_vec()
            .into_iter()
            .flatten()
            .map(|p| str_of(p).rsplit(':').next().unwrap().parse().unwrap())
            .collect();
        let mut listening = BTreeSet::new();
        match command.first().map(String::as_str) {
            Some("proxy") => {
                let c = proxy_config(None, &env, &format!("{COMPOSE}: {name}"));
                // The repair journal on a named volume, so it outlives the container.
                if let Some(journal) = &c.repair_journal {
                    let on_volume = s["volumes"].as_vec().into_iter().flatten().any(|v| {
                        let v = str_of(v);
                        let mut parts = v.split(':');
                        let source = parts.next().unwrap_or("");
                        let target = parts.next().unwrap_or("");
                        !source.starts_with('.') && journal.starts_with(target)
                    });
                    assert!(on_volume, "{name}: repair_journal is on no named volume");
                }
                listening.extend([c.listen.port(), c.admin.listen.port()]);
                listening.extend(c.update.map(|u| u.listen.port()));
                admin_ports.insert(name.clone(), c.admin.listen.port());
            }
            Some("migrate") => {
                let c = migrator_config(None, &env, &format!("{COMPOSE}: {name}"));
                let admin = c
                    .admin
                    .listen
                    .unwrap_or_else(|| panic!("{name}: admin.listen"));
                assert!(
                    admin.ip().is_unspecified(),
                    "{name}: admin must listen beyond the container"
                );
                listening.insert(admin.port());
                admin_ports.insert(name.clone(), admin.port());
            }
            _ => {}
        }
        if !listening.is_empty() {
            assert!(
                published.is_subset(&listening),
                "{name}: publishes {published:?}, listens on {listening:?}"
            );
            let build = &s["build"];
            let context = dir.join(build["context"].as_str().unwrap());
            let dockerfile = context.join(build["dockerfile"].as_str().unwrap());
            assert!(dockerfile.is_file(), "{name}: {}", dockerfile.display());
            let test: Vec<String> = s["healthcheck"]["test"]
                .as_vec()
                .unwrap()
                .iter()
                .map(str_of)
                .collect();
            let u = test.iter().find(|t| t.starts_with("http://")).unwrap();
            let (_, port, p) = url(u);
            assert!(listening.contains(&port), "{name}: healthcheck port {port}");
            assert!(served.contains(&p), "{name}: healthcheck path {p}");
        }
        for dep in s["depends_on"].as_hash().into_iter().flatten() {
            let (dep, cond) = (str_of(dep.0), str_of(&dep.1["condition"]));
            assert!(names.contains(&dep), "{name} depends on unknown {dep}");
            if cond == "service_healthy" {
                let d = services.get(&Yaml::String(dep.clone())).unwrap();
                assert!(
                    !d["healthcheck"].is_badvalue() || !d["<<"].is_badvalue(),
                    "{dep}: no healthcheck"
                );
            }
        }
        for v in s["volumes"].as_vec().into_iter().flatten() {
            let v = str_of(v);
            let source = v.split(':').next().unwrap();
            if source.starts_with('.') {
                assert!(dir.join(source).exists(), "{name}: mounts missing {source}");
            }
        }
    }
    // Prometheus scrapes the admin ports, by service name.
    let prom = &yaml_docs("deploy/prometheus/prometheus.yml")[0];
    let mut jobs = BTreeSet::new();
    for job in prom["scrape_configs"].as_vec().unwrap() {
        jobs.insert(str_of(&job["job_name"]));
        assert!(served.contains(job["metrics_path"].as_str().unwrap_or("/metrics")));
        for t in job["static_configs"][0]["targets"].as_vec().unwrap() {
            let (host, port) = str_of(t)
                .rsplit_once(':')
                .map(|(h, p)| (h.to_owned(), p.parse::<u16>().unwrap()))
                .unwrap();
            assert_eq!(
                admin_ports.get(&host),
                Some(&port),
                "prometheus.yml target {host}:{port}"
            );
        }
    }
    assert_eq!(
        jobs,
        alert_jobs(),
        "scrape job names vs the alert rules' job=…"
    );
    // Grafana gets the provisioning and the dashboards where the provider looks.
    let provider = &yaml_docs("grafana/provisioning/dashboards/ferry.yaml")[0]["providers"][0];
    let wanted = provider["options"]["path"].as_str().unwrap();
    let grafana_mounts: Vec<String> =
        services.get(&Yaml::String("grafana".into())).unwrap()["volumes"]
            .as_vec()
            .unwrap()
            .iter()
            .map(str_of)
            .collect();
    assert!(
        grafana_mounts
            .iter()
            .any(|m| m.ends_with(&format!("grafana/dashboards:{wanted}:ro"))),
        "{grafana_mounts:?}"
    );
    assert!(
        grafana_mounts
            .iter()
            .any(|m| m.contains("grafana/provisioning:/etc/grafana/provisioning"))
    );
}

/// The `job="…"` values the alert rules select.
fn alert_jobs() -> BTreeSet<String> {
    read("deploy/prometheus/alerts.yml")
        .split("job=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_owned())
        .collect()
}

#[test]
fn dockerfile_exposes_the_default_ports() {
    let text = read("deploy/docker/Dockerfile");
    let exposed: BTreeSet<u16> = text
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace().map(|p| p.parse().unwrap()))
        .collect();
    let env = BTreeMap::from([
        (
            "FERRY_PROXY_ORIGIN_CONTACT_POINTS".to_owned(),
            "o".to_owned(),
        ),
        (
            "FERRY_PROXY_TARGET_CONTACT_POINTS".to_owned(),
            "t".to_owned(),
        ),
        (
            "FERRY_PROXY_UPDATE_LISTEN".to_owned(),
            "0.0.0.0:14100".to_owned(),
        ),
    ]);
    let proxy = proxy_config(None, &env, "defaults");
    let mut expected = BTreeSet::from([
        proxy.listen.port(),
        proxy.admin.listen.port(),
        proxy.update.unwrap().listen.port(),
    ]);
    expected.insert(ferry_migrator::config::DEFAULT_ADMIN_LISTEN.port());
    assert_eq!(exposed, expected);
    assert!(text.contains("\nUSER "), "the image must not run as root");
    assert!(
        text.matches("\nFROM ").count() >= 1 && text.starts_with('#') && text.contains(" AS build")
    );
}

/// Container → (ports by name, mounted ConfigMap files by path).
struct Pod {
    ports: BTreeMap<String, u16>,
    files: BTreeMap<String, String>,
}

fn pod(spec: &Yaml, config_maps: &BTreeMap<String, BTreeMap<String, String>>, what: &str) -> Pod {
    assert_eq!(
        spec["enableServiceLinks"].as_bool(),
        Some(false),
        "{what}: service links inject FERRY_… variables"
    );
    let c = &spec["containers"][0];
    let ports = c["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|p| {
            (
                str_of(&p["name"]),
                p["containerPort"].as_i64().unwrap() as u16,
            )
        })
        .collect();
    let mut files = BTreeMap::new();
    for m in c["volumeMounts"].as_vec().into_iter().flatten() {
        let Some(vol) = spec["volumes"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|v| v["name"] == m["name"])
        else {
            // A StatefulSet's claim (the proxy's repair journal), checked with the StatefulSet.
            continue;
        };
        if let Some(cm) = vol["configMap"]["name"].as_str() {
            let data = config_maps
                .get(cm)
                .unwrap_or_else(|| panic!("{what}: ConfigMap {cm} missing"));
            for (k, v) in data {
                files.insert(
                    format!("{}/{k}", m["mountPath"].as_str().unwrap()),
                    v.clone(),
                );
            }
        }
    }
    Pod { ports, files }
}

fn check_probes(c: &Yaml, pod: &Pod, served: &BTreeSet<String>, admin: u16, what: &str) {
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &c[probe]["httpGet"];
        if get.is_badvalue() {
            continue;
        }
        let p = get["path"].as_str().unwrap();
        assert!(served.contains(p), "{what}: {probe} path {p}");
        let port = pod.ports[get["port"].as_str().unwrap()];
        assert_eq!(port, admin, "{what}: {probe} port");
    }
    assert!(
        !c["readinessProbe"].is_badvalue(),
        "{what}: no readiness probe"
    );
}

#[test]
fn kubernetes_manifests_name_real_ports_paths_and_configs() {
    let served = served_paths();
    let kustomization = &yaml_docs("deploy/k8s/kustomization.yaml")[0];
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_vec()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    let mut files = BTreeSet::new();
    let mut docs = Vec::new();
    for entry in fs::read_dir(path("deploy/k8s")).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name == "kustomization.yaml" {
            continue;
        }
        files.insert(name);
        let rel = format!("deploy/k8s/{}", p.file_name().unwrap().to_string_lossy());
        docs.extend(yaml_docs(&rel).into_iter().map(|d| (rel.clone(), d)));
    }
    assert_eq!(
        listed, files,
        "kustomization.yaml resources vs the files in deploy/k8s"
    );
    let kind = |k: &'static str| {
        docs.iter()
            .filter(move |(_, d)| d["kind"].as_str() == Some(k))
    };
    let config_maps: BTreeMap<String, BTreeMap<String, String>> = kind("ConfigMap")
        .map(|(_, d)| (str_of(&d["metadata"]["name"]), map_of(&d["data"])))
        .collect();

    // The proxy: config from its ConfigMap and env, probes, topology, Services, PDB, monitor.
    // A StatefulSet: its pods' stable names are the migrators' update.proxies.
    let (rel, deploy) = kind("StatefulSet").next().unwrap();
    let spec = &deploy["spec"]["template"]["spec"];
    let proxy_pod = pod(spec, &config_maps, rel);
    let c = &spec["containers"][0];
    let args: Vec<String> = c["args"].as_vec().unwrap().iter().map(str_of).collect();
    assert_eq!(args[0], "proxy");
    let file = &args[args.iter().position(|a| a == "--config").unwrap() + 1];
    let yaml = proxy_pod
        .files
        .get(file)
        .unwrap_or_else(|| panic!("{rel}: {file} is not mounted"));
    let env: BTreeMap<String, String> = c["env"]
        .as_vec()
        .into_iter()
        .flatten()
        .map(|e| (str_of(&e["name"]), str_of(&e["value"])))
        .collect();
    let config = proxy_config(Some(yaml), &env, rel);
    assert_eq!(proxy_pod.ports["cql"], config.listen.port());
    assert_eq!(proxy_pod.ports["admin"], config.admin.listen.port());
    assert_eq!(
        proxy_pod.ports.get("update").copied(),
        config.update.as_ref().map(|u| u.listen.port())
    );
    check_probes(c, &proxy_pod, &served, config.admin.listen.port(), rel);
    // The repair journal on the pod's own claim, so it outlives a reschedule.
    if let Some(journal) = &config.repair_journal {
        let claims: Vec<String> = deploy["spec"]["volumeClaimTemplates"]
            .as_vec()
            .into_iter()
            .flatten()
            .map(|v| str_of(&v["metadata"]["name"]))
            .collect();
        let on_claim = c["volumeMounts"].as_vec().into_iter().flatten().any(|m| {
            claims.contains(&str_of(&m["name"])) && journal.starts_with(str_of(&m["mountPath"]))
        });
        assert!(on_claim, "{rel}: repair_journal is on no volume claim");
    }
    assert!(
        !c["lifecycle"]["preStop"].is_badvalue(),
        "{rel}: no preStop"
    );
    let grace = spec["terminationGracePeriodSeconds"].as_i64().unwrap();
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_i64()
        .unwrap_or(0);
    assert!(
        u64::try_from(grace - pre_stop).unwrap() > config.shutdown_grace.as_secs(),
        "{rel}: the grace period must cover preStop and shutdown_grace"
    );
    assert!(deploy["spec"]["replicas"].as_i64().unwrap() > 1);
    let pod_labels = map_of(&deploy["spec"]["template"]["metadata"]["labels"]);
    let subset = |sel: &Yaml, labels: &BTreeMap<String, String>| {
        map_of(sel).iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    assert!(subset(
        &deploy["spec"]["selector"]["matchLabels"],
        &pod_labels
    ));

    let service_named = |name: &str| {
        kind("Service")
            .map(|(_, s)| s)
            .find(|s| s["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no Service {name}"))
    };
    // Per-pod DNS names for the Update channel: the StatefulSet's headless Service.
    let headless_name = str_of(&deploy["spec"]["serviceName"]);
    let headless = service_named(&headless_name);
    assert_eq!(headless["spec"]["clusterIP"].as_str(), Some("None"));
    assert!(subset(&headless["spec"]["selector"], &pod_labels));
    let update_port = config.update.as_ref().unwrap().listen.port();
    let namespace = str_of(&deploy["metadata"]["namespace"]);
    let pod_names: Vec<String> = (0..deploy["spec"]["replicas"].as_i64().unwrap())
        .map(|i| {
            format!(
                "{}-{i}.{headless_name}.{namespace}.svc.cluster.local:{update_port}",
                str_of(&deploy["metadata"]["name"])
            )
        })
        .collect();
    // The clients' Service: the one with a cluster IP.
    let (_, service) = kind("Service")
        .find(|(_, s)| s["spec"]["clusterIP"].as_str() != Some("None"))
        .unwrap();
    assert!(
        subset(&service["spec"]["selector"], &pod_labels),
        "Service selects the proxy pods"
    );
    for p in service["spec"]["ports"].as_vec().unwrap() {
        let target = str_of(&p["targetPort"]);
        assert_eq!(
            proxy_pod.ports.get(&target),
            p["port"].as_i64().map(|p| p as u16).as_ref(),
            "Service port {target}"
        );
    }
    let cluster_ip: std::net::IpAddr = service["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        config
            .topology_addresses()
            .contains(&SocketAddr::new(cluster_ip, config.listen.port())),
        "topology.addresses must name the Service's cluster IP"
    );
    let (_, pdb) = kind("PodDisruptionBudget").next().unwrap();
    assert!(subset(&pdb["spec"]["selector"]["matchLabels"], &pod_labels));
    let (_, sm) = kind("ServiceMonitor").next().unwrap();
    assert!(subset(
        &sm["spec"]["selector"]["matchLabels"],
        &map_of(&service["metadata"]["labels"])
    ));
    let endpoint = &sm["spec"]["endpoints"][0];
    assert!(
        proxy_pod
            .ports
            .contains_key(endpoint["port"].as_str().unwrap())
    );
    assert!(served.contains(endpoint["path"].as_str().unwrap()));
    let mut jobs = BTreeSet::new();
    jobs.insert(
        map_of(&service["metadata"]["labels"])[sm["spec"]["jobLabel"].as_str().unwrap()].clone(),
    );

    // The migrator: an indexed Job whose every index has a config file that loads.
    let (rel, job) = kind("Job").next().unwrap();
    assert_eq!(job["spec"]["completionMode"].as_str(), Some("Indexed"));
    let spec = &job["spec"]["template"]["spec"];
    let migrator_pod = pod(spec, &config_maps, rel);
    let c = &spec["containers"][0];
    let args: Vec<String> = c["args"].as_vec().unwrap().iter().map(str_of).collect();
    assert_eq!(args[0], "migrate");
    let template = &args[args.iter().position(|a| a == "--config").unwrap() + 1];
    let completions = job["spec"]["completions"].as_i64().unwrap();
    let mut tables = BTreeSet::new();
    let mut names = BTreeSet::new();
    // The proxy's cutover waits for exactly the Job's workers.
    let expected: BTreeSet<String> = config
        .update
        .as_ref()
        .unwrap()
        .expect_migrators
        .iter()
        .cloned()
        .collect();
    for index in 0..completions {
        let file = template.replace("$(JOB_COMPLETION_INDEX)", &index.to_string());
        let yaml = migrator_pod
            .files
            .get(&file)
            .unwrap_or_else(|| panic!("{rel}: index {index}: {file} is not mounted"));
        let config = migrator_config(Some(yaml), &BTreeMap::new(), &file);
        assert!(!config.tables.is_empty(), "{file}: no tables");
        for t in &config.tables {
            assert!(
                tables.insert(format!("{t:?}")),
                "{file}: {t:?} is another index's too"
            );
        }
        // Every worker reports to every proxy pod, each under its own name.
        assert_eq!(config.update.proxies, pod_names, "{file}: update.proxies");
        let name = config.update.name.clone().unwrap_or_default();
        assert!(
            names.insert(name.clone()),
            "{file}: update.name {name:?} is not its own"
        );
        let admin = config.admin.listen.unwrap();
        assert_eq!(migrator_pod.ports["admin"], admin.port());
        check_probes(c, &migrator_pod, &served, admin.port(), rel);
    }
    assert_eq!(
        names, expected,
        "the Job's update.name values vs the proxy's update.expect_migrators"
    );
    let (_, pm) = kind("PodMonitor").next().unwrap();
    let job_labels = map_of(&job["spec"]["template"]["metadata"]["labels"]);
    assert!(subset(&pm["spec"]["selector"]["matchLabels"], &job_labels));
    let endpoint = &pm["spec"]["podMetricsEndpoints"][0];
    assert!(
        migrator_pod
            .ports
            .contains_key(endpoint["port"].as_str().unwrap())
    );
    assert!(served.contains(endpoint["path"].as_str().unwrap()));
    jobs.insert(job_labels[pm["spec"]["jobLabel"].as_str().unwrap()].clone());
    assert_eq!(
        jobs,
        alert_jobs(),
        "scrape job labels vs the alert rules' job=…"
    );

    // No Service name becomes a FERRY_PROXY_/FERRY_MIGRATOR_ variable if links are turned on.
    for (_, s) in kind("Service") {
        let env_name = str_of(&s["metadata"]["name"])
            .to_uppercase()
            .replace('-', "_");
        assert!(
            !env_name.starts_with("FERRY_PROXY") && !env_name.starts_with("FERRY_MIGRATOR"),
            "{env_name}"
        );
    }
    // The operator's rules are alerts.yml's.
    let (_, rule) = kind("PrometheusRule").next().unwrap();
    assert_eq!(
        rule["spec"]["groups"],
        yaml_docs("deploy/prometheus/alerts.yml")[0]["groups"]
    );
}
