//! Input expansion: one object, a prefix, or a glob such as `s3://raw/2024-01-01/*.csv`.

use super::{ObjectUrl, Storage};
use crate::{Error, Result};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

/// An object to read, with its size and what pins it (see `Pin`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputObject {
    pub url: ObjectUrl,
    pub size: u64,
    pub pin: super::Pin,
}

fn has_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Hidden by the usual data-lake convention: `_SUCCESS`, `_errors/`, `.tmp` files.
fn is_hidden(relative: &str) -> bool {
    relative
        .split('/')
        .any(|segment| segment.starts_with('_') || segment.starts_with('.'))
}

/// How many listed objects a batch holds: a page of an S3 listing.
pub const LIST_BATCH: usize = 1000;

/// One input's objects, a batch at a time, in key order: planning (and the tasks planned) can
/// go on while a prefix of a million objects is still being listed. S3 lists in key order page
/// by page; a local directory (or an S3 Express directory bucket, which lists in no order) is
/// listed whole and sorted.
pub struct InputListing {
    text: String,
    ready: Option<Vec<InputObject>>,
    listing: Option<Listing>,
}

struct Listing {
    stream: futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>,
    prefix: ObjectUrl,
    /// Where the key below the listed prefix starts (hidden files are judged from there).
    base: usize,
    glob: Option<globset::GlobMatcher>,
    last_key: Option<String>,
    found: usize,
    /// The stream has ended (it must not be polled again).
    ended: bool,
}

impl InputListing {
    /// Resolve an input: a glob, a prefix (`/` at the end, or a local directory) or one object.
    pub async fn open(storage: &Storage, text: &str) -> Result<Self> {
        let url = ObjectUrl::parse(text)?;
        let ready = |objects| Self {
            text: text.to_string(),
            ready: Some(objects),
            listing: None,
        };
        if has_glob(url.key()) {
            // An object that exists under this very name (`data[1].csv`) is that object first.
            if !url.is_prefix()
                && let Ok(meta) = storage.store(&url)?.head(&url.path()).await
            {
                return Ok(ready(vec![InputObject {
                    url,
                    size: meta.size,
                    pin: super::Pin::of(&meta),
                }]));
            }
            let (prefix, glob) = glob_listing(&url, text)?;
            let base = prefix.key().len();
            return Self::listing(storage, text, prefix, base, Some(glob)).await;
        }
        if url.is_prefix() {
            let base = url.key().len();
            return Self::listing(storage, text, url, base, None).await;
        }
        let store = storage.store(&url)?;
        match store.head(&url.path()).await {
            Ok(meta) => Ok(ready(vec![InputObject {
                url,
                size: meta.size,
                pin: super::Pin::of(&meta),
            }])),
            // A local directory named without the trailing slash is a prefix too.
            Err(object_store::Error::NotFound { .. })
                if url.is_local() && std::path::Path::new(&format!("/{}", url.key())).is_dir() =>
            {
                let dir = url.with_key(format!("{}/", url.key()));
                let base = dir.key().len();
                Self::listing(storage, text, dir, base, None).await
            }
            Err(e) => Err(Error::from_store(&url.to_string(), e)),
        }
    }

    async fn listing(
        storage: &Storage,
        text: &str,
        prefix: ObjectUrl,
        base: usize,
        glob: Option<globset::GlobMatcher>,
    ) -> Result<Self> {
        let store = storage.store(&prefix)?;
        let path = prefix.path();
        let stream = store.list((!prefix.key().is_empty()).then_some(&path));
        let mut listing = Listing {
            stream,
            prefix,
            base,
            glob,
            last_key: None,
            found: 0,
            ended: false,
        };
        if !listing.prefix.lists_in_order() {
            // A listing in no particular order: all of it, sorted.
            let mut all = Vec::new();
            while let Some(batch) = listing.next_batch(text, usize::MAX).await? {
                all.extend(batch);
            }
            all.sort_by(|a, b| a.url.key().cmp(b.url.key()));
            return Ok(Self {
                text: text.to_string(),
                ready: Some(all),
                listing: None,
            });
        }
        Ok(Self {
            text: text.to_string(),
            ready: None,
            listing: Some(listing),
        })
    }

