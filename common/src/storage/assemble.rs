//! One S3 object assembled from byte ranges of other objects without the data passing through
//! this process: each range becomes a part of a multipart upload by UploadPartCopy.
//!
//! S3 wants every part but the last to be at least 5 MiB. Ranges that large are copied inside
//! S3 (in chunks of at most `COPY_CHUNK`); smaller ranges and the bytes we hold ourselves (a
//! rebuilt footer) are gathered in a buffer, topped up with the first bytes of the next range
//! when needed, and uploaded as ordinary parts. So at most about 5 MiB per range boundary is
//! downloaded, whatever the sizes. The result is left unpublished, like every staged object.

use super::checksum;
use super::{ObjectUrl, StagedObject, Storage};
use crate::{Error, Result};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use object_store::multipart::{MultipartStore, PartId};
use object_store::{ObjectStoreExt, PutPayload};
use std::ops::Range;
use std::sync::Arc;

/// S3's minimum size of every part but the last.
pub const MIN_PART: u64 = 5 * 1024 * 1024;
/// Largest range copied as one part (S3 allows 5 GiB; smaller parts copy in parallel).
const COPY_CHUNK: u64 = 512 * 1024 * 1024;
/// Copies running at once.
const COPIES_IN_FLIGHT: usize = 8;

/// A piece of the object to assemble, in order.
#[derive(Clone, Debug)]
pub enum Piece {
    /// Bytes we hold (a header, a rebuilt footer).
    Inline(Bytes),
    /// Bytes `range` of another object in the same bucket; `crc32` is the CRC-32 of exactly
    /// those bytes (see `checksum`).
    Range {
        url: ObjectUrl,
        range: Range<u64>,
        crc32: u32,
    },
}

/// An assembled, unpublished object and how its bytes travelled.
#[derive(Debug)]
pub struct Assembled {
    pub staged: StagedObject,
    /// Bytes S3 copied from object to object.
    pub copied_bytes: u64,
    /// Bytes this process uploaded (inline pieces, small ranges, top-ups).
    pub uploaded_bytes: u64,
}

/// Whether `target` can be assembled inside its store (S3 with UploadPartCopy).
pub fn can_assemble(storage: &Storage, target: &ObjectUrl) -> bool {
    storage.part_copier(target).is_some()
}

/// Assemble `pieces` into `target` inside S3. Every range must be in the target's bucket.
pub async fn assemble(
    storage: &Storage,
    target: &ObjectUrl,
    pieces: Vec<Piece>,
) -> Result<Assembled> {
    let name = target.to_string();
    let copier = storage
        .part_copier(target)
        .ok_or_else(|| Error::config(format!("{name}: this store cannot copy parts")))?;
    for piece in &pieces {
        if let Piece::Range { url, .. } = piece
            && url.store_key() != target.store_key()
        {
            return Err(Error::config(format!(
                "{url}: not in the bucket of {name}, cannot copy inside S3"
            )));
        }
    }
    let multipart = storage.multipart_store(target)?;
    let path = target.path();
    let upload_id = multipart
        .create_multipart(&path)
        .await
        .map_err(|e| Error::from_store(&name, e))?;
    let mut run = Run {
        storage,
        copier,
        multipart: multipart.clone(),
        target,
        upload_id: upload_id.clone(),
        buffer: Vec::new(),
        parts: Vec::new(),
        copies: FuturesUnordered::new(),
        crc32: 0,
        bytes: 0,
        copied_bytes: 0,
        uploaded_bytes: 0,
    };
    match run.all(pieces).await {
        Ok(()) => Ok(Assembled {
            staged: StagedObject::Multipart {
                url: name,
                upload_id,
                parts: run.parts.into_iter().map(|p| p.content_id).collect(),
                bytes: run.bytes,
                crc32: run.crc32,
            },
            copied_bytes: run.copied_bytes,
            uploaded_bytes: run.uploaded_bytes,
        }),
        Err(e) => {
            drop(run.copies);
            if let Err(abort) = multipart.abort_multipart(&path, &upload_id).await {
                tracing::warn!(url = %name, error = %abort, "aborting a failed assembly");
            }
            Err(e)
        }
    }
}

type CopyFuture = futures::future::BoxFuture<'static, (usize, Result<PartId>)>;

