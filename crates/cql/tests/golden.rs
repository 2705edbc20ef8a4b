//! Golden envelopes, one or more per opcode, built by hand from the spec (section numbers are
//! v4's unless marked v5). Each must decode to the expected message and re-encode to the very same
//! bytes.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

use bytes::Bytes;
use ferry_cql::Consistency;
use ferry_cql::envelope::{DEFAULT_MAX_BODY_LEN, Envelope};
use ferry_cql::message::{Request, Response};
use ferry_cql::protocol::Direction;
use ferry_cql::request::{BatchStatement, Value, Values};
use ferry_cql::response::ResultBody;
use ferry_cql::types::ColumnType;

/// The header's length field must match the bytes after it.
fn check_length(raw: &[u8]) {
    let declared = u32::from_be_bytes([raw[5], raw[6], raw[7], raw[8]]) as usize;
    assert_eq!(declared, raw.len() - 9, "declared body length vs actual");
}

/// Parses, decodes, re-encodes; returns the decoded message for field checks.
fn check_request(raw: &[u8]) -> Request {
    check_length(raw);
    let mut b = Bytes::copy_from_slice(raw);
    let env = Envelope::parse(&mut b, DEFAULT_MAX_BODY_LEN)
        .unwrap()
        .expect("whole envelope");
    assert!(
        b.is_empty(),
        "fixture has {} bytes after the envelope",
        b.len()
    );
    let (ext, msg) = Request::from_envelope(&env).unwrap();
    let extra = env.header.flags & !ext.flags(Direction::Request);
    let again = msg
        .to_envelope(env.header.version, env.header.stream, extra, &ext)
        .unwrap();
    let mut out = Vec::new();
    again.write_to(&mut out);
    assert_eq!(out, raw, "re-encoding {:?} differs", env.header.opcode);
    msg
}

fn check_response(raw: &[u8]) -> Response {
    check_length(raw);
    let mut b = Bytes::copy_from_slice(raw);
    let env = Envelope::parse(&mut b, DEFAULT_MAX_BODY_LEN)
        .unwrap()
        .expect("whole envelope");
    assert!(
        b.is_empty(),
        "fixture has {} bytes after the envelope",
        b.len()
    );
    let (ext, msg) = Response::from_envelope(&env).unwrap();
    let again = msg
        .to_envelope(env.header.version, env.header.stream, &ext)
        .unwrap();
    let mut out = Vec::new();
    again.write_to(&mut out);
    assert_eq!(out, raw, "re-encoding {:?} differs", env.header.opcode);
    msg
}

#[test]
fn error_unavailable_v4() {
    let raw: &[u8] = &[
        0x84, 0x00, 0x00, 0x05, 0x00, // §2: response v4, no flags, stream 5, opcode ERROR
        0x00, 0x00, 0x00, 0x14, // §2.5: body length 20
        0x00, 0x00, 0x10, 0x00, // §4.2.1 [int] code 0x1000 Unavailable
        0x00, 0x04, b'd', b'o', b'w', b'n', // [string] message "down"
        0x00, 0x04, // §9 Unavailable <cl> [consistency] QUORUM
        0x00, 0x00, 0x00, 0x02, // <required> [int] 2
        0x00, 0x00, 0x00, 0x01, // <alive> [int] 1
    ];
    let Response::Error(e) = check_response(raw) else {
        panic!("not an ERROR")
    };
    assert_eq!(e.message, "down");
}

#[test]
fn startup_v4() {
    let raw: &[u8] = &[
        0x04, 0x00, 0x00, 0x00, 0x01, // request v4, stream 0, opcode STARTUP
        0x00, 0x00, 0x00, 0x16, // body length 22
        0x00, 0x01, // §4.1.1 [string map] 1 entry
        0x00, 0x0b, b'C', b'Q', b'L', b'_', b'V', b'E', b'R', b'S', b'I', b'O', b'N', // key
        0x00, 0x05, b'3', b'.', b'0', b'.', b'0', // value "3.0.0"
    ];
    assert!(matches!(check_request(raw), Request::Startup(_)));
}

