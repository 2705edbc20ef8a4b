//! RESULT (opcode 0x08, spec v4/v5 §4.2.5): `<kind: [int]>` then Void, Rows, Set_keyspace,
//! Prepared or Schema_change.
//!
//! Rows keep their cell region as the wire bytes (a `Bytes` slice of the body) plus an offset
//! table: decoding allocates one `Vec` however many cells there are, re-encoding is one copy,
//! and values are decoded to [`CqlValue`] only when asked for.

use bytes::{BufMut, Bytes, BytesMut};

use super::schema_change::SchemaChange;
use crate::protocol::ProtocolVersion;
use crate::request::params::share;
use crate::types::{ColumnType, CqlValue, decode_value, read_column_type, write_column_type};
use crate::wire::{self, DecodeError, EncodeError};

/// RESULT kinds.
pub mod kind {
    pub const VOID: i32 = 0x0001;
    pub const ROWS: i32 = 0x0002;
    pub const SET_KEYSPACE: i32 = 0x0003;
    pub const PREPARED: i32 = 0x0004;
    pub const SCHEMA_CHANGE: i32 = 0x0005;
}

/// Rows and prepared metadata flag bits.
pub mod metadata_flags {
    pub const GLOBAL_TABLES_SPEC: u32 = 0x0001;
    pub const HAS_MORE_PAGES: u32 = 0x0002;
    pub const NO_METADATA: u32 = 0x0004;
    /// v5: a new result metadata id follows.
    pub const METADATA_CHANGED: u32 = 0x0008;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultBody {
    Void,
    Rows(Rows),
    SetKeyspace(String),
    Prepared(Prepared),
    SchemaChange(SchemaChange),
}

/// A column's table, name and type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ColumnSpec {
    pub keyspace: String,
    pub table: String,
    pub name: String,
    pub ty: ColumnType,
}

impl ColumnSpec {
    pub fn new(keyspace: &str, table: &str, name: &str, ty: ColumnType) -> Self {
        Self {
            keyspace: keyspace.to_owned(),
            table: table.to_owned(),
            name: name.to_owned(),
            ty,
        }
    }
}

/// Reads `[<global_table_spec>?<col_spec_1>…<col_spec_n>]`.
fn read_column_specs(
    buf: &mut &[u8],
    count: usize,
    global: bool,
    version: ProtocolVersion,
) -> Result<Vec<ColumnSpec>, DecodeError> {
    let global_spec = if global {
        Some((
            wire::read_string(buf, "keyspace name")?.to_owned(),
            wire::read_string(buf, "table name")?.to_owned(),
        ))
    } else {
        None
    };
    // A spec takes at least 4 bytes (name + type id): bound the allocation by the input.
    let mut out = Vec::with_capacity(count.min(buf.len() / 4));
    for _ in 0..count {
        let (keyspace, table) = match &global_spec {
            Some((k, t)) => (k.clone(), t.clone()),
            None => (
                wire::read_string(buf, "keyspace name")?.to_owned(),
                wire::read_string(buf, "table name")?.to_owned(),
            ),
        };
        let name = wire::read_string(buf, "column name")?.to_owned();
        let ty = read_column_type(buf, version)?;
        out.push(ColumnSpec {
            keyspace,
            table,
            name,
            ty,
        });
    }
    Ok(out)
}

/// Whether all columns share one table, so the compact "global table spec" form applies.
fn shares_one_table(columns: &[ColumnSpec]) -> bool {
    columns
        .windows(2)
        .all(|w| w[0].keyspace == w[1].keyspace && w[0].table == w[1].table)
}

fn write_column_specs(
    buf: &mut impl BufMut,
    columns: &[ColumnSpec],
    global: bool,
    version: ProtocolVersion,
) -> Result<(), EncodeError> {
    if let Some(first) = columns.first().filter(|_| global) {
        wire::write_string(buf, &first.keyspace, "keyspace name")?;
        wire::write_string(buf, &first.table, "table name")?;
    }
    for c in columns {
        if !global {
            wire::write_string(buf, &c.keyspace, "keyspace name")?;
            wire::write_string(buf, &c.table, "table name")?;
        }
        wire::write_string(buf, &c.name, "column name")?;
        write_column_type(buf, &c.ty, version)?;
    }
    Ok(())
}