struct Run<'a> {
    storage: &'a Storage,
    copier: Arc<super::PartCopier>,
    multipart: Arc<dyn MultipartStore>,
    target: &'a ObjectUrl,
    upload_id: String,
    /// Bytes waiting to become an ordinary part.
    buffer: Vec<u8>,
    /// Finished parts by index; copies fill their slot when they end.
    parts: Vec<PartId>,
    copies: FuturesUnordered<CopyFuture>,
    /// CRC-32 and length of everything placed so far, in object order.
    crc32: u32,
    bytes: u64,
    copied_bytes: u64,
    uploaded_bytes: u64,
}

impl Run<'_> {
    async fn all(&mut self, pieces: Vec<Piece>) -> Result<()> {
        for piece in pieces {
            match piece {
                Piece::Inline(bytes) => {
                    self.buffer.extend_from_slice(&bytes);
                    if self.buffer.len() as u64 >= MIN_PART {
                        self.flush().await?;
                    }
                }
                Piece::Range { url, range, crc32 } => self.range(url, range, crc32).await?,
            }
        }
        // The last part may be small (or empty: an upload needs one part).
        if !self.buffer.is_empty() || self.parts.is_empty() {
            self.flush().await?;
        }
        self.wait_copies(0).await
    }

    async fn range(&mut self, url: ObjectUrl, range: Range<u64>, mut crc32: u32) -> Result<()> {
        let mut start = range.start;
        let end = range.end;
        if start >= end {
            return Ok(());
        }
        // A copied part must be ≥ 5 MiB and nothing may wait in the buffer before it: download
        // what tops the buffer up to a part, or the whole range if what would be left is small.
        if !self.buffer.is_empty() || end - start < MIN_PART {
            let top_up = MIN_PART.saturating_sub(self.buffer.len() as u64);
            let take = if end - start < top_up + MIN_PART {
                end - start
            } else {
                top_up
            };
            if take > 0 {
                let head = self.download(&url, start..start + take).await?;
                crc32 = checksum::strip_prefix(crc32, crc32fast::hash(&head), end - start - take);
                self.buffer.extend_from_slice(&head);
                start += take;
            }
            if self.buffer.len() as u64 >= MIN_PART {
                self.flush().await?;
            }
        }
        if start == end {
            return Ok(());
        }
        self.crc32 = checksum::concat(self.crc32, crc32, end - start);
        self.bytes += end - start;
        self.copied_bytes += end - start;
        let mut chunk_start = start;
        while chunk_start < end {
            let mut chunk_end = (chunk_start + COPY_CHUNK).min(end);
            if end - chunk_end < MIN_PART {
                chunk_end = end;
            }
            self.copy(&url, chunk_start..chunk_end).await?;
            chunk_start = chunk_end;
        }
        Ok(())
    }

    async fn download(&mut self, url: &ObjectUrl, range: Range<u64>) -> Result<Bytes> {
        let store = self.storage.store(url)?;
        store
            .get_range(&url.path(), range)
            .await
            .map_err(|e| Error::from_store(&url.to_string(), e))
    }

    /// Upload the buffer as the next part.
    async fn flush(&mut self) -> Result<()> {
        let data = std::mem::take(&mut self.buffer);
        let len = data.len() as u64;
        self.crc32 = checksum::concat(self.crc32, crc32fast::hash(&data), len);
        self.bytes += len;
        self.uploaded_bytes += len;
        let index = self.next_index();
        let part = self
            .multipart
            .put_part(
                &self.target.path(),
                &self.upload_id,
                index,
                PutPayload::from(data),
            )
            .await
            .map_err(|e| Error::from_store(&self.target.to_string(), e))?;
        self.parts[index] = part;
        Ok(())
    }

    /// Start copying `range` of `url` as the next part, keeping a few copies in flight.
    async fn copy(&mut self, url: &ObjectUrl, range: Range<u64>) -> Result<()> {
        self.wait_copies(COPIES_IN_FLIGHT - 1).await?;
        let index = self.next_index();
        let (copier, dest, upload_id, source) = (
            self.copier.clone(),
            self.target.path(),
            self.upload_id.clone(),
            url.path(),
        );
        self.copies.push(Box::pin(async move {
            let part = copier
                .copy_part(&dest, &upload_id, index, &source, range)
                .await;
            (index, part)
        }));
        Ok(())
    }

    /// Wait until at most `left` copies are running.
    async fn wait_copies(&mut self, left: usize) -> Result<()> {
        while self.copies.len() > left {
            if let Some((index, part)) = self.copies.next().await {
                self.parts[index] = part?;
            }
        }
        Ok(())
    }

    /// Reserve the slot of the next part.
    fn next_index(&mut self) -> usize {
        self.parts.push(PartId {
            content_id: String::new(),
        });
        self.parts.len() - 1
    }
}