#[test]
fn ready_and_options_have_empty_bodies() {
    // §4.2.2 READY, v5 response on stream 0; §4.1.3 OPTIONS, v3 request on stream 1.
    check_response(&[0x85, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00]);
    check_request(&[0x03, 0x00, 0x00, 0x01, 0x05, 0x00, 0x00, 0x00, 0x00]);
}

#[test]
fn authenticate_v4() {
    let class = b"org.apache.cassandra.auth.PasswordAuthenticator";
    let mut raw = vec![
        0x84, 0x00, 0x00, 0x00, 0x03, // response v4, stream 0, AUTHENTICATE
        0x00, 0x00, 0x00, 0x31, // body length 2 + 47
        0x00, 0x2f, // §4.2.3 [string] authenticator class, 47 bytes
    ];
    raw.extend_from_slice(class);
    let Response::Authenticate(a) = check_response(&raw) else {
        panic!()
    };
    assert_eq!(
        a.authenticator,
        "org.apache.cassandra.auth.PasswordAuthenticator"
    );
}

#[test]
fn supported_v4() {
    let raw: &[u8] = &[
        0x84, 0x00, 0x00, 0x00, 0x06, // response v4, SUPPORTED
        0x00, 0x00, 0x00, 0x1e, // body length 30
        0x00, 0x01, // §4.2.4 [string multimap] 1 entry
        0x00, 0x0b, b'C', b'O', b'M', b'P', b'R', b'E', b'S', b'S', b'I', b'O', b'N', 0x00,
        0x02, // [string list] 2 values
        0x00, 0x03, b'l', b'z', b'4', //
        0x00, 0x06, b's', b'n', b'a', b'p', b'p', b'y',
    ];
    assert!(matches!(check_response(raw), Response::Supported(_)));
}

#[test]
fn query_v4_with_tracing_flag() {
    let raw: &[u8] = &[
        0x04, 0x02, 0x00, 0x2a,
        0x07, // request v4, flags TRACING (asks for a trace), stream 42
        0x00, 0x00, 0x00, 0x0d, // body length 13
        0x00, 0x00, 0x00, 0x06, b'U', b'S', b'E', b' ', b'k', b's', // §4.1.4 [long string]
        0x00, 0x01, // [consistency] ONE
        0x00, // [byte] flags: none
    ];
    let Request::Query(q) = check_request(raw) else {
        panic!()
    };
    assert_eq!(q.query, "USE ks");
    assert_eq!(q.params.consistency, Consistency::One);
}

#[test]
fn result_set_keyspace_v4_with_warning() {
    let raw: &[u8] = &[
        0x84, 0x08, 0x00, 0x2a, 0x08, // response v4, flags WARNING, stream 42, RESULT
        0x00, 0x00, 0x00, 0x0f, // body length 15
        0x00, 0x01, 0x00, 0x03, b'w', b'a', b'r', // §2.2 warnings [string list]: ["war"]
        0x00, 0x00, 0x00, 0x03, // §4.2.5 kind Set_keyspace
        0x00, 0x02, b'k', b's', // §4.2.5.3 [string] keyspace
    ];
    assert_eq!(
        check_response(raw),
        Response::Result(ResultBody::SetKeyspace("ks".into()))
    );
}

#[test]
fn result_rows_v4() {
    let raw: &[u8] = &[
        0x84, 0x00, 0x00, 0x07, 0x08, // response v4, stream 7, RESULT
        0x00, 0x00, 0x00, 0x2a, // body length 42
        0x00, 0x00, 0x00, 0x02, // §4.2.5 kind Rows
        0x00, 0x00, 0x00, 0x01, // §4.2.5.2 <flags> Global_tables_spec
        0x00, 0x00, 0x00, 0x02, // <columns_count> 2
        0x00, 0x02, b'k', b's', 0x00, 0x01, b't', // <global_table_spec> ks.t
        0x00, 0x01, b'a', 0x00, 0x09, // col "a" [option] int (0x0009)
        0x00, 0x01, b'b', 0x00, 0x0d, // col "b" [option] varchar (0x000D)
        0x00, 0x00, 0x00, 0x01, // <rows_count> 1
        0x00, 0x00, 0x00, 0x01, 0x07, // [bytes] a = 7 (a 1-byte value, decoded lazily)
        0xff, 0xff, 0xff, 0xff, // [bytes] b = null
    ];
    let Response::Result(ResultBody::Rows(rows)) = check_response(raw) else {
        panic!()
    };
    assert_eq!(rows.rows_count(), 1);
    assert_eq!(rows.cell(0, 0), Some(&[7u8][..]));
    assert_eq!(rows.cell(0, 1), None);
    let cols = rows.metadata.columns.as_ref().unwrap();
    assert_eq!(
        (cols[1].name.as_str(), &cols[1].ty),
        ("b", &ColumnType::Varchar)
    );
}

