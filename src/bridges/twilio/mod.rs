//! Twilio-style webhooks: `mo.rs` the incoming message and its signature. We take no Twilio
//! delivery reports and do not send through Twilio.

pub mod mo;
