//! The HTTP/1.1 server: our own accept loop on hyper (instead of `axum::serve`) so that
//!
//! * a client that sends half a request head is dropped after `server.header_read_timeout_secs`
//!   (hyper's header read timeout; it also closes keep-alive connections idle that long);
//! * a request body that stalls for `server.body_read_timeout_secs` ends the read with
//!   [`BodyReadTimeout`], which the extractors answer with 408;
//! * every request has a deadline, `server.request_timeout_secs`: past it the handler is
//!   dropped and the client gets 503 (intake transactions are atomic: a message is stored whole
//!   or not at all, and a bridge's retry is a duplicate if it was);
//! * every error answer has the JSON shape of `error.rs`: the router's own (405 with an empty
//!   body, 503 from `/readyz`, extractor rejections in text) are rewritten here, and the empty
//!   400 / 414 / 431 that hyper writes itself for a request head it cannot parse are replaced
//!   on their way to the socket by [`JsonErrorIo`].
//!
//! Graceful shutdown is axum's: stop accepting, let every connection finish its request in
//! flight (idle keep-alive connections close at once), return when the last one closed.
//! Per request this adds no allocation: the deadline and the error check live in the service
//! future, the body timer is only allocated when a body read actually waits.

use super::error::AppError;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Largest request head (request line and header fields) hyper buffers; beyond it 431. A URI
/// over 65,534 bytes (hyper's limit) gets 414, more than 100 header fields 431.
pub const MAX_HEAD_BYTES: usize = 256 * 1024;

/// Timeouts of the server, from `[server]` in the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ServeConfig {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub request_timeout: Duration,
}

impl ServeConfig {
    pub fn from_settings(s: &crate::config::ServerSettings) -> ServeConfig {
        ServeConfig {
            header_read_timeout: Duration::from_secs(s.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(s.body_read_timeout_secs),
            request_timeout: Duration::from_secs(s.request_timeout_secs),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains the connections.
///
/// # Errors
/// None so far: accept errors are logged and retried, connection errors end that connection.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        // One flat write per response: JsonErrorIo sees hyper's error heads whole.
        .writev(false)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            handle(app.clone(), req, config)
        });
        let conn = http.serve_connection(TokioIo::new(JsonErrorIo::new(stream)), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Like axum's: connection errors (the peer went away) are nothing; anything else (out of file
/// descriptors) is logged and accepting pauses for a second.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn handle(
    app: Router,
    req: Request<Incoming>,
    config: ServeConfig,
) -> Result<Response<Body>, std::convert::Infallible> {
    let method = req.method().clone();
    let req = req.map(|b| TimedBody::new(b, config.body_read_timeout));
    let response = match tokio::time::timeout(config.request_timeout, app.oneshot(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(never)) => match never {},
        Err(_) => {
            tracing::warn!(
                %method,
                timeout_secs = config.request_timeout.as_secs(),
                "request deadline passed; answered 503"
            );
            return Ok(AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the request did not complete within server.request_timeout_secs ({} s); retry",
                    config.request_timeout.as_secs()
                ),
            )
            .into_response());
        }
    };
    if response.status().as_u16() < 400 || is_json(&response) {
        return Ok(response);
    }
    Ok(to_json_error(response, &method).await)
}

fn is_json(r: &Response<Body>) -> bool {
    r.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

/// An error answer without our JSON shape (the router's 405, `/readyz`'s 503, an extractor's
/// text rejection) rewritten into it, keeping the status and headers such as `Allow`.
async fn to_json_error(response: Response<Body>, method: &Method) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let status = parts.status;
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        format!("method {method} is not allowed on this route (allowed: {allow})")
    } else if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let json = AppError::new(status, code_for(status), message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, json.into_body())
}

/// The `code` of an error answer by its status.
pub(crate) fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        408 => "request_timeout",
        409 => "conflict",
        411 => "length_required",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "too_many_requests",
        431 => "headers_too_large",
        503 => "unavailable",
        500..=599 => "internal",
        _ => "error",
    }
}

// ---------------------------------------------------------------------------------------------
// Request bodies that stall

/// A request body read stalled longer than `server.body_read_timeout_secs`.
#[derive(Debug, Clone, Copy)]
pub struct BodyReadTimeout(pub Duration);

impl std::fmt::Display for BodyReadTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body stalled for {} s {BODY_TIMEOUT_KEY}",
            self.0.as_secs()
        )
    }
}

impl std::error::Error for BodyReadTimeout {}

/// Whether `e` (an extractor's rejection, which wraps the body's error) comes from a
/// [`BodyReadTimeout`]: found in its chain of sources, or in its text where a wrapper (multer)
/// keeps only that.
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<BodyReadTimeout>() || e.to_string().contains(BODY_TIMEOUT_KEY) {
            return true;
        }
        cur = e.source();
    }
    false
}

const BODY_TIMEOUT_KEY: &str = "(server.body_read_timeout_secs)";

