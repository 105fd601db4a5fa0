//! Jasmin delivery reports: `id` (its uuid) and `message_status`, plus our `msg` from the
//! `dlr-url` (see `mt.rs`), in the query or a form body.

use crate::inbound::{BadInput, form_pairs, text_param};
use crate::store::{DeliveryStatus, DlrUpdate};

/// Jasmin's `message_status` (level 1 ESME_* codes, level 2/3 SMSC states).
pub fn jasmin_status(s: &str) -> Option<DeliveryStatus> {
    match s.trim().to_ascii_uppercase().as_str() {
        "DELIVRD" => Some(DeliveryStatus::Delivered),
        "UNDELIV" | "REJECTD" | "EXPIRED" | "DELETED" | "UNKNOWN" => Some(DeliveryStatus::Failed),
        "ESME_ROK" | "ACCEPTD" | "ENROUTE" => Some(DeliveryStatus::Accepted),
        other if other.starts_with("ESME_") => Some(DeliveryStatus::Failed),
        _ => None,
    }
}

/// Parses the query and form of a `GET` or `POST /dlr/jasmin` (form `b""` for a GET) into
/// the update it makes at `now_ms`.
///
/// # Errors
/// Neither `msg` nor `id`, a `msg` that is not a number, `message_status` missing or one
/// [`jasmin_status`] does not know, a parameter that is not UTF-8 or holds a NUL.
pub fn parse(query: &[u8], form: &[u8], now_ms: i64) -> Result<DlrUpdate, BadInput> {
    let mut p = form_pairs(query);
    p.extend(form_pairs(form));
    let message_id = match text_param(&p, "msg")? {
        Some(m) => Some(crate::domain::MessageId(
            m.parse::<i64>()
                .map_err(|_| BadInput::new("msg", "not a message id"))?,
        )),
        None => None,
    };
    let provider_id = text_param(&p, "id")?;
    if message_id.is_none() && provider_id.is_none() {
        return Err(BadInput::new("id", "missing"));
    }
    let st = text_param(&p, "message_status")?
        .ok_or_else(|| BadInput::new("message_status", "missing"))?;
    let status =
        jasmin_status(&st).ok_or_else(|| BadInput::new("message_status", "unknown status"))?;
    let detail = format!(
        "jasmin {st} err={}",
        text_param(&p, "err")?.unwrap_or_default()
    );
    Ok(DlrUpdate {
        message_id,
        provider_id,
        status,
        detail,
        now_ms,
    })
}