    /// Whether what is left of it is in memory already (no more requests to the store).
    pub fn in_hand(&self) -> bool {
        self.listing.as_ref().is_none_or(|l| l.ended)
    }

    /// The next objects in key order; `None` once every one was given.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<InputObject>>> {
        if let Some(objects) = self.ready.take() {
            if objects.is_empty() {
                return Err(nothing_found(&self.text, false));
            }
            return Ok(Some(objects));
        }
        match self.listing.as_mut() {
            Some(listing) => {
                let batch = listing.next_batch(&self.text, LIST_BATCH).await?;
                if batch.is_none() {
                    self.listing = None;
                }
                Ok(batch)
            }
            None => Ok(None),
        }
    }
}

impl Listing {
    async fn next_batch(&mut self, text: &str, most: usize) -> Result<Option<Vec<InputObject>>> {
        let mut batch = Vec::new();
        while batch.len() < most && !self.ended {
            let meta = match self.stream.try_next().await {
                Ok(Some(meta)) => meta,
                Ok(None) => {
                    self.ended = true;
                    break;
                }
                // A local directory that does not exist yet lists as empty (not a listing
                // that breaks off halfway: that would drop the rest silently).
                Err(object_store::Error::NotFound { .. })
                    if self.prefix.is_local() && self.found == 0 && batch.is_empty() =>
                {
                    self.ended = true;
                    break;
                }
                Err(e) => return Err(Error::from_store(&self.prefix.to_string(), e)),
            };
            if self.prefix.lists_in_order() {
                // Tasks are cut from the listing as it comes: an object listed out of order
                // could not go before the parts already planned. (The raw keys, as the store
                // orders them: decoded ones may sort otherwise.)
                let raw = meta.location.as_ref();
                if let Some(last) = self.last_key.as_deref()
                    && raw <= last
                {
                    return Err(Error::config(format!(
                        "{text}: the store listed {raw} after {last}; inputs must be listed in \
                         key order"
                    )));
                }
                self.last_key = Some(raw.to_string());
            }
            let key = ObjectUrl::key_of(&meta.location);
            let relative = &key[self.base.min(key.len())..];
            if is_hidden(relative) || self.glob.as_ref().is_some_and(|g| !g.is_match(&key)) {
                continue;
            }
            batch.push(InputObject {
                url: self.prefix.with_key(key),
                size: meta.size,
                pin: super::Pin::of(&meta),
            });
        }
        self.found += batch.len();
        if batch.is_empty() {
            if self.found == 0 {
                return Err(nothing_found(text, self.glob.is_some()));
            }
            return Ok(None);
        }
        Ok(Some(batch))
    }
}

/// What a glob input lists: the prefix before its first pattern segment, and the matcher.
fn glob_listing(url: &ObjectUrl, text: &str) -> Result<(ObjectUrl, globset::GlobMatcher)> {
    let key = url.key();
    let first_glob = key.find(['*', '?', '[']).unwrap_or(key.len());
    let prefix_end = key[..first_glob].rfind('/').map(|i| i + 1).unwrap_or(0);
    let glob = globset::GlobBuilder::new(key)
        .literal_separator(true)
        .build()
        .map_err(|e| Error::config(format!("{text}: bad glob: {e}")))?
        .compile_matcher();
    Ok((url.with_key(&key[..prefix_end]), glob))
}

/// Keys of a target listed for `first_listed_inside` before it gives up (the rest is caught
/// as the job lists them).
const INSIDE_LOOKS: usize = 5 * LIST_BATCH;

