//! Generic delivery reports: JSON `{id, status, detail?}` with our message id, `status` one of
//! `accepted`, `delivered`, `failed`. The handler deserializes the body (`AppJson`); this is
//! the report's type and the update it makes.

use crate::store::{DeliveryStatus, DlrUpdate};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericDlr {
    id: i64,
    status: DeliveryStatusIn,
    detail: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum DeliveryStatusIn {
    Accepted,
    Delivered,
    Failed,
}

impl GenericDlr {
    /// The update this report makes at `now_ms`.
    pub fn update(self, now_ms: i64) -> DlrUpdate {
        let status = match self.status {
            DeliveryStatusIn::Accepted => DeliveryStatus::Accepted,
            DeliveryStatusIn::Delivered => DeliveryStatus::Delivered,
            DeliveryStatusIn::Failed => DeliveryStatus::Failed,
        };
        DlrUpdate {
            message_id: Some(crate::domain::MessageId(self.id)),
            provider_id: None,
            status,
            detail: self.detail.unwrap_or_default(),
            now_ms,
        }
    }
}
