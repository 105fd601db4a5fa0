//! Subcommands: `serve`, `migrate`, `classify`. Each loads the layered settings and calls
//! into the library; `main.rs` only parses and reports.

pub mod campaign;

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
        /// Use the rules version live in the database instead: what the server classifies
        /// incoming messages with.
        #[arg(long, conflicts_with = "rules")]
        live: bool,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        text: String,
    },
    /// Store one RFC 5322 message from stdin (Postfix pipe(8)). Exit 0 once stored, 65 when it
    /// is not an acceptable email (over a limit included), 75 (EX_TEMPFAIL) on anything a retry
    /// could fix, so the MTA defers instead of bouncing customer mail. Never any other code:
    /// the parse and store run in a child process of this one, and a child that crashes
    /// (panic, abort, a signal) makes this exit 75.
    IngestEmail {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Internal: do the work in this process (the parent starts itself with this flag).
        #[arg(long, hide = true)]
        in_child: bool,
    },
    /// Admin API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Measure and compare classifier rule sets.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Reports.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Outbound campaigns.
    Campaign {
        #[command(subcommand)]
        command: campaign::CampaignCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Service levels of the cases opened since SINCE: per category and tier, cases, answered
    /// and resolved in time, breaches, median and p90 time to answer and to resolve,
    /// satisfaction.
    Sla {
        /// How far back: 30d, 12h, a date YYYY-MM-DD (in time.zone) or an RFC 3339 instant.
        #[arg(long, default_value = "30d")]
        since: String,
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// CSV (header first) instead of a table.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
}

async fn report(command: ReportCommand) -> anyhow::Result<()> {
    let ReportCommand::Sla {
        since,
        config,
        json,
        csv,
    } = command;
    let settings = Settings::load(config.as_deref())?;
    let now = chrono::Utc::now().timestamp_millis();
    let from = crate::sla::report::parse_instant(&since, settings.time.zone, now)
        .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let store = crate::store::open(
        settings.database.url.expose(),
        settings.database.max_connections,
        settings.database.group_commit_max,
    )
    .await?;
    let rows = store.sla_rows(from, now + 1).await;
    store.close().await;
    let lines = crate::sla::report::summarize(&rows?, now);
    if json {
        println!(
            "{}",
            serde_json::json!({ "from": from, "to": now, "lines": lines })
        );
        return Ok(());
    }
    if csv {
        print!("{}", crate::sla::report::csv(&lines)?);
        return Ok(());
    }
    let opt = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_else(|| "-".into());
    println!(
        "{:<10} {:>4} {:>7} {:>9} {:>9} {:>8} {:>10} {:>10} {:>10} {:>10} {:>5} {:>5} {:>5}",
        "category",
        "tier",
        "cases",
        "answer%",
        "resolve%",
        "breaches",
        "ans p50m",
        "ans p90m",
        "res p50m",
        "res p90m",
        "sat",
        "neu",
        "unsat"
    );
    for l in &lines {
        println!(
            "{:<10} {:>4} {:>7} {:>9} {:>9} {:>8} {:>10} {:>10} {:>10} {:>10} {:>5} {:>5} {:>5}",
            l.category,
            l.tier,
            l.cases,
            opt(l.answered_in_time_pct),
            opt(l.resolved_in_time_pct),
            l.breaches,
            opt(l.answer_median_min),
            opt(l.answer_p90_min),
            opt(l.resolve_median_min),
            opt(l.resolve_p90_min),
            l.satisfied,
            l.neutral,
            l.unsatisfied
        );
    }
    if lines.is_empty() {
        println!("(no cases opened since {since})");
    }
    Ok(())
}

/// An error that must end the process with a specific exit code (sysexits.h).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitWith {
    pub code: u8,
    pub message: String,
}

pub const EX_DATAERR: u8 = 65;
pub const EX_TEMPFAIL: u8 = 75;

/// Test hook (environment, not configuration): `SWITCHBOARD_TEST_ABORT_INGEST=1` makes the
/// `ingest-email` child abort after reading its input, before storing anything, as a parser
/// crash would; the parent then exits 75 and the MTA keeps the mail. Postfix's pipe(8) passes
/// no environment, so a deployment cannot set it by accident.
pub const TEST_ABORT_INGEST: &str = "SWITCHBOARD_TEST_ABORT_INGEST";

