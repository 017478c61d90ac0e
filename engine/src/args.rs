//! Command-line flags more than one binary takes. Kept here, beside the code both binaries
//! share, so the wire crate (`zoopipe-proto`) carries no CLI concerns.

use std::path::PathBuf;
use zoopipe_proto::client::{ClientError, ClientOptions, Failover, read_token};

/// The same settings as command-line flags (and environment variables), for every binary
/// that talks to the coordinator.
#[derive(clap::Args, Clone, Debug)]
pub struct CoordinatorArgs {
    /// The coordinator's gRPC URL; several replicas comma-separated.
    #[arg(
        long = "coordinator",
        env = "ZOOPIPE_COORDINATOR",
        default_value = "http://127.0.0.1:7070",
        value_delimiter = ','
    )]
    pub urls: Vec<String>,
    /// CA bundle (PEM) that signed the coordinator's TLS certificate (https:// URLs).
    #[arg(long = "tls-ca", env = "ZOOPIPE_TLS_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(
        long = "tls-cert",
        env = "ZOOPIPE_TLS_CERT",
        value_name = "FILE",
        requires = "key"
    )]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    #[arg(
        long = "tls-key",
        env = "ZOOPIPE_TLS_KEY",
        value_name = "FILE",
        requires = "cert"
    )]
    pub key: Option<PathBuf>,
    /// File holding the bearer token to present (as mounted from a Secret).
    #[arg(long = "token-file", env = "ZOOPIPE_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl CoordinatorArgs {
    pub fn options(&self) -> Result<ClientOptions, ClientError> {
        let token = self.token_file.as_ref().map(read_token).transpose()?;
        Ok(ClientOptions {
            urls: self.urls.clone(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            token,
        })
    }

    pub fn connect(&self) -> Result<Failover, ClientError> {
        self.options()?.connect()
    }

    /// The URLs as given, for messages.
    pub fn display(&self) -> String {
        self.urls.join(",")
    }
}
