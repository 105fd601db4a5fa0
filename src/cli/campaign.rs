//! `switchboard campaign create|import|preview|start|status|pause|resume|cancel`: the same work
//! as `/api/v1/campaigns` (`crate::campaigns::manage`), on the configured database. A running
//! server's dispatcher picks up a started campaign within its tick.

use crate::campaigns::manage::{self, CampaignError, CreateRequest};
use crate::config::Settings;
use crate::domain::CampaignId;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// A draft campaign; prints its id.
    Create {
        #[arg(long)]
        name: String,
        /// payment_reminder, notice, survey, research or marketing.
        #[arg(long)]
        kind: String,
        /// sms, email or own.
        #[arg(long, default_value = "sms")]
        channel: String,
        /// The message text (minijinja; CSV columns are variables).
        #[arg(long, conflicts_with = "template_file")]
        template: Option<String>,
        #[arg(long)]
        template_file: Option<PathBuf>,
        #[arg(long)]
        subject: Option<String>,
        /// Messages per second.
        #[arg(long)]
        rate: f64,
        /// RFC 3339 or "YYYY-MM-DD HH:MM" in time.zone; default now.
        #[arg(long)]
        start_at: Option<String>,
        #[arg(long)]
        valid_until: Option<String>,
        /// Service campaigns only: keep no quiet hours.
        #[arg(long)]
        urgent: bool,
        /// Recurring: a cron in time.zone, e.g. "0 9 1 * *" (09:00 on the 1st of each month).
        #[arg(long)]
        cron: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Streams a CSV of recipients into a draft or paused campaign, with a progress bar.
    Import {
        id: i64,
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Renders a few recipients and counts what would be sent and suppressed.
    Preview {
        id: i64,
        #[arg(long, default_value_t = 5)]
        n: usize,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Progress: pending, queued, sent, delivered, failed, suppressed by reason.
    Status {
        id: i64,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    Start {
        id: i64,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    Pause {
        id: i64,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    Resume {
        id: i64,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    Cancel {
        id: i64,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn config_of(c: &CampaignCommand) -> Option<&std::path::Path> {
    match c {
        CampaignCommand::Create { config, .. }
        | CampaignCommand::Import { config, .. }
        | CampaignCommand::Preview { config, .. }
        | CampaignCommand::Status { config, .. }
        | CampaignCommand::Start { config, .. }
        | CampaignCommand::Pause { config, .. }
        | CampaignCommand::Resume { config, .. }
        | CampaignCommand::Cancel { config, .. } => config.as_deref(),
    }
}

fn fail(e: CampaignError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub async fn run(command: CampaignCommand) -> anyhow::Result<()> {
    let settings = Settings::load(config_of(&command))?;
    let store = crate::store::open(
        settings.database.url.expose(),
        settings.database.max_connections,
        settings.database.group_commit_max,
    )
    .await?;
    let r = run_on(&settings, store.clone(), command).await;
    store.close().await;
    r
}

async fn run_on(
    settings: &Settings,
    store: std::sync::Arc<dyn crate::store::Store>,
    command: CampaignCommand,
) -> anyhow::Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    let by = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    match command {
        CampaignCommand::Create {
            name,
            kind,
            channel,
            template,
            template_file,
            subject,
            rate,
            start_at,
            valid_until,
            urgent,
            cron,
            ..
        } => {
            let template = match (template, template_file) {
                (Some(t), _) => t,
                (None, Some(f)) => std::fs::read_to_string(&f)
                    .map_err(|e| anyhow::anyhow!("--template-file {}: {e}", f.display()))?,
                (None, None) => anyhow::bail!("give --template or --template-file"),
            };
            let req = CreateRequest {
                name,
                kind,
                channel,
                template,
                subject,
                start_at,
                valid_until,
                rate_per_sec: rate,
                urgent,
                cron,
                lang: None,
            };
            let templates = crate::templates::Templates::load(settings.templates.dir.as_deref())?;
            let c = manage::create(
                store.as_ref(),
                &templates,
                &settings.campaigns,
                settings.time.zone,
                &req,
                &format!("cli:{by}"),
                now,
            )
            .await
            .map_err(fail)?;
            println!("{}", c.id);
        }
        CampaignCommand::Import { id, file, .. } => {
            let f = std::fs::File::open(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let bar = indicatif::ProgressBar::new(len);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {msg} ({eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let reader = bar.wrap_read(std::io::BufReader::with_capacity(1 << 20, f));
            let r = manage::import(
                store.as_ref(),
                CampaignId(id),
                reader,
                &settings.phone.default_country,
                |r| bar.set_message(format!("{} rows", r.rows)),
            )
            .await
            .map_err(fail)?;
            bar.finish_and_clear();
            println!(
                "{} rows: {} accepted, {} duplicates, {} invalid ({})",
                r.rows,
                r.accepted,
                r.duplicates,
                r.invalid,
                r.encoding.unwrap_or("ascii")
            );
            for (line, why) in r.errors.iter().take(20) {
                println!("  line {line}: {why}");
            }
            if r.errors.len() > 20 {
                println!("  … {} more", r.invalid as usize - 20);
            }
        }
        CampaignCommand::Preview { id, n, .. } => {
            let d = crate::campaigns::dispatch::Dispatcher::new(
                settings,
                store.clone(),
                std::sync::Arc::new(crate::clock::SystemClock),
                Default::default(),
                Default::default(),
            );
            let p = manage::preview(
                store.as_ref(),
                &d,
                settings.time.zone,
                CampaignId(id),
                n,
                now,
            )
            .await
            .map_err(fail)?;
            println!("{}", serde_json::to_string_pretty(&p)?);
        }
        CampaignCommand::Status { id, .. } => {
            let c = store
                .campaign(CampaignId(id))
                .await?
                .ok_or_else(|| anyhow::anyhow!("campaign {id} not found"))?;
            let p = manage::progress(store.as_ref(), CampaignId(id))
                .await
                .map_err(fail)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "campaign": c, "progress": p }))?
            );
        }
        CampaignCommand::Start { id, .. } => {
            act(settings, store.as_ref(), id, "start", now).await?
        }
        CampaignCommand::Pause { id, .. } => {
            act(settings, store.as_ref(), id, "pause", now).await?
        }
        CampaignCommand::Resume { id, .. } => {
            act(settings, store.as_ref(), id, "resume", now).await?
        }
        CampaignCommand::Cancel { id, .. } => {
            act(settings, store.as_ref(), id, "cancel", now).await?
        }
    }
    Ok(())
}

async fn act(
    settings: &Settings,
    store: &dyn crate::store::Store,
    id: i64,
    action: &str,
    now: i64,
) -> anyhow::Result<()> {
    let c = manage::transition(store, settings.time.zone, CampaignId(id), action, now)
        .await
        .map_err(fail)?;
    println!("campaign {id}: {}", c.status);
    Ok(())
}
