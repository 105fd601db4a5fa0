//! The `switchboard` binary: parse the command line, set up logging, run.

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = match switchboard::cli::Cli::try_parse() {
        Ok(cli) => cli,
        // `ingest-email` must not exit 2 on a bad command line either: Postfix would bounce.
        Err(e) if e.use_stderr() && std::env::args().nth(1).as_deref() == Some("ingest-email") => {
            let _ = e.print();
            return std::process::ExitCode::from(switchboard::cli::EX_TEMPFAIL);
        }
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SWITCHBOARD_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in journald, files or pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    switchboard::cli::install_panic_hook();
    // For the MTA pipe every failure a retry could fix, a panic included, must be 75 so the
    // customer's mail is deferred, never bounced.
    let mta = matches!(cli.command, switchboard::cli::Command::IngestEmail { .. });
    let failure = if mta {
        switchboard::cli::EX_TEMPFAIL
    } else {
        1
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("starting the runtime: {e}"))?;
        rt.block_on(switchboard::cli::run(cli))
    }));
    match outcome {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("switchboard: error: {e:#}");
            match e.downcast_ref::<switchboard::cli::ExitWith>() {
                Some(x) => std::process::ExitCode::from(x.code),
                None => std::process::ExitCode::from(failure),
            }
        }
        Err(_) => {
            eprintln!("switchboard: internal error (panic)");
            std::process::ExitCode::from(failure)
        }
    }
}
