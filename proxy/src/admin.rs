//! The proxy's admin HTTP server (HTTP/1, default port 14001): metrics, health, and the live
//! switches an operator flips at cutover.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text (404 when `admin.metrics_enabled` is false) |
//! | `GET /health/liveness` | `200 OK` while the process serves |
//! | `GET /health/readiness` | zdm-proxy's JSON: per-cluster `Status` `UP`/`DOWN`/`STARTUP`, address and failure counts; 200 only when both clusters are UP, else 503 |
//! | `GET /primary`, `PUT /primary` | `{"primary": "origin"}`; PUT switches reads live (no reconnect); to `target` only once every table the migrator reported is validated with 0 mismatches (409 otherwise), unless `?force=true` |
//! | `GET /read-mode`, `PUT /read-mode` | `{"read_mode": "primary-only"}` or `"dual-async"` |
//! | `GET /status` | primary, read mode, policy, client connections, versions, prepared cache, dual-read counts per table, repairs pending, the migration per table (Update channel) |
//!
//! PUTs need `Authorization: Bearer <token>` when `admin.bearer_token` is set (401 otherwise).
//! Mistakes get a 4xx with `{"error": "...", "status": N}` (see [`AdminError`]). Values accept
//! zdm-proxy's spellings too (`TARGET`, `DUAL_ASYNC_ON_SECONDARY`).
//!
//! # Layout
//! - `AdminServer`: ferry-service's server skeleton (connection limit, header timeout, graceful
//!   stop) serving `Admin`.
//! - `Admin`: routing and the endpoints over the shared state; the proxy's `Context` is set
//!   once both clusters answered, so `/health/readiness` says STARTUP before that.
//! - [`AdminError`]: every refusal and its HTTP status.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use ferry_service::http::{
    BodyError, Handler, TokenError, check_bearer, error_response, json_response, metrics_response,
    read_body, text_response,
};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{AdminConfig, ProxyConfig};
use crate::health::{Health, Status};
use crate::metrics::{Metrics, Snapshot};
use crate::proxy::Context;
use crate::settings::{BadSetting, ClusterId, ReadMode};

/// The server skeleton (binding, accept loop, connection limit, header timeout, graceful stop)
/// is ferry-service's.
pub(crate) use ferry_service::http::AdminServer;

/// Largest PUT body: `{"primary": "target"}` is 21 bytes.
const MAX_BODY: usize = 4 * 1024;

/// Why an admin request was refused; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    #[error("no endpoint {path}")]
    NoEndpoint { path: String },
    #[error("method {method} is not allowed on {path} (allowed: {allowed})")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: &'static str,
    },
    #[error("metrics are disabled (admin.metrics_enabled is false)")]
    MetricsDisabled,
    #[error("this endpoint needs the header `Authorization: Bearer <token>` (admin.bearer_token)")]
    MissingToken,
    #[error("the bearer token does not match admin.bearer_token")]
    WrongToken,
    #[error("invalid JSON body: {reason}; expected {expected}")]
    BadJson {
        reason: String,
        expected: &'static str,
    },
    #[error(transparent)]
    BadValue(#[from] BadSetting),
    #[error("request body is larger than {MAX_BODY} bytes")]
    BodyTooLarge,
    #[error("cannot read the request body: {0}")]
    Body(String),
    #[error("the proxy is starting: both clusters have not answered yet")]
    Starting,
    #[error("cannot render the metrics: {0}")]
    Render(String),
    /// Expected workers that have not reported, tables not validated (not both empty).
    #[error(
        "not switching the primary to target: {}; wait for the migrator, or add ?force=true",
        crate::migration::cutover_refusal(workers, tables)
    )]
    NotValidated {
        workers: Vec<String>,
        tables: Vec<String>,
    },
}

