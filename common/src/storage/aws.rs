//! S3 configuration the way AWS users already have it: `AWS_*` environment variables first,
//! then `~/.aws/credentials` and `~/.aws/config` for `AWS_PROFILE` (or `default`).
//! A custom `AWS_ENDPOINT_URL` (MinIO and friends) gets path-style requests, and plain http
//! is allowed when the endpoint says `http://`.

use super::PartCopier;
use crate::{Error, Result};
use ini::Ini;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{ClientOptions, RetryConfig};
use std::path::PathBuf;
use std::time::Duration;

pub(super) fn build_s3(bucket: &str) -> Result<(AmazonS3, Option<PartCopier>)> {
    build_s3_from(bucket, &env_pairs(), &Profile::load())
}

/// The AWS_* settings, and ours for S3 (ZOOPIPE_S3_*).
fn env_pairs() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_") || k.starts_with("ZOOPIPE_S3_"))
        .collect()
}

fn build_s3_from(
    bucket: &str,
    env: &[(String, String)],
    profile: &Profile,
) -> Result<(AmazonS3, Option<PartCopier>)> {
    let get = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
    for (key, value) in env {
        // Only the keys object_store knows; unknown AWS_* variables (AWS_PROFILE, ...) are ours or the SDK's.
        if let Ok(config_key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            builder = builder.with_config(config_key, value);
        }
    }
    if get("AWS_ACCESS_KEY_ID").is_none() {
        if let Some(key) = &profile.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &profile.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = &profile.session_token {
            builder = builder.with_token(token);
        }
    }
    let region = get("AWS_REGION")
        .or_else(|| get("AWS_DEFAULT_REGION"))
        .or_else(|| profile.region.clone())
        .unwrap_or_else(|| "us-east-1".to_string());
    builder = builder.with_region(&region);
    let endpoint = get("AWS_ENDPOINT_URL_S3")
        .or_else(|| get("AWS_ENDPOINT_URL"))
        .or_else(|| get("AWS_ENDPOINT"))
        .or_else(|| profile.endpoint_url.clone());
    let mut client = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(300));
    let allow_http = endpoint.as_ref().is_some_and(|e| e.starts_with("http://"));
    if let Some(endpoint) = &endpoint {
        if allow_http {
            client = client.with_allow_http(true);
        }
        builder = builder.with_endpoint(endpoint);
    }
    let bucket_endpoint = bucket_endpoint(&builder, bucket, endpoint.as_deref(), &region);
    // UploadPartCopy can be turned off for S3-compatible servers that get it wrong.
    let copies = copies_allowed(&builder)
        && !get("ZOOPIPE_S3_SERVER_SIDE_COPY").is_some_and(|v| {
            matches!(
                v.to_ascii_lowercase().as_str(),
                "false" | "0" | "off" | "no"
            )
        });
    let invalid_certs = "aws_allow_invalid_certificates"
        .parse::<AmazonS3ConfigKey>()
        .ok()
        .and_then(|key| builder.get_config_value(&key))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    // Client options replace each other wholesale: set them once, after every other setting.
    builder = builder.with_client_options(client);
    // A handful of quick retries: wrong endpoints and dead servers must fail in seconds with one
    // line, not after minutes of backoff. Throttling and 5xx are still retried.
    let max_retries = get("ZOOPIPE_S3_MAX_RETRIES")
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    builder = builder.with_retry(RetryConfig {
        max_retries,
        retry_timeout: Duration::from_secs(60),
        ..RetryConfig::default()
    });
    let s3 = builder
        .build()
        .map_err(|e| Error::config(format!("s3://{bucket}: invalid S3 configuration: {e}")))?;
    let copier = if copies {
        Some(PartCopier::new(
            bucket_endpoint,
            bucket.to_string(),
            region,
            s3.credentials().clone(),
            allow_http,
            invalid_certs,
        )?)
    } else {
        None
    };
    Ok((s3, copier))
}

/// Our UploadPartCopy sends no SSE-C keys and no part checksums: with either configured,
/// single-file outputs are merged by streaming instead.
fn copies_allowed(builder: &AmazonS3Builder) -> bool {
    let sse = "aws_server_side_encryption"
        .parse::<AmazonS3ConfigKey>()
        .ok()
        .and_then(|key| builder.get_config_value(&key));
    let checksum = builder.get_config_value(&AmazonS3ConfigKey::Checksum);
    !sse.is_some_and(|v| v.eq_ignore_ascii_case("sse-c")) && checksum.is_none()
}

