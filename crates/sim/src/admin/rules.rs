//! Fault rules as JSON: the body of `POST /nodes/{id}/faults` parsed into a
//! [`RequestMatcher`] and a [`FaultAction`], and listed rules rendered back.
//!
//! ```json
//! {"match": {"opcode": "QUERY", "kind": "insert", "keyspace": "ks", "table": "t",
//!            "text_contains": "...", "consistency": "ONE"},
//!  "action": {"error": "write_timeout", "consistency": "QUORUM", "block_for": 2,
//!             "write_type": "SIMPLE"},
//!  "times": 1}
//! ```
//!
//! An action is exactly one of `{"delay_ms": N}`, `{"error": KIND, ...fields of KIND}` or
//! `{"connection": "close" | "reset"}`. Every field is optional except the action; fields
//! that do not apply to the chosen error are refused rather than silently ignored.

use std::time::Duration;

use ferry_cql::protocol::{Consistency, Opcode};
use ferry_cql::response::{ErrorKind, WriteType};
use ferry_cql::statement::classify::StatementKind;
use serde::{Deserialize, Serialize};

use crate::server::faults::{self, FaultAction, RequestMatcher, RuleInfo};

/// Longest delay a rule may ask for: long enough for any client-timeout test, short enough
/// that a typo (`delay_ms: 10000000`) does not wedge a node for hours.
pub(super) const MAX_DELAY_MS: u64 = 600_000;

/// Why a rule body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    #[error("unknown opcode {0:?}: rules match QUERY, PREPARE, EXECUTE or BATCH")]
    Opcode(String),
    #[error(
        "unknown statement kind {0:?}: expected e.g. select, insert, update, delete, batch, create_table"
    )]
    Kind(String),
    #[error("the action needs exactly one of delay_ms, error or connection; got {0}")]
    ActionShape(usize),
    #[error("delay_ms {given} is above the maximum {max}")]
    DelayTooLong { given: u64, max: u64 },
    #[error(
        "unknown error {0:?}: expected write_timeout, read_timeout, unavailable, overloaded or server_error"
    )]
    ErrorKind(String),
    #[error("field {field} does not apply to error {error}")]
    FieldNotApplicable {
        field: &'static str,
        error: &'static str,
    },
    #[error("field {field} does not apply to a {action} action")]
    FieldWithoutError {
        field: &'static str,
        action: &'static str,
    },
    #[error("unknown consistency {0:?}: expected e.g. ONE, QUORUM, LOCAL_QUORUM, ALL")]
    Consistency(String),
    #[error(
        "unknown write_type {0:?}: expected SIMPLE, BATCH, UNLOGGED_BATCH, COUNTER, BATCH_LOG, CAS, VIEW or CDC"
    )]
    WriteType(String),
    #[error("{field} must be at least 0, got {given}")]
    Negative { field: &'static str, given: i32 },
    #[error("unknown connection action {0:?}: expected close or reset")]
    Connection(String),
    #[error("times must be at least 1 (leave it out for a rule that never expires)")]
    ZeroTimes,
}

/// The body of `POST /nodes/{id}/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleBody {
    #[serde(default, rename = "match")]
    matcher: MatchBody,
    action: ActionBody,
    /// Activations before the rule removes itself; absent means until deleted.
    times: Option<u64>,
}

/// Which requests a rule applies to; every given field must match.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MatchBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    opcode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keyspace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    table: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text_contains: Option<String>,
    /// The request's consistency level (QUERY, EXECUTE, BATCH).
    #[serde(skip_serializing_if = "Option::is_none")]
    consistency: Option<String>,
}

/// What a rule does. One struct with every field optional (rather than an untagged enum) so
/// a mistake gets a message naming the field instead of "did not match any variant".
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ActionBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    delay_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consistency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    block_for: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    write_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    required: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alive: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// One rule as `GET /nodes/{id}/faults` lists it.
#[derive(Debug, Serialize)]
pub(super) struct RuleView {
    id: u64,
    #[serde(rename = "match")]
    matcher: MatchBody,
    action: ActionBody,
    /// Activations left; absent for a rule that never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    times: Option<u64>,
}

