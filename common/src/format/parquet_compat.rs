//! Parquet files that pyarrow and DuckDB read although their writers broke the format, and
//! that the `parquet` crate refuses as they are. Each repair is narrow and named after the
//! writer bug it undoes; a file that needs none is read exactly as the crate decodes it.
//!
//! - A footer field of the wrong Thrift type (Dremio's parquet-mr fork wrote a list where
//!   `ColumnMetaData.bloom_filter_length`, an i32, now lives): the crate decodes field ids
//!   without checking their wire type. We drop such fields from `ColumnMetaData` and decode
//!   again, as readers that skip mistyped fields do.
//! - `dictionary_page_offset = 0` (parquet-mr used 0 for "none", PARQUET-1402): no page can
//!   start inside the `PAR1` magic, so the offset is dropped and the chunk starts at its first
//!   data page, as Arrow C++ and parquet-mr read it.
//! - parquet-mr ≤ 1.2.8 left the dictionary page header out of `total_compressed_size`
//!   (IMPALA-694): the chunk's pages are walked and its size set to what they really take.

use bytes::Bytes;
use parquet::errors::Result as ParquetResult;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataBuilder, RowGroupMetaData};
use std::future::Future;
use std::ops::Range;

/// Thrift compact protocol wire types.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;

/// A cursor over Thrift compact bytes; every read is bounds-checked (`None` = malformed).
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn zigzag(&mut self) -> Option<i64> {
        let v = self.varint()?;
        Some((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// The next field's (wire type, id), or `None` at the struct's stop byte.
    fn field(&mut self, last_id: i16) -> Option<Option<(u8, i16)>> {
        let b = self.byte()?;
        if b == 0 {
            return Some(None);
        }
        let (ty, delta) = (b & 0x0f, b >> 4);
        let id = if delta == 0 {
            i16::try_from(self.zigzag()?).ok()?
        } else {
            last_id.checked_add(i16::from(delta))?
        };
        Some(Some((ty, id)))
    }

    /// A list or set header: (element type, size).
    fn list_header(&mut self) -> Option<(u8, usize)> {
        let b = self.byte()?;
        let size = match b >> 4 {
            15 => usize::try_from(self.varint()?).ok()?,
            n => usize::from(n),
        };
        // Each element takes at least one byte (booleans in lists too).
        (size <= self.buf.len() - self.pos).then_some((b & 0x0f, size))
    }

    fn skip(&mut self, ty: u8, depth: u8) -> Option<()> {
        if depth > 32 {
            return None;
        }
        match ty {
            BOOL_TRUE | BOOL_FALSE => {}
            BYTE => {
                self.byte()?;
            }
            I16 | I32 | I64 => {
                self.varint()?;
            }
            DOUBLE => self.advance(8)?,
            BINARY => {
                let len = usize::try_from(self.varint()?).ok()?;
                self.advance(len)?;
            }
            LIST | SET => {
                let (elem, size) = self.list_header()?;
                for _ in 0..size {
                    if elem == BOOL_TRUE || elem == BOOL_FALSE {
                        self.byte()?; // a boolean element is one byte
                    } else {
                        self.skip(elem, depth + 1)?;
                    }
                }
            }
            MAP => {
                let size = usize::try_from(self.varint()?).ok()?;
                if size > 0 {
                    let types = self.byte()?;
                    for _ in 0..size {
                        self.skip(types >> 4, depth + 1)?;
                        self.skip(types & 0x0f, depth + 1)?;
                    }
                }
            }
            STRUCT => {
                let mut last = 0;
                while let Some((ty, id)) = self.field(last)? {
                    self.skip(ty, depth + 1)?;
                    last = id;
                }
            }
            _ => return None,
        }
        Some(())
    }

    fn advance(&mut self, n: usize) -> Option<()> {
        if n > self.buf.len() - self.pos {
            return None;
        }
        self.pos += n;
        Some(())
    }
}

/// Where in `FileMetaData` a struct sits, for the fields we descend into.
#[derive(Clone, Copy, PartialEq)]
enum Level {
    File,
    RowGroup,
    ColumnChunk,
    ColumnMeta,
    Other,
}

/// The wire type `ColumnMetaData` field `id` must have (parquet.thrift).
fn column_meta_type(id: i16) -> Option<u8> {
    Some(match id {
        1 | 4 | 15 => I32,
        2 | 3 | 8 | 13 => LIST,
        5 | 6 | 7 | 9 | 10 | 11 | 14 => I64,
        12 | 16 | 17 => STRUCT,
        _ => return None,
    })
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn write_field(out: &mut Vec<u8>, ty: u8, id: i16, last: i16) {
    let delta = i32::from(id) - i32::from(last);
    if (1..=15).contains(&delta) {
        out.push(((delta as u8) << 4) | ty);
    } else {
        out.push(ty);
        write_varint(out, ((i64::from(id) << 1) ^ (i64::from(id) >> 63)) as u64);
    }
}

/// Copy one struct, dropping the `ColumnMetaData` fields whose wire type is not the spec's.
/// Returns how many were dropped.
fn copy_struct(c: &mut Cursor, out: &mut Vec<u8>, level: Level) -> Option<usize> {
    let (mut last_in, mut last_out, mut dropped) = (0i16, 0i16, 0);
    while let Some((ty, id)) = c.field(last_in)? {
        last_in = id;
        let child = match (level, id, ty) {
            (Level::File, 4, LIST) => Level::RowGroup,
            (Level::RowGroup, 1, LIST) => Level::ColumnChunk,
            (Level::ColumnChunk, 3, STRUCT) => Level::ColumnMeta,
            _ => Level::Other,
        };
        let mistyped = level == Level::ColumnMeta && column_meta_type(id).is_some_and(|w| w != ty);
        if mistyped {
            c.skip(ty, 0)?;
            dropped += 1;
            continue;
        }
        write_field(out, ty, id, last_out);
        last_out = id;
        match (child, ty) {
            (Level::RowGroup | Level::ColumnChunk, LIST) => {
                let start = c.pos;
                let (elem, size) = c.list_header()?;
                out.extend_from_slice(&c.buf[start..c.pos]);
                if elem != STRUCT {
                    return None;
                }
                for _ in 0..size {
                    dropped += copy_struct(c, out, child)?;
                }
            }
            (Level::ColumnMeta, STRUCT) => dropped += copy_struct(c, out, child)?,
            _ => {
                let start = c.pos;
                c.skip(ty, 0)?;
                out.extend_from_slice(&c.buf[start..c.pos]);
            }
        }
    }
    out.push(0);
    Some(dropped)
}

/// The footer (Thrift `FileMetaData`) without `ColumnMetaData` fields of the wrong wire type;
/// `None` when there are none to drop or the bytes do not parse.
pub fn drop_mistyped_fields(footer: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(footer.len());
    let dropped = copy_struct(&mut Cursor::new(footer), &mut out, Level::File)?;
    (dropped > 0).then_some(out)
}

/// One page header: (page type, header length, compressed page size, values in a data page).
fn page_header(bytes: &[u8]) -> Option<(i64, usize, usize, u64)> {
    let mut c = Cursor::new(bytes);
    let (mut page_type, mut compressed, mut values) = (None, None, 0u64);
    let mut last = 0;
    while let Some((ty, id)) = c.field(last)? {
        last = id;
        match (id, ty) {
            (1, I32) => page_type = Some(c.zigzag()?),
            (3, I32) => compressed = usize::try_from(c.zigzag()?).ok(),
            // DataPageHeader (5) and DataPageHeaderV2 (8) start with num_values.
            (5 | 8, STRUCT) => {
                let mut inner_last = 0;
                while let Some((ity, iid)) = c.field(inner_last)? {
                    inner_last = iid;
                    if iid == 1 && ity == I32 {
                        values = u64::try_from(c.zigzag()?).ok()?;
                    } else {
                        c.skip(ity, 1)?;
                    }
                }
            }
            _ => c.skip(ty, 0)?,
        }
    }
    Some((page_type?, c.pos, compressed?, values))
}

/// Whether `created_by` names parquet-mr older than 1.2.9 (or gives no version), whose column
/// chunk sizes leave out the dictionary page header.
fn sizes_miss_dictionary_header(created_by: Option<&str>) -> bool {
    let Some(rest) = created_by.and_then(|c| c.strip_prefix("parquet-mr")) else {
        return false;
    };
    let version: Vec<u64> = rest
        .trim_start()
        .strip_prefix("version ")
        .unwrap_or("")
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map_while(|n| n.parse().ok())
        .collect();
    version.as_slice() < [1, 2, 9].as_slice()
}

/// Undo the writer bugs in decoded metadata. `fetch` reads bytes of the file (used only for
/// old parquet-mr files, one read per column chunk); `data_end` is where the footer begins.
pub async fn repair<F, Fut>(
    metadata: ParquetMetaData,
    data_end: u64,
    mut fetch: F,
) -> ParquetResult<ParquetMetaData>
where
    F: FnMut(Range<u64>) -> Fut,
    Fut: Future<Output = ParquetResult<Bytes>>,
{
    let walk_pages = sizes_miss_dictionary_header(metadata.file_metadata().created_by());
    let zero_dictionary = metadata.row_groups().iter().any(|rg| {
        rg.columns()
            .iter()
            .any(|c| c.dictionary_page_offset().is_some_and(|o| o < 4))
    });
    if !walk_pages && !zero_dictionary {
        return Ok(metadata);
    }
    let mut builder = ParquetMetaDataBuilder::new_from_metadata(metadata);
    let groups = builder.take_row_groups();
    let mut repaired: Vec<RowGroupMetaData> = Vec::with_capacity(groups.len());
    for rg in groups {
        let mut columns = Vec::with_capacity(rg.columns().len());
        for column in rg.columns() {
            let mut column = column.clone();
            if column.dictionary_page_offset().is_some_and(|o| o < 4) {
                column = column
                    .into_builder()
                    .set_dictionary_page_offset(None)
                    .build()?;
            }
            if walk_pages && let Some(size) = walked_size(&column, data_end, &mut fetch).await {
                column = column
                    .into_builder()
                    .set_total_compressed_size(size)
                    .build()?;
            }
            columns.push(column);
        }
        repaired.push(rg.into_builder().set_column_metadata(columns).build()?);
    }
    Ok(builder.set_row_groups(repaired).build())
}

/// The bytes a column chunk's pages really take, walking their headers until its values are
/// all seen; `None` when that agrees with the metadata or the walk fails (then the crate's
/// own error stands).
async fn walked_size<F, Fut>(
    column: &parquet::file::metadata::ColumnChunkMetaData,
    data_end: u64,
    fetch: &mut F,
) -> Option<i64>
where
    F: FnMut(Range<u64>) -> Fut,
    Fut: Future<Output = ParquetResult<Bytes>>,
{
    let (start, declared) = column.byte_range();
    // A dictionary page header is small: read a little past the declared end.
    let end = (start + declared + 64 * 1024).min(data_end);
    let bytes = fetch(start..end).await.ok()?;
    let want = u64::try_from(column.num_values()).ok()?;
    let (mut at, mut seen) = (0usize, 0u64);
    while seen < want {
        let (_, header, compressed, values) = page_header(bytes.get(at..)?)?;
        at = at.checked_add(header)?.checked_add(compressed)?;
        if at > bytes.len() {
            return None;
        }
        seen += values;
    }
    (at as u64 != declared).then_some(at as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_mr_versions_before_1_2_9_miss_the_dictionary_header() {
        assert!(sizes_miss_dictionary_header(Some("parquet-mr")));
        assert!(sizes_miss_dictionary_header(Some(
            "parquet-mr version 1.2.8 (build abc)"
        )));
        assert!(!sizes_miss_dictionary_header(Some(
            "parquet-mr version 1.2.9 (build abc)"
        )));
        assert!(!sizes_miss_dictionary_header(Some(
            "parquet-mr version 1.12.0-20181221031136"
        )));
        assert!(!sizes_miss_dictionary_header(Some(
            "parquet-rs version 60.1.0"
        )));
        assert!(!sizes_miss_dictionary_header(None));
    }

    #[test]
    fn a_mistyped_column_field_is_dropped_and_the_rest_kept() {
        // FileMetaData { 4: [RowGroup { 1: [ColumnChunk { 3: ColumnMetaData {
        //   9: i64 7, 15: list<i32>[1] (should be i32), 16: ... } }] }] }
        let mut meta = vec![0x96, 0x0e]; // field 9 (delta 9), i64 7 (zigzag 14)
        meta.extend([0x69, 0x15, 0x02]); // field 15 (delta 6), list of one i32 (1)
        meta.push(0x00);
        let chunk = [&[0x3c][..], &meta, &[0x00]].concat(); // field 3 struct
        let group = [&[0x19, 0x1c][..], &chunk, &[0x00]].concat(); // field 1 list<struct>[1]
        let file = [&[0x49, 0x1c][..], &group, &[0x00]].concat(); // field 4 list<struct>[1]
        let cleaned = drop_mistyped_fields(&file).expect("one field dropped");
        let want_meta = [0x96, 0x0e, 0x00];
        let want = [
            &[0x49, 0x1c, 0x19, 0x1c, 0x3c][..],
            &want_meta,
            &[0x00, 0x00, 0x00],
        ]
        .concat();
        assert_eq!(cleaned, want);
        // Nothing to drop: no rewrite.
        assert_eq!(drop_mistyped_fields(&want), None);
    }
}
