//! What the proxy and the migrator tell each other: the [`Message`]s, who may send each, and
//! which ones the sender's queue may coalesce or drop.
//!
//! Messages travel as JSON objects tagged by `type` (`{"type":"table_started","table":{…}}`),
//! inside length-prefixed frames (see the crate docs). Decoding ignores fields it does not know, so a field
//! added within one protocol version does not break older peers; anything else (a field removed
//! or retyped, a new message a peer must understand) raises [`crate::PROTOCOL_VERSION`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which service an end of the channel is. A connection joins one of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Proxy,
    Migrator,
}

impl Role {
    /// The role a peer of this role must have.
    pub fn peer(self) -> Self {
        match self {
            Self::Proxy => Self::Migrator,
            Self::Migrator => Self::Proxy,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proxy => "proxy",
            Self::Migrator => "migrator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a migrator end is for, sent in its `Hello`.
///
/// Why: `ferry validate` and `ferry migrate --serve` both speak the channel as migrators, and a
/// proxy must not let one displace the other. The listening end keeps a lane per `migrate`
/// peer (the workers of a job) and one for `validate`, and a proxy's requests
/// ([`Message::Remigrate`], [`Message::RepairPartitions`], [`Message::ReorderTables`]) go only
/// to `migrate` peers. Absent from a `Hello` (older
/// builds, and every proxy) it is `migrate`, which is what an older migrator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Purpose {
    /// `ferry migrate`: reports the job and takes the proxy's requests.
    #[default]
    Migrate,
    /// `ferry validate`: reports validation results only.
    Validate,
}

impl Purpose {
    /// Every purpose, in the order a listener lists its lanes.
    pub const ALL: [Self; 2] = [Self::Migrate, Self::Validate];

    pub fn is_migrate(&self) -> bool {
        *self == Self::Migrate
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Migrate => "migrate",
            Self::Validate => "validate",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Self::Migrate => 0,
            Self::Validate => 1,
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the sender of a refused message should do with it, sent with the `Nack`.
///
/// Why typed: a request one peer cannot carry out may suit another (a re-migration refused
/// by `ferry validate` or by a one-shot migrator whose job has ended is work for the next
/// `ferry migrate --serve`), while one that can never succeed (an unknown table) must not be
/// offered again and again. On the wire it is the Nack's `refusal` field, absent for
/// [`Refusal::Never`]: older peers ignore it and keep dropping every refused message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Refusal {
    /// No peer will carry it out: the sender drops it.
    #[default]
    Never,
    /// This peer cannot now; another one (or this one later) can: the sender may keep it and
    /// offer it to the next peer that connects.
    NotNow,
}

impl Refusal {
    pub fn is_never(&self) -> bool {
        *self == Self::Never
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Never => "never",
            Self::NotNow => "not_now",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A table, as the migrator's job and the proxy's statement classifier name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableName {
    pub keyspace: String,
    pub table: String,
}

impl TableName {
    pub fn new(keyspace: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            keyspace: keyspace.into(),
            table: table.into(),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.keyspace, self.table)
    }
}

/// One partition of a table, by its partition key.
///
/// The components are **CQL literals** (`'abc'`, `42`, `0x00ff`, `{'a': 1}`…), one per
/// partition-key column in the table's key order, exactly as `ferry_cql`'s
/// `CqlValue::to_cql_literal` writes them. Why literals rather than serialized bytes with their
/// types: they need no type description on the wire, the migrator can put them straight into a
/// `WHERE k1 = … AND k2 = …` on origin, and they read well in logs and in the JSON frames.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PartitionKey {
    pub components: Vec<String>,
}

impl PartitionKey {
    pub fn new(components: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            components: components.into_iter().map(Into::into).collect(),
        }
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(c)?;
        }
        f.write_str(")")
    }
}

/// One message of the Update channel.
///
/// Counts in [`Message::TableProgress`] are totals so far, not deltas: a newer progress message
/// replaces an older one without losing anything, which is what lets the sender's queue keep
/// only the latest per table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Message {
    // ----- migrator → proxy -----
    /// A job began; `tables` in the order the job will migrate them.
    JobStarted {
        /// The job's name (its directory or the operator's label), to tell reruns apart.
        job: String,
        tables: Vec<TableName>,
    },
    /// A table's backfill began.
    TableStarted { table: TableName },
    /// A table's backfill so far.
    TableProgress {
        table: TableName,
        ranges_done: u32,
        ranges_total: u32,
        /// Rows written to target so far.
        rows: u64,
    },
    /// Every range of the table is copied: live comparisons on it now mean something.
    TableBackfilled { table: TableName, rows: u64 },
    /// Origin and target were compared.
    TableValidated {
        table: TableName,
        rows_checked: u64,
        mismatches: u64,
    },
    /// The table stopped with an error; the job goes on with the others.
    TableFailed { table: TableName, reason: String },
    /// The job ended.
    JobFinished {
        job: String,
        tables_done: u32,
        tables_failed: u32,
    },
    /// A report sent again, to a proxy process that may never have received it: a `ferry
    /// migrate` worker that connects to a proxy instance other than the one it last reported
    /// to (a restarted proxy forgot everything) sends its job and each table's latest reports
    /// again, wrapped in this. Why wrapped: the same `TableBackfilled` as a live report would
    /// undo a validation the new proxy learned meanwhile; the receiver applies a replayed
    /// report only where it moves a table forward. Carries a migrator's report
    /// ([`Message::replay`] makes one); an older proxy refuses it as an unknown type, which
    /// leaves it where it was before replays existed (it forgets).
    Replayed { message: Box<Message> },

