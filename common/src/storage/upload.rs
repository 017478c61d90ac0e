//! Writing an object invisibly, so that publishing it is the commit.
//!
//! [`StagedWriter`] is a blocking `std::io::Write` that streams an object and leaves it
//! unpublished: on S3 (and `memory://`) as an open multipart upload whose id and part ETags it
//! returns, on local disks as a hidden temp file beside the target. The returned
//! [`StagedObject`] is plain data — it can travel in a task result to another process — and
//! `publish` (complete the upload / rename the file) or `discard` (abort / delete) finishes it.
//! Until then no reader that lists the output sees anything. Parts upload in the background
//! while the encoder keeps working, at most `MAX_IN_FLIGHT` at a time.

use super::{ObjectUrl, Storage};
use crate::{Error, Result};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// Part size: above S3's 5 MiB minimum, small enough to keep memory low.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
const MAX_IN_FLIGHT: usize = 2;

/// An object that was written but is not visible yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StagedObject {
    /// An open multipart upload: completing it with these parts publishes the object.
    Multipart {
        url: String,
        upload_id: String,
        parts: Vec<String>,
        bytes: u64,
        /// CRC-32 (IEEE) of the object's bytes, for the manifest.
        #[serde(default)]
        crc32: u32,
    },
    /// A complete temp object (local files): renaming it publishes the object.
    Temp {
        url: String,
        temp: String,
        bytes: u64,
        #[serde(default)]
        crc32: u32,
    },
}

impl StagedObject {
    /// The URL the object will have once published.
    pub fn url(&self) -> &str {
        match self {
            StagedObject::Multipart { url, .. } | StagedObject::Temp { url, .. } => url,
        }
    }

    pub fn bytes(&self) -> u64 {
        match self {
            StagedObject::Multipart { bytes, .. } | StagedObject::Temp { bytes, .. } => *bytes,
        }
    }

    pub fn crc32(&self) -> u32 {
        match self {
            StagedObject::Multipart { crc32, .. } | StagedObject::Temp { crc32, .. } => *crc32,
        }
    }

    /// Make the object visible under its URL. Idempotent: publishing again after a crash
    /// mid-commit finds the object already there and succeeds.
    pub async fn publish(&self, storage: &Storage) -> Result<()> {
        match self.publish_once(storage).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let url = ObjectUrl::parse(self.url())?;
                let existing = storage.store(&url)?.head(&url.path()).await;
                match existing {
                    Ok(meta) if meta.size == self.bytes() => Ok(()),
                    _ => Err(e),
                }
            }
        }
    }

    async fn publish_once(&self, storage: &Storage) -> Result<()> {
        let url = ObjectUrl::parse(self.url())?;
        match self {
            StagedObject::Multipart {
                upload_id, parts, ..
            } => {
                let store = storage.multipart_store(&url)?;
                let parts = parts
                    .iter()
                    .map(|p| PartId {
                        content_id: p.clone(),
                    })
                    .collect();
                store
                    .complete_multipart(&url.path(), upload_id, parts)
                    .await
                    .map(|_| ())
                    .map_err(|e| Error::from_store(self.url(), e))
            }
            StagedObject::Temp { temp, .. } => {
                let temp = ObjectUrl::parse(temp)?;
                let store = storage.store(&url)?;
                let renamed = store
                    .rename(&temp.path(), &url.path())
                    .await
                    .map_err(|e| Error::from_store(self.url(), e));
                remove_empty_temp_dirs(&temp);
                renamed
            }
        }
    }

    /// Throw the object away (a failed job, or an attempt that lost).
    pub async fn discard(&self, storage: &Storage) -> Result<()> {
        let url = ObjectUrl::parse(self.url())?;
        let result = match self {
            StagedObject::Multipart { upload_id, .. } => {
                storage
                    .multipart_store(&url)?
                    .abort_multipart(&url.path(), upload_id)
                    .await
            }
            StagedObject::Temp { temp, .. } => {
                let temp = ObjectUrl::parse(temp)?;
                let deleted = storage.store(&temp)?.delete(&temp.path()).await;
                remove_empty_temp_dirs(&temp);
                deleted
            }
        };
        match result {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::from_store(self.url(), e)),
        }
    }
}

/// Local temp files live in `_zoopipe_staging/tmp-*/`: remove those folders once empty.
fn remove_empty_temp_dirs(temp: &ObjectUrl) {
    let file = std::path::PathBuf::from(format!("/{}", temp.key()));
    for dir in file.ancestors().skip(1).take(2) {
        if std::fs::remove_dir(dir).is_err() {
            break;
        }
    }
}

enum Target {
    Multipart {
        store: Arc<dyn MultipartStore>,
        path: Path,
        upload_id: String,
    },
    Temp {
        upload: Box<dyn MultipartUpload>,
        temp: ObjectUrl,
    },
}

pub struct StagedWriter {
    runtime: Handle,
    url: ObjectUrl,
    /// Taken by `finish`; still here on drop means the attempt failed: clean it up.
    target: Option<Target>,
    buffer: Vec<u8>,
    in_flight: VecDeque<JoinHandle<object_store::Result<Option<PartId>>>>,
    parts: Vec<String>,
    bytes: u64,
    crc: crc32fast::Hasher,
}

/// Where a temp file for `url` goes: a hidden folder beside it, unique per writer.
fn temp_url(url: &ObjectUrl) -> ObjectUrl {
    let id = uuid::Uuid::new_v4().simple().to_string();
    url.parent().join(&format!(
        "_zoopipe_staging/tmp-{}/{}",
        &id[..12],
        url.file_name()
    ))
}

