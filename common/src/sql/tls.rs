//! TLS to PostgreSQL with libpq's `sslmode` meanings, through rustls (ring): `prefer` (the
//! default) encrypts when the server offers TLS and falls back to plain; `require` encrypts without checking the server's certificate (unless a root certificate is
//! given, which makes it `verify-ca`, as in libpq); `verify-ca` checks the chain against the
//! root certificate; `verify-full` checks the chain and that it names the host. Roots come from
//! `sslrootcert` (URL), `PGSSLROOTCERT`, or `~/.postgresql/root.crt`.

use crate::{Error, Result};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub enum TlsMode {
    Off,
    /// libpq's default: TLS when the server offers it (unverified, as `require`), else plain.
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    pub fn parse(mode: &str, shown: &str) -> Result<Self> {
        Ok(match mode {
            "disable" | "allow" => Self::Off,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(Error::config(format!(
                    "{shown}: unknown sslmode '{other}' (disable, prefer, require, verify-ca, verify-full)"
                )));
            }
        })
    }
}

/// The root certificate file libpq would use: `sslrootcert`, `PGSSLROOTCERT`, then
/// `~/.postgresql/root.crt` if it exists.
pub fn root_file(given: Option<&str>) -> Option<PathBuf> {
    if let Some(path) = given.map(str::to_string).or_else(|| {
        std::env::var("PGSSLROOTCERT")
            .ok()
            .filter(|v| !v.is_empty())
    }) {
        return Some(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME")?;
    let default = PathBuf::from(home).join(".postgresql/root.crt");
    default.exists().then_some(default)
}

/// A rustls configuration for `mode` (never `Off`).
pub fn client_config(mode: &TlsMode, roots: Option<PathBuf>, shown: &str) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("{shown}: TLS: {e}")))?;
    let mode = match (mode, &roots) {
        (TlsMode::Require, Some(_)) => &TlsMode::VerifyCa,
        (mode, _) => mode,
    };
    let config = match mode {
        TlsMode::Prefer | TlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth(),
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            let Some(path) = roots else {
                return Err(Error::config(format!(
                    "{shown}: sslmode={} needs the server's root certificate: give sslrootcert=FILE or PGSSLROOTCERT, or put it in ~/.postgresql/root.crt",
                    if *mode == TlsMode::VerifyCa {
                        "verify-ca"
                    } else {
                        "verify-full"
                    }
                )));
            };
            let mut store = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(&path).map_err(|e| {
                Error::config(format!("{shown}: sslrootcert {}: {e}", path.display()))
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    Error::config(format!("{shown}: sslrootcert {}: {e}", path.display()))
                })?;
                store.add(cert).map_err(|e| {
                    Error::config(format!("{shown}: sslrootcert {}: {e}", path.display()))
                })?;
            }
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
                .build()
                .map_err(|e| Error::config(format!("{shown}: sslrootcert: {e}")))?;
            let verifier: Arc<dyn ServerCertVerifier> = if *mode == TlsMode::VerifyCa {
                Arc::new(AnyName(verifier))
            } else {
                verifier
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
        TlsMode::Off => {
            return Err(Error::config(format!("{shown}: TLS is off")));
        }
    };
    Ok(config)
}

/// `sslmode=require`: encrypted, but any certificate is accepted (libpq's meaning); the
/// handshake's signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to the root, whatever name the certificate has.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
