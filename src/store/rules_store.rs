//! `RuleStore`: Classifier rule versions.

use super::*;
use async_trait::async_trait;

/// Classifier rule versions.
#[async_trait]
pub trait RuleStore: Send + Sync {
    /// Stores a rule set (or returns the id of an identical one) without activating it.
    async fn insert_rule_version(&self, v: &NewRuleVersion) -> StoreResult<i64>;
    /// Makes a stored version the active one, recording who and when.
    async fn activate_rule_version(&self, id: i64, by: &str, now_ms: i64) -> StoreResult<()>;
    /// The active version (latest activation) with its source.
    async fn active_rule_version(&self) -> StoreResult<Option<RuleVersion>>;
    async fn rule_version(&self, id: i64) -> StoreResult<Option<RuleVersion>>;
    /// All versions, newest first, without sources.
    async fn rule_versions(&self) -> StoreResult<Vec<RuleVersionSummary>>;
}