/// The first object input `text` would list inside `target` (an output prefix, or one
/// object): what a job that plans as it runs would otherwise meet there only later. Looks at
/// the target alone (a listing of it, or a HEAD), never at the rest of the input; a target
/// the input does not reach, or hides (`_`/`.` names), costs no request.
pub async fn first_listed_inside(
    storage: &Storage,
    text: &str,
    target: &ObjectUrl,
) -> Result<Option<String>> {
    let url = ObjectUrl::parse(text)?;
    let (base, glob) = if has_glob(url.key()) {
        let (prefix, glob) = glob_listing(&url, text)?;
        (prefix, Some(glob))
    } else if url.is_prefix() {
        (url, None)
    } else {
        // One object: inside or not, by name.
        let (name, out) = (url.to_string(), target.to_string());
        let inside = if target.is_prefix() {
            name.starts_with(&out)
        } else {
            name == out
        };
        return Ok(inside.then_some(name));
    };
    let (under, out) = (base.to_string(), target.to_string());
    if !out.starts_with(&under) {
        return Ok(None);
    }
    let listed = |key: &str| {
        !is_hidden(&key[base.key().len().min(key.len())..])
            && glob.as_ref().is_none_or(|g| g.is_match(key))
    };
    let store = storage.store(target)?;
    if !target.is_prefix() {
        return match store.head(&target.path()).await {
            Ok(_) => Ok(listed(target.key()).then_some(out)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::from_store(&out, e)),
        };
    }
    if is_hidden(&target.key()[base.key().len()..]) {
        return Ok(None);
    }
    let mut keys = store.list(Some(&target.path()));
    for _ in 0..INSIDE_LOOKS {
        let meta = match keys.try_next().await {
            Ok(Some(meta)) => meta,
            Ok(None) | Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Error::from_store(&out, e)),
        };
        let key = ObjectUrl::key_of(&meta.location);
        if listed(&key) {
            return Ok(Some(target.with_key(key).to_string()));
        }
    }
    Ok(None)
}

fn nothing_found(text: &str, glob: bool) -> Error {
    let why = if glob {
        "the pattern matches no object"
    } else {
        "no objects under this prefix"
    };
    Error::NotFound {
        url: format!("{text} ({why})"),
    }
}

