//! The integration tests: one test binary (`cargo test --test it`, or `cargo nextest run`), so
//! the crate is linked once. Each file below is a module and its name is the prefix of its tests'
//! names (`kannel_e2e::...`); select a group with `cargo nextest run -E 'test(/^sla::/)'` or
//! `cargo test --test it sla::`.
//!
//! `common` is the test app and its helpers: the one place that spawns the app on SQLite or
//! PostgreSQL (`spawn_app`, `spawn_app_on`, `spawn_app_with_clock`), makes admin tokens and
//! posts each dialect (Kannel GET, Jasmin POST, Twilio form, generic JSON, raw email), plus the
//! stub bridge. `support` drives the real peers (Kannel, Jasmin) for the `*_e2e` tests.
//!
//! Most tests are independent of the process they run in. Those that need their own process
//! make one: `fuzz_regressions` replays each input in a child of this binary (filtered to
//! `fuzz_regressions::replay_child`) on a 2 MiB stack; `cli`, `crash_recovery`, `log_privacy`
//! and the `ingest-email` tests run the real `switchboard` binary. No test sets environment
//! variables or a global tracing subscriber in this process.

mod common;
mod support;

mod campaigns;
mod cli;
mod crash_recovery;
mod email_e2e;
mod email_hostile;
mod email_http;
mod fuzz_regressions;
mod hostile;
mod http_hygiene;
mod http_inbound;
mod jasmin_e2e;
mod kannel_e2e;
mod log_privacy;
mod outbound;
mod rules_live;
mod sla;
mod store_conformance;
