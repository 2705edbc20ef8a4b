//! The migrator as a service: [`Jobs`] (one job at a time, its status built from the core's
//! events, cancel) and [`Api`], the admin HTTP endpoints over it (ferry-service's server).
//!
//! | method and path | answer |
//! |---|---|
//! | `POST /jobs` | body: the config's job keys as JSON, over the service's config (`{"tables": ["ks.t"], "ranges": 16}`) → `201 {"id": "1"}`; `409` while a job runs; `400` listing every problem |
//! | `GET /jobs` | `{"jobs": [status, …]}`, newest last (the last [`MAX_KEPT_JOBS`]) |
//! | `GET /jobs/{id}` | the status: `state` (running, done, failed, cancelling, cancelled, error), per table `phase`, ranges, rows, bytes; totals, `percentage`, `errors`, `started_at_ms` / `updated_at_ms` / `completed_at_ms` (Unix milliseconds) |
//! | `POST /jobs/{id}/cancel` | `202`: the job stops after its current pages' checkpoints; a rerun of the same job directory resumes |
//! | `GET /metrics` | Prometheus text ([`crate::metrics`]) |
//! | `GET /health/liveness`, `GET /health/readiness` | `200 OK`; readiness `{"status": "UP", "running_job": id or null}` |
//!
//! POSTs need `Authorization: Bearer <token>` when `admin.bearer_token` is set. Refusals get
//! `{"error": "...", "status": N}`.
//!
//! # Layout
//! - `Tracker`: one job's status, an [`Observer`] of its events.
//! - [`Jobs`]: starting, listing, cancelling, waiting for jobs.
//! - [`Api`] and [`ApiError`]: routing and refusals.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferry_service::http::{
    BodyError, Handler, TokenError, check_bearer, error_response, json_response, metrics_response,
    read_body, text_response,
};
use ferry_service::value::Secret;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::config::MigratorConfig;
use crate::job::{JobSpec, Phase};
use crate::metrics::Metrics;
use crate::progress::{Event, Fanout, Observer, TableName};
use crate::{Cancel, JobControl, JobReport};

/// Finished jobs kept for `GET /jobs`; older ones are forgotten.
pub const MAX_KEPT_JOBS: usize = 100;
/// Error messages kept per job (retries can repeat for a long time); the count goes on.
const MAX_ERRORS: usize = 50;
/// Largest `POST /jobs` body.
const MAX_BODY: usize = 64 * 1024;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Debug, Clone)]
struct TableStatus {
    table: TableName,
    phase: Option<Phase>,
    ranges_total: u32,
    ranges_done: u32,
    rows: u64,
    bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Cancelling,
    Done,
    Failed,
    Cancelled,
    /// The job could not start (unreachable cluster, nothing selected …).
    Error,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Cancelling => "cancelling",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Error => "error",
        }
    }

    fn finished(self) -> bool {
        !matches!(self, Self::Running | Self::Cancelling)
    }
}

#[derive(Debug)]
struct Status {
    state: State,
    tables: Vec<TableStatus>,
    errors: Vec<String>,
    error_count: u64,
    started_at: u64,
    updated_at: u64,
    completed_at: Option<u64>,
}

