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

pub(super) async fn expand(storage: &Storage, text: &str) -> Result<Vec<InputObject>> {
    let url = ObjectUrl::parse(text)?;
    if has_glob(url.key()) {
        // An object that exists under this very name (`data[1].csv`) is that object first.
        if !url.is_prefix()
            && let Ok(meta) = storage.store(&url)?.head(&url.path()).await
        {
            return Ok(vec![InputObject {
                url,
                size: meta.size,
                pin: super::Pin::of(&meta),
            }]);
        }
        return expand_glob(storage, &url, text).await;
    }
    if url.is_prefix() {
        return list_visible(storage, &url, text).await;
    }
    let store = storage.store(&url)?;
    match store.head(&url.path()).await {
        Ok(meta) => Ok(vec![InputObject {
            url,
            size: meta.size,
            pin: super::Pin::of(&meta),
        }]),
        // A local directory named without the trailing slash is a prefix too.
        Err(object_store::Error::NotFound { .. })
            if url.is_local() && std::path::Path::new(&format!("/{}", url.key())).is_dir() =>
        {
            let dir = url.with_key(format!("{}/", url.key()));
            list_visible(storage, &dir, text).await
        }
        Err(e) => Err(Error::from_store(&url.to_string(), e)),
    }
}

async fn list_visible(
    storage: &Storage,
    prefix: &ObjectUrl,
    text: &str,
) -> Result<Vec<InputObject>> {
    let all = list_all(storage, prefix).await?;
    let base = prefix.key().len();
    let found: Vec<_> = all
        .into_iter()
        .filter(|o| !is_hidden(&o.url.key()[base.min(o.url.key().len())..]))
        .collect();
    if found.is_empty() {
        return Err(Error::NotFound {
            url: format!("{text} (no objects under this prefix)"),
        });
    }
    Ok(found)
}

async fn expand_glob(storage: &Storage, url: &ObjectUrl, text: &str) -> Result<Vec<InputObject>> {
    let key = url.key();
    let first_glob = key.find(['*', '?', '[']).unwrap_or(key.len());
    let prefix_end = key[..first_glob].rfind('/').map(|i| i + 1).unwrap_or(0);
    let prefix = url.with_key(&key[..prefix_end]);
    let matcher = globset::GlobBuilder::new(key)
        .literal_separator(true)
        .build()
        .map_err(|e| Error::config(format!("{text}: bad glob: {e}")))?
        .compile_matcher();
    let found: Vec<_> = list_all(storage, &prefix)
        .await?
        .into_iter()
        .filter(|o| matcher.is_match(o.url.key()))
        .filter(|o| !is_hidden(&o.url.key()[prefix_end..]))
        .collect();
    if found.is_empty() {
        return Err(Error::NotFound {
            url: format!("{text} (the pattern matches no object)"),
        });
    }
    Ok(found)
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

    #[tokio::test]
    async fn local_names_with_any_characters_are_found() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["é.csv", "100%.csv", "a#b.csv", "sp ace.csv"] {
            std::fs::write(dir.path().join(name), "x\n1\n").unwrap();
        }
        let storage = Storage::new();
        let all = storage
            .list_inputs(&format!("{}/", dir.path().display()))
            .await
            .unwrap();
        let names: Vec<&str> = all.iter().map(|o| o.url.file_name()).collect();
        assert_eq!(names, ["100%.csv", "a#b.csv", "sp ace.csv", "é.csv"]);
        for object in &all {
            let one = storage
                .list_inputs(&format!("/{}", object.url.key()))
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
        let globbed = storage
            .list_inputs("memory://t/raw/2024-01-02/*.csv")
            .await
            .unwrap();
        assert_eq!(
            names(globbed),
            [
                "memory://t/raw/2024-01-02/a.csv",
                "memory://t/raw/2024-01-02/b.csv"
            ]
        );
        let all = storage.list_inputs("memory://t/raw/").await.unwrap();
        assert_eq!(all.len(), 4);
        let err = storage
            .list_inputs("memory://t/raw/*.parquet")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("matches no object"), "{err}");
        let missing = storage
            .list_inputs("memory://t/nope.csv")
            .await
            .unwrap_err();
        assert!(matches!(missing, Error::NotFound { .. }));
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