impl AdminError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NoEndpoint { .. } | Self::MetricsDisabled => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::MissingToken | Self::WrongToken => StatusCode::UNAUTHORIZED,
            Self::BadJson { .. } | Self::BadValue(_) | Self::Body(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Starting => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotValidated { .. } => StatusCode::CONFLICT,
            Self::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// What the endpoints read and switch.
#[derive(Debug)]
pub(crate) struct Admin {
    config: AdminConfig,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Each cluster's contact points as configured, for readiness' `Addr`.
    addresses: [String; 2],
    /// The primary before the proxy started, for `/metrics` during start-up.
    primary_at_start: ClusterId,
    /// The read mode before the proxy started, for `/metrics` during start-up.
    read_mode_at_start: ReadMode,
    /// Set once both clusters answered and the proxy listens.
    ctx: OnceLock<Arc<Context>>,
}

impl Admin {
    pub(crate) fn new(config: &ProxyConfig, metrics: Arc<Metrics>, health: Arc<Health>) -> Self {
        let addresses = ClusterId::BOTH.map(|c| {
            config
                .cluster(c)
                .contact_points
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        });
        Self {
            config: config.admin.clone(),
            metrics,
            health,
            addresses,
            primary_at_start: config.primary,
            read_mode_at_start: config.read_mode,
            ctx: OnceLock::new(),
        }
    }

    /// The proxy is serving: the endpoints that need it start answering.
    pub(crate) fn started(&self, ctx: Arc<Context>) {
        let _ = self.ctx.set(ctx);
    }

    fn ctx(&self) -> Result<&Arc<Context>, AdminError> {
        self.ctx.get().ok_or(AdminError::Starting)
    }

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
                    AdminError::MethodNotAllowed { allowed, .. } => {
                        resp.headers_mut()
                            .insert(ALLOW, HeaderValue::from_static(allowed));
                    }
                    AdminError::MissingToken | AdminError::WrongToken => {
                        resp.headers_mut()
                            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    }
                    _ => {}
                }
                resp
            }
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, AdminError> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let not_allowed = |allowed: &'static str| AdminError::MethodNotAllowed {
            method: method.to_string(),
            path: path.clone(),
            allowed,
        };
        match path.trim_end_matches('/') {
            "/metrics" => match method {
                Method::GET => self.metrics(),
                _ => Err(not_allowed("GET")),
            },
            "/health/liveness" => match method {
                Method::GET => Ok(text_response(StatusCode::OK, "OK\n")),
                _ => Err(not_allowed("GET")),
            },
            "/health/readiness" => match method {
                Method::GET => Ok(self.readiness()),
                _ => Err(not_allowed("GET")),
            },
            "/primary" => match method {
                Method::GET => Ok(json_ok(
                    json!({"primary": self.ctx()?.live.primary().name()}),
                )),
                Method::PUT => self.put_primary(req).await,
                _ => Err(not_allowed("GET, PUT")),
            },
            "/read-mode" => match method {
                Method::GET => {
                    let mode = self.ctx()?.live.read_mode();
                    Ok(json_ok(json!({"read_mode": mode.name()})))
                }
                Method::PUT => self.put_read_mode(req).await,
                _ => Err(not_allowed("GET, PUT")),
            },
            "/status" => match method {
                Method::GET => self.status(),
                _ => Err(not_allowed("GET")),
            },
            _ => Err(AdminError::NoEndpoint { path }),
        }
    }

    fn metrics(&self) -> Result<Response<Full<Bytes>>, AdminError> {
        if !self.config.metrics_enabled {
            return Err(AdminError::MetricsDisabled);
        }
        let ready = ClusterId::BOTH.map(|c| self.health.status(c) == Status::Up);
        let snapshot = match self.ctx.get() {
            Some(ctx) => Snapshot {
                prepared_entries: ctx.prepared.len(),
                prepared_misses: ctx.prepared.misses(),
                repairs_pending: ctx.repairs.pending(),
                journal_overflows: ctx.repairs.journal().map_or(0, |j| {
                    j.counts()
                        .overflow
                        .load(std::sync::atomic::Ordering::Relaxed)
                }),
                journal_write_errors: ctx.repairs.journal().map_or(0, |j| {
                    j.counts()
                        .write_errors
                        .load(std::sync::atomic::Ordering::Relaxed)
                }),
                ready,
                primary: ctx.live.primary(),
                read_mode: ctx.live.read_mode(),
            },
            None => Snapshot {
                prepared_entries: 0,
                prepared_misses: 0,
                repairs_pending: 0,
                journal_overflows: 0,
                journal_write_errors: 0,
                ready,
                primary: self.primary_at_start,
                read_mode: self.read_mode_at_start,
            },
        };
        let text = self
            .metrics
            .render(&snapshot)
            .map_err(|e| AdminError::Render(e.to_string()))?;
        Ok(metrics_response(text))
    }

    /// zdm-proxy's readiness body, field for field, plus the newest failure.
    fn readiness(&self) -> Response<Full<Bytes>> {
        let cluster = |c: ClusterId| {
            let v = self.health.view(c);
            json!({
                "Addr": self.addresses[c.index()],
                "CurrentFailureCount": v.consecutive_failures,
                "FailureCountThreshold": v.threshold,
                "TotalFailureCount": v.total_failures,
                "LastFailure": v.last_failure,
                "Status": v.status.name(),
            })
        };
        let overall = self.health.overall();
        let body = json!({
            "OriginStatus": cluster(ClusterId::Origin),
            "TargetStatus": cluster(ClusterId::Target),
            "Status": overall.name(),
        });
        let status = if overall == Status::Up {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        json_response(status, &body)
    }

    async fn put_primary(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, AdminError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            primary: String,
        }
        self.authorize(&req)?;
        let ctx = self.ctx()?;
        let force = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "force=true" || p == "force"));
        let body: Body = read_json(req, r#"{"primary": "origin" | "target"}"#).await?;
        let primary = ClusterId::from_str(&body.primary)?;
        let previous = ctx.live.primary();
        // Only towards target: going back to origin is the way out and is never refused.
        if primary == ClusterId::Target && previous != ClusterId::Target {
            let workers = ctx.migration.missing_migrators();
            let tables = ctx.migration.cutover_blockers();
            if !workers.is_empty() || !tables.is_empty() {
                if !force {
                    return Err(AdminError::NotValidated { workers, tables });
                }
                tracing::warn!(
                    workers = workers.len(),
                    tables = tables.len(),
                    "primary switched to target with ?force=true before validation: {}",
                    crate::migration::cutover_refusal(&workers, &tables)
                );
            }
        }
        ctx.live.set_primary(primary);
        if previous != primary {
            tracing::info!(%previous, %primary, "primary switched through the admin API");
        }
        Ok(json_ok(
            json!({"primary": primary.name(), "previous": previous.name()}),
        ))
    }

    async fn put_read_mode(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, AdminError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            read_mode: String,
        }
        self.authorize(&req)?;
        let ctx = self.ctx()?;
        let body: Body = read_json(req, r#"{"read_mode": "primary-only" | "dual-async"}"#).await?;
        let mode = ReadMode::from_str(&body.read_mode)?;
        let previous = ctx.live.read_mode();
        ctx.live.set_read_mode(mode);
        if previous != mode {
            tracing::info!(%previous, read_mode = %mode, "read mode switched through the admin API");
        }
        Ok(json_ok(
            json!({"read_mode": mode.name(), "previous": previous.name()}),
        ))
    }

    /// Checks the bearer token when one is configured.
    fn authorize(&self, req: &Request<Incoming>) -> Result<(), AdminError> {
        let Some(token) = &self.config.bearer_token else {
            return Ok(());
        };
        check_bearer(req, token.expose()).map_err(|e| match e {
            TokenError::Missing => AdminError::MissingToken,
            _ => AdminError::WrongToken,
        })
    }

    fn status(&self) -> Result<Response<Full<Bytes>>, AdminError> {
        let ctx = self.ctx()?;
        let dual_tables: serde_json::Map<String, Value> = ctx
            .mirror_stats
            .tables()
            .into_iter()
            .map(|(t, c)| {
                let counts = json!({
                    "compared": c.compared,
                    "mismatches": c.mismatches,
                    "secondary_failures": c.secondary_failures,
                });
                (t.to_string(), counts)
            })
            .collect();
        let total = ctx.mirror_stats.total();
        let repair_tables: serde_json::Map<String, Value> = ctx
            .repairs
            .tables()
            .into_iter()
            .map(|(t, c)| {
                (
                    t.to_string(),
                    json!({"pending": c.pending, "total": c.total}),
                )
            })
            .collect();
        let body = json!({
            "primary": ctx.live.primary().name(),
            "read_mode": ctx.live.read_mode().name(),
            "target_failure_policy": ctx.config.target_failure_policy.name(),
            "health": self.health.overall().name(),
            "client_connections": self.metrics.client_connections(),
            "protocol_versions": ctx.versions.iter().map(|v| format!("v{}", v.as_u8())).collect::<Vec<_>>(),
            "compressions": ctx.compressions.iter().map(|c| c.name()).collect::<Vec<_>>(),
            "prepared_cache": {
                "entries": ctx.prepared.len(),
                "capacity": ctx.config.prepared_cache_capacity,
                "misses": ctx.prepared.misses(),
            },
            "dual_reads": {
                "compared": total.compared,
                "mismatches": total.mismatches,
                "secondary_failures": total.secondary_failures,
                "tables": dual_tables,
            },
            "repairs": {
                "pending": ctx.repairs.pending(),
                "tables": repair_tables,
                "journal": ctx.repairs.journal().map(|j| {
                    let c = j.counts();
                    json!({
                        "path": j.path().display().to_string(),
                        "queue_overflows": c.overflow.load(std::sync::atomic::Ordering::Relaxed),
                        "write_errors": c.write_errors.load(std::sync::atomic::Ordering::Relaxed),
                    })
                }),
                "requests": ctx.update.as_ref().map(|u| {
                    let s = u.status();
                    json!({
                        "partitions_requested": s.partitions_requested,
                        "remigrations_requested": s.remigrations_requested,
                        "awaiting_ack": s.awaiting_ack,
                        "refused": s.refused,
                        "refused_not_now": s.refused_not_now,
                        "held": !s.repairs_held.is_empty(),
                        "unrepairable": s.unrepairable,
                    })
                }),
            },
            "migration": migration_status(ctx),
        });
        Ok(json_ok(body))
    }
}

