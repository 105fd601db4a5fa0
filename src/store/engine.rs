//! `EngineStore`: The database itself: migrations, health, the app secret, counts for `/metrics`.

use super::*;
use async_trait::async_trait;

/// The database itself: migrations, health, the app secret, counts for `/metrics`.
#[async_trait]
pub trait EngineStore: Send + Sync {
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// A cheap round trip for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    /// A shared secret by name, made (random) on first use; every instance gets the same.
    async fn app_secret(&self, name: &str) -> StoreResult<String>;
    async fn counts(&self) -> StoreResult<Counts>;
    /// Waiting outbox rows: (channel, lane, count), for `/metrics`.
    async fn outbox_depth(&self) -> StoreResult<Vec<(String, i64, i64)>>;
    /// Flushes and closes connections.
    async fn close(&self);
}
