//! Bearer-token authorization of the coordinator's gRPC API.
//!
//! Tokens come from a file (mounted from a Secret), one per line: `<token> <role>`, role
//! `client` (submit, watch, cancel, read errors) or `worker` (the worker API). A worker token
//! cannot submit or cancel jobs and a client token cannot take tasks. With mutual TLS
//! (`--tls-client-ca`) a worker may instead present a client certificate signed by that CA.
//! Without a tokens file the API is open (a warning says so at start-up).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tonic::{Request, Status};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Worker,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("tokens file {path}: {message}")]
    File { path: String, message: String },
}

/// The accepted tokens, or none (open API).
#[derive(Clone, Default)]
pub struct Auth {
    tokens: Option<Arc<HashMap<String, Role>>>,
    /// Workers may authenticate with a verified client certificate instead of a token.
    worker_certificates: bool,
}

impl Auth {
    pub fn open() -> Self {
        Self::default()
    }

    pub fn from_file(path: &Path, worker_certificates: bool) -> Result<Self, AuthError> {
        let error = |message: String| AuthError::File {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(token), Some(role), None) = (fields.next(), fields.next(), fields.next())
            else {
                // The line may hold a secret: name it by number only.
                return Err(error(format!("line {}: expected `<token> <role>`", n + 1)));
            };
            let role = match role {
                "client" => Role::Client,
                "worker" => Role::Worker,
                other => {
                    return Err(error(format!(
                        "line {}: role '{other}' is not client or worker",
                        n + 1
                    )));
                }
            };
            tokens.insert(token.to_string(), role);
        }
        if tokens.is_empty() {
            return Err(error("no tokens".into()));
        }
        Ok(Self {
            tokens: Some(Arc::new(tokens)),
            worker_certificates,
        })
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_none()
    }

    /// An interceptor admitting calls made with a token of `role`.
    pub fn require(
        &self,
        role: Role,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let auth = self.clone();
        move |request: Request<()>| auth.check(request, role)
    }

    fn check(&self, request: Request<()>, role: Role) -> Result<Request<()>, Status> {
        let Some(tokens) = &self.tokens else {
            return Ok(request);
        };
        if role == Role::Worker
            && self.worker_certificates
            && request.peer_certs().is_some_and(|c| !c.is_empty())
        {
            return Ok(request);
        }
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("a bearer token is required (--token-file)"))?;
        match tokens.get(presented) {
            Some(r) if *r == role => Ok(request),
            Some(_) => Err(Status::permission_denied(match role {
                Role::Client => "this token is a worker's: it cannot use the job API",
                Role::Worker => "this token is a client's: it cannot use the worker API",
            })),
            None => Err(Status::unauthenticated("unknown token")),
        }
    }
}
