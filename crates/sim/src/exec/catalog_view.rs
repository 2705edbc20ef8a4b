//! The schema catalog as the rows of `system_schema.*` and `DESCRIBE` see it.

use crate::schema::{Catalog, ClusteringOrder, ColumnKind as StoreKind, TableDef};

use super::schema_tables::{ColumnKind, ColumnRow, KeyspaceRow, TableRow, TypeRow};

/// Keyspaces the simulator answers itself; they are listed like Cassandra lists its system
/// keyspaces so drivers find the tables they query.
pub const SYSTEM_KEYSPACES: &[&str] = &["system", "system_schema", "system_virtual_schema"];

fn local_keyspace(name: &str) -> KeyspaceRow {
    KeyspaceRow {
        name: name.to_owned(),
        durable_writes: true,
        replication: vec![(
            "class".into(),
            "org.apache.cassandra.locator.LocalStrategy".into(),
        )],
    }
}

pub fn keyspaces(catalog: &Catalog) -> Vec<KeyspaceRow> {
    let mut rows: Vec<KeyspaceRow> = SYSTEM_KEYSPACES.iter().map(|k| local_keyspace(k)).collect();
    rows.extend(catalog.keyspaces().map(|k| KeyspaceRow {
        name: k.name.clone(),
        durable_writes: k.durable_writes,
        replication: k.replication.clone(),
    }));
    rows
}

pub fn table_row(t: &TableDef) -> TableRow {
    let mut flags = vec!["compound".to_owned()];
    if t.is_counter {
        flags.push("counter".to_owned());
    }
    TableRow {
        keyspace: t.keyspace.clone(),
        name: t.name.clone(),
        id: t.id,
        comment: t.options.comment.clone(),
        default_time_to_live: t.options.default_time_to_live,
        gc_grace_seconds: t.options.gc_grace_seconds,
        flags,
    }
}

pub fn tables(catalog: &Catalog) -> Vec<TableRow> {
    catalog
        .keyspaces()
        .flat_map(|k| k.tables.values().map(|t| table_row(t)))
        .collect()
}

pub fn column_rows(t: &TableDef) -> Vec<ColumnRow> {
    t.columns()
        .map(|c| ColumnRow {
            keyspace: t.keyspace.clone(),
            table: t.name.clone(),
            name: c.name.clone(),
            kind: match c.kind {
                StoreKind::PartitionKey(i) => ColumnKind::PartitionKey(i as u16),
                StoreKind::Clustering(i) => {
                    let desc = t
                        .clustering
                        .get(i)
                        .is_some_and(|(_, o)| *o == ClusteringOrder::Desc);
                    ColumnKind::Clustering(i as u16, desc)
                }
                StoreKind::Static => ColumnKind::Static,
                StoreKind::Regular => ColumnKind::Regular,
            },
            ty: c.ty.clone(),
            frozen: c.frozen,
        })
        .collect()
}

pub fn columns(catalog: &Catalog) -> Vec<ColumnRow> {
    catalog
        .keyspaces()
        .flat_map(|k| k.tables.values().flat_map(|t| column_rows(t)))
        .collect()
}

pub fn types(catalog: &Catalog) -> Vec<TypeRow> {
    catalog
        .keyspaces()
        .flat_map(|k| {
            k.types.values().map(|u| TypeRow {
                keyspace: u.keyspace.clone(),
                name: u.name.clone(),
                fields: u.fields.clone(),
            })
        })
        .collect()
}
