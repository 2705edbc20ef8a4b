//! DDL through the driver, and the schema metadata the driver builds from `system_schema.*`.

use scylla::cluster::metadata::{CollectionType, ColumnKind, ColumnType, NativeType, Strategy};

use super::{connect, run, session_in};

#[tokio::test]
async fn ddl_reaches_the_drivers_schema_metadata() {
    let s = session_in("sc_ddl").await;
    run(&s, "CREATE TYPE addr (street text, zip int)").await;
    run(
        &s,
        "CREATE TABLE events (tenant text, day int, at timeuuid, seq int, owner text static, \
         payload text, tags set<text>, home frozen<addr>, PRIMARY KEY ((tenant, day), at, seq)) \
         WITH CLUSTERING ORDER BY (at DESC, seq ASC) AND comment = 'ddl test' \
         AND default_time_to_live = 0",
    )
    .await;
    // IF NOT EXISTS on an existing table is a no-op; without it, an AlreadyExists error.
    run(&s, "CREATE TABLE IF NOT EXISTS events (k int PRIMARY KEY)").await;
    let err = s
        .query_unpaged("CREATE TABLE events (k int PRIMARY KEY)", &[])
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("AlreadyExists"), "{err:?}");

    s.refresh_metadata().await.unwrap();
    let state = s.get_cluster_state();
    let ks = state.get_keyspace("sc_ddl").expect("keyspace in metadata");
    assert_eq!(
        ks.strategy,
        Strategy::SimpleStrategy {
            replication_factor: 1
        }
    );
    let udt = ks.user_defined_types.get("addr").expect("UDT in metadata");
    let fields: Vec<(&str, &ColumnType)> = udt
        .field_types
        .iter()
        .map(|(n, t)| (n.as_ref(), t))
        .collect();
    assert_eq!(
        fields,
        [
            ("street", &ColumnType::Native(NativeType::Text)),
            ("zip", &ColumnType::Native(NativeType::Int)),
        ]
    );

    let t = ks.tables.get("events").expect("table in metadata");
    assert_eq!(t.partition_key, ["tenant", "day"]);
    assert_eq!(t.clustering_key, ["at", "seq"]);
    let kind = |c: &str| t.columns.get(c).map(|c| c.kind.clone());
    assert_eq!(kind("tenant"), Some(ColumnKind::PartitionKey));
    assert_eq!(kind("at"), Some(ColumnKind::Clustering));
    assert_eq!(kind("owner"), Some(ColumnKind::Static));
    assert_eq!(kind("payload"), Some(ColumnKind::Regular));
    assert_eq!(
        t.columns["tags"].typ,
        ColumnType::Collection {
            frozen: false,
            typ: CollectionType::Set(Box::new(ColumnType::Native(NativeType::Text)))
        }
    );
    assert!(
        matches!(&t.columns["home"].typ, ColumnType::UserDefinedType { frozen: true, definition } if definition.name == "addr"),
        "{:?}",
        t.columns["home"].typ
    );

    // ALTER and DROP show up after the next refresh.
    run(&s, "ALTER TABLE events ADD note text").await;
    run(&s, "ALTER TABLE events DROP payload").await;
    s.refresh_metadata().await.unwrap();
    let state = s.get_cluster_state();
    let t = &state.get_keyspace("sc_ddl").unwrap().tables["events"];
    assert!(t.columns.contains_key("note"));
    assert!(!t.columns.contains_key("payload"));
    run(&s, "DROP TABLE events").await;
    s.refresh_metadata().await.unwrap();
    assert!(
        !s.get_cluster_state()
            .get_keyspace("sc_ddl")
            .unwrap()
            .tables
            .contains_key("events")
    );
}

#[tokio::test]
async fn a_second_session_sees_the_schema_and_three_nodes() {
    let s = session_in("sc_second").await;
    run(&s, "CREATE TABLE t (k int PRIMARY KEY, v text)").await;
    let other = connect(None).await;
    let state = other.get_cluster_state();
    assert_eq!(state.get_nodes_info().len(), 3);
    let t = &state.get_keyspace("sc_second").unwrap().tables["t"];
    assert_eq!(t.partition_key, ["k"]);
    // The clustering DESC order shows in a prepared SELECT's result: newest first.
    run(
        &other,
        "CREATE TABLE sc_second.ordered (k int, c int, PRIMARY KEY (k, c)) WITH CLUSTERING ORDER BY (c DESC)",
    )
    .await;
    for c in [2, 7, 4] {
        other
            .query_unpaged("INSERT INTO sc_second.ordered (k, c) VALUES (1, ?)", (c,))
            .await
            .unwrap();
    }
    let cs: Vec<(i32,)> =
        super::rows(&other, "SELECT c FROM sc_second.ordered WHERE k = 1", ()).await;
    assert_eq!(cs, [(7,), (4,), (2,)]);
}