#[test]
fn result_prepared_v5_with_metadata_ids() {
    let raw: &[u8] = &[
        0x85, 0x00, 0x00, 0x01, 0x08, // response v5, stream 1, RESULT
        0x00, 0x00, 0x00, 0x2e, // body length 46
        0x00, 0x00, 0x00, 0x04, // kind Prepared
        0x00, 0x02, 0xca, 0xfe, // §4.2.5.4 <id> [short bytes]
        0x00, 0x01, 0x5e, // v5 <result_metadata_id> [short bytes]
        0x00, 0x00, 0x00, 0x01, // <metadata> flags Global_tables_spec
        0x00, 0x00, 0x00, 0x01, // columns_count 1
        0x00, 0x00, 0x00, 0x01, // pk_count 1
        0x00, 0x00, // pk_index_1 = 0
        0x00, 0x02, b'k', b's', 0x00, 0x01, b't', // global table spec ks.t
        0x00, 0x02, b'i', b'd', 0x00, 0x0c, // col "id" [option] uuid (0x000C)
        0x00, 0x00, 0x00, 0x04, // <result_metadata> flags No_metadata (covers the flag)
        0x00, 0x00, 0x00, 0x03, // columns_count 3
    ];
    let Response::Result(ResultBody::Prepared(p)) = check_response(raw) else {
        panic!()
    };
    assert_eq!(&p.id[..], &[0xca, 0xfe]);
    assert_eq!(p.result_metadata_id.as_deref(), Some(&[0x5e][..]));
    assert_eq!(p.metadata.pk_indexes, vec![0]);
    assert_eq!(p.result_metadata.columns, None);
    assert_eq!(p.result_metadata.columns_count, 3);
}

#[test]
fn result_schema_change_v4() {
    let raw: &[u8] = &[
        0x84, 0x00, 0x00, 0x03, 0x08, // response v4, stream 3, RESULT
        0x00, 0x00, 0x00, 0x1b, // body length 27
        0x00, 0x00, 0x00, 0x05, // kind Schema_change
        0x00, 0x07, b'C', b'R', b'E', b'A', b'T', b'E', b'D', // §4.2.5.5 <change_type>
        0x00, 0x05, b'T', b'A', b'B', b'L', b'E', // <target>
        0x00, 0x02, b'k', b's', 0x00, 0x01, b't', // <keyspace><name>
    ];
    assert!(matches!(
        check_response(raw),
        Response::Result(ResultBody::SchemaChange(_))
    ));
}

#[test]
fn prepare_v5_with_keyspace() {
    let raw: &[u8] = &[
        0x05, 0x00, 0x00, 0x02, 0x09, // request v5, stream 2, PREPARE
        0x00, 0x00, 0x00, 0x14, // body length 20
        0x00, 0x00, 0x00, 0x08, b'S', b'E', b'L', b'E', b'C', b'T', b' ',
        b'1', // [long string]
        0x00, 0x00, 0x00, 0x01, // v5 §4.1.5 <flags> [int]: keyspace follows
        0x00, 0x02, b'k', b's', // [string] keyspace
    ];
    let Request::Prepare(p) = check_request(raw) else {
        panic!()
    };
    assert_eq!(p.keyspace.as_deref(), Some("ks"));
}