/// hyper's body with an idle timeout: the timer starts only when a read has to wait and is
/// re-armed by every frame that arrives.
struct TimedBody {
    inner: Incoming,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TimedBody {
    fn new(inner: Incoming, idle: Duration) -> TimedBody {
        TimedBody {
            inner,
            idle,
            timer: None,
        }
    }
}

impl hyper::body::Body for TimedBody {
    type Data = axum::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if let Some(t) = &mut this.timer {
                t.as_mut().reset(tokio::time::Instant::now() + this.idle);
            }
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let idle = this.idle;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyReadTimeout(idle)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// ---------------------------------------------------------------------------------------------
// hyper's own error answers

/// The connection's IO, passing everything through except the empty-bodied 400 / 414 / 431
/// hyper writes by itself when it cannot parse a request head (before any service runs): that
/// one is replaced by the same status with our JSON body. The router never answers these with
/// an empty body (`handle` gives every error a JSON one), so nothing else matches. Costs a
/// prefix comparison per write.
///
/// It also closes like nginx's `lingering_close`: when the last answer was an error (which
/// may have left part of the request unread: a 413 body, a 431 head), shutting down first
/// reads and drops what the client still sends, for at most [`LINGER`] or [`LINGER_BYTES`],
/// so that closing does not reset the connection before the client read the answer.
pub struct JsonErrorIo<S> {
    inner: S,
    /// A replacement still to be written, and how much of it was.
    pending: Option<(Vec<u8>, usize)>,
    linger: Linger,
}

enum Linger {
    No,
    Wanted,
    Draining {
        timer: Pin<Box<tokio::time::Sleep>>,
        left: usize,
    },
    Done,
}

/// Longest a closing connection reads what the client still sends after an error answer.
pub const LINGER: Duration = Duration::from_secs(2);
/// Most bytes read (and dropped) then.
pub const LINGER_BYTES: usize = 16 * 1024 * 1024;

impl<S> JsonErrorIo<S> {
    pub fn new(inner: S) -> JsonErrorIo<S> {
        JsonErrorIo {
            inner,
            pending: None,
            linger: Linger::No,
        }
    }
}

impl<S: AsyncRead + Unpin> JsonErrorIo<S> {
    /// Reads and drops input until EOF, an error, [`LINGER`] or [`LINGER_BYTES`].
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.linger {
                Linger::No | Linger::Done => return Poll::Ready(()),
                Linger::Wanted => {
                    self.linger = Linger::Draining {
                        timer: Box::pin(tokio::time::sleep(LINGER)),
                        left: LINGER_BYTES,
                    };
                }
                Linger::Draining { timer, left } => {
                    let mut scratch = [0u8; 8192];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                            *left = left.saturating_sub(buf.filled().len());
                            if *left == 0 {
                                self.linger = Linger::Done;
                            }
                        }
                        Poll::Ready(_) => self.linger = Linger::Done,
                        Poll::Pending => {
                            ready!(timer.as_mut().poll(cx));
                            self.linger = Linger::Done;
                        }
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> JsonErrorIo<S> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
            if *done == bytes.len() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// hyper's parse-error answer (`HTTP/1.1 4xx …`, `content-length: 0`, nothing after the head)
/// as ours, or `None` for anything else.
fn json_for_hyper_error(head: &[u8]) -> Option<Vec<u8>> {
    if head.len() > 512 || !head.starts_with(b"HTTP/1.1 4") || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let (code, message) = match &head[9..12] {
        b"400" => ("bad_request", "malformed HTTP request"),
        b"414" => ("uri_too_long", "request URI over 65,534 bytes"),
        b"431" => (
            "headers_too_large",
            "request head over 256 KiB or over 100 header fields",
        ),
        _ => return None,
    };
    const EMPTY: &[u8] = b"\r\ncontent-length: 0\r\n";
    let at = memchr::memmem::find(head, EMPTY)?;
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let mut out = Vec::with_capacity(head.len() + body.len() + 96);
    out.extend_from_slice(&head[..at]);
    out.extend_from_slice(
        format!(
            "\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&head[at + EMPTY.len()..]);
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonErrorIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for JsonErrorIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending(cx))?;
        if buf.starts_with(b"HTTP/1.") {
            // The start of an answer: linger on close if it is an error.
            let error = matches!(buf.get(9), Some(b'4' | b'5'));
            this.linger = if error { Linger::Wanted } else { Linger::No };
        }
        if buf.starts_with(b"HTTP/1.1 4")
            && let Some(replacement) = json_for_hyper_error(buf)
        {
            this.pending = Some((replacement, 0));
            // Write what the socket takes now; the rest goes out on flush / shutdown.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        if matches!(self.linger, Linger::No | Linger::Done) {
            return Pin::new(&mut self.inner).poll_shutdown(cx);
        }
        // Our FIN first (the client sees the answer is complete), then drain.
        if matches!(self.linger, Linger::Wanted) {
            ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
        }
        ready!(self.poll_linger(cx));
        Poll::Ready(Ok(()))
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_error_heads_get_a_json_body_and_nothing_else_is_touched() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 26 Nov 2026 10:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(json_for_hyper_error(head).unwrap()).unwrap();
        let (h, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(h.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(h.contains("\r\ncontent-type: application/json\r\n"));
        assert!(h.contains(&format!("\r\ncontent-length: {}\r\n", body.len())));
        assert!(h.contains("\r\ndate: "));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "headers_too_large");
        // Our own answers (with a body) and other statuses pass as they are.
        assert!(json_for_hyper_error(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}").is_none());
        assert!(json_for_hyper_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(
            json_for_hyper_error(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_none()
        );
    }
}
