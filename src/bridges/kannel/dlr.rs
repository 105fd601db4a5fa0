//! Kannel delivery reports: our `dlr-url` (see `mt.rs`) carries `msg=<our id>&type=%d`, plus
//! `reply=%A&smsc_id=%F`.

use crate::inbound::{BadInput, form_pairs, text_param};
use crate::store::{DeliveryStatus, DlrUpdate};

/// Kannel's `%d`: 1 delivered, 2 undelivered, 4 queued on SMSC, 8 delivered to SMSC,
/// 16 rejected by SMSC, 32 intermediate.
pub fn kannel_status(t: u32) -> Option<DeliveryStatus> {
    match t {
        1 => Some(DeliveryStatus::Delivered),
        2 | 16 => Some(DeliveryStatus::Failed),
        4 | 8 | 32 => Some(DeliveryStatus::Accepted),
        _ => None,
    }
}

/// Parses the query of a `GET` or `POST /dlr/kannel` into the update it makes at `now_ms`.
///
/// # Errors
/// `msg` or `type` missing or not a number, a `type` [`kannel_status`] does not know, a
/// parameter that is not UTF-8 or holds a NUL.
pub fn parse(query: &[u8], now_ms: i64) -> Result<DlrUpdate, BadInput> {
    let p = form_pairs(query);
    let msg = text_param(&p, "msg")?.ok_or_else(|| BadInput::new("msg", "missing"))?;
    let message_id: i64 = msg
        .parse()
        .map_err(|_| BadInput::new("msg", "not a message id"))?;
    let t: u32 = text_param(&p, "type")?
        .ok_or_else(|| BadInput::new("type", "missing"))?
        .parse()
        .map_err(|_| BadInput::new("type", "not a number"))?;
    let status = kannel_status(t).ok_or_else(|| BadInput::new("type", "unknown DLR type"))?;
    let detail = format!(
        "kannel type={t} reply={}",
        text_param(&p, "reply")?.unwrap_or_default()
    );
    Ok(DlrUpdate {
        message_id: Some(crate::domain::MessageId(message_id)),
        provider_id: text_param(&p, "smsc_id")?,
        status,
        detail,
        now_ms,
    })
}
