//! One error type for the data plane, typed all the way to the wire: every variant knows whether
//! retrying the task elsewhere can help (`is_retryable`). Messages name the object (URL) and,
//! where there is one, the line/row and field.

use crate::schema::SchemaError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad job spec, URL or option: fatal, the user must change something.
    #[error("{0}")]
    Config(String),
    /// The JSON Schema is invalid or uses something we do not support: fatal.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The object does not exist: fatal for the job.
    #[error("{url}: not found")]
    NotFound { url: String },
    /// Credentials were refused or lack permission: fatal.
    #[error("{url}: access denied ({detail})")]
    AccessDenied { url: String, detail: String },
    /// The object exists but cannot be decoded (truncated Parquet, bad footer, broken gzip): fatal.
    #[error("{url}: {message}")]
    Corrupt { url: String, message: String },
    /// A transient storage/network failure: retryable.
    #[error("{url}: {message}")]
    Transient { url: String, message: String },
    /// Local I/O (temp files, pipes): retryable.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Arrow/Parquet encoding failures while writing: fatal (the same data fails the same way).
    #[error("{context}: {message}")]
    Encode { context: String, message: String },
    /// The task or job was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// An input is no longer the object the job was planned on (rewritten meanwhile).
    #[error(
        "{url} changed since the job was planned (it was rewritten); nothing of it was mixed in: run the job again to read it as it is now"
    )]
    Changed { url: String },
}

impl Error {
    /// Whether running the same task again (possibly elsewhere) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Transient { .. } | Error::Io { .. })
    }

    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }

    pub fn corrupt(url: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Corrupt {
            url: url.into(),
            message: message.to_string(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        // A typed error that travelled through a std::io::Read/Write adapter comes back out whole.
        if source.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            match source.into_inner().map(|inner| inner.downcast::<Error>()) {
                Some(Ok(inner)) => return *inner,
                _ => {
                    return Error::Io {
                        context: context.into(),
                        source: std::io::Error::other("error lost in transit"),
                    };
                }
            }
        }
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Map an object_store failure on `url` to a typed error with one readable line.
    pub fn from_store(url: &str, err: object_store::Error) -> Self {
        use object_store::Error as E;
        match err {
            E::NotFound { .. } => Error::NotFound {
                url: url.to_string(),
            },
            // Only pinned reads are conditional (see `storage::Pin`).
            E::Precondition { .. } => Error::Changed {
                url: url.to_string(),
            },
            E::PermissionDenied { source, .. } | E::Unauthenticated { source, .. } => {
                Error::AccessDenied {
                    url: url.to_string(),
                    detail: first_line(&source.to_string()),
                }
            }
            other => {
                let text = chain(&other);
                let lower = text.to_ascii_lowercase();
                if lower.contains("nosuchbucket") || lower.contains("bucket does not exist") {
                    Error::Config(format!("{url}: bucket does not exist"))
                } else if lower.contains("accessdenied")
                    || lower.contains("403 forbidden")
                    || lower.contains("signaturedoesnotmatch")
                    || lower.contains("invalidaccesskeyid")
                {
                    Error::AccessDenied {
                        url: url.to_string(),
                        detail: "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile"
                            .into(),
                    }
                } else if let Some(i) = lower.find("tcp connect error: ") {
                    // Dead endpoint: say so plainly instead of the whole retry story.
                    let cause = first_line(&text[i + "tcp connect error: ".len()..]);
                    Error::Transient {
                        url: url.to_string(),
                        message: format!("cannot connect to the storage endpoint: {cause}"),
                    }
                } else {
                    Error::Transient {
                        url: url.to_string(),
                        message: first_line(&text),
                    }
                }
            }
        }
    }
}

/// The error and its sources on one line: object_store and tokio-postgres nest the useful
/// part deep down.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

/// Why an attempt ended without a result. Crosses the wire as
/// `zoopipe.v1.FailureKind`; `zoopipe_engine::lifecycle::retry` decides what follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Storage or I/O trouble, throttling: worth another attempt.
    Transient,
    /// Bad input, schema or configuration: no attempt can succeed.
    Fatal,
    /// The worker is shutting down and gave the task back unfinished: not the task's fault,
    /// so it does not use up an attempt.
    HandedBack,
    /// The attempt's worker vanished (lease expired) or never received the task.
    Lost,
}

impl FailureKind {
    /// The kind of a task's error, from its type (never from its text).
    pub fn of(error: &Error) -> Self {
        if error.is_retryable() {
            Self::Transient
        } else {
            Self::Fatal
        }
    }
}
