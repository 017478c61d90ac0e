//! How zoopipectl and workers reach the coordinator: one or several replica URLs (any of them
//! serves: followers forward to the leader), TLS from files, and a bearer token on every call.
//!
//! `Failover` is a gRPC transport over one channel per URL: a call that cannot reach its
//! replica moves later calls on to the next one, so a worker given every replica's URL carries
//! on when one dies (on Kubernetes a single Service URL does the same job).

use http::HeaderValue;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tower::{Service, ServiceExt};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("coordinator URL {url}: {message}")]
    BadUrl { url: String, message: String },
    #[error("cannot read {what} {path}: {message}")]
    File {
        what: &'static str,
        path: String,
        message: String,
    },
    #[error("no coordinator URL given")]
    NoUrl,
}

/// Connection settings shared by every client of the coordinator.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Coordinator URLs (`http://…` or `https://…`); calls go to the first that answers.
    pub urls: Vec<String>,
    /// CA bundle (PEM) to verify the coordinator's certificate; the system roots otherwise.
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Bearer token sent as `authorization` on every call.
    pub token: Option<String>,
}

fn read(what: &'static str, path: &PathBuf) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|e| ClientError::File {
        what,
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// A bearer token from a file (trailing newline ignored), as mounted from a Secret.
pub fn read_token(path: &PathBuf) -> Result<String, ClientError> {
    let bytes = read("token file", path)?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_string())
}

impl ClientOptions {
    fn endpoint(&self, url: &str) -> Result<Endpoint, ClientError> {
        let bad = |message: String| ClientError::BadUrl {
            url: url.to_string(),
            message,
        };
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(Duration::from_secs(3))
            .tcp_keepalive(Some(Duration::from_secs(30)))
            // A replica that accepts connections but never answers (frozen, or its host gone)
            // is given up within seconds by HTTP/2 pings, so calls fail over to the next URL
            // instead of waiting forever.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        if url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            tls = match &self.ca {
                Some(ca) => tls.ca_certificate(Certificate::from_pem(read("CA bundle", ca)?)),
                None => tls.with_native_roots(),
            };
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                let identity =
                    Identity::from_pem(read("certificate", cert)?, read("private key", key)?);
                tls = tls.identity(identity);
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| bad(e.to_string()))?;
        }
        Ok(endpoint)
    }

    /// Lazily connected: nothing is dialled until the first call.
    pub fn connect(&self) -> Result<Failover, ClientError> {
        if self.urls.is_empty() {
            return Err(ClientError::NoUrl);
        }
        let channels = self
            .urls
            .iter()
            .map(|url| Ok(self.endpoint(url)?.connect_lazy()))
            .collect::<Result<Vec<_>, ClientError>>()?;
        let token = match &self.token {
            Some(t) => Some(HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                ClientError::File {
                    what: "token",
                    path: "(token)".into(),
                    message: "not a valid header value".into(),
                }
            })?),
            None => None,
        };
        Ok(Failover {
            channels: channels.into(),
            current: Arc::default(),
            token,
        })
    }
}

/// Hook for the caller's trace context (set once by the binaries that export traces).
pub type Inject = fn(&mut http::HeaderMap);
static INJECT: std::sync::OnceLock<Inject> = std::sync::OnceLock::new();

/// Install the function that writes the current trace context into outgoing calls.
pub fn set_trace_injector(inject: Inject) {
    let _ = INJECT.set(inject);
}

/// See the module documentation.
#[derive(Clone)]
pub struct Failover {
    channels: Arc<[Channel]>,
    current: Arc<AtomicUsize>,
    token: Option<HeaderValue>,
}

impl Service<http::Request<Body>> for Failover {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is awaited per call, on the channel the call goes to.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if let Some(token) = &self.token {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, token.clone());
        }
        if let Some(inject) = INJECT.get() {
            inject(request.headers_mut());
        }
        let index = self.current.load(Ordering::Relaxed) % self.channels.len();
        let mut channel = self.channels[index].clone();
        let current = self.current.clone();
        let count = self.channels.len();
        Box::pin(async move {
            let outcome = match channel.ready().await {
                Ok(ready) => ready.call(request).await,
                Err(e) => Err(e),
            };
            if outcome.is_err() && count > 1 {
                // Unreachable replica: the next call tries the next URL.
                let _ = current.compare_exchange(
                    index,
                    (index + 1) % count,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            outcome
        })
    }
}
