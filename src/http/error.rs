//! One error shape for every route: `{"error": {"code": "...", "message": "..."}}`. 5xx bodies
//! are opaque; the cause is logged. Answers that do not come from here (the router's 405,
//! hyper's own 400 / 414 / 431) get the same shape in `serve.rs`.

use crate::inbound::BadInput;
use crate::store::StoreError;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 408 for a request body that stalled (`server.body_read_timeout_secs`).
    pub fn body_timeout() -> Self {
        AppError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body stalled longer than server.body_read_timeout_secs",
        )
    }

    /// An extractor's rejection: 408 when the body stalled, else `status` with `code`.
    pub fn rejection(
        e: &(dyn std::error::Error + 'static),
        status: StatusCode,
        code: &'static str,
        message: String,
    ) -> Self {
        if super::serve::is_body_timeout(e) {
            AppError::body_timeout()
        } else {
            AppError::new(status, code, message)
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<BadInput> for AppError {
    fn from(e: BadInput) -> Self {
        AppError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        if let StoreError::Rejected(why) = &e {
            tracing::warn!(error = %crate::domain::scrub(&e.to_string()), "input the database refuses; answering 400");
            return AppError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the database cannot store this input: {why}"),
            );
        }
        tracing::error!(error = %crate::domain::scrub(&e.to_string()), "database error; answering 503 so the sender retries");
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "storage temporarily unavailable; retry later",
        )
    }
}

impl From<BytesRejection> for AppError {
    fn from(r: BytesRejection) -> Self {
        if super::serve::is_body_timeout(&r) {
            return AppError::body_timeout();
        }
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::new(
                status,
                "payload_too_large",
                "request body exceeds server.max_body_bytes",
            )
        } else {
            AppError::new(status, "bad_request", r.body_text())
        }
    }
}

impl From<JsonRejection> for AppError {
    fn from(r: JsonRejection) -> Self {
        if super::serve::is_body_timeout(&r) {
            return AppError::body_timeout();
        }
        let status = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        AppError::new(status, "bad_request", r.body_text())
    }
}

/// The body as bytes, with our error shape on failure (413 for oversize bodies).
pub struct Body(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = AppError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Body(axum::body::Bytes::from_request(req, state).await?))
    }
}

/// JSON with our error shape on failure.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = AppError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(AppJson(v))
    }
}

/// A path parameter with our error shape on failure (`/api/v1/cases/abc` → 400 JSON).
pub struct AppPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for AppPath<T>
{
    type Rejection = AppError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(AppPath(v)),
            Err(r) => Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                r.body_text(),
            )),
        }
    }
}
