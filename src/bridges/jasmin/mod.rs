//! Jasmin: `mo.rs` the HTTP connector's MO messages, `dlr.rs` its delivery reports, `mt.rs`
//! `POST /send`.

pub mod dlr;
pub mod mo;
pub mod mt;
