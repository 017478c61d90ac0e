//! Arrow IPC files concatenated byte for byte, for assembly inside S3: the merged file is the
//! first part up to the end of its record batches (magic and schema message included), every
//! other part's record batch messages exactly as they are, then a new footer whose blocks point
//! at the batches' new places. Only the footer is ours to write.
//!
//! Files with dictionary batches are not concatenated this way: a file may hold one dictionary
//! per id, and parts written separately each have their own.

use crate::{Error, Result};
use arrow::ipc::convert::{metadata_to_fb, schema_to_fb_offset, try_fb_to_schema};
use arrow::ipc::{Block, FooterBuilder, root_as_footer};
use bytes::Bytes;
use std::ops::Range;

/// `ARROW1` and the end of the file: footer length (i32, little endian) and magic.
const MAGIC: &[u8] = b"ARROW1";
const TRAILER: u64 = 4 + MAGIC.len() as u64;

/// A part's footer and where its record batches lie.
pub struct IpcLayout {
    /// The record batch messages, one contiguous run.
    pub batches: Range<u64>,
    /// Where the footer starts: between `batches.end` and it lies the end-of-stream marker.
    pub footer_start: u64,
    footer: Bytes,
}

impl IpcLayout {
    /// A part without record batches.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

/// Where a part's footer starts and how long it is, from the part's last bytes.
pub fn footer_range(url: &str, size: u64, trailer: &[u8]) -> Result<Range<u64>> {
    if size < TRAILER + MAGIC.len() as u64 || trailer.len() != TRAILER as usize {
        return Err(Error::corrupt(url, "too short for an Arrow IPC file"));
    }
    if &trailer[4..] != MAGIC {
        return Err(Error::corrupt(
            url,
            "not an Arrow IPC file (no ARROW1 at the end)",
        ));
    }
    let len = i32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let len = u64::try_from(len).map_err(|_| Error::corrupt(url, "negative footer length"))?;
    let end = size - TRAILER;
    let start = end
        .checked_sub(len)
        .ok_or_else(|| Error::corrupt(url, "footer longer than the file"))?;
    Ok(start..end)
}

/// Read a part's layout from its footer bytes. `Ok(None)` when it has dictionary batches or
/// its record batches are not one contiguous run.
pub fn part_layout(url: &str, footer_start: u64, footer: Bytes) -> Result<Option<IpcLayout>> {
    let parsed = root_as_footer(&footer)
        .map_err(|e| Error::corrupt(url, format!("unreadable Arrow IPC footer: {e}")))?;
    if parsed.dictionaries().is_some_and(|d| !d.is_empty()) {
        return Ok(None);
    }
    let mut blocks: Vec<Block> = parsed
        .recordBatches()
        .map(|b| b.iter().copied().collect())
        .unwrap_or_default();
    blocks.sort_by_key(|b| b.offset());
    let mut run: Option<Range<u64>> = None;
    for block in &blocks {
        let start = u64::try_from(block.offset()).ok();
        let len = u64::try_from(block.metaDataLength() as i64 + block.bodyLength()).ok();
        let (Some(start), Some(len)) = (start, len) else {
            return Err(Error::corrupt(url, "negative block offset or length"));
        };
        run = match run {
            None => Some(start..start + len),
            Some(r) if r.end == start => Some(r.start..start + len),
            Some(_) => return Ok(None),
        };
    }
    // A part without batches contributes nothing (callers leave it out).
    let batches = run.unwrap_or(footer_start..footer_start);
    if batches.end > footer_start {
        return Err(Error::corrupt(url, "record batches overlap the footer"));
    }
    Ok(Some(IpcLayout {
        batches,
        footer_start,
        footer,
    }))
}

/// The tail of the file made of the first part up to `parts[0].batches.end` followed by every
/// other part's batches: the end-of-stream marker `eos` (the first part's own bytes between its
/// batches and its footer), the new footer, its length and the magic. Every part must have
/// batches (leave out those without: see `IpcLayout::is_empty`).
pub fn concatenated_tail(parts: &[&IpcLayout], eos: &[u8]) -> Result<Bytes> {
    let Some(first) = parts.first() else {
        return Err(Error::config("nothing to concatenate"));
    };
    let first_footer = root_as_footer(&first.footer)
        .map_err(|e| Error::corrupt("Arrow part", format!("unreadable footer: {e}")))?;
    let schema = footer_schema(&first_footer)?;
    let mut blocks = Vec::new();
    let mut position = first.batches.end;
    for (i, part) in parts.iter().enumerate() {
        let footer = root_as_footer(&part.footer)
            .map_err(|e| Error::corrupt("Arrow part", format!("unreadable footer: {e}")))?;
        if i > 0 && footer_schema(&footer)? != schema {
            return Err(Error::corrupt(
                format!("Arrow part {i}"),
                "part schema differs from the first part",
            ));
        }
        // The first part stays where it is; the others move to the end of what precedes them.
        let shift = if i == 0 {
            0
        } else {
            let shift = position as i64 - part.batches.start as i64;
            position += part.batches.end - part.batches.start;
            shift
        };
        for block in footer.recordBatches().iter().flat_map(|b| b.iter()) {
            blocks.push(Block::new(
                block.offset() + shift,
                block.metaDataLength(),
                block.bodyLength(),
            ));
        }
    }
    blocks.sort_by_key(|b| b.offset());

    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let dictionaries = fbb.create_vector::<Block>(&[]);
    let record_batches = fbb.create_vector(&blocks);
    let fb_schema = schema_to_fb_offset(&mut fbb, &schema);
    let custom = first_footer.custom_metadata().map(|entries| {
        let map = entries
            .iter()
            .filter_map(|kv| Some((kv.key()?.to_string(), kv.value()?.to_string())))
            .collect();
        metadata_to_fb(&mut fbb, &map)
    });
    let root = {
        let mut footer = FooterBuilder::new(&mut fbb);
        footer.add_version(first_footer.version());
        footer.add_schema(fb_schema);
        footer.add_dictionaries(dictionaries);
        footer.add_recordBatches(record_batches);
        if let Some(custom) = custom {
            footer.add_custom_metadata(custom);
        }
        footer.finish()
    };
    fbb.finish(root, None);
    let footer = fbb.finished_data();
    let mut tail = Vec::with_capacity(eos.len() + footer.len() + TRAILER as usize);
    tail.extend_from_slice(eos);
    tail.extend_from_slice(footer);
    tail.extend_from_slice(&(footer.len() as i32).to_le_bytes());
    tail.extend_from_slice(MAGIC);
    Ok(Bytes::from(tail))
}

fn footer_schema(footer: &arrow::ipc::Footer) -> Result<arrow::datatypes::Schema> {
    let schema = footer
        .schema()
        .ok_or_else(|| Error::corrupt("Arrow part", "footer without a schema"))?;
    try_fb_to_schema(schema).map_err(|e| Error::corrupt("Arrow part", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::ipc::reader::FileReader;
    use arrow::ipc::writer::FileWriter;
    use std::sync::Arc;

    fn part(first: i64, batches: &[i64]) -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let mut writer = FileWriter::try_new(Vec::new(), &schema).unwrap();
        let mut next = first;
        for &rows in batches {
            let ids = Int64Array::from_iter_values(next..next + rows);
            let names = StringArray::from_iter_values((next..next + rows).map(|i| format!("n{i}")));
            let batch =
                RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(names)]).unwrap();
            writer.write(&batch).unwrap();
            next += rows;
        }
        writer.finish().unwrap();
        writer.into_inner().unwrap()
    }

