//! S3 UploadPartCopy with a byte range: one part of a multipart upload copied from a range of
//! another object inside S3, so assembling a single-file output moves no data through us.
//!
//! object_store has no such call, so this module signs it itself (SigV4 through `aws-sigv4`)
//! with the credentials of the store's own provider (environment, profile, web identity,
//! instance metadata — whatever object_store resolved) and sends it with reqwest.

use crate::{Error, Result};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use object_store::aws::AwsCredentialProvider;
use object_store::multipart::PartId;
use object_store::path::Path;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::ops::Range;
use std::time::{Duration, SystemTime};

/// How object_store encodes keys in request paths (its STRICT_PATH_ENCODE_SET): the bytes we
/// send and sign must name the same objects it wrote.
const KEY_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Attempts per copy: the request is idempotent (a part number uploaded again replaces it).
const ATTEMPTS: u32 = 4;

/// Copies byte ranges of objects into parts of multipart uploads, within one bucket.
pub struct PartCopier {
    http: reqwest::Client,
    /// `https://s3.REGION.amazonaws.com/BUCKET`, `http://127.0.0.1:9000/BUCKET`, or a
    /// virtual-hosted endpoint that already names the bucket.
    bucket_endpoint: String,
    bucket: String,
    region: String,
    credentials: AwsCredentialProvider,
}

/// Names the bucket endpoint only: the credentials stay out of logs.
impl std::fmt::Debug for PartCopier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartCopier")
            .field("bucket_endpoint", &self.bucket_endpoint)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CopyPartResult {
    e_tag: String,
}

