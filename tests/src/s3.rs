//! The loopback S3 server the test script starts (moto), reached with object_store directly.

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ObjectStoreExt, PutPayload};
use std::io::{Read, Write};

/// The server's endpoint; the suite must run through scripts/test.sh, which starts it.
pub fn endpoint() -> String {
    std::env::var("ZOOPIPE_TEST_S3_ENDPOINT").expect(
        "ZOOPIPE_TEST_S3_ENDPOINT is not set: run the tests with scripts/test.sh (it starts the S3 server)",
    )
}

/// Create a bucket (moto accepts an unsigned PUT).
pub fn create_bucket(name: &str) {
    let endpoint = endpoint();
    let host = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).expect("connect to S3 server");
    write!(
        stream,
        "PUT /{name} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "create bucket {name}: {response}"
    );
}

/// Multipart uploads still open in a bucket (raw ListMultipartUploads; moto accepts it unsigned).
pub fn open_uploads(bucket: &str) -> usize {
    let endpoint = endpoint();
    let host = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).expect("connect to S3 server");
    write!(
        stream,
        "GET /{bucket}?uploads HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "list uploads: {response}"
    );
    response.matches("<UploadId>").count()
}

pub fn client(bucket: &str) -> AmazonS3 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_endpoint(endpoint())
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .expect("s3 client")
}

pub fn put(bucket: &str, key: &str, data: Vec<u8>) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(client(bucket).put(&key.into(), PutPayload::from(data)))
        .expect("put");
}

/// Many objects at once (32 requests in flight).
pub fn put_many(bucket: &str, objects: Vec<(String, Vec<u8>)>) {
    use futures::StreamExt;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = client(bucket);
    rt.block_on(
        futures::stream::iter(objects)
            .map(|(key, data)| {
                let client = &client;
                async move {
                    client
                        .put(&key.as_str().into(), PutPayload::from(data))
                        .await
                        .expect("put")
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>(),
    );
}

/// `count` small CSV objects `<prefix>obj-NNNNN.csv` of `rows_each` rows (`id,name`, ids
/// counting up across them); the ids in object order.
pub fn put_small_csvs(bucket: &str, prefix: &str, count: usize, rows_each: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut objects = Vec::new();
    for f in 0..count {
        let mut text = String::from("id,name\n");
        for r in 0..rows_each {
            let id = f * rows_each + r;
            text.push_str(&format!("{id},name-{id}\n"));
            ids.push(id.to_string());
        }
        objects.push((format!("{prefix}obj-{f:05}.csv"), text.into_bytes()));
    }
    put_many(bucket, objects);
    ids
}

/// An input bucket holding `count` small CSVs under `many/` (see `put_small_csvs`), an empty
/// output bucket, and a schema for them.
pub struct SmallCsvs {
    pub raw: String,
    pub lake: String,
    /// Every row's id, in object order.
    pub ids: Vec<String>,
    /// The schema file's path (in `_dir`).
    pub schema: String,
    _dir: tempfile::TempDir,
}

impl SmallCsvs {
    /// `zoopipectl` `command` (`run`, `submit`) of the job over them, JSON lines to
    /// `s3://<lake>/out/` at 64 MiB partitions, then `more` arguments.
    pub fn command(&self, command: &str, more: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            command,
            "--input",
            &format!("s3://{}/many/", self.raw),
            "--output",
            &format!("s3://{}/out/", self.lake),
            "--format",
            "jsonl",
            "--schema",
            &self.schema,
            "--partition-size",
            "64MiB",
        ]
        .map(String::from)
        .to_vec();
        args.extend(more.iter().map(|a| a.to_string()));
        args
    }
}

pub fn small_csvs(count: usize, rows_each: usize) -> SmallCsvs {
    let (raw, lake) = (crate::unique("raw"), crate::unique("lake"));
    create_bucket(&raw);
    create_bucket(&lake);
    let ids = put_small_csvs(&raw, "many/", count, rows_each);
    let dir = tempfile::tempdir().expect("temporary directory");
    let schema = small_csv_schema(dir.path());
    SmallCsvs {
        raw,
        lake,
        ids,
        schema,
        _dir: dir,
    }
}

/// A schema for `put_small_csvs` objects, written in `dir`; its path.
pub fn small_csv_schema(dir: &std::path::Path) -> String {
    let path = dir.join("small.schema.json");
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
        "required": ["id", "name"],
    });
    std::fs::write(&path, schema.to_string()).expect("schema written");
    path.to_string_lossy().into_owned()
}

/// The `id` of every row of the JSON-lines parts under `prefix`, in part order.
pub fn part_ids(bucket: &str, prefix: &str) -> Vec<String> {
    let mut parts: Vec<String> = list(bucket, prefix)
        .into_iter()
        .filter(|n| n.contains("/part-"))
        .collect();
    parts.sort();
    parts
        .iter()
        .flat_map(|p| {
            let text = String::from_utf8(get(bucket, p)).expect("UTF-8 part");
            text.lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).expect("JSON line")["id"]
                        .to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn delete(bucket: &str, key: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(client(bucket).delete(&key.into()))
        .expect("delete");
}

pub fn get(bucket: &str, key: &str) -> Vec<u8> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let r = client(bucket).get(&key.into()).await.expect("get");
        r.bytes().await.expect("body").to_vec()
    })
}

pub fn list(bucket: &str, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let c = client(bucket);
        let p = object_store::path::Path::from(prefix);
        let mut names: Vec<String> = object_store::ObjectStore::list(&c, Some(&p))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .expect("list");
        names.sort();
        names
    })
}
