//! The generic JSON bridge: `mo.rs` the webhook, `dlr.rs` the `POST /dlr/generic` report,
//! `mt.rs` the HTTP driver (`sms.outbound.driver = "http"`).

pub mod dlr;
pub mod mo;
pub mod mt;