/// The Update channel and what the migrator reported, per table.
fn migration_status(ctx: &Context) -> Value {
    let millis = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    let tables: serde_json::Map<String, Value> = ctx
        .migration
        .tables()
        .into_iter()
        .map(|(name, t)| {
            let state = json!({
                "phase": t.phase.name(),
                "ranges_done": t.ranges_done,
                "ranges_total": t.ranges_total,
                "rows": t.rows,
                "rows_checked": t.rows_checked,
                "mismatches": t.mismatches,
                "dual_reads": t.backfilled,
                "reason": t.reason,
                "replayed": t.replayed,
                "updated_unix_ms": millis(t.updated),
            });
            (name.to_string(), state)
        })
        .collect();
    let peer = |p: &ferry_update::Peer| {
        json!({
            "name": p.name,
            "addr": p.addr.to_string(),
            "protocol_version": p.protocol_version,
        })
    };
    let channel = ctx.update.as_ref().map(|u| {
        let s = u.status();
        // Every worker with a lane: connected, or away with requests kept for its return;
        // then the expected ones without: never connected, or gone past the channel's linger.
        let expected = ctx.migration.expected();
        let is_expected = |name: &str| expected.iter().any(|(e, _)| e == name);
        let mut migrators: Vec<Value> = s
            .channel
            .lanes
            .iter()
            .filter(|l| l.purpose == ferry_update::Purpose::Migrate)
            .filter_map(|l| {
                let name = l.name.as_ref()?;
                Some(json!({
                    "name": name,
                    "connected": l.peer.is_some(),
                    "never_connected": false,
                    "expected": is_expected(name),
                    "addr": l.peer.as_ref().map(|p| p.addr.to_string()),
                    "protocol_version": l.peer.as_ref().map(|p| p.protocol_version),
                    "queued": l.queued,
                    "tables": s.tables_by_migrator.get(name).copied().unwrap_or(0),
                    "repairs_held": s.repairs_held.contains(name),
                }))
            })
            .collect();
        let with_lane: Vec<&String> = migrators_named(&s.channel);
        for (name, seen) in expected.iter().filter(|(n, _)| !with_lane.contains(&n)) {
            migrators.push(json!({
                "name": name,
                "connected": false,
                "never_connected": !seen,
                "expected": true,
                "addr": null,
                "protocol_version": null,
                "queued": 0,
                "tables": s.tables_by_migrator.get(name).copied().unwrap_or(0),
                "repairs_held": s.repairs_held.contains(name),
            }));
        }
        json!({
            "listen": s.listen.to_string(),
            "migrator": s.channel.peer.as_ref().map(peer),
            "migrators": migrators,
            "validator": s.channel.other_peers.iter()
                .find(|p| p.purpose == ferry_update::Purpose::Validate)
                .map(peer),
            "queued": s.channel.queued,
            "received_total": s.channel.received_total,
            "acked_total": s.channel.acked_total,
            "nacked_total": s.channel.nacked_total,
            "connects_total": s.channel.connects_total,
            "remigrations_waiting": s.remigrations_waiting,
        })
    });
    let jobs = ctx.migration.jobs();
    let job_json = |j: &crate::migration::JobState| {
        json!({
            "migrator": j.migrator,
            "name": j.name,
            "tables": j.tables,
            "finished": j.finished.is_some(),
            "tables_done": j.finished.map(|f| f.0),
            "tables_failed": j.finished.map(|f| f.1),
            "updated_unix_ms": millis(j.updated),
        })
    };
    // The one most recently reported, as before several workers: `jobs` has them all.
    let job = jobs.iter().max_by_key(|j| j.updated).map(job_json);
    json!({
        "update_channel": channel,
        "reported": ctx.migration.reported(),
        "job": job,
        "jobs": jobs.iter().map(job_json).collect::<Vec<_>>(),
        "tables": tables,
        "cutover_blockers": ctx.migration.cutover_blockers(),
        "missing_migrators": ctx.migration.missing_migrators(),
    })
}

/// The names of the `migrate` workers with a lane.
fn migrators_named(status: &ferry_update::Status) -> Vec<&String> {
    status
        .lanes
        .iter()
        .filter(|l| l.purpose == ferry_update::Purpose::Migrate)
        .filter_map(|l| l.name.as_ref())
        .collect()
}

async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
    expected: &'static str,
) -> Result<T, AdminError> {
    let bytes = read_body(req, MAX_BODY).await.map_err(|e| match e {
        BodyError::TooLarge { .. } => AdminError::BodyTooLarge,
        other => AdminError::Body(other.to_string()),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| AdminError::BadJson {
        reason: e.to_string(),
        expected,
    })
}

fn json_ok(body: Value) -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, &body)
}

impl Handler for Admin {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        Admin::handle(self, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        use ferry_service::http::same_secret;
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }

    #[test]
    fn every_refusal_is_a_client_error_except_rendering() {
        let e = AdminError::BadValue(BadSetting {
            what: "cluster",
            value: "both".into(),
            expected: "origin, target",
        });
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.to_string().contains("\"both\""), "{e}");
        assert_eq!(AdminError::WrongToken.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(AdminError::MetricsDisabled.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            AdminError::Starting.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
