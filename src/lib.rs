//! switchboard: the customer-service message gateway of a telecom operator.
//!
//! Module map (see DESIGN.md for the flow of a message):
//! - [`domain`]: newtypes parsed at the edge (phone numbers, categories, case ids); no I/O.
//! - [`config`]: layered settings (built-in defaults < `--config` file < env).
//! - [`bridges`]: one folder per SMS bridge (Kannel, Jasmin, Twilio, generic JSON): MO parsing
//!   → `NewInbound`, DLR parsing → `DlrUpdate`, MT sending.
//! - [`inbound`]: what the edge parsers share (`BadInput`, form decoding, phone numbers).
//! - [`email`]: inbound email parsing (RFC 5322, RFC 3834 auto-replies, RFC 3464 DSNs, limits).
//! - [`intake`]: dedupe, intent, classification, case and ack in one transaction.
//! - [`classify`]: the keyword/regex classifier and its rules file.
//! - [`store`]: `trait Store`, SQLite and PostgreSQL engines, migrations.
//! - [`outbound`]: outbox worker, SMS driver choice, segmenting, retry policy.
//! - [`http`]: the axum router, error shape, webhook authentication, metrics.
//! - [`cases`]: the case lifecycle (which action a status allows).
//! - [`sla`]: service levels per category, the four-tier ladder, the case clock and its
//!   scheduler.
//! - [`templates`]: minijinja message templates (zh-CN, en).
//! - [`app`]: wiring and graceful shutdown; [`cli`]: subcommands.

pub mod app;
pub mod bridges;
pub mod campaigns;
pub mod cases;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod email;
pub mod http;
pub mod inbound;
pub mod intake;
pub mod outbound;
pub mod sla;
pub mod store;
pub mod templates;
