//! Every CQL type written through a prepared statement with typed Rust values and read back.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use scylla::value::{
    Counter, CqlDate, CqlDecimal, CqlDuration, CqlTime, CqlTimestamp, CqlTimeuuid, CqlValue,
    CqlVarint,
};
use scylla::{DeserializeRow, DeserializeValue, SerializeRow, SerializeValue};

use super::{rows, run, session_in};

#[derive(Debug, Clone, PartialEq, SerializeValue, DeserializeValue)]
struct Addr {
    street: Option<String>,
    zip: Option<i32>,
}

/// One row of `everything`; every column optional so the same struct reads a row of nulls.
#[derive(Debug, Clone, PartialEq, Default, SerializeRow, DeserializeRow)]
struct Everything {
    k: i32,
    a: Option<String>,
    b: Option<i64>,
    bl: Option<Vec<u8>>,
    bo: Option<bool>,
    d: Option<CqlDate>,
    de: Option<CqlDecimal>,
    db: Option<f64>,
    du: Option<CqlDuration>,
    f: Option<f32>,
    ip: Option<IpAddr>,
    n: Option<i32>,
    si: Option<i16>,
    t: Option<String>,
    tm: Option<CqlTime>,
    ts: Option<CqlTimestamp>,
    tu: Option<CqlTimeuuid>,
    ti: Option<i8>,
    // The driver's `Uuid` comes from the `uuid` crate, which is not a dependency here.
    u: Option<CqlValue>,
    vi: Option<CqlVarint>,
    vec: Option<Vec<f32>>,
    l: Option<Vec<i32>>,
    fl: Option<Vec<String>>,
    st: Option<BTreeSet<String>>,
    fst: Option<BTreeSet<i32>>,
    m: Option<BTreeMap<String, i32>>,
    fm: Option<BTreeMap<i32, String>>,
    tup: Option<(i32, String, f64)>,
    ud: Option<Addr>,
    udn: Option<Addr>,
}

const COLUMNS: &str = "k, a, b, bl, bo, d, de, db, du, f, ip, n, si, t, tm, ts, tu, ti, u, vi, \
                       vec, l, fl, st, fst, m, fm, tup, ud, udn";

fn sample() -> Everything {
    // A version-1 uuid, as timeuuid requires.
    let tu = CqlTimeuuid::from_bytes([
        0xe7, 0xa5, 0xb2, 0xc0, 0x1f, 0x3a, 0x11, 0xee, 0xbe, 0x56, 0x02, 0x42, 0xac, 0x12, 0x00,
        0x02,
    ]);
    let u = CqlTimeuuid::from_bytes([
        0x55, 0x0e, 0x84, 0x00, 0xe2, 0x9b, 0x41, 0xd4, 0xa7, 0x16, 0x44, 0x66, 0x55, 0x44, 0x00,
        0x00,
    ]);
    Everything {
        k: 1,
        a: Some("ascii only".into()),
        b: Some(-9_000_000_000),
        bl: Some(vec![0, 1, 2, 0xff]),
        bo: Some(true),
        d: Some(CqlDate((1 << 31) + 19_000)),
        // 12.345
        de: Some(CqlDecimal::from_signed_be_bytes_and_exponent(
            vec![0x30, 0x39],
            3,
        )),
        db: Some(-1.5e300),
        du: Some(CqlDuration {
            months: 1,
            days: 2,
            nanoseconds: 3_000_000_007,
        }),
        f: Some(3.25),
        ip: Some("2001:db8::1".parse().unwrap()),
        n: Some(i32::MIN),
        si: Some(-32_000),
        t: Some("tëxt ✓".into()),
        tm: Some(CqlTime(13 * 3_600_000_000_000 + 5)),
        ts: Some(CqlTimestamp(1_700_000_000_123)),
        tu: Some(tu),
        ti: Some(-128),
        u: Some(CqlValue::Uuid(u.into())),
        // 2^64, wider than any native integer.
        vi: Some(CqlVarint::from_signed_bytes_be(vec![
            1, 0, 0, 0, 0, 0, 0, 0, 0,
        ])),
        vec: Some(vec![0.5, -1.0, 2.25]),
        l: Some(vec![3, 1, 3]),
        fl: Some(vec!["x".into(), "y".into()]),
        st: Some(["b".to_owned(), "a".to_owned()].into()),
        fst: Some([5, -5].into()),
        m: Some([("one".to_owned(), 1), ("two".to_owned(), 2)].into()),
        fm: Some([(2, "b".to_owned()), (1, "a".to_owned())].into()),
        tup: Some((7, "seven".into(), 7.5)),
        ud: Some(Addr {
            street: Some("Main".into()),
            zip: Some(12345),
        }),
        udn: Some(Addr {
            street: None,
            zip: Some(1),
        }),
    }
}

#[tokio::test]
async fn every_type_roundtrips_through_prepared_statements() {
    let s = session_in("ty_all").await;
    run(&s, "CREATE TYPE addr (street text, zip int)").await;
    run(
        &s,
        "CREATE TABLE everything (k int PRIMARY KEY, a ascii, b bigint, bl blob, bo boolean, \
         d date, de decimal, db double, du duration, f float, ip inet, n int, si smallint, \
         t text, tm time, ts timestamp, tu timeuuid, ti tinyint, u uuid, vi varint, \
         vec vector<float, 3>, l list<int>, fl frozen<list<text>>, st set<text>, \
         fst frozen<set<int>>, m map<text, int>, fm frozen<map<int, text>>, \
         tup tuple<int, text, double>, ud frozen<addr>, udn addr)",
    )
    .await;
    let marks = vec!["?"; COLUMNS.split(',').count()].join(", ");
    let insert = s
        .prepare(format!(
            "INSERT INTO everything ({COLUMNS}) VALUES ({marks})"
        ))
        .await
        .unwrap();
    let select = s
        .prepare(format!("SELECT {COLUMNS} FROM everything WHERE k = ?"))
        .await
        .unwrap();

    let full = sample();
    s.execute_unpaged(&insert, &full).await.unwrap();
    let empty = Everything {
        k: 2,
        ..Everything::default()
    };
    s.execute_unpaged(&insert, &empty).await.unwrap();

    for want in [full, empty] {
        let got: Everything = s
            .execute_unpaged(&select, (want.k,))
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .single_row()
            .unwrap();
        assert_eq!(got, want);
    }
    // The same values read through an unprepared SELECT (result metadata sent each time).
    let got: Vec<Everything> = rows(
        &s,
        &format!("SELECT {COLUMNS} FROM everything WHERE k IN (1, 2)"),
        (),
    )
    .await;
    assert_eq!(
        got,
        [
            sample(),
            Everything {
                k: 2,
                ..Everything::default()
            }
        ]
    );
}

#[tokio::test]
async fn counters_take_the_drivers_counter_type() {
    let s = session_in("ty_counter").await;
    run(
        &s,
        "CREATE TABLE hits (page text PRIMARY KEY, views counter, clicks counter)",
    )
    .await;
    let bump = s
        .prepare("UPDATE hits SET views = views + ?, clicks = clicks - ? WHERE page = ?")
        .await
        .unwrap();
    for _ in 0..3 {
        s.execute_unpaged(&bump, (Counter(5), Counter(1), "home"))
            .await
            .unwrap();
    }
    let got: Vec<(String, Counter, Counter)> =
        rows(&s, "SELECT page, views, clicks FROM hits", ()).await;
    assert_eq!(got, [("home".to_owned(), Counter(15), Counter(-3))]);
}