    // ----- proxy → migrator -----
    /// Migrate the tables not yet started in this order (tables the job does not have, or
    /// already started, are ignored by the migrator).
    ReorderTables { remaining: Vec<TableName> },
    /// Copy the table again from the start, e.g. after an `ALTER TABLE` went through the proxy.
    Remigrate { table: TableName, reason: String },
    /// Copy these partitions again: writes to them failed on target while the client was told
    /// they succeeded (target failure policy `best-effort`).
    RepairPartitions {
        table: TableName,
        partitions: Vec<PartitionKey>,
    },
}

impl Message {
    /// The role that sends this message; the channel refuses (with a `Nack`) a message that
    /// arrives from the wrong side.
    pub fn sender(&self) -> Role {
        match self {
            Self::JobStarted { .. }
            | Self::TableStarted { .. }
            | Self::TableProgress { .. }
            | Self::TableBackfilled { .. }
            | Self::TableValidated { .. }
            | Self::TableFailed { .. }
            | Self::JobFinished { .. }
            | Self::Replayed { .. } => Role::Migrator,
            Self::ReorderTables { .. } | Self::Remigrate { .. } | Self::RepairPartitions { .. } => {
                Role::Proxy
            }
        }
    }

    /// The wire name (`type` field), for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::JobStarted { .. } => "job_started",
            Self::TableStarted { .. } => "table_started",
            Self::TableProgress { .. } => "table_progress",
            Self::TableBackfilled { .. } => "table_backfilled",
            Self::TableValidated { .. } => "table_validated",
            Self::TableFailed { .. } => "table_failed",
            Self::JobFinished { .. } => "job_finished",
            Self::Replayed { .. } => "replayed",
            Self::ReorderTables { .. } => "reorder_tables",
            Self::Remigrate { .. } => "remigrate",
            Self::RepairPartitions { .. } => "repair_partitions",
        }
    }

    /// `report` wrapped as [`Message::Replayed`] (a replay is never wrapped twice).
    pub fn replay(report: Self) -> Self {
        match report {
            replayed @ Self::Replayed { .. } => replayed,
            other => Self::Replayed {
                message: Box::new(other),
            },
        }
    }

    /// `RepairPartitions` messages for `partitions` of `table`, each of which encodes to a
    /// frame of at most `max_frame` bytes (the channel's `max_frame`), in the given order. A
    /// single key too large for a frame still gets its own message, which `send` then refuses
    /// with a clear error.
    pub fn repair_batches(
        table: &TableName,
        partitions: Vec<PartitionKey>,
        max_frame: usize,
    ) -> Vec<Self> {
        let message = |partitions| Self::RepairPartitions {
            table: table.clone(),
            partitions,
        };
        // The frame around an empty list, with the longest possible id.
        let base = crate::frame::encode_data(u64::MAX, &message(Vec::new()), usize::MAX)
            .map_or(0, |f| f.len() - crate::frame::LENGTH_PREFIX);
        let mut batches = Vec::new();
        let (mut batch, mut size) = (Vec::new(), base);
        for key in partitions {
            // Its JSON plus a separating comma.
            let len = serde_json::to_vec(&key).map_or(0, |v| v.len()) + 1;
            if !batch.is_empty() && size + len > max_frame {
                batches.push(message(std::mem::take(&mut batch)));
                size = base;
            }
            size += len;
            batch.push(key);
        }
        if !batch.is_empty() {
            batches.push(message(batch));
        }
        batches
    }

    /// The table whose newer progress message makes this one redundant, when this is a
    /// progress message. Only progress is ever coalesced or dropped by a full queue: every
    /// other message changes state the peer acts on (phases, repairs, re-migrations).
    /// A replayed progress coalesces like a live one: the newest of the table wins.
    pub(crate) fn progress_of(&self) -> Option<&TableName> {
        match self {
            Self::TableProgress { table, .. } => Some(table),
            Self::Replayed { message } => message.progress_of(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json_and_roundtrip() {
        let t = TableName::new("ks", "t");
        let all = vec![
            Message::JobStarted {
                job: "j".into(),
                tables: vec![t.clone()],
            },
            Message::TableStarted { table: t.clone() },
            Message::TableProgress {
                table: t.clone(),
                ranges_done: 3,
                ranges_total: 8,
                rows: 1200,
            },
            Message::TableBackfilled {
                table: t.clone(),
                rows: 5,
            },
            Message::TableValidated {
                table: t.clone(),
                rows_checked: 5,
                mismatches: 1,
            },
            Message::TableFailed {
                table: t.clone(),
                reason: "boom".into(),
            },
            Message::JobFinished {
                job: "j".into(),
                tables_done: 1,
                tables_failed: 1,
            },
            Message::ReorderTables {
                remaining: vec![t.clone()],
            },
            Message::Remigrate {
                table: t.clone(),
                reason: "ALTER TABLE".into(),
            },
            Message::RepairPartitions {
                table: t.clone(),
                partitions: vec![PartitionKey::new(["'a'", "42"])],
            },
            Message::replay(Message::TableBackfilled {
                table: t.clone(),
                rows: 5,
            }),
        ];
        for m in all {
            let json = serde_json::to_string(&m).unwrap();
            assert!(
                json.starts_with(&format!("{{\"type\":\"{}\"", m.kind())),
                "{json}"
            );
            assert_eq!(serde_json::from_str::<Message>(&json).unwrap(), m);
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_ones_are_errors() {
        let m: Message = serde_json::from_str(
            r#"{"type":"table_started","table":{"keyspace":"ks","table":"t"},"extra":1}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            Message::TableStarted {
                table: TableName::new("ks", "t")
            }
        );
        let e = serde_json::from_str::<Message>(r#"{"type":"table_started"}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `table`"), "{e}");
        let e = serde_json::from_str::<Message>(r#"{"type":"launch_rockets"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown variant"), "{e}");
    }

    #[test]
    fn repair_batches_fit_the_frame_and_keep_every_key_in_order() {
        let t = TableName::new("ks", "t");
        let keys: Vec<PartitionKey> = (0..2000)
            .map(|i| PartitionKey::new([format!("'key-{i}'"), i.to_string()]))
            .collect();
        let max = 4096;
        let batches = Message::repair_batches(&t, keys.clone(), max);
        assert!(batches.len() > 10, "{}", batches.len());
        let mut all = Vec::new();
        for b in batches {
            let frame = crate::frame::encode_data(u64::MAX, &b, max).unwrap();
            assert!(frame.len() <= max + crate::frame::LENGTH_PREFIX);
            let Message::RepairPartitions { partitions, .. } = b else {
                panic!("{b:?}")
            };
            assert!(!partitions.is_empty());
            all.extend(partitions);
        }
        assert_eq!(all, keys);
        let huge = vec![PartitionKey::new(["x".repeat(max)])];
        assert_eq!(Message::repair_batches(&t, huge, max).len(), 1);
        assert!(Message::repair_batches(&t, Vec::new(), max).is_empty());
    }

    #[test]
    fn senders_and_progress() {
        let t = TableName::new("ks", "t");
        assert_eq!(
            Message::TableStarted { table: t.clone() }.sender(),
            Role::Migrator
        );
        let repair = Message::RepairPartitions {
            table: t.clone(),
            partitions: vec![],
        };
        assert_eq!(repair.sender(), Role::Proxy);
        assert_eq!(repair.progress_of(), None);
        let progress = Message::TableProgress {
            table: t.clone(),
            ranges_done: 0,
            ranges_total: 1,
            rows: 0,
        };
        assert_eq!(progress.progress_of(), Some(&t));
        let replayed = Message::replay(Message::replay(progress.clone()));
        assert_eq!(
            replayed,
            Message::Replayed {
                message: Box::new(progress)
            },
            "a replay is wrapped once"
        );
        assert_eq!(replayed.progress_of(), Some(&t));
        assert_eq!(replayed.sender(), Role::Migrator);
        assert_eq!(
            serde_json::to_string(&replayed).unwrap(),
            r#"{"type":"replayed","message":{"type":"table_progress","table":{"keyspace":"ks","table":"t"},"ranges_done":0,"ranges_total":1,"rows":0}}"#
        );
        assert_eq!(Role::Proxy.peer(), Role::Migrator);
        assert_eq!(PartitionKey::new(["'a'", "1"]).to_string(), "('a', 1)");
        assert_eq!(t.to_string(), "ks.t");
    }
}
