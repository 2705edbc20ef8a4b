//! Where a request goes, decided from as little of its body as possible: QUERY and PREPARE texts
//! go through the statement classifier; EXECUTE is routed by what its PREPARE said; everything
//! else by opcode.
//!
//! | statement | destination |
//! |---|---|
//! | SELECT, DESCRIBE, LIST … on user tables | primary (and the secondary in `dual-async`) |
//! | the same on system keyspaces | the configured system-queries cluster |
//! | SELECT on `system.local`, `system.peers`, `system.peers_v2` | answered by the proxy |
//! | INSERT, UPDATE, DELETE, BATCH, DDL, USE, anything unparseable | both clusters |

use std::sync::Arc;

use ferry_cql::protocol::{Consistency, ProtocolVersion, read_consistency};
use ferry_cql::request::params::query_flags;
use ferry_cql::statement::classify::{StatementInfo, StatementKind};
use ferry_cql::wire::{self, DecodeError};

/// Keyspaces whose tables describe the cluster itself: reads go to one configured cluster.
const SYSTEM_KEYSPACES: [&str; 7] = [
    "system",
    "system_schema",
    "system_auth",
    "system_distributed",
    "system_traces",
    "system_views",
    "system_virtual_schema",
];

/// The tables the proxy answers itself (topology virtualization).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VirtualTable {
    Local,
    Peers,
    PeersV2,
}

/// Where a statement goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// Reads of user data: the primary.
    Primary,
    /// Reads of system keyspaces: the system-queries cluster.
    System,
    /// Answered by the proxy from its own topology.
    Virtual(VirtualTable),
    /// Both clusters; the second answer decides.
    Both(WriteKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteKind {
    /// INSERT, UPDATE, DELETE (`batch` for BATCH): gets a client timestamp if it has none.
    Data { batch: bool, lwt: bool },
    /// USE: also changes the session's keyspace.
    Use,
    /// DDL, role and permission changes, TRUNCATE, anything unrecognized.
    Other,
}

/// Routes a classified statement. `session_keyspace` resolves unqualified table names.
pub(crate) fn destination(info: &StatementInfo<'_>, session_keyspace: Option<&str>) -> Destination {
    if info.is_read() {
        let keyspace = info
            .keyspace
            .as_ref()
            .map(|k| k.normalized())
            .or_else(|| session_keyspace.map(Into::into));
        let system = keyspace
            .as_deref()
            .is_some_and(|k| SYSTEM_KEYSPACES.contains(&k));
        if info.kind == StatementKind::Select
            && keyspace.as_deref() == Some("system")
            && let Some(table) = &info.table
        {
            let table = table.normalized();
            match table.as_ref() {
                "local" => return Destination::Virtual(VirtualTable::Local),
                "peers" => return Destination::Virtual(VirtualTable::Peers),
                "peers_v2" => return Destination::Virtual(VirtualTable::PeersV2),
                _ => {}
            }
        }
        return if system {
            Destination::System
        } else {
            Destination::Primary
        };
    }
    Destination::Both(match info.kind {
        StatementKind::Insert | StatementKind::Update | StatementKind::Delete => WriteKind::Data {
            batch: false,
            lwt: info.lwt,
        },
        StatementKind::Batch => WriteKind::Data {
            batch: true,
            lwt: info.lwt,
        },
        StatementKind::Use => WriteKind::Use,
        _ => WriteKind::Other,
    })
}

/// `keyspace.table` of a statement, for per-table counters.
pub(crate) fn table_name(
    info: &StatementInfo<'_>,
    session_keyspace: Option<&str>,
) -> Option<Arc<str>> {
    let table = info.table.as_ref()?.normalized();
    let keyspace = info
        .keyspace
        .as_ref()
        .map(|k| k.normalized().into_owned())
        .or_else(|| session_keyspace.map(str::to_owned))?;
    Some(format!("{keyspace}.{table}").into())
}

/// The first fields of `<query_parameters>`: what routing and error answers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParamsPeek {
    pub consistency: Consistency,
    pub flags: u32,
}

impl ParamsPeek {
    pub(crate) fn has_paging_state(&self) -> bool {
        self.flags & query_flags::WITH_PAGING_STATE != 0
    }
}

pub(crate) fn peek_params(
    mut buf: &[u8],
    version: ProtocolVersion,
) -> Result<ParamsPeek, DecodeError> {
    let consistency = read_consistency(&mut buf)?;
    let flags = if version.uses_segments() {
        wire::read_int(&mut buf, "query flags")? as u32
    } else {
        u32::from(wire::read_byte(&mut buf, "query flags")?)
    };
    Ok(ParamsPeek { consistency, flags })
}

