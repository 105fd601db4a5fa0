//! The SMS bridges, one folder each: `mo.rs` parses what the bridge sends us (a
//! mobile-originated message, into a [`NewInbound`](crate::store::NewInbound)), `dlr.rs` parses
//! its delivery reports (into a [`DlrUpdate`](crate::store::DlrUpdate)) and `mt.rs` sends
//! through it (an outbound [`Sender`](crate::outbound::Sender)). A bridge has only the files
//! for what it does. `smpp.rs` holds the SMPP helpers the Kannel and Jasmin dialects share.
//!
//! Nothing here touches the database. The axum handlers are in `src/http` (`inbound.rs`,
//! `dlr.rs`), the outbox worker and the choice of driver in `src/outbound`; `BadInput` and the
//! form helpers every dialect uses are in [`crate::inbound`].

pub mod generic;
pub mod jasmin;
pub mod kannel;
pub mod smpp;
pub mod twilio;
