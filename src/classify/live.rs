//! Live rules: every rule set is stored as a version (who, when, diff, score); one is active.
//! A candidate must compile and must keep macro-F1 on the labeled set at or above
//! `classifier.min_macro_f1`, or it is refused with the reason and the live set stays. Changes
//! come through the admin API or by editing the rules file and sending SIGHUP; rollback is
//! activating an earlier version.

use super::eval::{Labeled, evaluate};
use super::{Classifier, RulesError};
use crate::intake::Intake;
use crate::store::{NewRuleVersion, Store, StoreError};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

/// The project's labeled set, used when `classifier.labeled_set` is not configured.
pub const BUILTIN_LABELED: &[u8] = include_bytes!("../../fixtures/classify/labeled.csv");

#[derive(Debug, thiserror::Error)]
pub enum RulesChangeError {
    #[error("{0}")]
    Invalid(#[from] RulesError),
    #[error(
        "refused: macro-F1 {got:.4} on the labeled set ({n} rows) is below the floor {floor:.4} (classifier.min_macro_f1)"
    )]
    BelowFloor { got: f64, floor: f64, n: usize },
    #[error("no rule version {0}")]
    NotFound(i64),
    #[error("classifier.rules is not set: there is no file to reload")]
    NoFile,
    #[error("reading {path}: {reason}")]
    File { path: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The outcome of an accepted change.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Accepted {
    pub version: i64,
    pub macro_f1: f64,
    pub active: bool,
}

pub struct LiveRules {
    store: Arc<dyn Store>,
    intake: Arc<Intake>,
    labeled: Vec<Labeled>,
    min_macro_f1: f64,
    file: Option<PathBuf>,
    /// Serialises changes so two activations cannot interleave.
    lock: tokio::sync::Mutex<()>,
}

pub fn sha(source: &str) -> String {
    hex::encode(&Sha256::digest(source.as_bytes())[..16])
}

impl LiveRules {
    /// Loads the active version from the store; on a fresh database stores the rules file
    /// (or the built-in rules) as version 1 and activates it.
    ///
    /// # Errors
    /// Unreadable labeled set or rules file, rules that fail the gate, store errors.
    pub async fn init(
        store: Arc<dyn Store>,
        intake: Arc<Intake>,
        file: Option<PathBuf>,
        labeled_set: Option<PathBuf>,
        min_macro_f1: f64,
    ) -> anyhow::Result<Arc<LiveRules>> {
        let labeled = match &labeled_set {
            Some(p) => super::eval::read_csv(p)?,
            None => super::eval::parse_csv(BUILTIN_LABELED)?,
        };
        let live = Arc::new(LiveRules {
            store,
            intake,
            labeled,
            min_macro_f1,
            file,
            lock: tokio::sync::Mutex::new(()),
        });
        match live.store.active_rule_version().await? {
            Some(v) => {
                let c = compile(&v.v.source, Some(&format!("stored version {}", v.id)), v.id)?;
                live.intake.set_classifier(Arc::new(c));
                tracing::info!(version = v.id, "classifier rules loaded from the database");
            }
            None => {
                let source = live
                    .file_source()?
                    .unwrap_or_else(|| super::DEFAULT_RULES.to_string());
                let a = live
                    .propose(&source, "startup", Some("initial rules"), true)
                    .await
                    .map_err(|e| anyhow::anyhow!("initial classifier rules: {e}"))?;
                tracing::info!(
                    version = a.version,
                    macro_f1 = a.macro_f1,
                    "classifier rules stored and activated"
                );
            }
        }
        Ok(live)
    }

    fn file_source(&self) -> Result<Option<String>, RulesChangeError> {
        let Some(p) = &self.file else { return Ok(None) };
        let bytes = std::fs::read(p).map_err(|e| RulesChangeError::File {
            path: p.display().to_string(),
            reason: e.to_string(),
        })?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| RulesChangeError::File {
                path: p.display().to_string(),
                reason: format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
            })
    }

    /// Compiles and scores a candidate without storing it.
    ///
    /// # Errors
    /// Rules that do not compile or score below the floor.
    pub fn check(&self, source: &str) -> Result<(Classifier, f64), RulesChangeError> {
        let c = Classifier::from_toml(source, Some("(candidate)"))?;
        let report = evaluate(&c, &self.labeled);
        if report.macro_f1 < self.min_macro_f1 {
            return Err(RulesChangeError::BelowFloor {
                got: report.macro_f1,
                floor: self.min_macro_f1,
                n: report.n,
            });
        }
        Ok((c, report.macro_f1))
    }

    /// Stores a candidate as a new version (with the diff against the active one) and, when
    /// `activate`, makes it live.
    ///
    /// # Errors
    /// As [`LiveRules::check`], and store errors.
    pub async fn propose(
        &self,
        source: &str,
        by: &str,
        note: Option<&str>,
        activate: bool,
    ) -> Result<Accepted, RulesChangeError> {
        let (_, macro_f1) = self.check(source)?;
        let _g = self.lock.lock().await;
        let active = self.store.active_rule_version().await?;
        let diff = active.as_ref().map(|a| {
            similar::TextDiff::from_lines(a.v.source.as_str(), source)
                .unified_diff()
                .context_radius(2)
                .header(&format!("version {}", a.id), "candidate")
                .to_string()
        });
        let now = self.intake.clock.now_ms();
        let id = self
            .store
            .insert_rule_version(&NewRuleVersion {
                created_at: now,
                created_by: by.to_string(),
                sha: sha(source),
                source: source.to_string(),
                note: note.map(str::to_string),
                diff,
                macro_f1: Some(macro_f1),
            })
            .await?;
        if activate {
            self.activate_locked(id, source, by).await?;
        }
        Ok(Accepted {
            version: id,
            macro_f1,
            active: activate,
        })
    }

    /// Makes a stored version live again (rollback), after re-checking it against the gate.
    ///
    /// # Errors
    /// Unknown version, a version that no longer passes the gate, store errors.
    pub async fn activate(&self, id: i64, by: &str) -> Result<Accepted, RulesChangeError> {
        let v = self
            .store
            .rule_version(id)
            .await?
            .ok_or(RulesChangeError::NotFound(id))?;
        let (_, macro_f1) = self.check(&v.v.source)?;
        let _g = self.lock.lock().await;
        self.activate_locked(id, &v.v.source, by).await?;
        Ok(Accepted {
            version: id,
            macro_f1,
            active: true,
        })
    }

    async fn activate_locked(
        &self,
        id: i64,
        source: &str,
        by: &str,
    ) -> Result<(), RulesChangeError> {
        let c = compile(source, None, id)?;
        self.store
            .activate_rule_version(id, by, self.intake.clock.now_ms())
            .await?;
        self.intake.set_classifier(Arc::new(c));
        tracing::info!(version = id, by, "classifier rules activated");
        Ok(())
    }

    /// Re-reads the rules file (SIGHUP); activates it when it differs from the live version.
    ///
    /// # Errors
    /// No file configured, unreadable file, refused rules.
    pub async fn reload_file(&self, by: &str) -> Result<Accepted, RulesChangeError> {
        let source = self.file_source()?.ok_or(RulesChangeError::NoFile)?;
        if let Some(active) = self.store.active_rule_version().await?
            && active.v.sha == sha(&source)
        {
            return Ok(Accepted {
                version: active.id,
                macro_f1: active.v.macro_f1.unwrap_or(0.0),
                active: true,
            });
        }
        self.propose(&source, by, Some("reloaded from the rules file"), true)
            .await
    }
}

/// A stored version's rules, compiled and named `v{id}`.
///
/// # Errors
/// Rules that no longer compile.
pub fn compile(source: &str, origin: Option<&str>, id: i64) -> Result<Classifier, RulesError> {
    let mut c = Classifier::from_toml(source, origin)?;
    c.set_version(format!("v{id}"));
    Ok(c)
}
