//! Inputs pinned at planning. Every read of a task names the object as the planner saw it
//! (its ETag, and its version id where the store keeps versions), so a retry, a re-read or a
//! resumed job never mixes bytes of a rewritten object with offsets planned on the old one:
//! the read fails instead, naming the object (`Error::Changed`, not retried).

use bytes::Bytes;
use object_store::{GetOptions, ObjectMeta, ObjectStore, path::Path};
use serde::{Deserialize, Serialize};
use std::ops::Range;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl Pin {
    pub fn of(meta: &ObjectMeta) -> Self {
        Self {
            e_tag: meta.e_tag.clone(),
            version: meta.version.clone(),
        }
    }

    /// Nothing known to pin by (a store that gives no ETag): reads are plain.
    pub fn is_empty(&self) -> bool {
        self.e_tag.is_none() && self.version.is_none()
    }
}

/// `range` of the object as pinned.
pub async fn get_pinned(
    store: &dyn ObjectStore,
    path: &Path,
    range: Range<u64>,
    pin: &Pin,
) -> object_store::Result<Bytes> {
    let options = GetOptions {
        range: Some(range.into()),
        if_match: pin.e_tag.clone(),
        version: pin.version.clone(),
        ..Default::default()
    };
    store.get_opts(path, options).await?.bytes().await
}

/// Several ranges of the object as pinned (neighbours fetched together, as `get_ranges` does).
pub async fn get_ranges_pinned(
    store: &dyn ObjectStore,
    path: &Path,
    ranges: &[Range<u64>],
    pin: &Pin,
) -> object_store::Result<Vec<Bytes>> {
    object_store::coalesce_ranges(
        ranges,
        |range| get_pinned(store, path, range, pin),
        object_store::OBJECT_STORE_COALESCE_DEFAULT,
    )
    .await
}
