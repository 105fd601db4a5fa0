//! The benchmark's yardstick: a bare axum handler that commits one row per request to SQLite
//! (WAL, synchronous = FULL) through one writer task with group commit, the same durability
//! switchboard's intake has. `benches/load.sh` runs wrk against it and against switchboard
//! in one run and reports the ratio.
//!
//! Run: `cargo run --release --example baseline_server -- 127.0.0.1:8090 /tmp/baseline.db`

use axum::extract::{RawQuery, State};
use axum::routing::get;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};
use std::str::FromStr;
use tokio::sync::{mpsc, oneshot};

type Job = (String, oneshot::Sender<bool>);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    let path = args.next().unwrap_or_else(|| "/tmp/baseline.db".into());
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let mut conn = SqliteConnection::connect_with(&opts).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&mut conn)
        .await?;
    let (tx, mut rx) = mpsc::channel::<Job>(2048);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(512);
        while rx.recv_many(&mut batch, 512).await > 0 {
            let ok = async {
                sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await?;
                for (body, _) in &batch {
                    sqlx::query("INSERT INTO rows (body) VALUES ($1)")
                        .bind(body)
                        .execute(&mut conn)
                        .await?;
                }
                sqlx::query("COMMIT").execute(&mut conn).await?;
                Ok::<_, sqlx::Error>(())
            }
            .await
            .is_ok();
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(ok);
            }
        }
    });
    let app = axum::Router::new()
        .route(
            "/inbound/sms/kannel",
            get(
                |State(tx): State<mpsc::Sender<Job>>, RawQuery(q): RawQuery| async move {
                    let (rtx, rrx) = oneshot::channel();
                    if tx.send((q.unwrap_or_default(), rtx)).await.is_err() {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    match rrx.await {
                        Ok(true) => axum::http::StatusCode::OK,
                        _ => axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    }
                },
            ),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("baseline listening on {listen}, database {path}");
    axum::serve(listener, app).await?;
    Ok(())
}
