//! Repair requests as the proxy sends them (partition keys as CQL literal text): every
//! literal parsed for its column's type and bound, rows copied with their writetimes, and a
//! literal that is no value of its column refused naming the key and the column.

use std::sync::Arc;

use ferry_migrator::TableName;
use ferry_migrator::update::{RepairError, Repairer};
use ferry_update::PartitionKey;

use crate::harness::{Recorder, assert_same_cells, env};

#[tokio::test]
async fn compound_keys_of_text_uuid_and_blob_are_bound_and_copied() {
    let env = env(190).await;
    let ddl = [
        "CREATE KEYSPACE rp WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE rp.t (t text, n int, u uuid, b blob, c int, v text, \
         PRIMARY KEY ((t, n, u, b), c))",
    ];
    env.origin_cql(&ddl).await;
    env.target_cql(&ddl).await;
    let uuid = "6f1e3b9e-1d2c-4c8e-9a3b-0e6f2b1c9d7e";
    env.origin_cql(&[
        // A text key with quotes and what would have been a clause, spliced as text.
        &format!(
            "INSERT INTO rp.t (t, n, u, b, c, v) VALUES ('it''s; AND n = 2', 1, {uuid}, 0x00ff, 1, 'a') \
             USING TIMESTAMP 1000"
        ),
        &format!(
            "INSERT INTO rp.t (t, n, u, b, c, v) VALUES ('it''s; AND n = 2', 1, {uuid}, 0x00ff, 2, 'b') \
             USING TIMESTAMP 2000"
        ),
        &format!(
            "INSERT INTO rp.t (t, n, u, b, c, v) VALUES ('', -7, {uuid}, 0x, 1, 'c') \
             USING TIMESTAMP 3000 AND TTL 86400"
        ),
    ])
    .await;
    let repairer = Repairer::new(env.spec(&["rp.t"]), Arc::new(Recorder::default()));
    let table = TableName::new("rp", "t");
    let keys = vec![
        PartitionKey::new(["'it''s; AND n = 2'", "1", uuid, "0x00ff"]),
        PartitionKey::new(["''", "-7", uuid, "0x"]),
    ];
    assert_eq!(repairer.repair(&table, &keys).await.unwrap(), 2);
    assert_same_cells(&env, "rp", "t");

    // One malformed key among good ones: the good ones are still repaired, the request is
    // refused naming the key and its column.
    let bad = PartitionKey::new(["'x'", "'one'", uuid, "0x00"]);
    let e = repairer
        .repair(&table, &[keys[0].clone(), bad])
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            RepairError::Partitions {
                failed: 1,
                total: 2,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "1 of 2 partitions of rp.t not repaired; first: ('x', 'one', {uuid}, 0x00): \
             column n: \"'one'\" is not a int value: Invalid STRING constant (one) for \"n\" of \
             type int"
        )
    );
    for (bad, column) in [
        (PartitionKey::new(["'x'", "1", "6f1e3b9e", "0x00"]), "u"),
        (PartitionKey::new(["'x'", "1", uuid, "0xf"]), "b"),
        (PartitionKey::new(["'x' AND n = 1", "1", uuid, "0x00"]), "t"),
    ] {
        let e = repairer
            .repair(&table, &[bad])
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!(": column {column}: ")), "{e}");
    }
    assert_same_cells(&env, "rp", "t");
    env.stop().await;
}
