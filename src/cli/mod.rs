//! Subcommands: `serve`, `migrate`, `classify`. Each loads the layered settings and calls
//! into the library; `main.rs` only parses and reports.

use crate::classify::Classifier;
use crate::config::Settings;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "SMS and email gateway for customer service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server and the outbox workers.
    Serve {
        /// Configuration file layered over the built-in defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Classify a text and explain the result.
    Classify {
        /// Rules file (default: classifier.rules from the config, else the built-in rules).
        #[arg(long)]
        rules: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        text: String,
    },
}

/// Runs a parsed command.
///
/// # Errors
/// Whatever the command failed on, with context.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => {
            let settings = Settings::load(config.as_deref())?;
            let app = crate::app::Application::build(settings).await?;
            app.run_until_stopped(crate::app::shutdown_signal()).await
        }
        Command::Migrate { config } => {
            let settings = Settings::load(config.as_deref())?;
            let store = crate::store::open(
                settings.database.url.expose(),
                settings.database.max_connections,
                settings.database.group_commit_max,
            )
            .await?;
            store.close().await;
            println!("database migrated");
            Ok(())
        }
        Command::Classify {
            rules,
            config,
            json,
            text,
        } => {
            let settings = Settings::load(config.as_deref())?;
            let path = rules.or(settings.classifier.rules);
            let c = match path {
                Some(p) => Classifier::from_path(&p)?,
                None => Classifier::builtin(),
            };
            let r = c.classify(&text);
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("category: {}", r.category);
                println!("intent:   {}", r.intent.as_str());
                let scores: Vec<String> = r
                    .scores
                    .iter()
                    .rev()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                println!("scores:   {}", scores.join(" "));
                println!("rules:    version {}", r.rules_version);
                for h in &r.hits {
                    println!(
                        "  + {:<10} {:<28} {:?} at {}..{} (term {:?})",
                        h.category.as_str(),
                        h.rule_id,
                        h.matched,
                        h.start,
                        h.end,
                        h.term
                    );
                }
                for h in &r.negated {
                    println!(
                        "  - {:<10} {:<28} {:?} at {}..{} (negated)",
                        h.category.as_str(),
                        h.rule_id,
                        h.matched,
                        h.start,
                        h.end
                    );
                }
            }
            Ok(())
        }
    }
}