impl StagedWriter {
    pub fn start(runtime: &Handle, storage: &Storage, url: &ObjectUrl) -> Result<Self> {
        let name = url.to_string();
        let target = if url.is_local() {
            let temp = temp_url(url);
            let store = storage.store(&temp)?;
            let upload = runtime
                .block_on(store.put_multipart(&temp.path()))
                .map_err(|e| Error::from_store(&name, e))?;
            Target::Temp { upload, temp }
        } else {
            let store = storage.multipart_store(url)?;
            let path = url.path();
            let upload_id = runtime
                .block_on(store.create_multipart(&path))
                .map_err(|e| Error::from_store(&name, e))?;
            Target::Multipart {
                store,
                path,
                upload_id,
            }
        };
        Ok(Self {
            runtime: runtime.clone(),
            url: url.clone(),
            target: Some(target),
            buffer: Vec::with_capacity(PART_SIZE),
            in_flight: VecDeque::new(),
            parts: Vec::new(),
            bytes: 0,
            crc: crc32fast::Hasher::new(),
        })
    }

    fn send_part(&mut self) -> Result<()> {
        let data = PutPayload::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(PART_SIZE),
        ));
        let index = self.parts.len() + self.in_flight.len();
        let task = match self.target.as_mut() {
            Some(Target::Multipart {
                store,
                path,
                upload_id,
            }) => {
                let (store, path, id) = (store.clone(), path.clone(), upload_id.clone());
                self.runtime
                    .spawn(async move { store.put_part(&path, &id, index, data).await.map(Some) })
            }
            Some(Target::Temp { upload, .. }) => {
                let part = upload.put_part(data);
                self.runtime.spawn(async move { part.await.map(|_| None) })
            }
            None => {
                return Err(Error::config(format!(
                    "{}: writer already finished",
                    self.url
                )));
            }
        };
        self.in_flight.push_back(task);
        while self.in_flight.len() > MAX_IN_FLIGHT {
            self.wait_oldest()?;
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<()> {
        let Some(handle) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match self.runtime.block_on(handle) {
            Ok(Ok(part)) => {
                self.parts
                    .push(part.map(|p| p.content_id).unwrap_or_default());
                Ok(())
            }
            Ok(Err(e)) => Err(Error::from_store(&self.url.to_string(), e)),
            Err(e) => Err(Error::Transient {
                url: self.url.to_string(),
                message: format!("upload task failed: {e}"),
            }),
        }
    }

    /// The multipart upload this writer has open, as (object URL, upload id): what to abort
    /// if the process dies before it reports the attempt (local temp files have none).
    pub fn open_upload(&self) -> Option<(String, String)> {
        match &self.target {
            Some(Target::Multipart { upload_id, .. }) => {
                Some((self.url.to_string(), upload_id.clone()))
            }
            _ => None,
        }
    }

    /// Upload what is left and wait for every part; the object stays unpublished.
    pub fn finish(mut self) -> Result<StagedObject> {
        // Always send the last part, even empty: a multipart upload needs at least one.
        self.send_part()?;
        while !self.in_flight.is_empty() {
            self.wait_oldest()?;
        }
        let url = self.url.to_string();
        let crc32 = self.crc.clone().finalize();
        match self.target.take() {
            Some(Target::Multipart { upload_id, .. }) => Ok(StagedObject::Multipart {
                url,
                upload_id,
                parts: std::mem::take(&mut self.parts),
                bytes: self.bytes,
                crc32,
            }),
            Some(Target::Temp { mut upload, temp }) => {
                self.runtime
                    .block_on(upload.complete())
                    .map_err(|e| Error::from_store(&url, e))?;
                Ok(StagedObject::Temp {
                    url,
                    temp: temp.to_string(),
                    bytes: self.bytes,
                    crc32,
                })
            }
            None => Err(Error::config(format!("{url}: writer already finished"))),
        }
    }
}

impl Write for StagedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Fill each part to exactly PART_SIZE: a write running past it would grow the buffer,
        // copying all it holds.
        let mut rest = buf;
        while !rest.is_empty() {
            let room = PART_SIZE.saturating_sub(self.buffer.len()).max(1);
            let (now, later) = rest.split_at(rest.len().min(room));
            self.buffer.extend_from_slice(now);
            if self.buffer.len() >= PART_SIZE {
                self.send_part().map_err(std::io::Error::other)?;
            }
            rest = later;
        }
        self.bytes += buf.len() as u64;
        self.crc.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Aborts of abandoned uploads still under way (see `wait_for_aborts`).
static ABORTS_IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Wait (up to `limit`) for the aborts of abandoned uploads to finish: a process about to
/// exit calls it, or its runtime would drop them and leave incomplete uploads behind.
pub async fn wait_for_aborts(limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    while ABORTS_IN_FLIGHT.load(std::sync::atomic::Ordering::SeqCst) > 0
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

impl Drop for StagedWriter {
    /// A writer dropped before `finish` belongs to a failed attempt: abort its upload so no
    /// incomplete upload (or temp file) lingers.
    fn drop(&mut self) {
        let Some(target) = self.target.take() else {
            return;
        };
        ABORTS_IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.runtime.spawn(async move {
            let result = match target {
                Target::Multipart {
                    store,
                    path,
                    upload_id,
                } => store.abort_multipart(&path, &upload_id).await,
                Target::Temp { mut upload, .. } => upload.abort().await,
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "aborting an abandoned upload failed");
            }
            ABORTS_IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
    }
}