/// A parsed rule, ready for [`crate::server::Faults::add_times`].
#[derive(Debug)]
pub(super) struct NewRule {
    pub(super) matcher: RequestMatcher,
    pub(super) action: FaultAction,
    pub(super) times: Option<u64>,
}

/// Opcodes a rule can match: the statement-carrying requests, the only ones rules see.
const OPCODES: [(&str, Opcode); 4] = [
    ("QUERY", Opcode::Query),
    ("PREPARE", Opcode::Prepare),
    ("EXECUTE", Opcode::Execute),
    ("BATCH", Opcode::Batch),
];

/// Statement kinds by their snake_case names (ferry-cql gives them no names of its own).
const KINDS: [(&str, StatementKind); 42] = {
    use StatementKind::*;
    [
        ("select", Select),
        ("insert", Insert),
        ("update", Update),
        ("delete", Delete),
        ("batch", Batch),
        ("use", Use),
        ("truncate", Truncate),
        ("create_keyspace", CreateKeyspace),
        ("alter_keyspace", AlterKeyspace),
        ("drop_keyspace", DropKeyspace),
        ("create_table", CreateTable),
        ("alter_table", AlterTable),
        ("drop_table", DropTable),
        ("create_type", CreateType),
        ("alter_type", AlterType),
        ("drop_type", DropType),
        ("create_index", CreateIndex),
        ("create_custom_index", CreateCustomIndex),
        ("drop_index", DropIndex),
        ("create_materialized_view", CreateMaterializedView),
        ("alter_materialized_view", AlterMaterializedView),
        ("drop_materialized_view", DropMaterializedView),
        ("create_function", CreateFunction),
        ("drop_function", DropFunction),
        ("create_aggregate", CreateAggregate),
        ("drop_aggregate", DropAggregate),
        ("create_trigger", CreateTrigger),
        ("drop_trigger", DropTrigger),
        ("create_role", CreateRole),
        ("alter_role", AlterRole),
        ("drop_role", DropRole),
        ("create_user", CreateUser),
        ("alter_user", AlterUser),
        ("drop_user", DropUser),
        ("add_identity", AddIdentity),
        ("drop_identity", DropIdentity),
        ("grant", Grant),
        ("revoke", Revoke),
        ("list_roles", ListRoles),
        ("list_users", ListUsers),
        ("list_superusers", ListSuperusers),
        ("describe", Describe),
    ]
};

const CONSISTENCIES: [Consistency; 11] = [
    Consistency::Any,
    Consistency::One,
    Consistency::Two,
    Consistency::Three,
    Consistency::Quorum,
    Consistency::All,
    Consistency::LocalQuorum,
    Consistency::EachQuorum,
    Consistency::Serial,
    Consistency::LocalSerial,
    Consistency::LocalOne,
];

impl RuleBody {
    pub(super) fn into_rule(self) -> Result<NewRule, RuleError> {
        if self.times == Some(0) {
            return Err(RuleError::ZeroTimes);
        }
        Ok(NewRule {
            matcher: self.matcher.into_matcher()?,
            action: self.action.into_action()?,
            times: self.times,
        })
    }
}

fn consistency_named(name: &str) -> Result<Consistency, RuleError> {
    CONSISTENCIES
        .iter()
        .find(|c| c.name().eq_ignore_ascii_case(name))
        .copied()
        .ok_or_else(|| RuleError::Consistency(name.to_owned()))
}

impl MatchBody {
    fn into_matcher(self) -> Result<RequestMatcher, RuleError> {
        let opcode = match self.opcode {
            None => None,
            Some(name) => Some(
                OPCODES
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                    .map(|(_, o)| *o)
                    .ok_or(RuleError::Opcode(name))?,
            ),
        };
        let kind = match self.kind {
            None => None,
            Some(name) => Some(
                KINDS
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                    .map(|(_, k)| *k)
                    .ok_or(RuleError::Kind(name))?,
            ),
        };
        let consistency = self
            .consistency
            .map(|name| consistency_named(&name))
            .transpose()?;
        Ok(RequestMatcher {
            opcode,
            kind,
            keyspace: self.keyspace,
            table: self.table,
            text_contains: self.text_contains,
            consistency,
        })
    }