fn count_to_int(n: usize, what: &'static str) -> Result<i32, EncodeError> {
    i32::try_from(n).map_err(|_| EncodeError::TooLong {
        what,
        len: n,
        max: i32::MAX as usize,
    })
}

fn int_to_count(n: i32, what: &'static str) -> Result<usize, DecodeError> {
    usize::try_from(n).map_err(|_| DecodeError::NegativeLength {
        what,
        len: n.into(),
    })
}

/// `<metadata>` of a Rows result or of a Prepared result's result metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowsMetadata {
    pub columns_count: usize,
    /// Present when more pages follow.
    pub paging_state: Option<Bytes>,
    /// v5: the new result metadata id when the server's differs from the client's.
    pub new_metadata_id: Option<Bytes>,
    /// `None` when the server left metadata out (the client asked with skip_metadata).
    pub columns: Option<Vec<ColumnSpec>>,
    /// Whether the columns were sent with one global table spec (kept so re-encoding is
    /// byte-identical).
    pub global_table_spec: bool,
}

impl RowsMetadata {
    /// Metadata for `columns`, in the compact global form when they share a table.
    pub fn new(columns: Vec<ColumnSpec>) -> Self {
        Self {
            columns_count: columns.len(),
            paging_state: None,
            new_metadata_id: None,
            global_table_spec: !columns.is_empty() && shares_one_table(&columns),
            columns: Some(columns),
        }
    }

    pub fn flags(&self) -> u32 {
        use metadata_flags::*;
        let mut f = 0;
        if self.global_table_spec && self.columns.is_some() {
            f |= GLOBAL_TABLES_SPEC;
        }
        if self.paging_state.is_some() {
            f |= HAS_MORE_PAGES;
        }
        if self.columns.is_none() {
            f |= NO_METADATA;
        }
        if self.new_metadata_id.is_some() {
            f |= METADATA_CHANGED;
        }
        f
    }

    pub fn decode(
        buf: &mut &[u8],
        body: &Bytes,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        use metadata_flags::*;
        let flags = wire::read_int(buf, "metadata flags")? as u32;
        let columns_count = int_to_count(wire::read_int(buf, "columns count")?, "columns count")?;
        let paging_state = if flags & HAS_MORE_PAGES != 0 {
            wire::read_bytes(buf, "paging state")?.map(|s| share(body, s))
        } else {
            None
        };
        let new_metadata_id = if flags & METADATA_CHANGED != 0 {
            if version < ProtocolVersion::V5 {
                return Err(DecodeError::InvalidValue {
                    what: "metadata flags",
                    value: flags.into(),
                });
            }
            Some(share(body, wire::read_short_bytes(buf, "new metadata id")?))
        } else {
            None
        };
        let global = flags & GLOBAL_TABLES_SPEC != 0;
        let columns = if flags & NO_METADATA != 0 {
            None
        } else {
            Some(read_column_specs(buf, columns_count, global, version)?)
        };
        Ok(Self {
            columns_count,
            paging_state,
            new_metadata_id,
            columns,
            global_table_spec: global,
        })
    }

