//! Fault injection: per-node rules that delay requests, answer them with a chosen error, or
//! close/reset the connection that sent them, and the errors Cassandra would send for each case.
//!
//! A rule matches on opcode, statement kind (via [`ferry_cql::statement::classify()`]), keyspace,
//! table and the request's consistency level. EXECUTE is matched through the statement text the node saw when the id was
//! prepared; BATCH matches when any child does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ferry_cql::protocol::{Consistency, Opcode};
use ferry_cql::response::{ErrorKind, ErrorResponse, WriteType};
use ferry_cql::statement::classify::{StatementKind, classify};

/// Which requests a rule applies to. Every `Some` field must match; the default matches all
/// statement-carrying requests (QUERY, PREPARE, EXECUTE, BATCH).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMatcher {
    pub opcode: Option<Opcode>,
    pub kind: Option<StatementKind>,
    /// Normalized keyspace name; a statement without one uses the connection's keyspace.
    pub keyspace: Option<String>,
    /// Normalized table name.
    pub table: Option<String>,
    /// A substring of the statement text (handy for tests that delay one query).
    pub text_contains: Option<String>,
    /// The consistency level a QUERY, EXECUTE or BATCH carries (what a proxy sent, say).
    pub consistency: Option<Consistency>,
}

impl RequestMatcher {
    pub fn any() -> Self {
        Self::default()
    }

    pub fn opcode(mut self, opcode: Opcode) -> Self {
        self.opcode = Some(opcode);
        self
    }

    pub fn kind(mut self, kind: StatementKind) -> Self {
        self.kind = Some(kind);
        self
    }

    pub fn table(mut self, keyspace: &str, table: &str) -> Self {
        self.keyspace = Some(keyspace.to_owned());
        self.table = Some(table.to_owned());
        self
    }

    pub fn text_contains(mut self, text: &str) -> Self {
        self.text_contains = Some(text.to_owned());
        self
    }

    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = Some(consistency);
        self
    }

    /// Whether one statement, sent with `opcode` at `consistency` (`None` for requests without
    /// one) on a connection using `session_keyspace`, matches. `text` is `None` for an EXECUTE
    /// of an id this node never prepared.
    pub(crate) fn matches(
        &self,
        opcode: Opcode,
        consistency: Option<Consistency>,
        text: Option<&str>,
        session_keyspace: Option<&str>,
    ) -> bool {
        if self.opcode.is_some_and(|o| o != opcode) {
            return false;
        }
        if self.consistency.is_some() && self.consistency != consistency {
            return false;
        }
        if self.kind.is_none()
            && self.keyspace.is_none()
            && self.table.is_none()
            && self.text_contains.is_none()
        {
            return true;
        }
        let Some(text) = text else {
            return false;
        };
        if let Some(needle) = &self.text_contains
            && !text.contains(needle.as_str())
        {
            return false;
        }
        if self.kind.is_none() && self.keyspace.is_none() && self.table.is_none() {
            return true;
        }
        let info = classify(text);
        if self.kind.is_some_and(|k| k != info.kind) {
            return false;
        }
        if let Some(ks) = &self.keyspace {
            let stmt_ks = info.keyspace.map(|k| k.normalized().into_owned());
            if stmt_ks.as_deref().or(session_keyspace) != Some(ks.as_str()) {
                return false;
            }
        }
        if let Some(table) = &self.table
            && !info.table.is_some_and(|t| t.matches(table))
        {
            return false;
        }
        true
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultAction {
    /// Hold the response back this long (the request is still executed).
    Delay(Duration),
    /// Answer with this error instead of executing the request.
    Error(ErrorResponse),
    /// Close the connection that sent the request (FIN), without answering.
    CloseConnection,
    /// Reset the connection that sent the request (RST), without answering.
    ResetConnection,
}

/// Identifies an added rule, for [`Faults::remove`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleId(u64);

impl RuleId {
    /// The rule's number, as the admin API shows it.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl From<u64> for RuleId {
    /// A rule id named by number (admin API); [`Faults::remove`] says whether it existed.
    fn from(n: u64) -> Self {
        Self(n)
    }
}

/// One rule as [`Faults::rules`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuleInfo {
    pub id: RuleId,
    pub matcher: RequestMatcher,
    pub action: FaultAction,
    /// Remaining activations; `None` is unlimited.
    pub remaining: Option<u64>,
}