/// Every object under `prefix`, sorted by key.
pub(super) async fn list_all(storage: &Storage, prefix: &ObjectUrl) -> Result<Vec<InputObject>> {
    let store = storage.store(prefix)?;
    let path = prefix.path();
    let list_prefix = if prefix.key().is_empty() {
        None
    } else {
        Some(&path)
    };
    let metas: Vec<_> = match store.list(list_prefix).try_collect().await {
        Ok(m) => m,
        // A local directory that does not exist yet lists as empty.
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(Error::from_store(&prefix.to_string(), e)),
    };
    let mut found: Vec<_> = metas
        .into_iter()
        .map(|m| InputObject {
            url: prefix.with_key(ObjectUrl::key_of(&m.location)),
            size: m.size,
            pin: super::Pin::of(&m),
        })
        .collect();
    found.sort_by(|a, b| a.url.key().cmp(b.url.key()));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::PutPayload;

    /// Every object of an input, in key order (what planning lists, batch after batch).
    async fn expand(storage: &Storage, text: &str) -> Result<Vec<InputObject>> {
        let mut listing = InputListing::open(storage, text).await?;
        let mut all = Vec::new();
        while let Some(batch) = listing.next_batch().await? {
            all.extend(batch);
        }
        Ok(all)
    }

    #[tokio::test]
    async fn local_names_with_any_characters_are_found() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["é.csv", "100%.csv", "a#b.csv", "sp ace.csv"] {
            std::fs::write(dir.path().join(name), "x\n1\n").unwrap();
        }
        let storage = Storage::new();
        let all = expand(&storage, &format!("{}/", dir.path().display()))
            .await
            .unwrap();
        let names: Vec<&str> = all.iter().map(|o| o.url.file_name()).collect();
        assert_eq!(names, ["100%.csv", "a#b.csv", "sp ace.csv", "é.csv"]);
        for object in &all {
            let one = expand(&storage, &format!("/{}", object.url.key()))
                .await
                .unwrap();
            assert_eq!(one[0].size, 4, "{}", object.url);
        }
    }

    #[tokio::test]
    async fn globs_and_prefixes_expand_in_key_order_without_hidden_files() {
        let storage = Storage::new();
        let root = ObjectUrl::parse("memory://t/").unwrap();
        let store = storage.store(&root).unwrap();
        for key in [
            "raw/2024-01-02/b.csv",
            "raw/2024-01-02/a.csv",
            "raw/2024-01-02/notes.txt",
            "raw/2024-01-02/_SUCCESS",
            "raw/2024-01-03/c.csv",
        ] {
            store
                .put(&key.into(), PutPayload::from_static(b"x,y\n"))
                .await
                .unwrap();
        }
        let names =
            |v: Vec<InputObject>| v.into_iter().map(|o| o.url.to_string()).collect::<Vec<_>>();
        let globbed = expand(&storage, "memory://t/raw/2024-01-02/*.csv")
            .await
            .unwrap();
        assert_eq!(
            names(globbed),
            [
                "memory://t/raw/2024-01-02/a.csv",
                "memory://t/raw/2024-01-02/b.csv"
            ]
        );
        let all = expand(&storage, "memory://t/raw/").await.unwrap();
        assert_eq!(all.len(), 4);
        let err = expand(&storage, "memory://t/raw/*.parquet")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("matches no object"), "{err}");
        let missing = expand(&storage, "memory://t/nope.csv").await.unwrap_err();
        assert!(matches!(missing, Error::NotFound { .. }));
    }

    #[tokio::test]
    async fn what_an_input_would_list_inside_an_output_is_found_from_the_output_alone() {
        let storage = Storage::new();
        let root = ObjectUrl::parse("memory://inside/").unwrap();
        let store = storage.store(&root).unwrap();
        for key in [
            "data/a.csv",
            "data/out-x/b.csv",
            "data/out/_SUCCESS",
            "data/out/_errors/part-00000.jsonl",
            "data/users.parquet",
        ] {
            store
                .put(&key.into(), PutPayload::from_static(b"x\n"))
                .await
                .unwrap();
        }
        let url = |u: &str| ObjectUrl::parse(u).unwrap();
        let inside = |input: &'static str, target: &'static str| {
            let storage = storage.clone();
            async move {
                first_listed_inside(&storage, input, &url(target))
                    .await
                    .unwrap()
            }
        };
        // Only hidden objects (and a sibling prefix) so far: nothing the input would list.
        assert_eq!(
            inside("memory://inside/data/", "memory://inside/data/out/").await,
            None
        );
        store
            .put(
                &"data/out/part-00000.csv".into(),
                PutPayload::from_static(b"x\n"),
            )
            .await
            .unwrap();
        assert_eq!(
            inside("memory://inside/data/", "memory://inside/data/out/").await,
            Some("memory://inside/data/out/part-00000.csv".to_string())
        );
        // A glob that does not reach into the output, an output outside the input, a hidden
        // output: none.
        assert_eq!(
            inside("memory://inside/data/*.csv", "memory://inside/data/out/").await,
            None
        );
        assert_eq!(
            inside("memory://inside/data/", "memory://inside/lake/").await,
            None
        );
        assert_eq!(
            inside("memory://inside/data/", "memory://inside/data/_tmp/").await,
            None
        );
        assert_eq!(
            inside("memory://inside/data/**/*.csv", "memory://inside/data/out/").await,
            Some("memory://inside/data/out/part-00000.csv".to_string())
        );
        // A single-file output that exists, and a single input named inside an output.
        assert_eq!(
            inside(
                "memory://inside/data/",
                "memory://inside/data/users.parquet"
            )
            .await,
            Some("memory://inside/data/users.parquet".to_string())
        );
        assert_eq!(
            inside(
                "memory://inside/data/out/x.csv",
                "memory://inside/data/out/"
            )
            .await,
            Some("memory://inside/data/out/x.csv".to_string())
        );
    }

    #[test]
    fn urls_round_trip_and_join() {
        let u = ObjectUrl::parse("s3://bucket/a/b.csv").unwrap();
        assert_eq!(u.to_string(), "s3://bucket/a/b.csv");
        assert_eq!(u.parent().join("c.csv").to_string(), "s3://bucket/a/c.csv");
        assert_eq!(u.file_name(), "b.csv");
        let local = ObjectUrl::parse("/tmp/x/").unwrap();
        assert!(local.is_prefix());
        assert_eq!(
            local.join("part-00000.parquet").to_string(),
            "file:///tmp/x/part-00000.parquet"
        );
        assert!(ObjectUrl::parse("gs://b/k").is_err());
        assert_eq!(
            ObjectUrl::parse("/tmp/a/../b/./c.csv").unwrap().to_string(),
            "file:///tmp/b/c.csv"
        );
        assert_eq!(
            ObjectUrl::parse("file:///tmp/a/../out/")
                .unwrap()
                .to_string(),
            "file:///tmp/out/"
        );
    }
}
