//! TLS of the coordinator's gRPC port (rustls, certificates from PEM files), of the channel a
//! follower forwards calls to the leader on, and of the connection to etcd.

use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
#[error("cannot read {what} {path}: {message}")]
pub struct TlsError {
    what: &'static str,
    path: String,
    message: String,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError {
        what,
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The coordinator's TLS settings (all paths PEM).
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Client certificates signed by this CA are accepted as worker identities (mTLS).
    pub client_ca: Option<PathBuf>,
    /// CA to verify other replicas with when forwarding (default: the client CA, else the
    /// system roots).
    pub ca: Option<PathBuf>,
    /// Name to expect in other replicas' certificates (they are dialled by pod IP).
    pub server_name: Option<String>,
}

impl TlsFiles {
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }

    pub fn server(&self) -> Result<Option<ServerTlsConfig>, TlsError> {
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return Ok(None);
        };
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
            read("certificate", cert)?,
            read("private key", key)?,
        ));
        if let Some(ca) = &self.client_ca {
            // Optional: zoopipectl clients authenticate with tokens, workers with either.
            config = config
                .client_ca_root(Certificate::from_pem(read("client CA", ca)?))
                .client_auth_optional(true);
        }
        Ok(Some(config))
    }

    /// For forwarding to the leader: verify it, and present our own certificate (the leader
    /// may require one from workers; a follower vouches for the worker it forwards).
    pub fn client(&self) -> Result<Option<ClientTlsConfig>, TlsError> {
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return Ok(None);
        };
        let mut config = ClientTlsConfig::new().identity(Identity::from_pem(
            read("certificate", cert)?,
            read("private key", key)?,
        ));
        config = match self.ca.as_ref().or(self.client_ca.as_ref()) {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read("CA", ca)?)),
            None => config.with_native_roots(),
        };
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        Ok(Some(config))
    }
}

/// TLS to etcd: a CA to verify it with, and a client certificate where etcd requires one
/// (`--client-cert-auth`). All PEM.
#[derive(Clone, Debug, Default)]
pub struct EtcdTlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl EtcdTlsFiles {
    /// `None` when nothing is set and no endpoint is `https://` (plain http).
    pub fn client(&self, endpoints: &[String]) -> Result<Option<ClientTlsConfig>, TlsError> {
        let https = endpoints.iter().any(|e| e.starts_with("https://"));
        if !https && self.ca.is_none() && self.cert.is_none() {
            return Ok(None);
        }
        let mut config = match &self.ca {
            Some(ca) => {
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("etcd CA", ca)?))
            }
            None => ClientTlsConfig::new().with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            config = config.identity(Identity::from_pem(
                read("etcd client certificate", cert)?,
                read("etcd client key", key)?,
            ));
        }
        Ok(Some(config))
    }
}
