//! TLS for the connections: rustls on ring (as the other adapters), verified against the Mozilla roots.
//!
//! `sslmode=require` encrypts and verifies the server's certificate and name; `prefer` (the default) and
//! `disable` connect in plain text: a certificate that cannot be verified (the self-signed one Debian
//! installs, say) would otherwise make the default fail.

use super::conn::Conn;
use crate::AdapterError;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, NoTls};
use tokio_postgres::{AsyncMessage, Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

#[derive(Clone)]
pub enum Tls {
    Plain,
    Rustls(MakeRustlsConnect),
}

impl Tls {
    pub fn for_settings(cfg: &Conn) -> Result<Tls, AdapterError> {
        if !cfg.tls_required() {
            return Ok(Tls::Plain);
        }
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| AdapterError::Invalid(format!("postgres TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Tls::Rustls(MakeRustlsConnect::new(config)))
    }
}

/// Opens one connection outside the pool (for LISTEN) and drives it in a task of its own, calling
/// `on_notify` for every notification. The task ends when the connection does, with its error if any.
pub async fn connect(
    pg: &tokio_postgres::Config,
    tls: &Tls,
    on_notify: impl Fn() + Send + 'static,
) -> Result<(Client, JoinHandle<Option<tokio_postgres::Error>>), tokio_postgres::Error> {
    match tls {
        Tls::Plain => open(pg, NoTls, on_notify).await,
        Tls::Rustls(t) => open(pg, t.clone(), on_notify).await,
    }
}

async fn open<T>(
    pg: &tokio_postgres::Config,
    tls: T,
    on_notify: impl Fn() + Send + 'static,
) -> Result<(Client, JoinHandle<Option<tokio_postgres::Error>>), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut conn) = pg.connect(tls).await?;
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => on_notify(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
    });
    Ok((client, driver))
}