    fn layout(bytes: &[u8]) -> IpcLayout {
        let size = bytes.len() as u64;
        let footer = footer_range("p", size, &bytes[bytes.len() - TRAILER as usize..]).unwrap();
        let data = Bytes::copy_from_slice(&bytes[footer.start as usize..footer.end as usize]);
        part_layout("p", footer.start, data).unwrap().unwrap()
    }

    #[test]
    fn batches_copied_as_they_are_under_a_new_footer_read_back() {
        let parts = [part(0, &[100, 50]), part(150, &[]), part(150, &[1, 300, 7])];
        let (parts, layouts): (Vec<_>, Vec<IpcLayout>) = parts
            .iter()
            .map(|p| (p, layout(p)))
            .filter(|(_, l)| !l.is_empty())
            .unzip();
        assert_eq!(layouts.len(), 2);
        let first = &layouts[0];
        let eos = &parts[0][first.batches.end as usize..first.footer_start as usize];
        assert_eq!(eos, [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        let tail = concatenated_tail(&layouts.iter().collect::<Vec<_>>(), eos).unwrap();
        let mut merged = parts[0][..first.batches.end as usize].to_vec();
        for (bytes, layout) in parts.iter().zip(&layouts).skip(1) {
            merged.extend_from_slice(
                &bytes[layout.batches.start as usize..layout.batches.end as usize],
            );
        }
        merged.extend_from_slice(&tail);
        let reader = FileReader::try_new(std::io::Cursor::new(merged), None).unwrap();
        let mut ids = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            ids.extend(column.values().iter().copied());
        }
        assert_eq!(ids, (0..458).collect::<Vec<_>>());
    }
}