/// A QUERY or PREPARE body's statement text and what follows it.
pub(crate) fn peek_query(body: &[u8]) -> Result<(&str, &[u8]), DecodeError> {
    let mut buf = body;
    let text = wire::read_long_string(&mut buf, "query")?;
    Ok((text, buf))
}

/// The leading fields of an EXECUTE body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExecutePeek<'a> {
    pub id: &'a [u8],
    /// The `<query_parameters>` after the ids.
    pub params: &'a [u8],
}

/// An EXECUTE body's prepared id and the parameters after it (and after v5's result metadata id).
pub(crate) fn peek_execute(
    body: &[u8],
    version: ProtocolVersion,
) -> Result<ExecutePeek<'_>, DecodeError> {
    let mut buf = body;
    let id = wire::read_short_bytes(&mut buf, "prepared id")?;
    if version.uses_segments() {
        wire::read_short_bytes(&mut buf, "result metadata id")?;
    }
    Ok(ExecutePeek { id, params: buf })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_cql::statement::classify::classify;

    fn route(cql: &str, ks: Option<&str>) -> Destination {
        destination(&classify(cql), ks)
    }

    #[test]
    fn statements_go_where_the_table_says() {
        assert_eq!(
            route("SELECT * FROM ks.t WHERE k = 1", None),
            Destination::Primary
        );
        assert_eq!(
            route("select * from system.local where key='local'", None),
            Destination::Virtual(VirtualTable::Local)
        );
        assert_eq!(
            route("SELECT peer FROM peers", Some("system")),
            Destination::Virtual(VirtualTable::Peers)
        );
        assert_eq!(
            route("SELECT * FROM \"system\".peers_v2", None),
            Destination::Virtual(VirtualTable::PeersV2)
        );
        assert_eq!(
            route("SELECT * FROM system_schema.tables", None),
            Destination::System
        );
        assert_eq!(
            route("SELECT * FROM system.size_estimates", None),
            Destination::System
        );
        assert_eq!(
            route("SELECT * FROM t", Some("system_auth")),
            Destination::System
        );
        assert_eq!(route("DESCRIBE KEYSPACES", None), Destination::Primary);
        assert_eq!(
            route("INSERT INTO ks.t (k) VALUES (1)", None),
            Destination::Both(WriteKind::Data {
                batch: false,
                lwt: false
            })
        );
        assert_eq!(
            route("UPDATE ks.t SET v = 1 WHERE k = 1 IF v = 0", None),
            Destination::Both(WriteKind::Data {
                batch: false,
                lwt: true
            })
        );
        assert_eq!(
            route(
                "BEGIN BATCH INSERT INTO t (k) VALUES (1); APPLY BATCH",
                None
            ),
            Destination::Both(WriteKind::Data {
                batch: true,
                lwt: false
            })
        );
        assert_eq!(route("USE ks", None), Destination::Both(WriteKind::Use));
        assert_eq!(
            route("CREATE TABLE ks.t (k int PRIMARY KEY)", None),
            Destination::Both(WriteKind::Other)
        );
        assert_eq!(
            route("this is not cql", None),
            Destination::Both(WriteKind::Other)
        );
    }

    #[test]
    fn table_names_use_the_session_keyspace() {
        assert_eq!(
            table_name(&classify("SELECT * FROM t"), Some("ks")).as_deref(),
            Some("ks.t")
        );
        assert_eq!(
            table_name(&classify("SELECT * FROM \"Ks\".\"T\""), None).as_deref(),
            Some("Ks.T")
        );
        assert_eq!(table_name(&classify("SELECT * FROM t"), None), None);
    }

    #[test]
    fn peeks_read_the_leading_fields() {
        let mut body = Vec::new();
        body.extend_from_slice(&5i32.to_be_bytes());
        body.extend_from_slice(b"USE x");
        body.extend_from_slice(&[0x00, 0x04, 0x08]);
        let (text, rest) = peek_query(&body).unwrap();
        assert_eq!(text, "USE x");
        let p = peek_params(rest, ProtocolVersion::V4).unwrap();
        assert_eq!(p.consistency, Consistency::Quorum);
        assert!(p.has_paging_state());
        assert!(
            peek_params(rest, ProtocolVersion::V5).is_err(),
            "v5 flags are an [int]"
        );
        assert!(peek_query(&[0, 0, 0, 9, b'x']).is_err());
    }
}
