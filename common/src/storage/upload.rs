//! A blocking `std::io::Write` that streams into a multipart upload and does NOT complete it.
//!
//! Completing is the commit: until then the object is invisible to every reader, so a failed
//! or superseded attempt leaves nothing behind once it is aborted. Parts upload in the
//! background while the encoder keeps working; at most `MAX_IN_FLIGHT` parts are buffered.

use crate::{Error, Result};
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// Part size: above S3's 5 MiB minimum, small enough to keep memory low.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
const MAX_IN_FLIGHT: usize = 2;

pub struct PartUpload {
    runtime: Handle,
    url: String,
    /// Taken by `finish`; still here on drop means the attempt failed: abort it.
    upload: Option<Box<dyn MultipartUpload>>,
    buffer: Vec<u8>,
    in_flight: VecDeque<JoinHandle<object_store::Result<()>>>,
    bytes: u64,
}

impl PartUpload {
    pub fn start(
        runtime: &Handle,
        store: Arc<dyn ObjectStore>,
        url: &crate::storage::ObjectUrl,
    ) -> Result<Self> {
        let path = url.path();
        let upload = runtime
            .block_on(store.put_multipart(&path))
            .map_err(|e| Error::from_store(&url.to_string(), e))?;
        Ok(Self {
            runtime: runtime.clone(),
            url: url.to_string(),
            upload: Some(upload),
            buffer: Vec::with_capacity(PART_SIZE),
            in_flight: VecDeque::new(),
            bytes: 0,
        })
    }

    fn send_part(&mut self) -> Result<()> {
        let data = std::mem::replace(&mut self.buffer, Vec::with_capacity(PART_SIZE));
        let Some(upload) = self.upload.as_mut() else {
            return Err(Error::config(format!(
                "{}: upload already finished",
                self.url
            )));
        };
        let part = upload.put_part(PutPayload::from(data));
        self.in_flight.push_back(self.runtime.spawn(part));
        while self.in_flight.len() > MAX_IN_FLIGHT {
            self.wait_oldest()?;
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<()> {
        if let Some(handle) = self.in_flight.pop_front() {
            match self.runtime.block_on(handle) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Error::from_store(&self.url, e)),
                Err(e) => {
                    return Err(Error::Transient {
                        url: self.url.clone(),
                        message: format!("upload task failed: {e}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Upload what is left and wait for every part; the upload stays open for the commit.
    pub fn finish(mut self) -> Result<PendingObject> {
        // Always send the last part, even empty: S3 needs at least one part to complete.
        self.send_part()?;
        while !self.in_flight.is_empty() {
            self.wait_oldest()?;
        }
        Ok(PendingObject {
            url: self.url.clone(),
            upload: self.upload.take(),
            bytes: self.bytes,
        })
    }
}

impl Drop for PartUpload {
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            abort_in_background(&self.runtime, upload);
        }
    }
}

/// A failed or abandoned upload is aborted so no incomplete upload (or local temp file) lingers.
fn abort_in_background(runtime: &Handle, mut upload: Box<dyn MultipartUpload>) {
    runtime.spawn(async move {
        if let Err(e) = upload.abort().await {
            tracing::debug!(error = %e, "aborting an abandoned upload failed");
        }
    });
}

impl Write for PartUpload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        self.bytes += buf.len() as u64;
        if self.buffer.len() >= PART_SIZE {
            self.send_part().map_err(std::io::Error::other)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A fully uploaded, not yet visible object: `commit` publishes it, `abort` discards it.
#[derive(Debug)]
pub struct PendingObject {
    pub url: String,
    upload: Option<Box<dyn MultipartUpload>>,
    pub bytes: u64,
}

impl PendingObject {
    pub async fn commit(mut self) -> Result<()> {
        match self.upload.take() {
            Some(mut upload) => upload
                .complete()
                .await
                .map(|_| ())
                .map_err(|e| Error::from_store(&self.url, e)),
            None => Ok(()),
        }
    }

    pub async fn abort(mut self) -> Result<()> {
        match self.upload.take() {
            Some(mut upload) => upload
                .abort()
                .await
                .map_err(|e| Error::from_store(&self.url, e)),
            None => Ok(()),
        }
    }
}

impl Drop for PendingObject {
    fn drop(&mut self) {
        if let (Some(upload), Ok(runtime)) = (self.upload.take(), Handle::try_current()) {
            abort_in_background(&runtime, upload);
        }
    }
}
