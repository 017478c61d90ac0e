//! `postgresql://` URLs resolved the way libpq resolves them (the URL, then `PGUSER`, `PGHOST`,
//! `PGPORT`, `PGDATABASE`, `PGPASSWORD`, `PGSSLMODE`, then `~/.pgpass`), and connections with
//! errors of one line that name the database and never carry the password.
//!
//! A password written in the URL stays in the process that was given it: the URL a job stores
//! and hands to tasks is [`Database::redacted`], and the password waits in this process's
//! memory ([`remember_password`]). Other processes (fleet workers) use their own environment.

use super::tls::TlsMode;
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Passwords given in URLs, by redacted URL: only this process ever sees them.
static PASSWORDS: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(Default::default);

/// Whether an input names a database rather than files.
pub fn is_sql_url(text: &str) -> bool {
    let lower = text.trim_start().to_ascii_lowercase();
    lower.starts_with("postgresql://") || lower.starts_with("postgres://")
}

/// Keep the password of `url` (if it has one) in this process and return the URL without it.
pub fn remember_password(url: &str) -> Result<String> {
    let parsed = parse(url)?;
    let redacted = redact(&parsed);
    let in_query = parsed
        .query_pairs()
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v.into_owned());
    if !parsed.password().unwrap_or("").is_empty() || in_query.is_some() {
        let password = in_query.unwrap_or_else(|| decode(parsed.password().unwrap_or("")));
        if let Ok(mut known) = PASSWORDS.lock() {
            known.insert(redacted.clone(), password);
        }
    }
    Ok(redacted)
}

/// A database to connect to.
#[derive(Clone)]
pub struct Database {
    config: Config,
    tls: TlsMode,
    root_cert: Option<std::path::PathBuf>,
    /// `postgresql://user@host:port/db`: what messages and stored specs show.
    shown: String,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Database {
    /// Resolve a `postgresql://` URL as libpq does.
    pub fn parse(url: &str) -> Result<Self> {
        let parsed = parse(url)?;
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let user = Some(decode(parsed.username()))
            .filter(|u| !u.is_empty())
            .or_else(|| env("PGUSER"))
            .or_else(|| env("USER"))
            .unwrap_or_else(|| "postgres".into());
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .map(|h| h.trim_matches(['[', ']']).to_string())
            .or_else(|| env("PGHOST"))
            .unwrap_or_else(|| "localhost".into());
        let port = match parsed.port() {
            Some(p) => p,
            None => match env("PGPORT") {
                Some(p) => p
                    .parse()
                    .map_err(|_| Error::config(format!("PGPORT '{p}' is not a port number")))?,
                None => 5432,
            },
        };
        let dbname = Some(decode(parsed.path().trim_start_matches('/')))
            .filter(|d| !d.is_empty())
            .or_else(|| env("PGDATABASE"))
            .unwrap_or_else(|| user.clone());
        let mut config = Config::new();
        config
            .user(&user)
            .host(&host)
            .port(port)
            .dbname(&dbname)
            .application_name("zoopipe")
            // Bounds and marks go from one session to another as text: every session writes
            // and reads them the same way, whatever the role's or database's settings.
            .options("-c DateStyle=ISO -c TimeZone=UTC -c extra_float_digits=3 -c idle_in_transaction_session_timeout=0")
            .connect_timeout(CONNECT_TIMEOUT);
        let shown = format!(
            "postgresql://{}@{}:{port}/{}",
            enc(&user),
            host_text(&host),
            enc(&dbname)
        );
        let mut ssl = env("PGSSLMODE");
        let mut root_cert = None;
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "sslmode" => ssl = Some(value.into_owned()),
                "sslrootcert" => root_cert = Some(value.into_owned()),
                "connect_timeout" => {
                    let secs: u64 = value.parse().map_err(|_| {
                        Error::config(format!("{shown}: connect_timeout '{value}' is not seconds"))
                    })?;
                    config.connect_timeout(Duration::from_secs(secs.max(1)));
                }
                "application_name" => {
                    config.application_name(value.as_ref());
                }
                "password" => {}
                other => {
                    return Err(Error::config(format!(
                        "{shown}: unknown connection parameter '{other}' (sslmode, sslrootcert, connect_timeout, application_name)"
                    )));
                }
            }
        }
        let tls = TlsMode::parse(ssl.as_deref().unwrap_or("prefer"), &shown)?;
        config.ssl_mode(match tls {
            TlsMode::Off => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        let root_cert = if tls == TlsMode::Off {
            None
        } else {
            super::tls::root_file(root_cert.as_deref())
        };
        let key = redact(&parsed);
        let password = PASSWORDS
            .lock()
            .ok()
            .and_then(|known| known.get(&key).cloned())
            .or_else(|| Some(decode(parsed.password().unwrap_or(""))).filter(|p| !p.is_empty()))
            .or_else(|| {
                parsed
                    .query_pairs()
                    .find(|(k, _)| k == "password")
                    .map(|(_, v)| v.into_owned())
            })
            .or_else(|| env("PGPASSWORD"))
            .or_else(|| pgpass(&host, port, &dbname, &user));
        if let Some(password) = password {
            config.password(password);
        }
        Ok(Self {
            config,
            tls,
            root_cert,
            shown,
        })
    }

    /// The URL without its password: for messages, stored specs and reports.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Connect; a refusal is one line naming the database (`AccessDenied` for credentials and
    /// permissions, `Transient` for an unreachable server).
    pub async fn connect(&self) -> Result<Client> {
        let client = if self.tls == TlsMode::Off {
            let (client, connection) = self
                .config
                .connect(NoTls)
                .await
                .map_err(|e| self.error("connecting", &e))?;
            tokio::spawn(drive(connection));
            client
        } else {
            let tls = super::tls::client_config(&self.tls, self.root_cert.clone(), &self.shown)?;
            let (client, connection) = self
                .config
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
                .await
                .map_err(|e| self.error("connecting", &e))?;
            tokio::spawn(drive(connection));
            client
        };
        Ok(client)
    }

    /// One typed line for a database error met while `doing` something.
    pub fn error(&self, doing: &str, e: &tokio_postgres::Error) -> Error {
        use tokio_postgres::error::SqlState;
        let url = self.shown.clone();
        let Some(db) = e.as_db_error() else {
            let text = crate::error::chain(e);
            let lower = text.to_ascii_lowercase();
            if lower.contains("password missing") {
                return Error::AccessDenied {
                    url,
                    detail: "the server wants a password and none was found: give it in the URL, PGPASSWORD or ~/.pgpass".into(),
                };
            }
            if lower.contains("tls") || lower.contains("certificate") {
                // A refused certificate or a server without TLS: no retry changes that.
                return Error::Config(format!("{url}: {doing}: {text}"));
            }
            return Error::Transient {
                url,
                message: format!("{doing}: cannot reach the database: {text}"),
            };
        };
        let message = db.message().to_string();
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            Error::AccessDenied {
                url,
                detail: format!("{message}; check the user and PGPASSWORD / ~/.pgpass"),
            }
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            Error::AccessDenied {
                url,
                detail: message,
            }
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            Error::Config(format!("{url}: {message}"))
        } else if *code == SqlState::UNDEFINED_TABLE
            || *code == SqlState::UNDEFINED_COLUMN
            || *code == SqlState::UNDEFINED_FUNCTION
            || *code == SqlState::SYNTAX_ERROR
            || *code == SqlState::UNDEFINED_OBJECT
            || code.code().starts_with("42")
        {
            Error::Config(format!("{url}: {doing}: {message}"))
        } else if code.code().starts_with("08")
            || code.code().starts_with("57")
            || code.code().starts_with("53")
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
        {
            // Connection trouble, shutdown, resources: another attempt may succeed.
            Error::Transient {
                url,
                message: format!("{doing}: {message}"),
            }
        } else {
            Error::Config(format!("{url}: {doing}: {message}"))
        }
    }
}