    fn from_matcher(m: &RequestMatcher) -> Self {
        Self {
            opcode: m.opcode.map(|o| {
                OPCODES
                    .iter()
                    .find(|(_, x)| *x == o)
                    .map_or_else(|| format!("{o:?}").to_uppercase(), |(n, _)| (*n).to_owned())
            }),
            kind: m.kind.map(|k| {
                KINDS
                    .iter()
                    .find(|(_, x)| *x == k)
                    .map_or_else(|| format!("{k:?}"), |(n, _)| (*n).to_owned())
            }),
            keyspace: m.keyspace.clone(),
            table: m.table.clone(),
            text_contains: m.text_contains.clone(),
            consistency: m.consistency.map(|c| c.name().to_owned()),
        }
    }
}

impl ActionBody {
    fn into_action(self) -> Result<FaultAction, RuleError> {
        let shapes = [
            self.delay_ms.is_some(),
            self.error.is_some(),
            self.connection.is_some(),
        ];
        let given = shapes.iter().filter(|s| **s).count();
        if given != 1 {
            return Err(RuleError::ActionShape(given));
        }
        if let Some(ms) = self.delay_ms {
            self.only_error_fields("delay")?;
            if ms > MAX_DELAY_MS {
                return Err(RuleError::DelayTooLong {
                    given: ms,
                    max: MAX_DELAY_MS,
                });
            }
            return Ok(FaultAction::Delay(Duration::from_millis(ms)));
        }
        if let Some(how) = &self.connection {
            self.only_error_fields("connection")?;
            return match how.to_ascii_lowercase().as_str() {
                "close" => Ok(FaultAction::CloseConnection),
                "reset" => Ok(FaultAction::ResetConnection),
                _ => Err(RuleError::Connection(how.clone())),
            };
        }
        let name = self.error.clone().unwrap_or_default();
        let consistency = self.consistency()?;
        let error = match name.to_ascii_lowercase().as_str() {
            "write_timeout" => {
                self.refuse("write_timeout", &["required", "alive", "message"])?;
                let write_type = match &self.write_type {
                    None => WriteType::Simple,
                    Some(w) => match WriteType::from_name(&w.to_ascii_uppercase()) {
                        WriteType::Other(_) => return Err(RuleError::WriteType(w.clone())),
                        known => known,
                    },
                };
                faults::write_timeout(
                    consistency,
                    count("block_for", self.block_for, 1)?,
                    write_type,
                )
            }
            "read_timeout" => {
                self.refuse(
                    "read_timeout",
                    &["write_type", "required", "alive", "message"],
                )?;
                faults::read_timeout(consistency, count("block_for", self.block_for, 1)?)
            }
            "unavailable" => {
                self.refuse("unavailable", &["block_for", "write_type", "message"])?;
                faults::unavailable(
                    consistency,
                    count("required", self.required, 1)?,
                    count("alive", self.alive, 0)?,
                )
            }
            "overloaded" => {
                self.refuse(
                    "overloaded",
                    &[
                        "consistency",
                        "block_for",
                        "write_type",
                        "required",
                        "alive",
                        "message",
                    ],
                )?;
                faults::overloaded()
            }
            "server_error" => {
                self.refuse(
                    "server_error",
                    &[
                        "consistency",
                        "block_for",
                        "write_type",
                        "required",
                        "alive",
                    ],
                )?;
                faults::server_error(self.message.as_deref().unwrap_or("injected server error"))
            }
            _ => return Err(RuleError::ErrorKind(name)),
        };
        Ok(FaultAction::Error(error))
    }