#[test]
fn execute_v4_with_values() {
    let raw: &[u8] = &[
        0x04, 0x00, 0x00, 0x09, 0x0a, // request v4, stream 9, EXECUTE
        0x00, 0x00, 0x00, 0x13, // body length 19
        0x00, 0x02, 0xca, 0xfe, // §4.1.6 <id> [short bytes]
        0x00, 0x06, // [consistency] LOCAL_QUORUM
        0x01, // [byte] flags VALUES
        0x00, 0x02, // [short] 2 values
        0x00, 0x00, 0x00, 0x02, 0x00, 0x07, // [value] smallint 7
        0xff, 0xff, 0xff, 0xfe, // [value] not set
    ];
    let Request::Execute(e) = check_request(raw) else {
        panic!()
    };
    assert_eq!(
        e.params.values,
        Values::Positional(vec![Value::Set(Bytes::from_static(&[0, 7])), Value::Unset])
    );
}

#[test]
fn register_v4() {
    let raw: &[u8] = &[
        0x04, 0x00, 0x00, 0x00, 0x0b, // request v4, REGISTER
        0x00, 0x00, 0x00, 0x20, // body length 32
        0x00, 0x02, // §4.1.8 [string list] 2 event types
        0x00, 0x0d, b'S', b'C', b'H', b'E', b'M', b'A', b'_', b'C', b'H', b'A', b'N', b'G', b'E',
        0x00, 0x0d, b'S', b'T', b'A', b'T', b'U', b'S', b'_', b'C', b'H', b'A', b'N', b'G', b'E',
    ];
    assert!(matches!(check_request(raw), Request::Register(_)));
}

#[test]
fn event_status_change_v4() {
    let raw: &[u8] = &[
        0x84, 0x00, 0xff, 0xff, 0x0c, // response v4, stream -1 (§2.3: events), EVENT
        0x00, 0x00, 0x00, 0x1c, // body length 28
        0x00, 0x0d, b'S', b'T', b'A', b'T', b'U', b'S', b'_', b'C', b'H', b'A', b'N', b'G', b'E',
        0x00, 0x02, b'U', b'P', // §4.2.6 change "UP"
        0x04, 127, 0, 0, 1, // [inet] address size 4, 127.0.0.1
        0x00, 0x00, 0x23, 0x52, // port 9042
    ];
    assert!(matches!(check_response(raw), Response::Event(_)));
}

#[test]
fn batch_v5_with_int_flags() {
    let raw: &[u8] = &[
        0x05, 0x00, 0x00, 0x04, 0x0d, // request v5, stream 4, BATCH
        0x00, 0x00, 0x00, 0x1b, // body length 27
        0x02, // §4.1.7 <type> COUNTER
        0x00, 0x01, // <n> 1 statement
        0x00, 0x00, 0x00, 0x00, 0x05, b'U', b'P', b'D', b'*', b'1', // kind 0, [long string]
        0x00, 0x00, // [short] 0 values
        0x00, 0x01, // <consistency> ONE
        0x00, 0x00, 0x01, 0x10, // v5 <flags> [int]: serial 0x10 | now_in_seconds 0x100
        0x00, 0x09, // <serial_consistency> LOCAL_SERIAL
        0x00, 0x00, 0x00, 0x3c, // <now_in_seconds> 60
    ];
    let Request::Batch(b) = check_request(raw) else {
        panic!()
    };
    assert_eq!(
        b.children[0].statement,
        BatchStatement::Query("UPD*1".into())
    );
    assert_eq!(b.serial_consistency, Some(Consistency::LocalSerial));
    assert_eq!(b.now_in_seconds, Some(60));
}

#[test]
fn auth_challenge_response_success() {
    // §4.2.7 AUTH_CHALLENGE with token "ch".
    check_response(&[0x84, 0, 0, 1, 0x0e, 0, 0, 0, 6, 0, 0, 0, 2, b'c', b'h']);
    // §4.1.2 AUTH_RESPONSE, SASL PLAIN "\0u\0p".
    let raw = [
        0x04, 0, 0, 1, 0x0f, 0, 0, 0, 8, 0, 0, 0, 4, 0, b'u', 0, b'p',
    ];
    let Request::AuthResponse(r) = check_request(&raw) else {
        panic!()
    };
    assert_eq!(r.token.as_deref(), Some(&b"\0u\0p"[..]));
    // §4.2.8 AUTH_SUCCESS with a null token ([bytes] -1).
    check_response(&[0x84, 0, 0, 1, 0x10, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]);
}
