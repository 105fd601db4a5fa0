//! SMTP connections we open ourselves, with `TCP_NODELAY`, kept in a small pool; lettre still
//! speaks the protocol on them (EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA).
//!
//! Why not lettre's own pool: lettre 0.11.23 leaves Nagle's algorithm on and writes a mail's
//! body and its closing `\r\n.\r\n` as two writes. The second waits until the relay ACKs the
//! first, and the relay delays that ACK (40 ms on Linux), so every mail costs 40 ms and one
//! connection carries at most ~25 mails/s (fixed upstream in lettre PR #1159, not released).
//! With `TCP_NODELAY` a mail to a local relay takes about a millisecond.

use crate::config::SmtpTls;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connection idle longer than this is checked with NOOP before it carries a mail.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(5);
/// Idle connections older than this are closed instead of reused.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// Why a send did not go through.
#[derive(Debug)]
pub enum SmtpError {
    /// 5xx: the relay refused for good.
    Permanent(String),
    /// 4xx, timeouts, connection and TLS failures: worth another try.
    Transient(String),
}

impl From<lettre::transport::smtp::Error> for SmtpError {
    fn from(e: lettre::transport::smtp::Error) -> Self {
        if e.is_permanent() {
            SmtpError::Permanent(format!("SMTP {e}"))
        } else {
            SmtpError::Transient(format!("SMTP {e}"))
        }
    }
}

/// How the pool reaches the relay.
pub struct SmtpTarget {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// For STARTTLS (lettre upgrades the connection).
    pub starttls: Option<TlsParameters>,
    /// For implicit TLS: the handshake happens before lettre sees the stream.
    pub implicit: Option<tokio_rustls::TlsConnector>,
    pub credentials: Option<Credentials>,
    pub timeout: Duration,
    pub max_idle: usize,
}

pub struct SmtpPool {
    target: SmtpTarget,
    hello: ClientId,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

impl SmtpPool {
    pub fn new(target: SmtpTarget) -> Arc<SmtpPool> {
        Arc::new(SmtpPool {
            target,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends one mail on a pooled connection (or a new one) within the timeout.
    pub async fn send(&self, envelope: &Envelope, mail: &[u8]) -> Result<Response, SmtpError> {
        let mut conn = self.checkout().await?;
        match tokio::time::timeout(self.target.timeout, conn.send(envelope, mail)).await {
            Ok(Ok(resp)) => {
                self.checkin(conn);
                Ok(resp)
            }
            Ok(Err(e)) => {
                // lettre closes the connection on every error; nothing to give back.
                Err(e.into())
            }
            Err(_) => {
                conn.abort().await;
                Err(SmtpError::Transient(format!(
                    "SMTP timeout after {:?} sending to {}:{}",
                    self.target.timeout, self.target.host, self.target.port
                )))
            }
        }
    }

    async fn checkout(&self) -> Result<AsyncSmtpConnection, SmtpError> {
        loop {
            let next = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some((mut conn, since)) = next else { break };
            let idle = since.elapsed();
            if idle > MAX_IDLE || conn.has_broken() {
                conn.abort().await;
                continue;
            }
            if idle < CHECK_AFTER_IDLE || conn.test_connected().await {
                return Ok(conn);
            }
            conn.abort().await;
        }
        match tokio::time::timeout(self.target.timeout, self.connect()).await {
            Ok(r) => r,
            Err(_) => Err(SmtpError::Transient(format!(
                "SMTP timeout after {:?} connecting to {}:{}",
                self.target.timeout, self.target.host, self.target.port
            ))),
        }
    }

    fn checkin(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.target.max_idle && !conn.has_broken() {
            idle.push((conn, Instant::now()));
        }
        // Otherwise dropped: the socket closes without QUIT, which relays accept.
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SmtpError> {
        let t = &self.target;
        let where_ = format!("{}:{}", t.host, t.port);
        let tcp = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| SmtpError::Transient(format!("SMTP connecting to {where_}: {e}")))?;
        tcp.set_nodelay(true)
            .map_err(|e| SmtpError::Transient(format!("SMTP TCP_NODELAY on {where_}: {e}")))?;
        let stream: Box<dyn AsyncTokioStream> = match (&t.tls, &t.implicit) {
            (SmtpTls::Tls, Some(connector)) => {
                let name = rustls_pki_types::ServerName::try_from(t.host.clone()).map_err(|e| {
                    SmtpError::Permanent(format!("SMTP host {:?} as a TLS name: {e}", t.host))
                })?;
                let tls = connector.connect(name, tcp).await.map_err(|e| {
                    SmtpError::Transient(format!("SMTP TLS handshake with {where_}: {e}"))
                })?;
                Box::new(ImplicitTls(tls))
            }
            _ => Box::new(tcp),
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await?;
        if let (SmtpTls::Starttls, Some(params)) = (&t.tls, &t.starttls) {
            conn.starttls(params.clone(), &self.hello).await?;
        }
        if let Some(creds) = &t.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], creds)
                .await?;
        }
        Ok(conn)
    }
}

/// A TLS stream lettre can run SMTP on.
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The rustls client configuration for implicit TLS: the built-in web roots plus the CAs of
/// `email.smtp.ca_file`.
///
/// # Errors
/// A CA file that does not read or holds no certificate.
pub fn implicit_tls_connector(ca_pem: Option<&[u8]>) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| anyhow::anyhow!("reading a certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| anyhow::anyhow!("adding a certificate: {e}"))?;
            n += 1;
        }
        anyhow::ensure!(n > 0, "no PEM certificate in it");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| anyhow::anyhow!("TLS versions: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