    fn present(&self) -> [(&'static str, bool); 6] {
        [
            ("consistency", self.consistency.is_some()),
            ("block_for", self.block_for.is_some()),
            ("write_type", self.write_type.is_some()),
            ("required", self.required.is_some()),
            ("alive", self.alive.is_some()),
            ("message", self.message.is_some()),
        ]
    }

    fn only_error_fields(&self, action: &'static str) -> Result<(), RuleError> {
        match self.present().iter().find(|(_, p)| *p) {
            Some((field, _)) => Err(RuleError::FieldWithoutError { field, action }),
            None => Ok(()),
        }
    }

    fn refuse(&self, error: &'static str, fields: &[&'static str]) -> Result<(), RuleError> {
        match self
            .present()
            .iter()
            .find(|(f, p)| *p && fields.contains(f))
        {
            Some((field, _)) => Err(RuleError::FieldNotApplicable { field, error }),
            None => Ok(()),
        }
    }

    fn consistency(&self) -> Result<Consistency, RuleError> {
        match &self.consistency {
            Some(name) => consistency_named(name),
            None => Ok(Consistency::One),
        }
    }

    fn from_action(action: &FaultAction) -> Self {
        match action {
            FaultAction::Delay(d) => Self {
                delay_ms: Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                ..Self::default()
            },
            FaultAction::CloseConnection => Self {
                connection: Some("close".to_owned()),
                ..Self::default()
            },
            FaultAction::ResetConnection => Self {
                connection: Some("reset".to_owned()),
                ..Self::default()
            },
            FaultAction::Error(e) => {
                let mut out = Self {
                    error: Some(
                        e.code()
                            .map_or_else(|| e.kind.raw_code().to_string(), |c| c.name().to_owned()),
                    ),
                    message: Some(e.message.clone()),
                    ..Self::default()
                };
                match &e.kind {
                    ErrorKind::WriteTimeout {
                        consistency,
                        block_for,
                        write_type,
                        ..
                    } => {
                        out.consistency = Some(consistency.name().to_owned());
                        out.block_for = Some(*block_for);
                        out.write_type = Some(write_type.name().to_owned());
                    }
                    ErrorKind::ReadTimeout {
                        consistency,
                        block_for,
                        ..
                    } => {
                        out.consistency = Some(consistency.name().to_owned());
                        out.block_for = Some(*block_for);
                    }
                    ErrorKind::Unavailable {
                        consistency,
                        required,
                        alive,
                    } => {
                        out.consistency = Some(consistency.name().to_owned());
                        out.required = Some(*required);
                        out.alive = Some(*alive);
                    }
                    _ => {}
                }
                out
            }
        }
    }
}