/// One job's status, kept up to date from its events.
#[derive(Debug)]
struct Tracker {
    id: String,
    cancel: Cancel,
    /// The job's table queue, open to the proxies' requests.
    control: Arc<JobControl>,
    status: Mutex<Status>,
    /// Flips to true when the job ended; [`Jobs::wait`] waits on it.
    finished: watch::Sender<Option<Result<JobReport, String>>>,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn table<'a>(s: &'a mut Status, t: &TableName) -> &'a mut TableStatus {
        let i = match s.tables.iter().position(|x| &x.table == t) {
            Some(i) => i,
            None => {
                s.tables.push(TableStatus {
                    table: t.clone(),
                    phase: None,
                    ranges_total: 0,
                    ranges_done: 0,
                    rows: 0,
                    bytes: 0,
                });
                s.tables.len() - 1
            }
        };
        &mut s.tables[i]
    }

    fn error(s: &mut Status, message: String) {
        s.error_count += 1;
        if s.errors.len() < MAX_ERRORS {
            s.errors.push(message);
        }
    }

    fn end(&self, outcome: Result<JobReport, String>) {
        {
            let mut s = self.lock();
            s.state = match &outcome {
                Ok(r) if r.succeeded() => State::Done,
                Ok(r) if r.tables.iter().any(|t| matches!(t.phase, Phase::Failed(_))) => {
                    State::Failed
                }
                Ok(_) => State::Cancelled,
                Err(e) => {
                    Self::error(&mut s, e.clone());
                    State::Error
                }
            };
            let now = now_ms();
            s.updated_at = now;
            s.completed_at = Some(now);
        }
        self.finished.send_replace(Some(outcome));
    }

    fn view(&self) -> Value {
        let s = self.lock();
        let (mut ranges_total, mut ranges_done, mut rows, mut bytes) = (0u64, 0u64, 0u64, 0u64);
        let mut completed = 0usize;
        let tables: Vec<Value> = s
            .tables
            .iter()
            .map(|t| {
                ranges_total += u64::from(t.ranges_total);
                ranges_done += u64::from(t.ranges_done);
                rows += t.rows;
                bytes += t.bytes;
                if matches!(t.phase, Some(Phase::Done | Phase::Failed(_))) {
                    completed += 1;
                }
                let (phase, reason) = match &t.phase {
                    None => ("PENDING".to_owned(), None),
                    Some(Phase::Failed(r)) => ("FAILED".to_owned(), Some(r.clone())),
                    Some(p) => (p.to_string(), None),
                };
                json!({
                    "table": t.table.to_string(),
                    "phase": phase,
                    "reason": reason,
                    "ranges_total": t.ranges_total,
                    "ranges_done": t.ranges_done,
                    "rows": t.rows,
                    "bytes": t.bytes,
                })
            })
            .collect();
        // Share of all planned ranges; a table not planned yet counts as one range not done,
        // so the percentage cannot reach 100 before every table is planned.
        let unplanned = s.tables.iter().filter(|t| t.ranges_total == 0).count() as u64;
        let percentage = if s.state == State::Done {
            100.0
        } else {
            let total = ranges_total + unplanned;
            if total == 0 {
                0.0
            } else {
                (ranges_done as f64 * 1000.0 / total as f64).round() / 10.0
            }
        };
        json!({
            "id": self.id,
            "state": s.state.name(),
            "tables_total": s.tables.len(),
            "tables_completed": completed,
            "tables": tables,
            "ranges_total": ranges_total,
            "ranges_done": ranges_done,
            "rows": rows,
            "bytes": bytes,
            "percentage": percentage,
            "errors": s.errors,
            "error_count": s.error_count,
            "started_at_ms": s.started_at,
            "updated_at_ms": s.updated_at,
            "completed_at_ms": s.completed_at,
        })
    }
}

impl Observer for Tracker {
    fn event(&self, event: &Event) {
        let mut s = self.lock();
        s.updated_at = now_ms();
        match event {
            Event::JobPlanned { tables } => {
                for t in tables {
                    Self::table(&mut s, t);
                }
            }
            Event::Phase { table, phase } => {
                if let Phase::Failed(reason) = phase {
                    Self::error(&mut s, format!("{table}: {reason}"));
                }
                Self::table(&mut s, table).phase = Some(phase.clone());
            }
            Event::RangesPlanned {
                table,
                total,
                already_done,
            } => {
                let t = Self::table(&mut s, table);
                t.ranges_total = *total;
                t.ranges_done = *already_done;
            }
            Event::Written { table, rows, bytes } => {
                let t = Self::table(&mut s, table);
                t.rows += rows;
                t.bytes += bytes;
            }
            Event::RangeDone { table, .. } => Self::table(&mut s, table).ranges_done += 1,
            Event::Retry {
                table,
                range,
                attempt,
                error,
            } => Self::error(
                &mut s,
                format!("{table} range #{range} attempt {attempt}: {error}"),
            ),
            Event::Warning { table, message } => {
                Self::error(&mut s, format!("{table} (warning): {message}"));
            }
            _ => {}
        }
    }
}

/// Why a job could not be started or cancelled.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JobsError {
    #[error("job {0} is running; one job at a time (cancel it with POST /jobs/{0}/cancel)")]
    Busy(String),
    #[error("no job {0}")]
    NoSuchJob(String),
    #[error("job {id} already ended ({state})")]
    Ended { id: String, state: &'static str },
}

/// The jobs of this process: at most one running.
pub struct Jobs {
    metrics: Arc<Metrics>,
    /// Also told every event (progress bars, logs).
    extra: Arc<dyn Observer>,
    state: Mutex<JobsState>,
}

#[derive(Default)]
struct JobsState {
    next_id: u64,
    /// Newest last; bounded to [`MAX_KEPT_JOBS`] finished ones plus the running one.
    jobs: VecDeque<Arc<Tracker>>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Jobs")
    }
}