fn tempfail(message: String) -> ExitWith {
    ExitWith {
        code: EX_TEMPFAIL,
        message,
    }
}

/// `ingest-email`: runs [`ingest_email_here`] in a child process (this binary with
/// `--in-child`, stdin, stdout and stderr inherited) and passes its 0 / 65 / 75 on; any other
/// end of the child (a crash, a signal, an exit code from something else) is 75. A crash, even
/// one that cannot be caught (stack overflow, abort), thus defers the mail instead of bouncing
/// it. The parent reads nothing and parses nothing itself.
async fn ingest_email(config: Option<PathBuf>, in_child: bool) -> anyhow::Result<()> {
    if in_child {
        return ingest_email_here(config).await;
    }
    let exe = std::env::current_exe()
        .map_err(|e| tempfail(format!("finding our own executable: {e}")))?;
    let mut child = std::process::Command::new(exe);
    child.arg("ingest-email").arg("--in-child");
    if let Some(c) = &config {
        child.arg("--config").arg(c);
    }
    let status = tokio::task::spawn_blocking(move || child.status())
        .await
        .map_err(|e| tempfail(format!("waiting for the ingest child: {e}")))?
        .map_err(|e| tempfail(format!("starting the ingest child: {e}")))?;
    match status.code() {
        Some(0) => Ok(()),
        // The child said why on stderr already.
        Some(code @ (65 | 75)) => std::process::exit(code),
        Some(code) => Err(tempfail(format!("the ingest child exited with {code}")).into()),
        None => {
            #[cfg(unix)]
            let how = {
                use std::os::unix::process::ExitStatusExt;
                format!("was killed by signal {}", status.signal().unwrap_or(0))
            };
            #[cfg(not(unix))]
            let how = "ended without an exit code".to_string();
            Err(tempfail(format!("the ingest child {how}")).into())
        }
    }
}

/// The work of `ingest-email`: read stdin, parse, store.
async fn ingest_email_here(config: Option<PathBuf>) -> anyhow::Result<()> {
    use std::io::Read;
    let temp = tempfail;
    let settings =
        Settings::load(config.as_deref()).map_err(|e| temp(format!("configuration: {e:#}")))?;
    let max = settings.email.max_bytes;
    let mut raw = Vec::new();
    std::io::stdin()
        .take(max as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| temp(format!("reading stdin: {e}")))?;
    if std::env::var_os(TEST_ABORT_INGEST).is_some_and(|v| v == "1") {
        eprintln!("switchboard: {TEST_ABORT_INGEST}=1: aborting the ingest child");
        std::process::abort();
    }
    let (store, intake, _rules) =
        crate::app::build_intake(&settings, std::sync::Arc::new(crate::clock::SystemClock))
            .await
            .map_err(|e| temp(format!("opening the gateway: {e:#}")))?;
    let r = intake.accept_email(raw, max).await;
    store.close().await;
    match r {
        Ok(o) => {
            tracing::info!(?o, "email stored");
            Ok(())
        }
        Err(crate::intake::EmailRefused::Bad(b)) => Err(ExitWith {
            code: EX_DATAERR,
            message: format!("refused: {b}"),
        }
        .into()),
        Err(crate::intake::EmailRefused::Store(e @ crate::store::StoreError::Rejected(_))) => {
            Err(ExitWith {
                code: EX_DATAERR,
                message: format!("refused: {e}"),
            }
            .into())
        }
        Err(crate::intake::EmailRefused::Store(e)) => Err(temp(format!("storing: {e}")).into()),
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once (only its hash is stored).
    Create {
        #[arg(long)]
        name: String,
        /// agent | marketing | ops | admin
        #[arg(long)]
        role: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Evaluate rules on a labeled CSV (header `label,text`): accuracy, per-class
    /// precision/recall/F1, macro-F1, confusion matrix, misclassified rows.
    Eval {
        file: PathBuf,
        #[arg(long)]
        rules: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print one JSON object (n, accuracy, macro_f1, classes, confusion, misclassified).
        #[arg(long)]
        json: bool,
        /// K-fold: each fold judged by a model trained without it (rules files with a model).
        #[arg(long)]
        folds: Option<usize>,
    },
    /// Propose keywords and patterns from misclassified rows of the labeled set (and of a
    /// corrections CSV), each with the macro-F1 change it makes on both.
    Suggest {
        /// Labeled set (default: classifier.labeled_set, else the built-in one).
        file: Option<PathBuf>,
        /// More rows (header `label,text`), e.g. messages agents re-filed.
        #[arg(long)]
        corrections: Option<PathBuf>,
        #[arg(long)]
        rules: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value_t = 20)]
        top: usize,
        #[arg(long)]
        json: bool,
    },
    /// Replay stored inbound messages through CANDIDATE rules and list every message whose
    /// category would change, with a count per (old -> new).
    Backtest {
        #[arg(long)]
        rules: PathBuf,
        /// How far back to replay: 30m, 24h, 7d, 2w.
        #[arg(long, default_value = "7d")]
        since: String,
        #[arg(long, default_value_t = 100_000)]
        limit: i64,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

/// Replaces the standard panic message with the same line masked: a panic's message can
/// quote what it was working on (a number, an address), and it goes to stderr with the logs,
/// where no raw number or address may appear (runs of seven or more digits are masked, dates
/// and long numbers included). The location is kept, and a backtrace when
/// `std::backtrace::Backtrace::capture` takes one (`RUST_LIB_BACKTRACE`, else
/// `RUST_BACKTRACE`). One write, whose failure is ignored as Rust's own hook does: a panic
/// inside the hook would abort the process.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        use std::io::Write;
        let thread = std::thread::current();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str));
        let mut text = panic_line(thread.name(), info.location(), payload);
        let trace = std::backtrace::Backtrace::capture();
        if trace.status() == std::backtrace::BacktraceStatus::Captured {
            text.push_str(&format!("\n{trace:#}"));
        }
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }));
}

