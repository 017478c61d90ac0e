//! Single-file outputs assembled inside S3: the committed parts become ranges of one multipart
//! upload (UploadPartCopy), so the coordinator moves only headers, footers and the few MiB S3's
//! minimum part size forces it to, never the data itself.
//!
//! CSV parts after the first lose their header line; JSONL parts are copied whole; Parquet parts
//! give their column chunks and Arrow IPC parts their record batches byte for byte, under a
//! footer rebuilt with the new offsets. Parts whose layout does not allow it (Arrow dictionary
//! batches, Parquet chunks with gaps) are merged by streaming instead.

use zoopipe_common::format::Format;
use zoopipe_common::format::ipc_tail;
use zoopipe_common::format::parquet::ObjectFile;
use zoopipe_common::format::parquet_tail::{concatenated_tail, part_layout};
use zoopipe_common::report::ManifestPart;
use zoopipe_common::spec::JobConfig;
use zoopipe_common::storage::assemble::{Assembled, Piece, assemble};
use zoopipe_common::storage::{ObjectUrl, Storage, checksum};
use zoopipe_common::{Error, Result};

use bytes::Bytes;
use object_store::ObjectStoreExt;

/// Longest CSV header we look for (the first line of every part after the first).
const MAX_HEADER: u64 = 16 * 1024 * 1024;

/// Assemble the job's single output from its committed `parts` (in task order) inside S3.
/// `Ok(None)`: this format or these parts cannot be concatenated by copies; stream them.
pub async fn merge_by_copy(
    storage: &Storage,
    job: &JobConfig,
    parts: &[ManifestPart],
) -> Result<Option<Assembled>> {
    let Some(parts) = parts_with_checksums(parts)? else {
        return Ok(None);
    };
    if parts.is_empty() {
        return Ok(None);
    }
    let pieces = match job.output.format {
        Format::Jsonl => parts.iter().map(|p| p.whole()).collect(),
        Format::Csv if !job.spec.write.csv_header => parts.iter().map(|p| p.whole()).collect(),
        Format::Csv => csv_pieces(storage, &parts).await?,
        Format::Parquet => match parquet_pieces(storage, &parts).await? {
            Some(pieces) => pieces,
            None => return Ok(None),
        },
        Format::Arrow => match arrow_pieces(storage, &parts).await? {
            Some(pieces) => pieces,
            None => return Ok(None),
        },
    };
    assemble(storage, &job.output.url, pieces).await.map(Some)
}

/// A committed part: where it is, its size and CRC-32.
struct Part {
    url: ObjectUrl,
    bytes: u64,
    crc32: u32,
}

impl Part {
    fn whole(&self) -> Piece {
        self.from(0, self.crc32)
    }

    /// The bytes from `start` to the end, whose CRC-32 is `crc32`.
    fn from(&self, start: u64, crc32: u32) -> Piece {
        Piece::Range {
            url: self.url.clone(),
            range: start..self.bytes,
            crc32,
        }
    }
}

/// The parts with their checksums, or `None` if one lacks it (a part from an older worker).
fn parts_with_checksums(parts: &[ManifestPart]) -> Result<Option<Vec<Part>>> {
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let Ok(crc32) = u32::from_str_radix(&part.crc32, 16) else {
            return Ok(None);
        };
        out.push(Part {
            url: ObjectUrl::parse(&part.url)?,
            bytes: part.bytes,
            crc32,
        });
    }
    Ok(Some(out))
}

/// The first part whole, then every other part without its header line.
async fn csv_pieces(storage: &Storage, parts: &[Part]) -> Result<Vec<Piece>> {
    let mut pieces = vec![parts[0].whole()];
    for part in &parts[1..] {
        let header = first_line(storage, part).await?;
        let rest = part.bytes - header.len() as u64;
        let crc = checksum::strip_prefix(part.crc32, checksum::of(&header), rest);
        pieces.push(part.from(header.len() as u64, crc));
    }
    Ok(pieces)
}

/// The first line of a part, with its `\n` (the whole part if it has none).
async fn first_line(storage: &Storage, part: &Part) -> Result<Bytes> {
    if part.bytes == 0 {
        return Ok(Bytes::new());
    }
    let name = part.url.to_string();
    let store = storage.store(&part.url)?;
    let mut want = 8 * 1024;
    loop {
        let end = want.min(part.bytes);
        let head = store
            .get_range(&part.url.path(), 0..end)
            .await
            .map_err(|e| Error::from_store(&name, e))?;
        if let Some(i) = head.iter().position(|&b| b == b'\n') {
            return Ok(head.slice(..=i));
        }
        if end == part.bytes {
            return Ok(head);
        }
        if want >= MAX_HEADER {
            return Err(Error::corrupt(&name, "no end of the header line in 16 MiB"));
        }
        want *= 4;
    }
}

