//! `TokenStore`: API tokens.

use super::*;
use async_trait::async_trait;

/// API tokens.
#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn insert_api_token(
        &self,
        name: &str,
        role: &str,
        token_hash: &str,
        now_ms: i64,
    ) -> StoreResult<i64>;
    /// (name, role) of a live token.
    async fn api_token(&self, token_hash: &str) -> StoreResult<Option<(String, String)>>;
}
