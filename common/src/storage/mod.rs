//! URLs to object stores: `s3://bucket/key`, `file:///abs/path`, plain local paths and
//! `memory://name/key` (tests). Stores are cached per bucket so one process shares its HTTP
//! connection pools (and one `memory://` store is visible to every task of the process).

pub mod assemble;
mod aws;
pub mod checksum;
mod list;
mod part_copy;
mod pin;
mod read;
mod upload;

pub use list::{InputListing, InputObject, LIST_BATCH, first_listed_inside};
pub use part_copy::{PartCopier, is_unsupported};
pub use pin::{Pin, get_pinned, get_ranges_pinned};
pub use read::{ObjectReader, ReadCounter};
pub use upload::{StagedObject, StagedWriter, wait_for_aborts};

use crate::{Error, Result};
use object_store::multipart::MultipartStore;
use object_store::{ObjectStore, path::Path};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where an object lives, in a form that can be shown to users and sent between processes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectUrl {
    scheme: Scheme,
    /// Key inside the store, without a leading slash. May end with `/` for prefixes.
    key: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Scheme {
    S3 { bucket: String },
    File,
    Memory { name: String },
}

impl ObjectUrl {
    /// Parse a user-facing location. Plain paths are local files, made absolute.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::config("empty URL"));
        }
        if let Some(rest) = text
            .strip_prefix("s3://")
            .or_else(|| text.strip_prefix("s3a://"))
        {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::config(format!("{text}: missing bucket name")));
            }
            return Ok(Self {
                scheme: Scheme::S3 {
                    bucket: bucket.to_string(),
                },
                key: key.to_string(),
            });
        }
        if let Some(rest) = text.strip_prefix("memory://") {
            let (name, key) = rest.split_once('/').unwrap_or((rest, ""));
            return Ok(Self {
                scheme: Scheme::Memory {
                    name: name.to_string(),
                },
                key: key.to_string(),
            });
        }
        let local = if let Some(rest) = text.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(Error::config(format!(
                    "{text}: file URLs need an absolute path (file:///abs/path)"
                )));
            }
            rest.to_string()
        } else if text.contains("://") {
            return Err(Error::config(format!(
                "{text}: unsupported URL scheme (use s3://, file:// or a local path)"
            )));
        } else {
            let trailing = text.ends_with('/');
            let abs =
                std::path::absolute(text).map_err(|e| Error::config(format!("{text}: {e}")))?;
            let mut s = abs.to_string_lossy().into_owned();
            if trailing && !s.ends_with('/') {
                s.push('/');
            }
            s
        };
        // `..` and `.` are resolved here: object stores have no such segments.
        let trailing = local.ends_with('/');
        let mut local = normalize(std::path::Path::new(&local))
            .to_string_lossy()
            .into_owned();
        if trailing && !local.ends_with('/') {
            local.push('/');
        }
        Ok(Self {
            scheme: Scheme::File,
            key: local.trim_start_matches('/').to_string(),
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn is_local(&self) -> bool {
        matches!(self.scheme, Scheme::File)
    }

    /// Whether its store lists keys in order (S3 general-purpose buckets list in UTF-8 binary
    /// order; S3 Express directory buckets, named `…--x-s3`, and local directories do not).
    pub fn lists_in_order(&self) -> bool {
        match &self.scheme {
            Scheme::S3 { bucket } => !bucket.ends_with("--x-s3"),
            Scheme::Memory { .. } => true,
            Scheme::File => false,
        }
    }

    /// A URL naming a directory-like prefix (ends with `/`, or is the bucket root).
    pub fn is_prefix(&self) -> bool {
        self.key.is_empty() || self.key.ends_with('/')
    }

    /// The last path segment (file name), if any.
    pub fn file_name(&self) -> &str {
        self.key
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
    }

    /// Same store, another key.
    pub fn with_key(&self, key: impl Into<String>) -> Self {
        Self {
            scheme: self.scheme.clone(),
            key: key.into(),
        }
    }

    /// `self` as a prefix (with trailing `/`) joined with `name`.
    pub fn join(&self, name: &str) -> Self {
        let mut key = self.key.clone();
        if !key.is_empty() && !key.ends_with('/') {
            key.push('/');
        }
        key.push_str(name);
        self.with_key(key)
    }

    /// The prefix containing this object (with trailing `/`).
    pub fn parent(&self) -> Self {
        let trimmed = self.key.trim_end_matches('/');
        match trimmed.rfind('/') {
            Some(i) => self.with_key(&trimmed[..=i]),
            None => self.with_key(""),
        }
    }

    /// The object_store path of this URL. Keys are kept as users write them (decoded); local
    /// paths go through object_store's file-path encoding so any file name works.
    pub fn path(&self) -> Path {
        let key = self.key.trim_end_matches('/');
        if self.is_local()
            && let Ok(p) = Path::from_absolute_path(format!("/{key}"))
        {
            return p;
        }
        Path::from(key)
    }

    /// The user-facing key of an object_store location (undoing its percent-encoding).
    pub fn key_of(location: &Path) -> String {
        percent_encoding::percent_decode_str(location.as_ref())
            .decode_utf8_lossy()
            .into_owned()
    }

    fn store_key(&self) -> String {
        match &self.scheme {
            Scheme::S3 { bucket } => format!("s3://{bucket}"),
            Scheme::File => "file://".to_string(),
            Scheme::Memory { name } => format!("memory://{name}"),
        }
    }
}

impl std::fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.scheme {
            Scheme::S3 { bucket } => write!(f, "s3://{bucket}/{}", self.key),
            Scheme::File => write!(f, "file:///{}", self.key),
            Scheme::Memory { name } => write!(f, "memory://{name}/{}", self.key),
        }
    }
}

