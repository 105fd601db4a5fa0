//! Kannel: `mo.rs` the `sms-service` get-url / post-url, `dlr.rs` the reports our `dlr-url`
//! brings back, `mt.rs` `sendsms`.

pub mod dlr;
pub mod mo;
pub mod mt;