impl PartCopier {
    pub(super) fn new(
        bucket_endpoint: String,
        bucket: String,
        region: String,
        credentials: AwsCredentialProvider,
        allow_http: bool,
        allow_invalid_certificates: bool,
    ) -> Result<Self> {
        // The same connection rules as the store's own client (see `aws.rs`).
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(600))
            .https_only(!allow_http)
            .danger_accept_invalid_certs(allow_invalid_certificates)
            .build()
            .map_err(|e| Error::config(format!("s3://{bucket}: HTTP client: {e}")))?;
        Ok(Self {
            http,
            bucket_endpoint: bucket_endpoint.trim_end_matches('/').to_string(),
            bucket,
            region,
            credentials,
        })
    }

    /// Upload part `part_index` (0-based, as object_store counts) of `upload_id` on `dest` as
    /// the bytes `range` of `source`. Every part but the last must be at least 5 MiB.
    pub async fn copy_part(
        &self,
        dest: &Path,
        upload_id: &str,
        part_index: usize,
        source: &Path,
        range: Range<u64>,
    ) -> Result<PartId> {
        let url = format!("s3://{}/{}", self.bucket, source.as_ref());
        if range.is_empty() {
            return Err(Error::config(format!("{url}: empty copy range")));
        }
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            // Signed anew for each attempt: a signature is valid for minutes only.
            let request = self
                .signed_request(
                    dest,
                    upload_id,
                    part_index,
                    source,
                    &range,
                    SystemTime::now(),
                )
                .await?;
            match self.send(request, &url).await {
                Ok(part) => return Ok(part),
                Err(e) if e.is_retryable() => {
                    tracing::debug!(error = %e, attempt, "part copy failed, retrying");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::config(format!("{url}: copy failed"))))
    }

    async fn send(&self, request: http::Request<()>, url: &str) -> Result<PartId> {
        let (parts, ()) = request.into_parts();
        let response = self
            .http
            .put(parts.uri.to_string())
            .headers(parts.headers)
            .send()
            .await
            .map_err(|e| transient(url, &e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| transient(url, &e))?;
        // S3 may answer 200 and still report an error in the body (documented for copies).
        if !status.is_success() || body.contains("<Error>") {
            return Err(copy_error(url, status, &body));
        }
        let result: CopyPartResult =
            quick_xml::de::from_str(&body).map_err(|e| Error::Transient {
                url: url.to_string(),
                message: format!("unreadable UploadPartCopy reply: {e}"),
            })?;
        Ok(PartId {
            content_id: result.e_tag,
        })
    }

    /// The UploadPartCopy request, signed (SigV4) as of `time`: what `copy_part` sends.
    pub async fn signed_request(
        &self,
        dest: &Path,
        upload_id: &str,
        part_index: usize,
        source: &Path,
        range: &Range<u64>,
        time: SystemTime,
    ) -> Result<http::Request<()>> {
        let url = format!("s3://{}/{}", self.bucket, source.as_ref());
        let target = format!(
            "{}/{}?partNumber={}&uploadId={}",
            self.bucket_endpoint,
            utf8_percent_encode(dest.as_ref(), KEY_ENCODE_SET),
            part_index + 1,
            utf8_percent_encode(upload_id, NON_ALPHANUMERIC),
        );
        let copy_source = format!(
            "{}/{}",
            self.bucket,
            utf8_percent_encode(source.as_ref(), KEY_ENCODE_SET)
        );
        let copy_range = format!("bytes={}-{}", range.start, range.end - 1);
        let mut request = http::Request::builder()
            .method("PUT")
            .uri(&target)
            .header("x-amz-copy-source", &copy_source)
            .header("x-amz-copy-source-range", &copy_range)
            .header("content-length", "0")
            .body(())
            .map_err(|e| Error::config(format!("{url}: building the copy request: {e}")))?;
        self.sign(&mut request, &url, time).await?;
        Ok(request)
    }

    async fn sign(
        &self,
        request: &mut http::Request<()>,
        url: &str,
        time: SystemTime,
    ) -> Result<()> {
        let credential = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| Error::from_store(url, e))?;
        let identity = Credentials::new(
            &credential.key_id,
            &credential.secret_key,
            credential.token.clone(),
            None,
            "object_store",
        )
        .into();
        let mut settings = SigningSettings::default();
        // S3's rules: the path is encoded once and not normalised, the payload hash is a header.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| Error::config(format!("{url}: signing: {e}")))?
            .into();
        let uri = request.uri().to_string();
        let headers: Vec<(&str, &str)> = request
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
            .collect();
        let signable = SignableRequest::new("PUT", uri, headers.into_iter(), SignableBody::empty())
            .map_err(|e| Error::config(format!("{url}: signing: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| Error::config(format!("{url}: signing: {e}")))?
            .into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }
}

fn transient(url: &str, e: &reqwest::Error) -> Error {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    Error::Transient {
        url: url.to_string(),
        message,
    }
}

/// The S3 error code of a failed copy, typed like object_store's failures.
fn copy_error(url: &str, status: reqwest::StatusCode, body: &str) -> Error {
    let code = between(body, "<Code>", "</Code>").unwrap_or_default();
    let message = between(body, "<Message>", "</Message>").unwrap_or_default();
    let detail = format!("UploadPartCopy: {status} {code} {message}")
        .trim()
        .to_string();
    match (status.as_u16(), code) {
        (_, "NoSuchKey") | (404, _) if code != "NoSuchUpload" && code != "NoSuchBucket" => {
            Error::NotFound {
                url: url.to_string(),
            }
        }
        (_, "NoSuchBucket") => Error::config(format!("{url}: bucket does not exist")),
        (501, _) | (405, _) | (_, "NotImplemented") => Error::Corrupt {
            url: url.to_string(),
            message: format!("{UNSUPPORTED}: {detail}"),
        },
        (403, _) | (_, "AccessDenied") | (_, "SignatureDoesNotMatch") => Error::AccessDenied {
            url: url.to_string(),
            detail,
        },
        (s, _) if s >= 500 || s == 429 || code == "SlowDown" || code == "InternalError" => {
            Error::Transient {
                url: url.to_string(),
                message: detail,
            }
        }
        _ => Error::Corrupt {
            url: url.to_string(),
            message: detail,
        },
    }
}

/// Whether a copy failure means the server does not offer UploadPartCopy at all (some
/// S3-compatible stores), so the caller may fall back to streaming the bytes.
pub fn is_unsupported(error: &Error) -> bool {
    matches!(error, Error::Corrupt { message, .. } if message.starts_with(UNSUPPORTED))
}

const UNSUPPORTED: &str = "the storage server does not support UploadPartCopy";

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_codes_become_typed_errors() {
        let body = "<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>";
        let e = copy_error("s3://b/k", reqwest::StatusCode::NOT_FOUND, body);
        assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
        let body = "<Error><Code>AccessDenied</Code><Message>no</Message></Error>";
        let e = copy_error("s3://b/k", reqwest::StatusCode::FORBIDDEN, body);
        assert!(matches!(e, Error::AccessDenied { .. }), "{e:?}");
        let body = "<Error><Code>InternalError</Code></Error>";
        let e = copy_error("s3://b/k", reqwest::StatusCode::OK, body);
        assert!(e.is_retryable(), "{e:?}");
        let body = "<Error><Code>NotImplemented</Code></Error>";
        let e = copy_error("s3://b/k", reqwest::StatusCode::NOT_IMPLEMENTED, body);
        assert!(is_unsupported(&e), "{e:?}");
    }
}