impl Jobs {
    pub fn new(metrics: Arc<Metrics>, extra: Arc<dyn Observer>) -> Self {
        Self {
            metrics,
            extra,
            state: Mutex::new(JobsState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, JobsState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The running job's id.
    pub fn running(&self) -> Option<String> {
        self.lock()
            .jobs
            .iter()
            .find(|t| !t.lock().state.finished())
            .map(|t| t.id.clone())
    }

    /// The running job's table queue.
    pub fn running_control(&self) -> Option<Arc<JobControl>> {
        self.lock()
            .jobs
            .iter()
            .find(|t| !t.lock().state.finished())
            .map(|t| t.control.clone())
    }

    /// Starts `spec` in the background; its id.
    pub fn start(&self, spec: JobSpec) -> Result<String, JobsError> {
        self.start_controlled(spec, Arc::new(JobControl::new()))
    }

    /// [`Jobs::start`] with `control` as the job's table queue (e.g. one whose tables start
    /// from fresh checkpoints, [`JobControl::fresh`]).
    pub fn start_controlled(
        &self,
        spec: JobSpec,
        control: Arc<JobControl>,
    ) -> Result<String, JobsError> {
        let mut st = self.lock();
        if let Some(t) = st.jobs.iter().find(|t| !t.lock().state.finished()) {
            return Err(JobsError::Busy(t.id.clone()));
        }
        st.next_id += 1;
        let now = now_ms();
        let tracker = Arc::new(Tracker {
            id: st.next_id.to_string(),
            cancel: Cancel::new(),
            control,
            status: Mutex::new(Status {
                state: State::Running,
                tables: Vec::new(),
                errors: Vec::new(),
                error_count: 0,
                started_at: now,
                updated_at: now,
                completed_at: None,
            }),
            finished: watch::channel(None).0,
        });
        st.jobs.push_back(tracker.clone());
        while st.jobs.len() > MAX_KEPT_JOBS + 1 {
            st.jobs.pop_front();
        }
        drop(st);
        let observer: Arc<dyn Observer> = Arc::new(Fanout(vec![
            tracker.clone(),
            self.metrics.clone(),
            self.extra.clone(),
        ]));
        let id = tracker.id.clone();
        tracing::info!(job = %id, "job started");
        tokio::spawn(async move {
            let outcome = crate::run_controlled(
                spec,
                observer,
                tracker.cancel.clone(),
                tracker.control.clone(),
            )
            .await
            .map_err(|e| e.to_string());
            tracker.end(outcome);
            tracing::info!(job = %tracker.id, state = tracker.lock().state.name(), "job ended");
        });
        Ok(id)
    }

    fn find(&self, id: &str) -> Option<Arc<Tracker>> {
        self.lock().jobs.iter().find(|t| t.id == id).cloned()
    }

    /// A job's status as `GET /jobs/{id}` shows it.
    pub fn status(&self, id: &str) -> Option<Value> {
        self.find(id).map(|t| t.view())
    }

    pub fn list(&self) -> Value {
        let jobs: Vec<Arc<Tracker>> = self.lock().jobs.iter().cloned().collect();
        json!({"jobs": jobs.iter().map(|t| t.view()).collect::<Vec<_>>()})
    }

    /// Asks job `id` to stop at its next checkpoint.
    pub fn cancel(&self, id: &str) -> Result<(), JobsError> {
        let t = self
            .find(id)
            .ok_or_else(|| JobsError::NoSuchJob(id.to_owned()))?;
        let mut s = t.lock();
        if s.state.finished() {
            return Err(JobsError::Ended {
                id: id.to_owned(),
                state: s.state.name(),
            });
        }
        s.state = State::Cancelling;
        s.updated_at = now_ms();
        drop(s);
        t.cancel.cancel();
        tracing::info!(job = %id, "job cancel requested");
        Ok(())
    }

    /// Waits until job `id` ends: the core's report, or why the job could not start.
    pub async fn wait(&self, id: &str) -> Option<Result<JobReport, String>> {
        let t = self.find(id)?;
        let mut rx = t.finished.subscribe();
        let ended = rx.wait_for(Option::is_some).await.ok()?;
        ended.clone()
    }
}

/// Why an API request was refused; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("no endpoint {path}")]
    NoEndpoint { path: String },
    #[error("method {method} is not allowed on {path} (allowed: {allowed})")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: &'static str,
    },
    #[error("this endpoint needs the header `Authorization: Bearer <token>` (admin.bearer_token)")]
    MissingToken,
    #[error("the bearer token does not match admin.bearer_token")]
    WrongToken,
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("the body is not UTF-8 JSON")]
    NotText,
    #[error("{0}")]
    BadJob(ferry_service::ConfigErrors),
    #[error(transparent)]
    Jobs(#[from] JobsError),
    #[error("cannot render the metrics: {0}")]
    Render(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NoEndpoint { .. } | Self::Jobs(JobsError::NoSuchJob(_)) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::MissingToken | Self::WrongToken => StatusCode::UNAUTHORIZED,
            Self::Body(BodyError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(_) | Self::NotText | Self::BadJob(_) => StatusCode::BAD_REQUEST,
            Self::Jobs(_) => StatusCode::CONFLICT,
            Self::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The migrator's admin endpoints.
#[derive(Debug)]
pub struct Api {
    jobs: Arc<Jobs>,
    metrics: Arc<Metrics>,
    /// The service's config: a posted job's keys go over it.
    config: MigratorConfig,
    token: Option<Secret>,
}

impl Api {
    pub fn new(jobs: Arc<Jobs>, metrics: Arc<Metrics>, config: MigratorConfig) -> Self {
        Self {
            jobs,
            metrics,
            token: config.admin.bearer_token.clone(),
            config,
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, ApiError> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let not_allowed = |allowed: &'static str| ApiError::MethodNotAllowed {
            method: method.to_string(),
            path: path.clone(),
            allowed,
        };
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match segments.as_slice() {
            ["metrics"] => match method {
                Method::GET => {
                    let text = self
                        .metrics
                        .render()
                        .map_err(|e| ApiError::Render(e.to_string()))?;
                    Ok(metrics_response(text))
                }
                _ => Err(not_allowed("GET")),
            },
            ["health", "liveness"] => match method {
                Method::GET => Ok(text_response(StatusCode::OK, "OK\n")),
                _ => Err(not_allowed("GET")),
            },
            ["health", "readiness"] => match method {
                Method::GET => Ok(json_response(
                    StatusCode::OK,
                    &json!({"status": "UP", "running_job": self.jobs.running()}),
                )),
                _ => Err(not_allowed("GET")),
            },
            ["jobs"] => match method {
                Method::GET => Ok(json_response(StatusCode::OK, &self.jobs.list())),
                Method::POST => self.post_job(req).await,
                _ => Err(not_allowed("GET, POST")),
            },
            ["jobs", id] => match method {
                Method::GET => self
                    .jobs
                    .status(id)
                    .map(|v| json_response(StatusCode::OK, &v))
                    .ok_or_else(|| JobsError::NoSuchJob((*id).to_owned()).into()),
                _ => Err(not_allowed("GET")),
            },
            ["jobs", id, "cancel"] => match method {
                Method::POST => {
                    self.authorize(&req)?;
                    self.jobs.cancel(id)?;
                    Ok(json_response(
                        StatusCode::ACCEPTED,
                        &json!({"id": id, "state": "cancelling"}),
                    ))
                }
                _ => Err(not_allowed("POST")),
            },
            _ => Err(ApiError::NoEndpoint { path }),
        }
    }

    async fn post_job(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, ApiError> {
        self.authorize(&req)?;
        let body = read_body(req, MAX_BODY).await?;
        let text = std::str::from_utf8(&body).map_err(|_| ApiError::NotText)?;
        // JSON is YAML: the same loader and key table as the config file.
        let config = self.config.with_job(text).map_err(ApiError::BadJob)?;
        let id = self.jobs.start(config.job_spec())?;
        Ok(json_response(StatusCode::CREATED, &json!({"id": id})))
    }

    fn authorize(&self, req: &Request<Incoming>) -> Result<(), ApiError> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        check_bearer(req, token.expose()).map_err(|e| match e {
            TokenError::Missing => ApiError::MissingToken,
            _ => ApiError::WrongToken,
        })
    }
}

impl Handler for Api {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        match self.route(req).await {
            Ok(resp) => {
                tracing::debug!(%method, %path, status = resp.status().as_u16(), "admin request");
                resp
            }
            Err(e) => {
                let status = e.status();
                tracing::debug!(%method, %path, status = status.as_u16(), error = %e, "admin request refused");
                let mut resp = error_response(status, &e.to_string());
                match &e {
                    ApiError::MethodNotAllowed { allowed, .. } => {
                        resp.headers_mut()
                            .insert(ALLOW, HeaderValue::from_static(allowed));
                    }
                    ApiError::MissingToken | ApiError::WrongToken => {
                        resp.headers_mut()
                            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    }
                    _ => {}
                }
                resp
            }
        }
    }
}