/// `a/b/../c` → `a/c`, lexically (the path may not exist yet).
fn normalize(path: &std::path::Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Opens (and caches) the object store behind each URL.
#[derive(Clone, Default)]
pub struct Storage {
    stores: Arc<Mutex<HashMap<String, Opened>>>,
}

/// One store, its explicit multipart API where it has one (S3, memory), and its server-side
/// part copies (S3).
#[derive(Clone)]
struct Opened {
    store: Arc<dyn ObjectStore>,
    multipart: Option<Arc<dyn MultipartStore>>,
    copier: Option<Arc<PartCopier>>,
}

impl Storage {
    pub fn new() -> Self {
        install_tls_provider();
        Self::default()
    }

    /// The store holding `url`.
    pub fn store(&self, url: &ObjectUrl) -> Result<Arc<dyn ObjectStore>> {
        Ok(self.open(url)?.store)
    }

    /// The explicit multipart API of the store holding `url` (upload ids that can be completed
    /// by another process).
    pub fn multipart_store(&self, url: &ObjectUrl) -> Result<Arc<dyn MultipartStore>> {
        self.open(url)?
            .multipart
            .ok_or_else(|| Error::config(format!("{url}: this store has no multipart uploads")))
    }

    /// UploadPartCopy for the bucket of `url`, if it is on S3.
    pub fn part_copier(&self, url: &ObjectUrl) -> Option<Arc<PartCopier>> {
        self.open(url).ok()?.copier
    }

    fn open(&self, url: &ObjectUrl) -> Result<Opened> {
        let key = url.store_key();
        let mut stores = self
            .stores
            .lock()
            .map_err(|_| Error::config("storage registry poisoned"))?;
        if let Some(opened) = stores.get(&key) {
            return Ok(opened.clone());
        }
        let opened = match &url.scheme {
            Scheme::S3 { bucket } => {
                let (s3, copier) = aws::build_s3(bucket)?;
                let s3 = Arc::new(s3);
                Opened {
                    store: s3.clone(),
                    multipart: Some(s3),
                    copier: copier.map(Arc::new),
                }
            }
            Scheme::File => Opened {
                store: Arc::new(object_store::local::LocalFileSystem::new()),
                multipart: None,
                copier: None,
            },
            Scheme::Memory { .. } => {
                let memory = Arc::new(object_store::memory::InMemory::new());
                Opened {
                    store: memory.clone(),
                    multipart: Some(memory),
                    copier: None,
                }
            }
        };
        stores.insert(key, opened.clone());
        Ok(opened)
    }

    /// Every object under a prefix (for output checks and cleanup).
    pub async fn list_prefix(&self, prefix: &ObjectUrl) -> Result<Vec<InputObject>> {
        list::list_all(self, prefix).await
    }
}

/// Install the TLS crypto provider once per process (rustls with ring, see Cargo.toml).
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