    pub fn encode(
        &self,
        buf: &mut impl BufMut,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        if self.new_metadata_id.is_some() && version < ProtocolVersion::V5 {
            return Err(EncodeError::Invalid {
                what: "new metadata id",
                reason: format!("needs protocol v5, not {version}"),
            });
        }
        if let Some(cols) = &self.columns {
            if cols.len() != self.columns_count {
                return Err(EncodeError::Invalid {
                    what: "rows metadata",
                    reason: format!(
                        "columns_count {} but {} column specs",
                        self.columns_count,
                        cols.len()
                    ),
                });
            }
            if self.global_table_spec && !shares_one_table(cols) {
                return Err(EncodeError::Invalid {
                    what: "rows metadata",
                    reason: "a global table spec needs every column in one table".to_owned(),
                });
            }
        }
        wire::write_int(buf, self.flags() as i32);
        wire::write_int(buf, count_to_int(self.columns_count, "columns count")?);
        if let Some(state) = &self.paging_state {
            wire::write_bytes(buf, Some(state), "paging state")?;
        }
        if let Some(id) = &self.new_metadata_id {
            wire::write_short_bytes(buf, id, "new metadata id")?;
        }
        if let Some(cols) = &self.columns {
            write_column_specs(buf, cols, self.global_table_spec, version)?;
        }
        Ok(())
    }
}

/// Where one cell sits in [`Rows::data`]: `len < 0` is null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CellRef {
    start: u32,
    len: i32,
}

/// A page of rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rows {
    pub metadata: RowsMetadata,
    rows_count: usize,
    /// The rows as sent: `rows_count × columns_count` `[bytes]` cells.
    data: Bytes,
    cells: Vec<CellRef>,
}

impl Rows {
    pub fn rows_count(&self) -> usize {
        self.rows_count
    }

    pub fn columns_count(&self) -> usize {
        self.metadata.columns_count
    }

    /// The raw cell bytes of one row and column; `None` for null.
    pub fn cell(&self, row: usize, column: usize) -> Option<&[u8]> {
        let c = self.cells.get(row * self.metadata.columns_count + column)?;
        let len = usize::try_from(c.len).ok()?;
        self.data.get(c.start as usize..c.start as usize + len)
    }

    /// A cell as a zero-copy `Bytes`.
    pub fn cell_bytes(&self, row: usize, column: usize) -> Option<Bytes> {
        self.cell(row, column).map(|s| share(&self.data, s))
    }

    /// Decodes one row to typed values using the metadata's column types (errors if the result
    /// carries no metadata).
    pub fn typed_row(&self, row: usize) -> Result<Vec<Option<CqlValue>>, DecodeError> {
        let cols = self
            .metadata
            .columns
            .as_ref()
            .ok_or(DecodeError::Malformed {
                what: "rows",
                reason: "no metadata to decode values with (skip_metadata)".to_owned(),
            })?;
        (0..cols.len())
            .map(|c| {
                self.cell(row, c)
                    .map(|raw| decode_value(&cols[c].ty, raw))
                    .transpose()
            })
            .collect()
    }

    /// Builds rows from cells, row-major; each row must have `metadata.columns_count` cells.
    pub fn from_rows<'a, R, C>(metadata: RowsMetadata, rows: R) -> Result<Self, EncodeError>
    where
        R: IntoIterator<Item = C>,
        C: IntoIterator<Item = Option<&'a [u8]>>,
    {
        let mut builder = RowsBuilder::new(metadata);
        for row in rows {
            builder.push_row(row)?;
        }
        Ok(builder.finish())
    }

    pub fn decode(
        buf: &mut &[u8],
        body: &Bytes,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let metadata = RowsMetadata::decode(buf, body, version)?;
        let rows_count = int_to_count(wire::read_int(buf, "rows count")?, "rows count")?;
        let start = *buf;
        let total =
            rows_count
                .checked_mul(metadata.columns_count)
                .ok_or(DecodeError::Malformed {
                    what: "rows",
                    reason: format!(
                        "{rows_count} rows × {} columns overflows",
                        metadata.columns_count
                    ),
                })?;
        // Every cell takes at least 4 bytes, so the count is checked against the input first.
        if total > buf.len() / 4 && total > 0 {
            return Err(DecodeError::TooShort {
                what: "rows",
                needed: total * 4,
                remaining: buf.len(),
            });
        }
        let mut cells = Vec::with_capacity(total);
        for _ in 0..total {
            let len = wire::read_int(buf, "cell")?;
            let offset = (start.len() - buf.len()) as u32;
            if len > 0 {
                wire::read_raw(buf, len as usize, "cell")?;
            }
            cells.push(CellRef { start: offset, len });
        }
        let data = share(body, &start[..start.len() - buf.len()]);
        Ok(Self {
            metadata,
            rows_count,
            data,
            cells,
        })
    }