/// Run a connection until it ends (its client is dropped, or the server goes away).
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "database connection ended");
    }
}

fn parse(url: &str) -> Result<url::Url> {
    let text = url.trim();
    let parsed = url::Url::parse(text).map_err(|e| {
        // Never echo the URL: it may hold a password.
        Error::config(format!("a postgresql:// URL that does not parse: {e}"))
    })?;
    if !matches!(parsed.scheme(), "postgresql" | "postgres") {
        return Err(Error::config(format!(
            "'{}://…' is not a database URL (postgresql://user@host:port/db)",
            parsed.scheme()
        )));
    }
    Ok(parsed)
}

fn redact(parsed: &url::Url) -> String {
    let mut shown = parsed.clone();
    let _ = shown.set_password(None);
    // libpq also takes `?password=`: it goes the same way.
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != "password")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        shown.set_query(None);
    } else {
        shown.query_pairs_mut().clear().extend_pairs(kept);
    }
    shown.to_string()
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn enc(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn host_text(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// The password for this connection from the password file (`PGPASSFILE`, else `~/.pgpass`):
/// lines `host:port:database:user:password`, `*` matching anything, `\` escaping `:` and `\`.
fn pgpass(host: &str, port: u16, dbname: &str, user: &str) -> Option<String> {
    let path = match std::env::var_os("PGPASSFILE") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::path::PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let port = port.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = split_pgpass(line);
            let [h, p, d, u, password] = fields.as_slice() else {
                return None;
            };
            let matches = |pattern: &str, value: &str| pattern == "*" || pattern == value;
            let host_ok =
                matches(h, host) || (h == "localhost" && (host == "127.0.0.1" || host == "::1"));
            (host_ok && matches(p, &port) && matches(d, dbname) && matches(u, user))
                .then(|| password.clone())
        })
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(last)) = (chars.next(), fields.last_mut()) {
                    last.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(last) = fields.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_resolve_and_never_show_the_password() {
        let db = Database::parse("postgresql://ann:s%3Acret@db.example:6543/sales").unwrap();
        assert_eq!(db.shown(), "postgresql://ann@db.example:6543/sales");
        assert_eq!(db.config.get_password(), Some(&b"s:cret"[..]));
        assert!(!format!("{db:?}").contains("cret"));
        let redacted = remember_password("postgres://bob:pw@h/d").unwrap();
        assert_eq!(redacted, "postgres://bob@h/d");
        let redacted =
            remember_password("postgres://bob@h/d?password=pw2&sslmode=disable").unwrap();
        assert_eq!(redacted, "postgres://bob@h/d?sslmode=disable");
        let bad = Database::parse("postgresql://u:topsecret@h/d?sslmode=bogus").unwrap_err();
        assert!(!bad.to_string().contains("topsecret"));
        assert!(is_sql_url("postgres://h/d") && !is_sql_url("s3://b/k"));
    }

    #[test]
    fn pgpass_lines_match_with_wildcards_and_escapes() {
        assert_eq!(
            split_pgpass(r"h:5432:*:u:pa\:ss"),
            ["h", "5432", "*", "u", "pa:ss"]
        );
    }
}