/// A replica count field: `default` when absent, never negative.
fn count(field: &'static str, value: Option<i32>, default: i32) -> Result<i32, RuleError> {
    match value {
        Some(n) if n < 0 => Err(RuleError::Negative { field, given: n }),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

impl RuleView {
    pub(super) fn new(rule: &RuleInfo) -> Self {
        Self {
            id: rule.id.get(),
            matcher: MatchBody::from_matcher(&rule.matcher),
            action: ActionBody::from_action(&rule.action),
            times: rule.remaining,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<NewRule, RuleError> {
        let body: RuleBody = serde_json::from_str(json)
            .map_err(|e| RuleError::Opcode(format!("test body is not valid JSON: {e}")))?;
        body.into_rule()
    }

    #[test]
    fn every_error_kind_and_its_fields() {
        let r = parse(
            r#"{"match": {"opcode": "query", "kind": "INSERT", "keyspace": "ks", "table": "t"},
                "action": {"error": "write_timeout", "consistency": "quorum", "block_for": 2,
                           "write_type": "batch"},
                "times": 3}"#,
        )
        .expect("valid rule");
        assert_eq!(r.times, Some(3));
        assert_eq!(
            r.matcher,
            RequestMatcher::any()
                .opcode(Opcode::Query)
                .kind(StatementKind::Insert)
                .table("ks", "t")
        );
        assert_eq!(
            r.action,
            FaultAction::Error(faults::write_timeout(
                Consistency::Quorum,
                2,
                WriteType::Batch
            ))
        );
        let r = parse(r#"{"action": {"error": "unavailable", "required": 3, "alive": 1}}"#)
            .expect("valid rule");
        assert_eq!(
            r.action,
            FaultAction::Error(faults::unavailable(Consistency::One, 3, 1))
        );
        let r = parse(r#"{"action": {"error": "read_timeout"}}"#).expect("valid rule");
        assert_eq!(
            r.action,
            FaultAction::Error(faults::read_timeout(Consistency::One, 1))
        );
        let r = parse(r#"{"action": {"error": "server_error", "message": "boom"}}"#)
            .expect("valid rule");
        assert_eq!(r.action, FaultAction::Error(faults::server_error("boom")));
        let r = parse(r#"{"action": {"connection": "reset"}}"#).expect("valid rule");
        assert_eq!(r.action, FaultAction::ResetConnection);
        let r = parse(r#"{"action": {"delay_ms": 250}}"#).expect("valid rule");
        assert_eq!(r.action, FaultAction::Delay(Duration::from_millis(250)));
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (
                r#"{"action": {"error": "teapot"}}"#,
                "unknown error \"teapot\"",
            ),
            (
                r#"{"action": {}}"#,
                "exactly one of delay_ms, error or connection; got 0",
            ),
            (
                r#"{"action": {"delay_ms": 1, "error": "overloaded"}}"#,
                "got 2",
            ),
            (
                r#"{"action": {"error": "overloaded", "block_for": 1}}"#,
                "block_for does not apply to error overloaded",
            ),
            (
                r#"{"action": {"delay_ms": 1, "message": "x"}}"#,
                "message does not apply to a delay action",
            ),
            (
                r#"{"action": {"delay_ms": 600001}}"#,
                "delay_ms 600001 is above the maximum 600000",
            ),
            (
                r#"{"action": {"error": "read_timeout", "consistency": "MOST"}}"#,
                "unknown consistency \"MOST\"",
            ),
            (
                r#"{"action": {"error": "write_timeout", "write_type": "SOME"}}"#,
                "unknown write_type \"SOME\"",
            ),
            (
                r#"{"action": {"error": "unavailable", "alive": -1}}"#,
                "alive must be at least 0, got -1",
            ),
            (
                r#"{"match": {"opcode": "OPTIONS"}, "action": {"delay_ms": 1}}"#,
                "unknown opcode \"OPTIONS\"",
            ),
            (
                r#"{"match": {"kind": "upsert"}, "action": {"delay_ms": 1}}"#,
                "unknown statement kind \"upsert\"",
            ),
            (
                r#"{"action": {"connection": "half"}}"#,
                "unknown connection action \"half\"",
            ),
            (
                r#"{"action": {"delay_ms": 1}, "times": 0}"#,
                "times must be at least 1",
            ),
        ];
        for (json, want) in cases {
            let err = parse(json).expect_err(json).to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn listed_rules_parse_back_to_the_same_rule() {
        let f = crate::server::Faults::default();
        f.add_times(
            RequestMatcher::any()
                .opcode(Opcode::Execute)
                .kind(StatementKind::Select)
                .text_contains("x")
                .consistency(Consistency::LocalOne),
            FaultAction::Error(faults::unavailable(Consistency::LocalQuorum, 2, 1)),
            Some(4),
        );
        f.add(
            RequestMatcher::any(),
            FaultAction::Delay(Duration::from_millis(7)),
        );
        for info in f.rules() {
            let view = RuleView::new(&info);
            let mut json = serde_json::to_value(&view).expect("serializes");
            // `message` is listed for information; the generated message comes back the same.
            if let Some(action) = json.get_mut("action").and_then(|a| a.as_object_mut())
                && action.get("error").and_then(|e| e.as_str()) != Some("server_error")
            {
                action.remove("message");
            }
            if let Some(obj) = json.as_object_mut() {
                obj.remove("id");
            }
            let back: RuleBody = serde_json::from_value(json.clone()).expect("parses back");
            let back = back.into_rule().expect("valid");
            assert_eq!(back.matcher, info.matcher, "{json}");
            assert_eq!(back.action, info.action, "{json}");
            assert_eq!(back.times, info.remaining, "{json}");
        }
    }
}
