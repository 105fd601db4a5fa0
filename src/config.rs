//! Layered settings: `config/default.toml` (built into the binary) < `--config FILE` <
//! `SWITCHBOARD__SECTION__KEY` environment variables. Every section denies unknown keys, so a
//! typo fails start-up with the file, the key and the reason instead of being ignored.

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub time: TimeSettings,
    pub phone: PhoneSettings,
    pub intake: IntakeSettings,
    pub sla: SlaSettings,
    pub cases: crate::cases::CaseSettings,
    pub campaigns: crate::campaigns::CampaignSettings,
    pub self_service: crate::intake::selfservice::SelfServiceSettings,
    pub classifier: ClassifierSettings,
    pub templates: TemplateSettings,
    pub inbound: InboundSettings,
    pub sms: SmsSettings,
    pub email: EmailSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub shutdown_grace_secs: u64,
    pub public_url: String,
    /// A request head not complete within this long closes the connection (also the idle
    /// time after which a keep-alive connection is closed).
    pub header_read_timeout_secs: u64,
    /// A request body that sends nothing for this long gets 408.
    pub body_read_timeout_secs: u64,
    /// Deadline of a whole request: past it the handler is dropped and the answer is 503.
    pub request_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: Secret,
    pub max_connections: u32,
    pub group_commit_max: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSettings {
    pub zone: chrono_tz::Tz,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneSettings {
    #[serde(deserialize_with = "lossy_string")]
    pub default_country: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeSettings {
    pub dedupe_window_secs: u64,
    pub reply_window_secs: u64,
    pub ack_replies: bool,
    /// Parts of a concatenated SMS wait this long for the rest; then what arrived is stored.
    pub concat_timeout_secs: u64,
}

pub use crate::sla::SlaSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierSettings {
    pub rules: Option<PathBuf>,
    /// Labeled CSV a new rule set is scored on; unset = the built-in fixtures/classify set.
    pub labeled_set: Option<PathBuf>,
    /// A rule set scoring below this macro-F1 on the labeled set is refused.
    pub min_macro_f1: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSettings {
    pub dir: Option<PathBuf>,
    pub default_lang: crate::domain::Lang,
    pub service_name: String,
    pub service_name_en: String,
}

/// A group of webhook routes that can be switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookRoute {
    /// `/inbound/sms/kannel`
    Kannel,
    /// `/inbound/sms/jasmin`
    Jasmin,
    /// `/inbound/sms/twilio`
    Twilio,
    /// `/inbound/sms`
    Generic,
    /// `/inbound/email`
    Email,
    /// `/dlr/kannel`, `/dlr/jasmin`, `/dlr/generic`
    Dlr,
}

impl WebhookRoute {
    pub const ALL: [WebhookRoute; 6] = [
        WebhookRoute::Kannel,
        WebhookRoute::Jasmin,
        WebhookRoute::Twilio,
        WebhookRoute::Generic,
        WebhookRoute::Email,
        WebhookRoute::Dlr,
    ];
}

fn all_routes() -> Vec<WebhookRoute> {
    WebhookRoute::ALL.to_vec()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundSettings {
    /// The webhook route groups served; the others answer 404 and need no secret.
    #[serde(default = "all_routes")]
    pub routes: Vec<WebhookRoute>,
    pub kannel_token: Option<Secret>,
    pub jasmin_token: Option<Secret>,
    pub generic_token: Option<Secret>,
    pub dlr_token: Option<Secret>,
    pub twilio_auth_token: Option<Secret>,
    pub twilio_url: Option<String>,
    pub email_token: Option<Secret>,
    /// Mailgun webhook signing key: `signature` = HMAC-SHA256(key, timestamp + token).
    pub mailgun_signing_key: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSettings {
    pub outbound: SmsOutboundSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsDriver {
    Kannel,
    Jasmin,
    Http,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsOutboundSettings {
    pub enabled: bool,
    pub paused: bool,
    pub driver: SmsDriver,
    pub url: String,
    #[serde(deserialize_with = "lossy_string")]
    pub username: String,
    pub password: Secret,
    #[serde(deserialize_with = "lossy_string")]
    pub from: String,
    pub rate_per_sec: f64,
    pub concurrency: usize,
    pub timeout_secs: u64,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub dlr_mask: u32,
    pub dlr: bool,
    /// Most concatenated parts the bridge sends for one message; beyond it a bridge cuts the
    /// text silently. 0: the bridge's own default (Kannel `max-messages` 1, Jasmin
    /// `long_content_max_parts` 5, http 10).
    pub max_parts: u32,
}

impl SmsOutboundSettings {
    /// The part cap in force: `max_parts`, or the driver's default when it is 0.
    pub fn part_cap(&self) -> u32 {
        match (self.max_parts, self.driver) {
            (0, SmsDriver::Kannel) => 1,
            (0, SmsDriver::Jasmin) => 5,
            (0, SmsDriver::Http) => 10,
            (n, _) => n.min(255),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    /// Our address: From of every outbound mail; its domain names our Message-IDs.
    pub from: String,
    /// Largest inbound message accepted (bytes); larger ones get 413 / exit 65.
    pub max_bytes: usize,
    /// At most this many acknowledgements per sender within `ack_window_secs`.
    pub ack_limit: u32,
    pub ack_window_secs: u64,
    /// Deepest nesting of multipart / message parts accepted (400 / exit 65 beyond).
    pub max_mime_depth: usize,
    /// Most MIME parts (header blocks) accepted.
    pub max_parts: usize,
    /// Most header fields, all parts together.
    pub max_headers: usize,
    pub smtp: SmtpSettings,
}

impl EmailSettings {
    /// The inbound parser's limits.
    pub fn limits(&self) -> crate::email::Limits {
        crate::email::Limits {
            max_bytes: self.max_bytes,
            max_depth: self.max_mime_depth,
            max_parts: self.max_parts,
            max_headers: self.max_headers,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// PEM file of CA certificates trusted for the relay in addition to the built-in web
    /// roots (a private relay's own CA).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    #[serde(default, deserialize_with = "lossy_opt_string")]
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// false: no email is queued (acks included).
    pub enabled: bool,
    pub rate_per_sec: f64,
    pub concurrency: usize,
    pub timeout_secs: u64,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

/// How one channel's outbox is worked: the keys `sms.outbound` and `email.smtp` share.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub rate_per_sec: f64,
    pub concurrency: usize,
    pub timeout_secs: u64,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

impl Pacing {
    /// `section` names the keys in the error (`sms.outbound`, `email.smtp`).
    fn check(&self, section: &str) -> anyhow::Result<()> {
        if self.rate_per_sec.is_nan() || self.rate_per_sec <= 0.0 {
            bail!(
                "{section}.rate_per_sec must be > 0 (got {})",
                self.rate_per_sec
            );
        }
        if self.concurrency == 0 {
            bail!("{section}.concurrency must be >= 1");
        }
        if self.max_attempts == 0 {
            bail!("{section}.max_attempts must be >= 1");
        }
        Ok(())
    }
}

impl SmsOutboundSettings {
    pub fn pacing(&self) -> Pacing {
        Pacing {
            rate_per_sec: self.rate_per_sec,
            concurrency: self.concurrency,
            timeout_secs: self.timeout_secs,
            max_attempts: self.max_attempts,
            backoff_base_ms: self.backoff_base_ms,
            backoff_max_ms: self.backoff_max_ms,
        }
    }
}

impl SmtpSettings {
    pub fn pacing(&self) -> Pacing {
        Pacing {
            rate_per_sec: self.rate_per_sec,
            concurrency: self.concurrency,
            timeout_secs: self.timeout_secs,
            max_attempts: self.max_attempts,
            backoff_base_ms: self.backoff_base_ms,
            backoff_max_ms: self.backoff_max_ms,
        }
    }
}

/// A value that must never reach a log line: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lossy_string(d).map(Secret)
    }
}

/// Environment values arrive typed ("10000" becomes a number); fields that are text accept
/// numbers and booleans as their text.
fn lossy_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Any {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    Ok(match Any::deserialize(d)? {
        Any::S(s) => s,
        Any::I(i) => i.to_string(),
        Any::U(u) => u.to_string(),
        Any::F(f) => f.to_string(),
        Any::B(b) => b.to_string(),
    })
}

fn lossy_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    lossy_string(d).map(Some)
}

impl Settings {
    /// Loads the layers. `file` must exist when given.
    ///
    /// # Errors
    /// A missing file, a TOML syntax error, an unknown key or a wrong type, naming the file and
    /// the key.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        Self::load_with_env(file, std::env::vars())
    }

    /// As [`Settings::load`] with an explicit environment (tests pass their own).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Settings> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.is_file() {
                bail!(
                    "config file {} does not exist or is not a file",
                    path.display()
                );
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            // Parse once ourselves so syntax errors carry line and column with the file name.
            text.parse::<toml::Table>()
                .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
            fig = fig.merge(Toml::file(path));
        }
        let vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("SWITCHBOARD__"))
            .collect();
        for (k, v) in vars {
            let key = k["SWITCHBOARD__".len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            let value: figment::value::Value = v
                .parse()
                .unwrap_or_else(|_| figment::value::Value::from(v.clone()));
            fig = fig.merge(Serialized::global(&key, value));
        }
        let settings: Settings = fig.extract().map_err(|e| {
            let mut msg = String::from("invalid configuration");
            for err in e {
                msg.push_str(&format!("\n  - {err}"));
            }
            anyhow::anyhow!(msg)
        })?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> anyhow::Result<()> {
        self.sms.outbound.pacing().check("sms.outbound")?;
        self.email.smtp.pacing().check("email.smtp")?;
        if self.database.group_commit_max == 0 {
            bail!("database.group_commit_max must be >= 1");
        }
        let sv = &self.server;
        for (key, v) in [
            ("header_read_timeout_secs", sv.header_read_timeout_secs),
            ("body_read_timeout_secs", sv.body_read_timeout_secs),
            ("request_timeout_secs", sv.request_timeout_secs),
        ] {
            if v == 0 {
                bail!("server.{key} must be >= 1");
            }
        }
        if self.email.max_parts == 0 || self.email.max_headers == 0 {
            bail!("email.max_parts and email.max_headers must be >= 1");
        }
        if let Err(e) = self.sla.check() {
            bail!("{e}");
        }
        if let Err(e) = self.campaigns.check() {
            bail!("{e}");
        }
        if let Err(e) = self.cases.check() {
            bail!("{e}");
        }
        if let Err(e) = self.self_service.check() {
            bail!("{e}");
        }
        let m = &self.email.smtp;
        if m.username.is_some() != m.password.is_some() {
            bail!("email.smtp.username and email.smtp.password go together: set both or neither");
        }
        let loopback_relay = m.host == "localhost"
            || m.host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if m.password.is_some() && m.tls == SmtpTls::None && !loopback_relay {
            bail!(
                "email.smtp.password would cross the network in clear to {:?}: set email.smtp.tls \
                 to starttls or tls (credentials without TLS are allowed only to a loopback relay)",
                m.host
            );
        }
        let url = self.database.url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            bail!("database.url must start with sqlite:// or postgres:// (got a different scheme)");
        }
        Ok(())
    }

    /// The webhook routes that have no secret. Start-up refuses a non-loopback listen address
    /// while this list is not empty.
    pub fn unsecured_webhooks(&self) -> Vec<&'static str> {
        let i = &self.inbound;
        let mut v = Vec::new();
        for route in &i.routes {
            let (unset, key) = match route {
                WebhookRoute::Kannel => (i.kannel_token.is_none(), "inbound.kannel_token"),
                WebhookRoute::Jasmin => (i.jasmin_token.is_none(), "inbound.jasmin_token"),
                WebhookRoute::Generic => (i.generic_token.is_none(), "inbound.generic_token"),
                WebhookRoute::Dlr => (i.dlr_token.is_none(), "inbound.dlr_token"),
                WebhookRoute::Twilio => {
                    (i.twilio_auth_token.is_none(), "inbound.twilio_auth_token")
                }
                WebhookRoute::Email => (
                    i.email_token.is_none() && i.mailgun_signing_key.is_none(),
                    "inbound.email_token",
                ),
            };
            if unset && !v.contains(&key) {
                v.push(key);
            }
        }
        v
    }

    /// Whether a webhook route group is served.
    pub fn serves(&self, route: WebhookRoute) -> bool {
        self.inbound.routes.contains(&route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn built_in_defaults_load_and_match_the_contract() {
        let s = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database.url.expose(), "sqlite://data/switchboard.db");
        assert_eq!(s.time.zone, chrono_tz::Asia::Shanghai);
        assert_eq!(s.sms.outbound.driver, SmsDriver::Kannel);
    }

    #[test]
    fn env_overrides_nested_keys_and_keeps_numeric_text_as_text() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("SWITCHBOARD__SMS__OUTBOUND__URL", "http://127.0.0.1:9/x"),
                ("SWITCHBOARD__SMS__OUTBOUND__PASSWORD", "12345"),
                ("SWITCHBOARD__SMS__OUTBOUND__FROM", "10001"),
                ("SWITCHBOARD__SERVER__LISTEN", "127.0.0.1:9999"),
                ("OTHER", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(s.sms.outbound.url, "http://127.0.0.1:9/x");
        assert_eq!(s.sms.outbound.password.expose(), "12345");
        assert_eq!(s.sms.outbound.from, "10001");
        assert_eq!(s.server.listen.port(), 9999);
    }

    #[test]
    fn a_bad_file_names_the_file_the_key_and_the_reason() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[server]\nlisten = \"nowhere\"").unwrap();
        let err = Settings::load_with_env(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.listen"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");

        let mut g = tempfile::NamedTempFile::new().unwrap();
        writeln!(g, "[server]\nlisten_port = 1").unwrap();
        let err = Settings::load_with_env(Some(g.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_port"), "{err}");

        let mut h = tempfile::NamedTempFile::new().unwrap();
        writeln!(h, "[server\nlisten = 1").unwrap();
        let err = Settings::load_with_env(Some(h.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&h.path().display().to_string()), "{err}");

        let err = Settings::load_with_env(Some(Path::new("/nonexistent/x.toml")), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/x.toml"), "{err}");
    }

    #[test]
    fn smtp_credentials_never_travel_in_clear_beyond_loopback() {
        let load = |pairs: &[(&str, &str)]| Settings::load_with_env(None, env(pairs));
        let creds = [
            ("SWITCHBOARD__EMAIL__SMTP__USERNAME", "gw"),
            ("SWITCHBOARD__EMAIL__SMTP__PASSWORD", "s3cret"),
        ];
        let remote = [
            &creds[..],
            &[("SWITCHBOARD__EMAIL__SMTP__HOST", "relay.example.net")],
        ]
        .concat();
        let err = load(&remote).unwrap_err().to_string();
        assert!(
            err.contains("email.smtp.tls") && err.contains("relay.example.net"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        let tls = [
            &remote[..],
            &[("SWITCHBOARD__EMAIL__SMTP__TLS", "starttls")],
        ]
        .concat();
        assert!(load(&tls).is_ok());
        assert!(load(&creds).is_ok(), "127.0.0.1 is a loopback relay");
        let half = load(&creds[..1]).unwrap_err().to_string();
        assert!(half.contains("go together"), "{half}");
    }

    /// config/examples/switchboard.toml loads, passes the non-loopback secret check, and the
    /// SMTP sender accepts its settings.
    #[test]
    fn the_production_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/switchboard.toml");
        let s = Settings::load_with_env(Some(&path), env(&[])).unwrap();
        assert!(!s.server.listen.ip().is_loopback());
        assert_eq!(s.unsecured_webhooks(), Vec::<&str>::new());
        assert!(s.serves(WebhookRoute::Kannel) && !s.serves(WebhookRoute::Twilio));
        assert_eq!(s.email.smtp.tls, SmtpTls::Starttls);
        assert!(s.database.url.expose().starts_with("postgres://"));
        crate::outbound::email::SmtpSender::new(&s).unwrap();
    }

    #[test]
    fn only_served_routes_need_secrets() {
        let all = Settings::load_with_env(None, env(&[])).unwrap();
        assert_eq!(
            all.unsecured_webhooks().len(),
            6,
            "every route is served by default"
        );
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "[inbound]\nroutes = [\"kannel\", \"email\"]\nkannel_token = \"k\""
        )
        .unwrap();
        let s = Settings::load_with_env(Some(f.path()), env(&[])).unwrap();
        assert_eq!(s.unsecured_webhooks(), vec!["inbound.email_token"]);
        let mut g = tempfile::NamedTempFile::new().unwrap();
        writeln!(g, "[inbound]\nroutes = [\"kannel\", \"smpp\"]").unwrap();
        let err = Settings::load_with_env(Some(g.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("smpp"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let s = Settings::load_with_env(
            None,
            env(&[("SWITCHBOARD__INBOUND__KANNEL_TOKEN", "hunter2")]),
        )
        .unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("hunter2"));
        assert!(
            !dbg.contains("switchboard.db"),
            "database url may hold a password"
        );
    }
}