    pub fn encode(
        &self,
        buf: &mut impl BufMut,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        self.metadata.encode(buf, version)?;
        wire::write_int(buf, count_to_int(self.rows_count, "rows count")?);
        buf.put_slice(&self.data);
        Ok(())
    }
}

/// Builds a [`Rows`] page cell by cell, writing the wire form as it goes.
#[derive(Debug)]
pub struct RowsBuilder {
    metadata: RowsMetadata,
    data: BytesMut,
    cells: Vec<CellRef>,
    rows_count: usize,
}

impl RowsBuilder {
    pub fn new(metadata: RowsMetadata) -> Self {
        Self {
            metadata,
            data: BytesMut::new(),
            cells: Vec::new(),
            rows_count: 0,
        }
    }

    pub fn push_row<'a>(
        &mut self,
        row: impl IntoIterator<Item = Option<&'a [u8]>>,
    ) -> Result<(), EncodeError> {
        let before = self.cells.len();
        for cell in row {
            let len = match cell {
                Some(v) => i32::try_from(v.len()).map_err(|_| EncodeError::TooLong {
                    what: "cell",
                    len: v.len(),
                    max: i32::MAX as usize,
                })?,
                None => -1,
            };
            self.data.put_i32(len);
            let start = u32::try_from(self.data.len()).map_err(|_| EncodeError::TooLong {
                what: "rows",
                len: self.data.len(),
                max: u32::MAX as usize,
            })?;
            if let Some(v) = cell {
                self.data.put_slice(v);
            }
            self.cells.push(CellRef { start, len });
        }
        let got = self.cells.len() - before;
        if got != self.metadata.columns_count {
            return Err(EncodeError::Invalid {
                what: "row",
                reason: format!("{got} cells for {} columns", self.metadata.columns_count),
            });
        }
        self.rows_count += 1;
        Ok(())
    }

    pub fn finish(self) -> Rows {
        Rows {
            metadata: self.metadata,
            rows_count: self.rows_count,
            data: self.data.freeze(),
            cells: self.cells,
        }
    }
}

/// `<metadata>` of a Prepared result: the bound variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedMetadata {
    /// Indexes of the bound variables that make up the partition key (v4+), so drivers route.
    pub pk_indexes: Vec<u16>,
    pub columns: Vec<ColumnSpec>,
    pub global_table_spec: bool,
}

impl PreparedMetadata {
    pub fn new(columns: Vec<ColumnSpec>, pk_indexes: Vec<u16>) -> Self {
        Self {
            pk_indexes,
            global_table_spec: !columns.is_empty() && shares_one_table(&columns),
            columns,
        }
    }

    pub fn decode(buf: &mut &[u8], version: ProtocolVersion) -> Result<Self, DecodeError> {
        let flags = wire::read_int(buf, "prepared metadata flags")? as u32;
        let columns_count = int_to_count(wire::read_int(buf, "columns count")?, "columns count")?;
        let mut pk_indexes = Vec::new();
        if version >= ProtocolVersion::V4 {
            let pk_count = int_to_count(wire::read_int(buf, "pk count")?, "pk count")?;
            pk_indexes.reserve(pk_count.min(buf.len() / 2));
            for _ in 0..pk_count {
                pk_indexes.push(wire::read_short(buf, "pk index")?);
            }
        }
        let global = flags & metadata_flags::GLOBAL_TABLES_SPEC != 0;
        let columns = read_column_specs(buf, columns_count, global, version)?;
        Ok(Self {
            pk_indexes,
            columns,
            global_table_spec: global,
        })
    }