#[derive(Debug, Clone)]
struct Rule {
    id: RuleId,
    matcher: RequestMatcher,
    action: FaultAction,
    /// Remaining activations; `None` is unlimited.
    remaining: Option<u64>,
}

/// One node's fault rules. Checked once per statement-carrying request; the first matching
/// rule of each kind applies (a delay and an error can both apply).
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    next_id: AtomicU64,
}

/// What the rules decided for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub delay: Option<Duration>,
    /// Error, close or reset: replaces executing the request.
    pub outcome: Option<FaultAction>,
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, Vec<Rule>> {
        // A panic while holding this lock cannot leave the rule list inconsistent.
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a rule applying to every matching request until removed.
    pub fn add(&self, matcher: RequestMatcher, action: FaultAction) -> RuleId {
        self.add_times(matcher, action, None)
    }

    /// Adds a rule that applies to the next `times` matching requests (`None`: unlimited).
    pub fn add_times(
        &self,
        matcher: RequestMatcher,
        action: FaultAction,
        times: Option<u64>,
    ) -> RuleId {
        let id = RuleId(self.next_id.fetch_add(1, Ordering::Relaxed));
        self.lock().push(Rule {
            id,
            matcher,
            action,
            remaining: times,
        });
        id
    }

    /// Delays every response of the node by `delay`.
    pub fn delay_all(&self, delay: Duration) -> RuleId {
        self.add(RequestMatcher::any(), FaultAction::Delay(delay))
    }

    pub fn remove(&self, id: RuleId) -> bool {
        let mut rules = self.lock();
        let before = rules.len();
        rules.retain(|r| r.id != id);
        rules.len() != before
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The rules in the order they are checked.
    pub fn rules(&self) -> Vec<RuleInfo> {
        self.lock()
            .iter()
            .map(|r| RuleInfo {
                id: r.id,
                matcher: r.matcher.clone(),
                action: r.action.clone(),
                remaining: r.remaining,
            })
            .collect()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Applies the rules to a request made of `statements` (one per statement; several for a
    /// BATCH) at `consistency`, consuming limited activations.
    pub(crate) fn check(
        &self,
        opcode: Opcode,
        consistency: Option<Consistency>,
        statements: &[Option<&str>],
        session_keyspace: Option<&str>,
    ) -> Verdict {
        let mut verdict = Verdict::default();
        let mut rules = self.lock();
        for rule in rules.iter_mut() {
            let wanted = match rule.action {
                FaultAction::Delay(_) => verdict.delay.is_none(),
                _ => verdict.outcome.is_none(),
            };
            if !wanted || rule.remaining == Some(0) {
                continue;
            }
            let hit = statements.iter().any(|s| {
                rule.matcher
                    .matches(opcode, consistency, *s, session_keyspace)
            });
            if !hit {
                continue;
            }
            if let Some(n) = &mut rule.remaining {
                *n -= 1;
            }
            match &rule.action {
                FaultAction::Delay(d) => verdict.delay = Some(*d),
                other => verdict.outcome = Some(other.clone()),
            }
        }
        rules.retain(|r| r.remaining != Some(0));
        verdict
    }
}

/// WRITE_TIMEOUT as a coordinator sends it when `block_for` replicas did not answer in time.
pub fn write_timeout(
    consistency: Consistency,
    block_for: i32,
    write_type: WriteType,
) -> ErrorResponse {
    let contentions = (write_type == WriteType::Cas).then_some(0);
    ErrorResponse::new(
        ErrorKind::WriteTimeout {
            consistency,
            received: 0,
            block_for,
            write_type,
            contentions,
        },
        "Operation timed out - received only 0 responses.",
    )
}

/// READ_TIMEOUT with no replica answering.
pub fn read_timeout(consistency: Consistency, block_for: i32) -> ErrorResponse {
    ErrorResponse::new(
        ErrorKind::ReadTimeout {
            consistency,
            received: 0,
            block_for,
            data_present: false,
        },
        "Operation timed out - received only 0 responses.",
    )
}

/// UNAVAILABLE: `required` replicas needed, `alive` up.
pub fn unavailable(consistency: Consistency, required: i32, alive: i32) -> ErrorResponse {
    ErrorResponse::new(
        ErrorKind::Unavailable {
            consistency,
            required,
            alive,
        },
        format!("Cannot achieve consistency level {}", consistency.name()),
    )
}

/// OVERLOADED, with the message Cassandra uses when its request queue is full.
pub fn overloaded() -> ErrorResponse {
    ErrorResponse::overloaded(
        "Server is in overloaded state. Cannot accept more requests at this point",
    )
}

/// SERVER_ERROR with `message`.
pub fn server_error(message: &str) -> ErrorResponse {
    ErrorResponse::server_error(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_by_kind_keyspace_and_table() {
        let m = RequestMatcher::any()
            .kind(StatementKind::Insert)
            .table("ks", "t");
        let q = Opcode::Query;
        assert!(m.matches(q, None, Some("INSERT INTO ks.t (a) VALUES (1)"), None));
        assert!(m.matches(q, None, Some("insert into t (a) values (1)"), Some("ks")));
        assert!(!m.matches(q, None, Some("insert into t (a) values (1)"), Some("other")));
        assert!(!m.matches(q, None, Some("SELECT * FROM ks.t"), None));
        assert!(!m.matches(q, None, Some("INSERT INTO ks.u (a) VALUES (1)"), None));
        assert!(!m.matches(Opcode::Execute, None, None, Some("ks")));
        assert!(RequestMatcher::any().matches(Opcode::Execute, None, None, None));
        assert!(
            !RequestMatcher::any()
                .opcode(Opcode::Batch)
                .matches(q, None, None, None)
        );
    }

    #[test]
    fn matcher_by_consistency() {
        let m = RequestMatcher::any().consistency(Consistency::One);
        let q = Opcode::Query;
        let text = Some("INSERT INTO ks.t (a) VALUES (1)");
        assert!(m.matches(q, Some(Consistency::One), text, None));
        assert!(!m.matches(q, Some(Consistency::LocalQuorum), text, None));
        assert!(!m.matches(Opcode::Prepare, None, text, None));
        let m = m.kind(StatementKind::Insert);
        assert!(m.matches(q, Some(Consistency::One), text, None));
        assert!(!m.matches(q, Some(Consistency::One), Some("SELECT * FROM ks.t"), None));
    }

    #[test]
    fn limited_rules_expire_and_delay_combines_with_error() {
        let f = Faults::default();
        f.add_times(
            RequestMatcher::any(),
            FaultAction::Error(overloaded()),
            Some(1),
        );
        let d = f.delay_all(Duration::from_millis(5));
        let v = f.check(Opcode::Query, None, &[Some("SELECT 1")], None);
        assert_eq!(v.delay, Some(Duration::from_millis(5)));
        assert!(matches!(v.outcome, Some(FaultAction::Error(_))));
        let v = f.check(Opcode::Query, None, &[Some("SELECT 1")], None);
        assert_eq!(v.outcome, None);
        assert_eq!(f.rules().len(), 1, "the used-up rule is gone");
        assert_eq!(f.rules()[0].id, RuleId::from(d.get()));
        assert!(f.remove(d));
        assert!(f.is_empty());
    }

    #[test]
    fn batch_matches_when_any_child_does() {
        let f = Faults::default();
        f.add(
            RequestMatcher::any().text_contains("slow"),
            FaultAction::CloseConnection,
        );
        let v = f.check(
            Opcode::Batch,
            None,
            &[Some("INSERT a"), Some("INSERT slow")],
            None,
        );
        assert_eq!(v.outcome, Some(FaultAction::CloseConnection));
    }
}