/// The line [`install_panic_hook`] writes for one panic.
fn panic_line(
    thread: Option<&str>,
    at: Option<&std::panic::Location<'_>>,
    message: Option<&str>,
) -> String {
    let at = at.map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
    format!(
        "thread '{}' panicked{at}: {}",
        thread.unwrap_or("<unnamed>"),
        crate::domain::scrub(message.unwrap_or("(no message)"))
    )
}

/// Parses `30m`, `24h`, `7d`, `2w`, `90s` into milliseconds.
///
/// # Errors
/// Anything else, with the accepted forms.
pub fn parse_duration_ms(s: &str) -> anyhow::Result<i64> {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = num.parse().map_err(|_| {
        anyhow::anyhow!("--since {s:?}: expected a number and a unit, like 30m, 24h, 7d, 2w")
    })?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => anyhow::bail!("--since {s:?}: unit must be s, m, h, d or w"),
    };
    n.checked_mul(unit_ms)
        .ok_or_else(|| anyhow::anyhow!("--since {s:?} is too large"))
}

fn load_classifier(rules: Option<PathBuf>, settings: &Settings) -> anyhow::Result<Classifier> {
    Ok(match rules.or_else(|| settings.classifier.rules.clone()) {
        Some(p) => Classifier::from_path(&p)?,
        None => Classifier::builtin(),
    })
}

/// The rules version active in the configured database.
async fn live_classifier(settings: &Settings) -> anyhow::Result<Classifier> {
    let store = crate::store::open(
        settings.database.url.expose(),
        settings.database.max_connections,
        settings.database.group_commit_max,
    )
    .await?;
    let active = store.active_rule_version().await;
    store.close().await;
    let v = active?.ok_or_else(|| {
        anyhow::anyhow!(
            "no rules version is live in the database yet (the server stores one when it first starts)"
        )
    })?;
    Ok(crate::classify::live::compile(
        &v.v.source,
        Some(&format!("stored version {}", v.id)),
        v.id,
    )?)
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
            live,
            config,
            json,
            text,
        } => {
            let settings = Settings::load(config.as_deref())?;
            let c = if live {
                live_classifier(&settings).await?
            } else {
                load_classifier(rules, &settings)?
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
                println!(
                    "decided:  by {} (rules alone: {})",
                    r.decided_by, r.rules_category
                );
                if let Some(m) = &r.model {
                    let p: Vec<String> = m
                        .probabilities
                        .iter()
                        .rev()
                        .map(|(k, v)| format!("{k}={v:.3}"))
                        .collect();
                    println!("model:    version {}  {}", m.version, p.join(" "));
                    let f: Vec<String> = m
                        .top_features
                        .iter()
                        .map(|f| format!("{:?} {:+.2}", f.ngram, f.weight))
                        .collect();
                    println!("  top features for {}: {}", r.category, f.join(", "));
                }
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
        Command::Rules { command } => rules(command).await,
        Command::Report { command } => report(command).await,
        Command::Campaign { command } => campaign::run(command).await,
        Command::IngestEmail { config, in_child } => ingest_email(config, in_child).await,
        Command::Token {
            command: TokenCommand::Create { name, role, config },
        } => {
            role.parse::<crate::http::api::Role>()
                .map_err(|e| anyhow::anyhow!("--role: {e}"))?;
            let settings = Settings::load(config.as_deref())?;
            let store = crate::store::open(
                settings.database.url.expose(),
                settings.database.max_connections,
                settings.database.group_commit_max,
            )
            .await?;
            let token = {
                use rand::Rng;
                let bytes: [u8; 24] = rand::thread_rng().r#gen();
                format!("sb_{}", hex::encode(bytes))
            };
            store
                .insert_api_token(
                    &name,
                    &role,
                    &crate::http::api::hash_token(&token),
                    chrono::Utc::now().timestamp_millis(),
                )
                .await?;
            store.close().await;
            println!("{token}");
            Ok(())
        }
    }
}