    pub fn encode(
        &self,
        buf: &mut impl BufMut,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        let global = self.global_table_spec && !self.columns.is_empty();
        if global && !shares_one_table(&self.columns) {
            return Err(EncodeError::Invalid {
                what: "prepared metadata",
                reason: "a global table spec needs every column in one table".to_owned(),
            });
        }
        wire::write_int(
            buf,
            if global {
                metadata_flags::GLOBAL_TABLES_SPEC as i32
            } else {
                0
            },
        );
        wire::write_int(buf, count_to_int(self.columns.len(), "columns count")?);
        if version >= ProtocolVersion::V4 {
            wire::write_int(buf, count_to_int(self.pk_indexes.len(), "pk count")?);
            for &i in &self.pk_indexes {
                wire::write_short(buf, i);
            }
        }
        write_column_specs(buf, &self.columns, global, version)
    }
}

/// `<id>[<result_metadata_id> (v5)]<metadata><result_metadata>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub id: Bytes,
    /// v5: identifies `result_metadata`, so EXECUTE can say which version the client holds.
    pub result_metadata_id: Option<Bytes>,
    pub metadata: PreparedMetadata,
    pub result_metadata: RowsMetadata,
}

impl Prepared {
    pub fn decode(
        buf: &mut &[u8],
        body: &Bytes,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let id = share(body, wire::read_short_bytes(buf, "prepared id")?);
        let result_metadata_id = if version >= ProtocolVersion::V5 {
            Some(share(
                body,
                wire::read_short_bytes(buf, "result metadata id")?,
            ))
        } else {
            None
        };
        let metadata = PreparedMetadata::decode(buf, version)?;
        let result_metadata = RowsMetadata::decode(buf, body, version)?;
        Ok(Self {
            id,
            result_metadata_id,
            metadata,
            result_metadata,
        })
    }

    pub fn encode(
        &self,
        buf: &mut impl BufMut,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        wire::write_short_bytes(buf, &self.id, "prepared id")?;
        if version >= ProtocolVersion::V5 {
            let id = self
                .result_metadata_id
                .as_deref()
                .ok_or(EncodeError::Invalid {
                    what: "result metadata id",
                    reason: "a v5 Prepared result needs a result metadata id".to_owned(),
                })?;
            wire::write_short_bytes(buf, id, "result metadata id")?;
        }
        self.metadata.encode(buf, version)?;
        self.result_metadata.encode(buf, version)
    }
}

impl ResultBody {
    pub fn kind(&self) -> i32 {
        match self {
            Self::Void => kind::VOID,
            Self::Rows(_) => kind::ROWS,
            Self::SetKeyspace(_) => kind::SET_KEYSPACE,
            Self::Prepared(_) => kind::PREPARED,
            Self::SchemaChange(_) => kind::SCHEMA_CHANGE,
        }
    }

    pub fn decode(
        buf: &mut &[u8],
        body: &Bytes,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        Ok(match wire::read_int(buf, "result kind")? {
            kind::VOID => Self::Void,
            kind::ROWS => Self::Rows(Rows::decode(buf, body, version)?),
            kind::SET_KEYSPACE => Self::SetKeyspace(wire::read_string(buf, "keyspace")?.to_owned()),
            kind::PREPARED => Self::Prepared(Prepared::decode(buf, body, version)?),
            kind::SCHEMA_CHANGE => Self::SchemaChange(SchemaChange::decode(buf, version)?),
            other => {
                return Err(DecodeError::InvalidValue {
                    what: "result kind",
                    value: other.into(),
                });
            }
        })
    }

    pub fn encode(
        &self,
        buf: &mut impl BufMut,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        wire::write_int(buf, self.kind());
        match self {
            Self::Void => Ok(()),
            Self::Rows(r) => r.encode(buf, version),
            Self::SetKeyspace(ks) => wire::write_string(buf, ks, "keyspace"),
            Self::Prepared(p) => p.encode(buf, version),
            Self::SchemaChange(s) => s.encode(buf, version),
        }
    }
}
