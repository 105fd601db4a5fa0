//! Wiring: settings → store → classifier → intake → router + outbox worker. `Application`
//! binds first (port 0 in tests) and exposes `port()`, then runs until a shutdown signal, after
//! which in-flight requests and sends finish before the store closes.

use crate::classify::Classifier;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::domain::Channel;
use crate::http::{AppState, Metrics, router};
use crate::intake::{AckRenderer, Intake};
use crate::outbound::{Worker, WorkerConfig};
use crate::store::Store;
use anyhow::Context;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
    worker: Option<Worker>,
    email_worker: Option<Worker>,
    sla: Arc<crate::sla::scheduler::Scheduler>,
    campaigns: Arc<crate::campaigns::dispatch::Dispatcher>,
    store: Arc<dyn Store>,
    grace: Duration,
}

impl Application {
    /// # Errors
    /// Configuration refused, database or rules that do not open, address in use.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// # Errors
    /// As [`Application::build`].
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        Self::build_on(settings, clock, None).await
    }

    /// As [`Application::build_with_clock`], serving on `listener` (bound already, to
    /// `server.listen`) when given one: a caller that had to tell a peer the port before the
    /// gateway could start (Kannel's and Jasmin's MO URL in the end-to-end tests) holds it
    /// from then on, so nothing else can take it meanwhile.
    ///
    /// # Errors
    /// As [`Application::build`].
    pub async fn build_on(
        settings: Settings,
        clock: Arc<dyn Clock>,
        listener: Option<std::net::TcpListener>,
    ) -> anyhow::Result<Application> {
        let listen = settings.server.listen;
        let unsecured = settings.unsecured_webhooks();
        if !listen.ip().is_loopback() && !unsecured.is_empty() {
            anyhow::bail!(
                "server.listen is {listen}, not loopback, but these webhook secrets are unset: {}. \
                 Set them (config or SWITCHBOARD__INBOUND__...) or listen on 127.0.0.1",
                unsecured.join(", ")
            );
        }
        let (store, intake, rules) = build_intake(&settings, clock.clone()).await?;
        let notify = intake.outbox_notify.clone();
        let metrics = Arc::new(Metrics::default());
        let grace = Duration::from_secs(settings.server.shutdown_grace_secs);
        let quiet = crate::outbound::QuietGate {
            zone: settings.time.zone,
            service: settings.campaigns.service_quiet_hours,
            commercial: settings.campaigns.commercial_quiet_hours,
        };
        let o = &settings.sms.outbound;
        let worker = (o.enabled && !o.paused).then(|| Worker {
            store: store.clone(),
            clock: clock.clone(),
            sender: crate::outbound::sms::driver(&settings),
            notify: notify.clone(),
            metrics: metrics.clone(),
            config: WorkerConfig::new(Channel::Sms, &o.pacing(), grace)
                .with_part_cap(o.part_cap())
                .with_quiet(quiet)
                .with_acks(intake.acks()),
            unrecorded: Default::default(),
        });
        let e = &settings.email.smtp;
        let email_worker = if e.enabled {
            Some(Worker {
                store: store.clone(),
                clock: clock.clone(),
                sender: Arc::new(crate::outbound::email::SmtpSender::new(&settings)?),
                notify: intake.email_notify.clone(),
                metrics: metrics.clone(),
                config: WorkerConfig::new(Channel::Email, &e.pacing(), grace)
                    .with_quiet(quiet)
                    .with_acks(intake.acks()),
                unrecorded: Default::default(),
            })
        } else {
            None
        };
        let sla = Arc::new(crate::sla::scheduler::Scheduler {
            store: store.clone(),
            clock: clock.clone(),
            sla: Arc::new(settings.sla.clone()),
            cases: Arc::new(settings.cases.clone()),
            notices: crate::sla::scheduler::Notices::new(&settings)?,
            wake: intake.sla_notify.clone(),
            sms_notify: notify.clone(),
            email_notify: intake.email_notify.clone(),
        });
        let campaigns = Arc::new(crate::campaigns::dispatch::Dispatcher::new(
            &settings,
            store.clone(),
            clock.clone(),
            notify.clone(),
            intake.email_notify.clone(),
        ));
        let listener = match listener {
            Some(l) => {
                l.set_nonblocking(true)?;
                TcpListener::from_std(l)?
            }
            None => TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding server.listen {listen}"))?,
        };
        let port = listener.local_addr()?.port();
        let grace = Duration::from_secs(settings.server.shutdown_grace_secs);
        let state = AppState {
            intake,
            rules,
            settings: Arc::new(settings),
            metrics,
            sla: sla.clone(),
            campaigns: campaigns.clone(),
        };
        Ok(Application {
            listener,
            port,
            state,
            worker,
            email_worker,
            sla,
            campaigns,
            store,
            grace,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The campaign dispatcher (tests run its ticks by hand with a manual clock).
    pub fn campaigns(&self) -> Arc<crate::campaigns::dispatch::Dispatcher> {
        self.campaigns.clone()
    }

    /// The SLA scheduler (tests run its rounds by hand with a manual clock).
    pub fn sla(&self) -> Arc<crate::sla::scheduler::Scheduler> {
        self.sla.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes in-flight requests and
    /// sends (bounded by `server.shutdown_grace_secs`) and closes the store.
    ///
    /// # Errors
    /// The server failed.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let worker = self.worker.map(|w| tokio::spawn(w.run(stop.clone())));
        let email_worker = self.email_worker.map(|w| tokio::spawn(w.run(stop.clone())));
        let sla = self
            .sla
            .sla
            .scheduler
            .then(|| tokio::spawn(self.sla.clone().run(stop.clone())));
        let campaigns = self
            .state
            .settings
            .campaigns
            .dispatcher
            .then(|| tokio::spawn(self.campaigns.clone().run(stop.clone())));
        tokio::spawn(reload_on_sighup(self.state.rules.clone(), stop.clone()));
        tokio::spawn(join_overdue_parts(self.state.intake.clone(), stop.clone()));
        tracing::info!(port = self.port, "switchboard listening");
        let stop2 = stop.clone();
        let app = router(self.state.clone());
        let config = crate::http::serve::ServeConfig::from_settings(&self.state.settings.server);
        let served = crate::http::serve::serve(self.listener, app, config, async move {
            shutdown.await;
            tracing::info!("shutdown requested; finishing in-flight work");
            stop2.cancel();
        })
        .await;
        stop.cancel();
        for w in [worker, email_worker, sla, campaigns].into_iter().flatten() {
            if tokio::time::timeout(self.grace + Duration::from_secs(1), w)
                .await
                .is_err()
            {
                tracing::warn!("outbox worker did not stop in time");
            }
        }
        self.store.close().await;
        served.context("HTTP server")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Store, intake and live rules: everything that takes a message in, without the HTTP server
/// or the senders (`ingest-email` uses this alone). Also sets the email parser's structural
/// limits (`email.max_mime_depth`, `max_parts`, `max_headers`) for this process.
///
/// # Errors
/// Database, templates or rules that do not open.
pub async fn build_intake(
    settings: &Settings,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(
    Arc<dyn Store>,
    Arc<Intake>,
    Arc<crate::classify::live::LiveRules>,
)> {
    crate::email::configure(&settings.email.limits());
    let store = crate::store::open(
        settings.database.url.expose(),
        settings.database.max_connections,
        settings.database.group_commit_max,
    )
    .await?;
    let acks = Arc::new(AckRenderer::new(settings)?);
    let intake = Arc::new(Intake::new(
        settings,
        store.clone(),
        clock,
        Arc::new(Classifier::builtin()),
        acks,
        Arc::new(Notify::new()),
    ));
    let rules = crate::classify::live::LiveRules::init(
        store.clone(),
        intake.clone(),
        settings.classifier.rules.clone(),
        settings.classifier.labeled_set.clone(),
        settings.classifier.min_macro_f1,
    )
    .await?;
    Ok((store, intake, rules))
}

/// SIGHUP re-reads `classifier.rules`; a refused file is logged and the live rules stay.
async fn reload_on_sighup(rules: Arc<crate::classify::live::LiveRules>, stop: CancellationToken) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {}
                _ = stop.cancelled() => return,
            }
            match rules.reload_file("SIGHUP").await {
                Ok(a) => tracing::info!(
                    version = a.version,
                    macro_f1 = a.macro_f1,
                    "rules file reloaded"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "rules file refused on SIGHUP; the live rules stay")
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (rules, stop);
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Every few seconds, joins concatenated SMS whose missing parts never came
/// (`intake.concat_timeout_secs`), so what arrived is stored and acknowledged once.
async fn join_overdue_parts(intake: Arc<crate::intake::Intake>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.cancelled() => return,
        }
        if let Err(e) = intake.join_overdue_parts().await {
            tracing::warn!(error = %e, "joining overdue SMS parts failed; trying again shortly");
        }
    }
}