/// The URL of the bucket, as object_store forms it: path style unless virtual-hosted style was
/// asked for (then a custom endpoint already names the bucket).
fn bucket_endpoint(
    builder: &AmazonS3Builder,
    bucket: &str,
    endpoint: Option<&str>,
    region: &str,
) -> String {
    let virtual_hosted = builder
        .get_config_value(&AmazonS3ConfigKey::VirtualHostedStyleRequest)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    match (endpoint, virtual_hosted) {
        (Some(endpoint), true) => endpoint.to_string(),
        (Some(endpoint), false) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
        (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
    }
}

/// The parts of `~/.aws/credentials` and `~/.aws/config` we use, for one profile.
#[derive(Default, Debug)]
struct Profile {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    region: Option<String>,
    endpoint_url: Option<String>,
}

impl Profile {
    fn load() -> Self {
        let name = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_string());
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let credentials = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials")));
        let config = std::env::var_os("AWS_CONFIG_FILE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws/config")));
        let read = |p: Option<PathBuf>| p.and_then(|p| Ini::load_from_file(p).ok());
        Self::from_files(&name, read(credentials).as_ref(), read(config).as_ref())
    }

    fn from_files(name: &str, credentials: Option<&Ini>, config: Option<&Ini>) -> Self {
        let mut out = Profile::default();
        // The config file names non-default profiles "profile NAME"; the credentials file does not.
        let config_section = if name == "default" {
            "default".to_string()
        } else {
            format!("profile {name}")
        };
        let sections = [
            credentials.and_then(|c| c.section(Some(name))),
            config.and_then(|c| c.section(Some(config_section.as_str()))),
            config.and_then(|c| c.section(Some(name))),
        ];
        for section in sections.into_iter().flatten() {
            let take = |slot: &mut Option<String>, key: &str| {
                if slot.is_none() {
                    *slot = section.get(key).map(str::to_string);
                }
            };
            take(&mut out.access_key_id, "aws_access_key_id");
            take(&mut out.secret_access_key, "aws_secret_access_key");
            take(&mut out.session_token, "aws_session_token");
            take(&mut out.region, "region");
            take(&mut out.endpoint_url, "endpoint_url");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_files_supply_credentials_region_and_endpoint() {
        let creds = Ini::load_from_str(
            "[default]\naws_access_key_id = AK1\naws_secret_access_key = S1\n\
             [dev]\naws_access_key_id = AK2\naws_secret_access_key = S2\naws_session_token = T2\n",
        )
        .unwrap();
        let config = Ini::load_from_str(
            "[default]\nregion = eu-west-1\n[profile dev]\nregion = us-west-2\nendpoint_url = http://127.0.0.1:9000\n",
        )
        .unwrap();
        let dev = Profile::from_files("dev", Some(&creds), Some(&config));
        assert_eq!(dev.access_key_id.as_deref(), Some("AK2"));
        assert_eq!(dev.session_token.as_deref(), Some("T2"));
        assert_eq!(dev.region.as_deref(), Some("us-west-2"));
        assert_eq!(dev.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
        let default = Profile::from_files("default", Some(&creds), Some(&config));
        assert_eq!(default.secret_access_key.as_deref(), Some("S1"));
        assert_eq!(default.region.as_deref(), Some("eu-west-1"));
        assert!(default.endpoint_url.is_none());
    }

    #[test]
    fn environment_builds_a_path_style_http_client() {
        super::super::install_tls_provider();
        let env = vec![
            ("AWS_ACCESS_KEY_ID".to_string(), "k".to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "s".to_string()),
            (
                "AWS_ENDPOINT_URL".to_string(),
                "http://127.0.0.1:9".to_string(),
            ),
        ];
        let s3 = build_s3_from("bucket", &env, &Profile::default());
        assert!(s3.is_ok(), "{s3:?}");
        // UploadPartCopy goes to the same bucket URL object_store uses.
        let copier = format!("{:?}", s3.unwrap().1);
        assert!(copier.contains("\"http://127.0.0.1:9/bucket\""), "{copier}");
        // With part checksums or SSE-C keys, no server-side copies (merges stream instead).
        for (key, value) in [
            ("ZOOPIPE_S3_SERVER_SIDE_COPY", "false"),
            ("AWS_CHECKSUM_ALGORITHM", "sha256"),
            ("AWS_SERVER_SIDE_ENCRYPTION", "sse-c"),
        ] {
            let mut env = env.clone();
            env.push((key.to_string(), value.to_string()));
            if key == "AWS_SERVER_SIDE_ENCRYPTION" {
                env.push((
                    "AWS_SSE_CUSTOMER_KEY_BASE64".to_string(),
                    "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_string(),
                ));
            }
            let (_, copier) = build_s3_from("bucket", &env, &Profile::default()).unwrap();
            assert!(copier.is_none(), "{key}");
        }
    }
}