async fn rules(cmd: RulesCommand) -> anyhow::Result<()> {
    match cmd {
        RulesCommand::Eval {
            file,
            rules,
            config,
            json,
            folds,
        } => {
            let settings = Settings::load(config.as_deref())?;
            let c = load_classifier(rules, &settings)?;
            let rows = crate::classify::eval::read_csv(&file)?;
            let report = match folds {
                Some(k) if k < 2 => anyhow::bail!("--folds must be at least 2"),
                Some(k) => {
                    if c.model().is_none() {
                        anyhow::bail!("--folds needs a rules file with a [model]");
                    }
                    crate::classify::eval::kfold(&c, &rows, k)
                }
                None => crate::classify::eval::evaluate(&c, &rows),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render(true));
            }
            Ok(())
        }
        RulesCommand::Suggest {
            file,
            corrections,
            rules,
            config,
            top,
            json,
        } => {
            let settings = Settings::load(config.as_deref())?;
            let c = load_classifier(rules, &settings)?;
            let labeled = match file.or_else(|| settings.classifier.labeled_set.clone()) {
                Some(p) => crate::classify::eval::read_csv(&p)?,
                None => crate::classify::eval::parse_csv(crate::classify::live::BUILTIN_LABELED)?,
            };
            let corrections = match corrections {
                Some(p) => crate::classify::eval::read_csv(&p)?,
                None => Vec::new(),
            };
            let report = crate::classify::suggest::suggest(&c, &labeled, &corrections, top);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            Ok(())
        }
        RulesCommand::Backtest {
            rules,
            since,
            limit,
            config,
            json,
        } => {
            let settings = Settings::load(config.as_deref())?;
            let window = parse_duration_ms(&since)?;
            let candidate = Classifier::from_path(&rules)?;
            let store = crate::store::open(
                settings.database.url.expose(),
                settings.database.max_connections,
                settings.database.group_commit_max,
            )
            .await?;
            let now = chrono::Utc::now().timestamp_millis();
            let msgs = store.inbound_since(now - window, limit).await?;
            store.close().await;
            let report = crate::classify::backtest(&candidate, &msgs);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_line_names_thread_and_place_and_masks_numbers_and_addresses() {
        let at = std::panic::Location::caller();
        let line = super::panic_line(
            Some("sqlite-writer"),
            Some(at),
            Some("bad row for +8613812345678 and zhangsan@example.cn"),
        );
        assert!(
            line.starts_with("thread 'sqlite-writer' panicked at src/cli/mod.rs:"),
            "{line}"
        );
        assert!(line.contains("+86138****5678"), "{line}");
        assert!(
            !line.contains("13812345678") && !line.contains("zhangsan"),
            "{line}"
        );
        assert_eq!(
            super::panic_line(None, None, None),
            "thread '<unnamed>' panicked: (no message)"
        );
    }

    #[test]
    fn durations_parse_with_units_and_refuse_garbage() {
        assert_eq!(super::parse_duration_ms("30m").unwrap(), 1_800_000);
        assert_eq!(super::parse_duration_ms("7d").unwrap(), 604_800_000);
        assert!(super::parse_duration_ms("7").is_err());
        assert!(super::parse_duration_ms("d").is_err());
        assert!(super::parse_duration_ms("3y").is_err());
    }
}