/// Every part's column chunks (the first part's with the `PAR1` before them), then the rebuilt
/// tail; `None` if a part's chunks are not one contiguous run (then it cannot be copied as is).
async fn parquet_pieces(storage: &Storage, parts: &[Part]) -> Result<Option<Vec<Piece>>> {
    const MAGIC: &[u8] = b"PAR1";
    let mut layouts = Vec::with_capacity(parts.len());
    let mut pieces = Vec::with_capacity(parts.len() + 1);
    for (i, part) in parts.iter().enumerate() {
        let name = part.url.to_string();
        let store = storage.store(&part.url)?;
        let mut file = ObjectFile::new(store.clone(), &part.url, part.bytes, Default::default());
        let Some(layout) = part_layout(&mut file, &name, part.bytes).await? else {
            tracing::info!(part = %name, "column chunks not contiguous: merging by streaming");
            return Ok(None);
        };
        // The chunks' CRC-32 from the part's: take off the tail after them (read here) and,
        // but for the first part, the magic before them.
        let tail = store
            .get_range(&part.url.path(), layout.chunks.end..part.bytes)
            .await
            .map_err(|e| Error::from_store(&name, e))?;
        let tail_len = part.bytes - layout.chunks.end;
        let chunks_len = layout.chunks.end - layout.chunks.start;
        let with_magic = checksum::strip_suffix(part.crc32, checksum::of(&tail), tail_len);
        pieces.push(if i == 0 {
            Piece::Range {
                url: part.url.clone(),
                range: 0..layout.chunks.end,
                crc32: with_magic,
            }
        } else {
            Piece::Range {
                url: part.url.clone(),
                range: layout.chunks.clone(),
                crc32: checksum::strip_prefix(with_magic, checksum::of(MAGIC), chunks_len),
            }
        });
        layouts.push(layout);
    }
    pieces.push(Piece::Inline(concatenated_tail(&layouts)?));
    Ok(Some(pieces))
}

/// The first part up to the end of its record batches, every other part's batches, then the
/// new footer; `None` if a part has dictionary batches or gaps between its batches.
async fn arrow_pieces(storage: &Storage, parts: &[Part]) -> Result<Option<Vec<Piece>>> {
    let mut kept = Vec::with_capacity(parts.len());
    for part in parts {
        let name = part.url.to_string();
        let store = storage.store(&part.url)?;
        let get = |range: std::ops::Range<u64>| {
            let (store, path, name) = (store.clone(), part.url.path(), name.clone());
            async move {
                store
                    .get_range(&path, range)
                    .await
                    .map_err(|e| Error::from_store(&name, e))
            }
        };
        let trailer = get(part.bytes.saturating_sub(10)..part.bytes).await?;
        let footer = ipc_tail::footer_range(&name, part.bytes, &trailer)?;
        let footer_bytes = get(footer.clone()).await?;
        let Some(layout) = ipc_tail::part_layout(&name, footer.start, footer_bytes)? else {
            tracing::info!(part = %name, "dictionary batches or gaps: merging by streaming");
            return Ok(None);
        };
        if layout.is_empty() {
            continue;
        }
        // CRC-32 of everything before the batches' end: take the tail after them off the part's.
        let tail = get(layout.batches.end..part.bytes).await?;
        let head_crc = checksum::strip_suffix(
            part.crc32,
            checksum::of(&tail),
            part.bytes - layout.batches.end,
        );
        kept.push((part, layout, head_crc, tail));
    }
    let Some((first, first_layout, first_crc, first_tail)) = kept.first() else {
        return Ok(None);
    };
    let mut pieces = vec![Piece::Range {
        url: first.url.clone(),
        range: 0..first_layout.batches.end,
        crc32: *first_crc,
    }];
    for (part, layout, head_crc, _) in &kept[1..] {
        // Without the part's own magic and schema message.
        let name = part.url.to_string();
        let prefix = storage
            .store(&part.url)?
            .get_range(&part.url.path(), 0..layout.batches.start)
            .await
            .map_err(|e| Error::from_store(&name, e))?;
        let len = layout.batches.end - layout.batches.start;
        pieces.push(Piece::Range {
            url: part.url.clone(),
            range: layout.batches.clone(),
            crc32: checksum::strip_prefix(*head_crc, checksum::of(&prefix), len),
        });
    }
    let eos = &first_tail[..(first_layout.footer_start - first_layout.batches.end) as usize];
    let layouts: Vec<_> = kept.iter().map(|(_, layout, ..)| layout).collect();
    pieces.push(Piece::Inline(ipc_tail::concatenated_tail(&layouts, eos)?));
    Ok(Some(pieces))
}
