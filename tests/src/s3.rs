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
