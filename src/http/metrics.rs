//! Metrics on `/metrics` through `prometheus-client` (the Prometheus project's Rust client):
//! inbound outcomes, send outcomes per channel, DLRs; latency histograms of HTTP requests
//! (by route), of the intake commit and of one send (per channel); outbox depth per channel
//! and lane, read from the store at scrape time. Also the request-id span every request
//! runs in.

use crate::domain::{Channel, Lane};
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tracing::Instrument;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SendLabels {
    channel: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaneLabels {
    channel: String,
    lane: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    /// The route pattern (`/api/v1/cases/{id}`), never the raw path: bounded cardinality.
    route: String,
    status: u16,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 0.5 ms to ~16 s in doublings.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Inbound outcomes as counted.
#[derive(Debug, Clone, Copy)]
pub enum Inbound {
    Stored,
    Duplicate,
    Rejected,
    Unavailable,
}

/// Send outcomes as counted.
#[derive(Debug, Clone, Copy)]
pub enum Sent {
    Sent,
    Retry,
    Failed,
}

/// The process's metrics; one per application.
pub struct Metrics {
    registry: Registry,
    inbound: Family<OutcomeLabels, Counter>,
    outbound: Family<SendLabels, Counter>,
    dlr: Counter,
    http_seconds: HistogramFamily<RouteLabels>,
    intake_seconds: Histogram,
    send_seconds: HistogramFamily<ChannelLabels>,
    outbox_depth: Family<LaneLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let inbound = Family::<OutcomeLabels, Counter>::default();
        let outbound = Family::<SendLabels, Counter>::default();
        let dlr = Counter::default();
        let http_seconds =
            HistogramFamily::<RouteLabels>::new_with_constructor(latency as fn() -> Histogram);
        let intake_seconds = latency();
        let send_seconds =
            HistogramFamily::<ChannelLabels>::new_with_constructor(latency as fn() -> Histogram);
        let outbox_depth = Family::<LaneLabels, Gauge>::default();
        registry.register(
            "switchboard_inbound",
            "Inbound messages by outcome (stored, duplicate, rejected, unavailable)",
            inbound.clone(),
        );
        registry.register(
            "switchboard_outbound",
            "Send attempts by channel and outcome (sent, retry, failed)",
            outbound.clone(),
        );
        registry.register("switchboard_dlr", "Delivery reports received", dlr.clone());
        registry.register(
            "switchboard_http_request_duration_seconds",
            "HTTP request latency by method, route pattern and status",
            http_seconds.clone(),
        );
        registry.register(
            "switchboard_intake_duration_seconds",
            "Intake latency: parse to durable commit of one inbound message",
            intake_seconds.clone(),
        );
        registry.register(
            "switchboard_send_duration_seconds",
            "One send to the bridge or SMTP relay, by channel",
            send_seconds.clone(),
        );
        registry.register(
            "switchboard_outbox_depth",
            "Messages waiting in the outbox by channel and lane, read at scrape time",
            outbox_depth.clone(),
        );
        // Every series exists from the start, at 0, so a rate() sees its first increment.
        for outcome in ["stored", "duplicate", "rejected", "unavailable"] {
            let _ = inbound.get_or_create(&OutcomeLabels { outcome });
        }
        for channel in [Channel::Sms, Channel::Email] {
            for outcome in ["sent", "retry", "failed"] {
                let _ = outbound.get_or_create(&SendLabels {
                    channel: channel.as_str(),
                    outcome,
                });
            }
        }
        Metrics {
            registry,
            inbound,
            outbound,
            dlr,
            http_seconds,
            intake_seconds,
            send_seconds,
            outbox_depth,
        }
    }
}

impl Metrics {
    pub fn inbound(&self, o: Inbound) {
        let outcome = match o {
            Inbound::Stored => "stored",
            Inbound::Duplicate => "duplicate",
            Inbound::Rejected => "rejected",
            Inbound::Unavailable => "unavailable",
        };
        self.inbound.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn sent(&self, channel: Channel, o: Sent) {
        let outcome = match o {
            Sent::Sent => "sent",
            Sent::Retry => "retry",
            Sent::Failed => "failed",
        };
        self.outbound
            .get_or_create(&SendLabels {
                channel: channel.as_str(),
                outcome,
            })
            .inc();
    }

    pub fn dlr(&self) {
        self.dlr.inc();
    }

    pub fn intake_took(&self, started: Instant) {
        self.intake_seconds.observe(started.elapsed().as_secs_f64());
    }

    pub fn send_took(&self, channel: Channel, started: Instant) {
        self.send_seconds
            .get_or_create(&ChannelLabels {
                channel: channel.as_str(),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Sets the outbox depth gauges: (channel, lane number, count) rows; lanes not listed are 0.
    pub fn set_outbox_depth(&self, rows: &[(String, i64, i64)]) {
        self.outbox_depth.clear();
        for channel in [Channel::Sms, Channel::Email] {
            for lane in Lane::ALL {
                let _ = self.outbox_depth.get_or_create(&LaneLabels {
                    channel: channel.as_str().to_string(),
                    lane: lane.as_str(),
                });
            }
        }
        for (channel, lane, n) in rows {
            let Some(lane) = Lane::from_i64(*lane) else {
                continue;
            };
            self.outbox_depth
                .get_or_create(&LaneLabels {
                    channel: channel.clone(),
                    lane: lane.as_str(),
                })
                .set(*n);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A request id from the client's `X-Request-Id` when it is short and plain, else ours.
fn request_id(req: &Request) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    if let Some(v) = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
    {
        return v.to_string();
    }
    format!(
        "{:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Middleware: a `request` span with the request id, method and route pattern around the
/// whole request (every log line inside carries them), the latency histogram, and the id
/// echoed in `X-Request-Id`.
pub async fn observe(
    axum::extract::State(m): axum::extract::State<std::sync::Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    // Any token is a method to hyper: only the standard ones become labels.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m,
        _ => "other",
    }
    .to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let span = tracing::info_span!("request", id = %id, method = %method, route = %route);
    let mut resp = next.run(req).instrument(span).await;
    m.http_seconds
        .get_or_create(&RouteLabels {
            method,
            route,
            status: resp.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}
