//! Two simulated clusters, driver sessions to both, and cell dumps to compare them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferry_migrator::{ClusterSpec, Event, JobReport, JobSpec, Observer, RangeCount, TableSelector};
use ferry_sim::exec::Executor;
use ferry_sim::server::{Cluster, ClusterConfig};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

pub(crate) struct Env {
    pub origin: Cluster<Executor>,
    pub target: Cluster<Executor>,
    pub o: Session,
    pub t: Session,
    pub job_dir: PathBuf,
}

async fn sim(ip: &str) -> Cluster<Executor> {
    let config = ClusterConfig {
        nodes: 1,
        listen: format!("{ip}:0").parse().unwrap(),
        ..ClusterConfig::default()
    };
    Cluster::start(config, Arc::new(Executor::default()))
        .await
        .unwrap()
}

pub(crate) async fn session(addr: std::net::SocketAddr) -> Session {
    SessionBuilder::new()
        .known_node_addr(addr)
        .connection_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap()
}

/// Origin on 127.0.`net`.1, target on .2, a fresh job directory named after `net`.
pub(crate) async fn env(net: u8) -> Env {
    let origin = sim(&format!("127.0.{net}.1")).await;
    let target = sim(&format!("127.0.{net}.2")).await;
    let o = session(origin.addresses()[0]).await;
    let t = session(target.addresses()[0]).await;
    let job_dir =
        std::env::temp_dir().join(format!("ferry-migrator-test-{}-{net}", std::process::id()));
    let _ = std::fs::remove_dir_all(&job_dir);
    Env {
        origin,
        target,
        o,
        t,
        job_dir,
    }
}

/// Records every event.
#[derive(Default)]
pub(crate) struct Recorder(pub Mutex<Vec<Event>>);

impl Observer for Recorder {
    fn event(&self, e: &Event) {
        self.0.lock().unwrap().push(e.clone());
    }
}

impl Env {
    pub(crate) fn spec(&self, tables: &[&str]) -> JobSpec {
        let cluster = |c: &Cluster<Executor>| ClusterSpec::new(vec![c.addresses()[0].to_string()]);
        let mut spec = JobSpec::new(
            cluster(&self.origin),
            cluster(&self.target),
            tables
                .iter()
                .map(|t| TableSelector::parse(t).unwrap())
                .collect(),
        );
        spec.job_dir = self.job_dir.clone();
        spec.ranges = RangeCount::Fixed(8);
        spec.retry_backoff = Duration::from_millis(10);
        spec
    }

    pub(crate) async fn run(&self, spec: JobSpec) -> (JobReport, Vec<Event>) {
        let rec = Arc::new(Recorder::default());
        let report = ferry_migrator::run(spec, rec.clone()).await.unwrap();
        let events = std::mem::take(&mut *rec.0.lock().unwrap());
        (report, events)
    }

    /// Runs DDL/DML on origin.
    pub(crate) async fn origin_cql(&self, stmts: &[&str]) {
        for s in stmts {
            self.o
                .query_unpaged(*s, ())
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }

    pub(crate) async fn target_cql(&self, stmts: &[&str]) {
        for s in stmts {
            self.t
                .query_unpaged(*s, ())
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }

    pub(crate) async fn stop(self) {
        let _ = std::fs::remove_dir_all(&self.job_dir);
        self.origin.shutdown().await;
        self.target.shutdown().await;
    }
}

/// A live cell in comparable form: list element paths (timeuuids minted by each cluster) are
/// replaced by the element's position in its list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cell {
    pub pk: Vec<Bytes>,
    pub ck: Option<Vec<Bytes>>,
    pub column: Option<String>,
    pub path: Option<Bytes>,
    pub value: Option<Bytes>,
    pub writetime: i64,
}

/// Live cells (no tombstones, nothing expired) with their TTLs, and the row markers' keys.
pub(crate) fn dump(c: &Cluster<Executor>, ks: &str, table: &str) -> Vec<(Cell, Option<u32>)> {
    let def = c.handler().table_def(ks, table).unwrap();
    let cells = c.handler().store().dump(&def);
    let list_columns: Vec<String> = def
        .value_columns
        .iter()
        .filter(|c| c.is_multi_cell() && matches!(c.ty, ferry_cql::types::ColumnType::List(_)))
        .map(|c| c.name.clone())
        .collect();
    let mut position: BTreeMap<(Vec<Bytes>, Option<Vec<Bytes>>, String), u32> = BTreeMap::new();
    let mut out = Vec::new();
    for d in cells {
        if d.expired || (d.column.is_some() && d.value.is_none()) {
            continue;
        }
        let mut path = d.path.clone();
        if let Some(col) = &d.column
            && list_columns.contains(col)
        {
            let n = position
                .entry((d.partition_key.clone(), d.clustering.clone(), col.clone()))
                .or_default();
            path = Some(Bytes::from(n.to_be_bytes().to_vec()));
            *n += 1;
        }
        out.push((
            Cell {
                pk: d.partition_key,
                ck: d.clustering,
                column: d.column,
                path,
                value: d.value,
                writetime: d.writetime,
            },
            d.ttl,
        ));
    }
    out.sort();
    out
}

/// Asserts that target holds exactly origin's live cells (value, writetime; TTL within a
/// second), row markers excluded (checked by [`markers`]).
pub(crate) fn assert_same_cells(env: &Env, ks: &str, table: &str) {
    let strip = |v: Vec<(Cell, Option<u32>)>| -> Vec<(Cell, Option<u32>)> {
        v.into_iter().filter(|(c, _)| c.column.is_some()).collect()
    };
    let o = strip(dump(&env.origin, ks, table));
    let t = strip(dump(&env.target, ks, table));
    let cells = |v: &[(Cell, Option<u32>)]| v.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>();
    let (oc, tc) = (cells(&o), cells(&t));
    if oc != tc {
        // The first difference, not two dumps of thousands of cells.
        let i = oc.iter().zip(&tc).take_while(|(a, b)| a == b).count();
        panic!(
            "{ks}.{table}: {} cells on origin, {} on target; first difference at #{i}: \
             origin {:?}, target {:?}",
            oc.len(),
            tc.len(),
            oc.get(i),
            tc.get(i)
        );
    }
    for ((c, ot), (_, tt)) in o.iter().zip(&t) {
        match (ot, tt) {
            (None, None) => {}
            (Some(a), Some(b)) => assert!(a.abs_diff(*b) <= 1, "{c:?}: ttl {a} vs {b}"),
            _ => panic!("{c:?}: ttl {ot:?} vs {tt:?}"),
        }
    }
    assert!(!o.is_empty(), "{ks}.{table}: the test wrote nothing");
}

/// The row markers (key, writetime) of a table.
pub(crate) fn markers(c: &Cluster<Executor>, ks: &str, table: &str) -> Vec<(Cell, Option<u32>)> {
    dump(c, ks, table)
        .into_iter()
        .filter(|(c, _)| c.column.is_none())
        .collect()
}
