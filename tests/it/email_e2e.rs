//! The email channel end to end with real peers on loopback:
//! * a real Postfix (tests/postfix templates) pipes mail into `switchboard ingest-email`, which
//!   stores it in PostgreSQL, or exits 75 while the database is gone so Postfix defers the mail
//!   (no bounce) and delivers it after a flush;
//! * the running app sends acknowledgements over SMTP to tests/smtp/sink.py (aiosmtpd), which
//!   writes what it receives into a Maildir and answers 451 / 550 for chosen recipients;
//! * machine mail (auto-replies, bulk, lists, bounces, no-reply senders) gets no ack, and a DSN
//!   naming one of our Message-IDs marks that message failed.
//!
//! Needs Debian `postfix`, `swaks`, `python3-aiosmtpd` (tests/run.sh installs them), PostgreSQL on
//! 127.0.0.1:5432 and root (Postfix instances and `postqueue -c` need it): fails loudly otherwise,
//! never skips.

use crate::common::{
    self, drop_pg_database, email_fixture as fixture, eventually, free_port, fresh_pg_database,
    pg_admin_url, spawn_app, wait_ready,
};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use switchboard::config::{Settings, SmtpTls};
use switchboard::store::MessageRecord;

const POSTFIX: &str = "/usr/sbin/postfix";
const POSTQUEUE: &str = "/usr/sbin/postqueue";
const SWAKS: &str = "/usr/bin/swaks";
const PYTHON: &str = "/usr/bin/python3";
const INSTALL_HINT: &str = "install the test peers: apt-get install postfix swaks python3-aiosmtpd \
     (tests/run.sh does it; preseed postfix with `postfix postfix/main_mailer_type select No configuration`)";

const MAIN_CF: &str = include_str!("../postfix/main.cf.tmpl");
const MASTER_CF: &str = include_str!("../postfix/master.cf.tmpl");
const SINK_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp/sink.py");

/// Our address in these tests: its domain names our Message-IDs (`<sb-42@gw.test>`).
const OUR_FROM: &str = "service@gw.test";
const TEMP: &str = "temp@example.com";
const GONE: &str = "gone@example.com";

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/email")
        .join(name)
}

fn require(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: {INSTALL_HINT}"
    );
}

fn output_text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Waits (blocking) until something accepts TCP connections on 127.0.0.1:`port`.
fn wait_listening(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ------------------------------------------------------------------------------------------------
// Postfix
// ------------------------------------------------------------------------------------------------

/// A private Postfix instance under a temp dir (templates from tests/postfix, see FINDINGS.md):
/// smtpd on 127.0.0.1:`port`, mail for gw.test piped as `nobody` into
/// `switchboard ingest-email --config DIR/switchboard.toml`. Drop stops it and waits.
struct Postfix {
    port: u16,
    started: bool,
    // Declared last: removed only after `drop` stopped the daemons.
    dir: tempfile::TempDir,
}

impl Postfix {
    fn start(switchboard_toml: &str) -> Postfix {
        require(POSTFIX);
        require(POSTQUEUE);
        require(SWAKS);
        let uid = std::fs::metadata("/proc/self").unwrap().uid();
        assert_eq!(
            uid, 0,
            "the Postfix end-to-end test must run as root (postfix start, postqueue -c); CI runs it as root"
        );
        let dir = tempfile::Builder::new()
            .prefix("sb-postfix-")
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        let root_s = root.to_str().unwrap().to_string();
        assert!(
            !root_s.contains(char::is_whitespace),
            "master.cf argv cannot hold a path with spaces: {root_s}"
        );
        // nobody (the pipe user) must reach the config file and maybe the binary copy below.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["conf", "queue", "data", "log"] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        // FINDINGS gotcha 1: the data directory must belong to postfix.
        let o = Command::new("chown")
            .arg("postfix")
            .arg(root.join("data"))
            .output()
            .expect("run chown");
        assert!(
            o.status.success(),
            "chown postfix {}/data: {}",
            root_s,
            output_text(&o)
        );
        let pipe_cmd = pipe_binary(&root);
        let port = free_port();
        for (name, tmpl) in [("main.cf", MAIN_CF), ("master.cf", MASTER_CF)] {
            let text = tmpl
                .replace("{DIR}", &root_s)
                .replace("{SMTP_PORT}", &port.to_string())
                .replace("{PIPE_CMD}", pipe_cmd.to_str().unwrap())
                .replace("{PIPE_USER}", "nobody");
            std::fs::write(root.join("conf").join(name), text).unwrap();
        }
        let toml = root.join("switchboard.toml");
        std::fs::write(&toml, switchboard_toml).unwrap();
        std::fs::set_permissions(&toml, std::fs::Permissions::from_mode(0o644)).unwrap();

        let mut pf = Postfix {
            port,
            started: true, // from here on Drop runs `postfix stop`
            dir,
        };
        let o = pf.postfix(&["start"]);
        if !o.status.success() {
            pf.started = false;
            panic!(
                "postfix start failed: {}\nmaillog:\n{}",
                output_text(&o),
                pf.maillog()
            );
        }
        assert!(
            wait_listening(port, Duration::from_secs(20)),
            "Postfix smtpd does not accept on 127.0.0.1:{port}\nmaillog:\n{}",
            pf.maillog()
        );
        pf
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    fn postfix(&self, args: &[&str]) -> Output {
        Command::new(POSTFIX)
            .arg("-c")
            .arg(self.conf())
            .args(args)
            .output()
            .expect("run postfix")
    }

    fn maillog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/maillog")).unwrap_or_default()
    }

    /// Maillog lines about queue id `qid`.
    fn log_for(&self, qid: &str) -> Vec<String> {
        let needle = format!(" {qid}: ");
        self.maillog()
            .lines()
            .filter(|l| l.contains(&needle))
            .map(str::to_string)
            .collect()
    }

    /// The maillog lines for `qid` when Postfix bounced it.
    fn bounced(&self, qid: &str) -> Option<String> {
        let lines = self.log_for(qid);
        lines
            .iter()
            .any(|l| l.contains("status=bounced"))
            .then(|| lines.join("\n"))
    }

    /// Sends a fixture with swaks to customer-service@gw.test; returns Postfix's queue id.
    fn deliver(&self, fixture_name: &str, envelope_from: &str) -> String {
        let o = Command::new(SWAKS)
            .arg("--server")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["--to", "customer-service@gw.test", "--from", envelope_from])
            .arg("--data")
            .arg(format!("@{}", fixture_path(fixture_name).display()))
            .output()
            .expect("run swaks");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "swaks {fixture_name}: {}\nmaillog:\n{}",
            output_text(&o),
            self.maillog()
        );
        let qid = out
            .rsplit_once("queued as ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no queue id in the swaks transcript:\n{out}"));
        qid.to_string()
    }

    fn queue(&self) -> String {
        let o = Command::new(POSTQUEUE)
            .arg("-c")
            .arg(self.conf())
            .arg("-p")
            .output()
            .expect("run postqueue -p");
        assert!(o.status.success(), "postqueue -p: {}", output_text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn flush(&self) {
        let o = Command::new(POSTQUEUE)
            .arg("-c")
            .arg(self.conf())
            .arg("-f")
            .output()
            .expect("run postqueue -f");
        assert!(o.status.success(), "postqueue -f: {}", output_text(&o));
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if !self.started {
            return;
        }
        let _ = self.postfix(&["stop"]);
        // `stop` is asynchronous: wait until `status` says it is down before the dir goes.
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if !self.postfix(&["status"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "Postfix in {} did not stop within 15 s",
            self.dir.path().display()
        );
    }
}

/// The binary Postfix runs as `nobody`: cargo's own when nobody can reach it (every parent
/// directory searchable by others, the file executable by others), else a 0755 copy in `dir`.
fn pipe_binary(dir: &Path) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_switchboard"));
    let others_x = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    };
    let reachable = others_x(&bin)
        && bin
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .all(others_x);
    if reachable && !bin.to_str().unwrap_or(" ").contains(char::is_whitespace) {
        return bin;
    }
    let copy = dir.join("bin/switchboard");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::set_permissions(
        copy.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::copy(&bin, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

// ------------------------------------------------------------------------------------------------
// SMTP sink
// ------------------------------------------------------------------------------------------------

/// tests/smtp/sink.py: accepts mail on 127.0.0.1 into a Maildir, logs one `TXN ...` line per
/// transaction. Drop kills it.
struct Sink {
    child: Child,
    port: u16,
    maildir: PathBuf,
    stderr: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Sink {
    /// Starts the sink on `port` (0 = any free one) with Maildir `dir/name`; `extra` = flags
    /// such as `--tempfail ADDR`. Blocks until it printed `READY <port>`.
    fn start(dir: &Path, name: &str, port: u16, extra: &[&str]) -> Sink {
        require(PYTHON);
        let maildir = dir.join(name);
        let stderr = dir.join(format!("{name}.stderr"));
        let mut child = Command::new(PYTHON)
            .arg(SINK_PY)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--maildir")
            .arg(&maildir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {PYTHON} {SINK_PY}: {e} ({INSTALL_HINT})"));
        let stdout = child.stdout.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (ready_tx, ready_rx) = mpsc::channel::<u16>();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(p) = line.strip_prefix("READY ") {
                    let _ = ready_tx.send(p.trim().parse().unwrap_or(0));
                } else {
                    lines.lock().unwrap().push(line);
                }
            }
        });
        let got = ready_rx.recv_timeout(Duration::from_secs(20));
        let mut sink = Sink {
            child,
            port: 0,
            maildir,
            stderr,
            log,
        };
        match got {
            Ok(p) if p != 0 => sink.port = p,
            _ => {
                let _ = sink.child.kill();
                let _ = sink.child.wait();
                panic!(
                    "the SMTP sink did not print READY ({INSTALL_HINT}); stderr:\n{}",
                    std::fs::read_to_string(&sink.stderr).unwrap_or_default()
                );
            }
        }
        sink
    }

    /// Every message in the Maildir (new/ and cur/), as received (CRLF, with X-Sink-* headers).
    fn messages(&self) -> Vec<Vec<u8>> {
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .filter_map(|d| std::fs::read_dir(self.maildir.join(d)).ok())
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn diagnostics(&self) -> String {
        format!(
            "sink log:\n{}\nsink stderr:\n{}",
            self.log().join("\n"),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Waits until the Maildir holds `n` messages; the panic shows the sink's log and what the
    /// gateway has in its outbox.
    async fn wait_messages(
        &self,
        n: usize,
        timeout: Duration,
        store: &Arc<dyn switchboard::store::Store>,
    ) -> Vec<Vec<u8>> {
        let got = eventually(timeout, || async {
            let m = self.messages();
            (m.len() >= n).then_some(m)
        })
        .await;
        match got {
            Some(m) => m,
            None => {
                let outs = store.recent_messages("out", 100).await.unwrap_or_default();
                panic!(
                    "the sink got {} messages, expected {n}\n{}\noutbound records: {outs:#?}",
                    self.messages().len(),
                    self.diagnostics()
                )
            }
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------------------------
// Reading what the sink received
// ------------------------------------------------------------------------------------------------

/// Header fields of a raw message, unfolded, in order (name, value trimmed).
fn raw_headers(raw: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let head = text.split("\n\n").next().unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

fn header_values<'a>(h: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    h.iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn one_header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
    let v = header_values(h, name);
    assert_eq!(v.len(), 1, "exactly one {name} header: {h:#?}");
    v[0]
}

/// The envelope recipient(s) the sink recorded for a message.
fn sink_rcpt(raw: &[u8]) -> String {
    one_header(&raw_headers(raw), "X-Sink-Rcpt-To").to_ascii_lowercase()
}

/// Checks one acknowledgement as received by the sink.
fn check_ack(raw: &[u8], customer: &str, customer_msgid: &str, out: &MessageRecord, case_no: &str) {
    use mail_parser::{MessageParser, MimeHeaders};
    let h = raw_headers(raw);
    let dump = String::from_utf8_lossy(raw);
    assert_eq!(
        one_header(&h, "X-Sink-Rcpt-To").to_ascii_lowercase(),
        format!("<{customer}>"),
        "{dump}"
    );
    assert_eq!(
        one_header(&h, "Message-ID"),
        format!("<sb-{}@gw.test>", out.id),
        "{dump}"
    );
    assert!(
        one_header(&h, "Auto-Submitted").eq_ignore_ascii_case("auto-replied"),
        "{dump}"
    );
    assert_eq!(
        one_header(&h, "In-Reply-To"),
        format!("<{customer_msgid}>"),
        "{dump}"
    );
    assert_eq!(
        one_header(&h, "References"),
        format!("<{customer_msgid}>"),
        "{dump}"
    );

    // Decoded views (the subject and parts may be encoded-words / base64 / QP).
    let msg = MessageParser::default()
        .parse(raw)
        .unwrap_or_else(|| panic!("the ack does not parse:\n{dump}"));
    let from = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert_eq!(from, OUR_FROM, "{dump}");
    let to = msg
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert_eq!(to, customer, "{dump}");
    let subject = msg.subject().unwrap_or_default();
    assert!(
        subject.contains(case_no),
        "subject {subject:?} names {case_no}\n{dump}"
    );
    let ct = msg.content_type().expect("a Content-Type");
    assert!(
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("alternative")),
        "multipart/alternative, got {}/{:?}\n{dump}",
        ct.ctype(),
        ct.subtype()
    );
    let part_text = |subtype: &str| -> Vec<String> {
        msg.parts
            .iter()
            .filter(|p| {
                p.content_type().is_some_and(|c| {
                    c.ctype().eq_ignore_ascii_case("text")
                        && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case(subtype))
                })
            })
            .filter_map(|p| p.text_contents().map(str::to_string))
            .collect()
    };
    let plain = part_text("plain");
    let html = part_text("html");
    assert_eq!(plain.len(), 1, "one text/plain part\n{dump}");
    assert_eq!(html.len(), 1, "one text/html part\n{dump}");
    assert!(
        plain[0].contains(case_no),
        "text/plain names {case_no}: {}",
        plain[0]
    );
    assert!(
        html[0].contains(case_no),
        "text/html names {case_no}: {}",
        html[0]
    );
}

// ------------------------------------------------------------------------------------------------
// App helpers
// ------------------------------------------------------------------------------------------------

/// SMTP pointed at the sink. max_attempts is generous on purpose: with 50/200 ms backoff, 5
/// attempts against a 451 are over in about half a second, too short to observe "queued with
/// attempts >= 2" and then restart the sink without --tempfail; 60 attempts last 6-12 s.
fn email_settings(s: &mut Settings, smtp_port: u16) {
    s.email.from = OUR_FROM.into();
    s.email.smtp.host = "127.0.0.1".into();
    s.email.smtp.port = smtp_port;
    s.email.smtp.tls = SmtpTls::None;
    s.email.smtp.enabled = true;
    s.email.smtp.rate_per_sec = 100.0;
    s.email.smtp.max_attempts = 60;
    s.email.smtp.backoff_base_ms = 50;
    s.email.smtp.backoff_max_ms = 200;
    s.email.smtp.timeout_secs = 5;
}

/// A plain customer mail from `from` (ack allowed), with a unique Message-ID.
fn customer_mail(from: &str, msgid: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{msgid}>\n\
         Date: Wed, 25 Nov 2026 09:00:00 +0000\n\
         From: Customer <{from}>\n\
         To: customer-service@gw.test\n\
         Subject: Broadband down since Monday\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=us-ascii\n\
         \n\
         My broadband is down since Monday and the router shows a red LOS light.\n\
         Please send someone to fix it.\n"
    )
    .into_bytes()
}

async fn post_email(app: &common::TestApp, raw: Vec<u8>, what: &str) {
    let (status, body) = app.email(raw).await;
    assert_eq!(status, 200, "POST /inbound/email {what}: {body}");
}

/// The outbound email to `to` once `pred` holds for it.
async fn wait_outbound(
    store: &Arc<dyn switchboard::store::Store>,
    to: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&MessageRecord) -> bool,
) -> MessageRecord {
    let found = eventually(timeout, || async {
        store
            .recent_messages("out", 100)
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.to_addr.eq_ignore_ascii_case(to) && pred(m))
    })
    .await;
    match found {
        Some(m) => m,
        None => {
            let now = store.recent_messages("out", 100).await.unwrap_or_default();
            panic!("outbound to {to}: expected {what}; outbound now: {now:#?}")
        }
    }
}

async fn create_database(url: &str) {
    use sqlx::Connection;
    let name = url.rsplit('/').next().unwrap();
    let mut conn = sqlx::PgConnection::connect(&pg_admin_url())
        .await
        .expect("PostgreSQL admin connection");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("recreate the database");
}

// ------------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_pipe_delivers_a_gbk_complaint_and_defers_while_the_database_is_down() {
    let url = fresh_pg_database().await;
    // Migrated before the first delivery; ingest-email opens (and migrates) it again.
    let store = switchboard::store::open(&url, 2, 8)
        .await
        .expect("open the test database");
    let toml = format!("[database]\nurl = \"{url}\"\n");
    let pf = tokio::task::block_in_place(|| Postfix::start(&toml));

    // 1. A GBK complaint through smtpd -> pipe -> ingest-email -> PostgreSQL.
    let qid1 = tokio::task::block_in_place(|| pf.deliver("gbk_complaint.eml", "alice@example.com"));
    let stored = eventually(Duration::from_secs(30), || async {
        if let Some(b) = pf.bounced(&qid1) {
            return Some(Err(b));
        }
        let ins = store.recent_messages("in", 10).await.ok()?;
        let m = ins.into_iter().find(|m| m.case_id.is_some())?;
        let case = store.case(m.case_id?).await.ok()??;
        (case.category == "complaint"
            && case.subject.as_deref().is_some_and(|s| s.contains("投诉")))
        .then_some(Ok((m, case)))
    })
    .await;
    let (m, case) = match stored {
        Some(Ok(found)) => found,
        Some(Err(bounce)) => panic!("Postfix bounced the complaint:\n{bounce}"),
        None => panic!(
            "no complaint case from the piped mail; maillog for {qid1}:\n{}\nqueue:\n{}",
            pf.log_for(&qid1).join("\n"),
            pf.queue()
        ),
    };
    assert_eq!((m.channel.as_str(), m.dialect.as_str()), ("email", "email"));
    assert_eq!(m.from_addr, "zhangsan@example.cn");
    assert_eq!(m.subject.as_deref(), Some("投诉：宽带三天无法上网"));
    assert!(m.body.contains("家里宽带已经断了三天"), "{}", m.body);
    assert_eq!(m.category.as_deref(), Some("complaint"));
    assert!(case.subject.unwrap().contains("投诉"));
    let sent1 = eventually(Duration::from_secs(10), || async {
        let lines = pf.log_for(&qid1).join("\n");
        (lines.contains("relay=switchboard") && lines.contains("status=sent")).then_some(())
    })
    .await;
    assert!(sent1.is_some(), "{}", pf.log_for(&qid1).join("\n"));

    // 2. The database goes away: ingest-email must exit 75 so Postfix keeps the mail.
    store.close().await;
    drop(store);
    drop_pg_database(&url).await;
    let qid2 = tokio::task::block_in_place(|| pf.deliver("gb18030_fault.eml", "lisi@example.cn"));
    let deferred = eventually(Duration::from_secs(30), || async {
        let lines = pf.log_for(&qid2);
        lines
            .iter()
            .any(|l| l.contains("status=deferred") || l.contains("status=bounced"))
            .then_some(lines)
    })
    .await
    .unwrap_or_else(|| panic!("no delivery attempt for {qid2} logged:\n{}", pf.maillog()))
    .join("\n");
    assert!(
        deferred.contains("status=deferred")
            && deferred.contains("dsn=4.")
            && !deferred.contains("status=bounced"),
        "the mail must be deferred (ingest-email exit 75), not bounced:\n{deferred}"
    );
    // qmgr moves the message to the deferred queue right after the pipe's answer.
    let waiting = |queue: &str| {
        let entry: Vec<&str> = queue
            .lines()
            .skip_while(|l| !l.starts_with(&qid2))
            .take_while(|l| !l.trim().is_empty())
            .collect();
        !entry.is_empty()
            && !entry[0].starts_with(&format!("{qid2}*"))
            && entry.iter().any(|l| l.trim_start().starts_with('('))
            && entry.iter().any(|l| l.contains("customer-service@gw.test"))
    };
    let queued = eventually(Duration::from_secs(10), || async {
        let q = tokio::task::block_in_place(|| pf.queue());
        waiting(&q).then_some(q)
    })
    .await;
    assert!(
        queued.is_some(),
        "{qid2} waits in the deferred queue with a reason:\n{}",
        pf.queue()
    );
    // No bounce anywhere: neither for this mail nor a notification to its sender.
    let log = pf.maillog();
    assert!(
        !log.contains("status=bounced") && !log.contains("non-delivery notification"),
        "Postfix bounced something:\n{log}"
    );

    // 3. The database is back (same name, empty): a flush delivers the deferred mail.
    create_database(&url).await;
    let store = switchboard::store::open(&url, 2, 8)
        .await
        .expect("reopen the recreated database");
    tokio::task::block_in_place(|| pf.flush());
    let second = eventually(Duration::from_secs(30), || async {
        if let Some(b) = pf.bounced(&qid2) {
            return Some(Err(b));
        }
        store
            .recent_messages("in", 10)
            .await
            .ok()?
            .into_iter()
            .find(|m| m.from_addr == "lisi@example.cn")
            .map(Ok)
    })
    .await;
    let second = match second {
        Some(Ok(m)) => m,
        Some(Err(bounce)) => panic!("Postfix bounced the deferred mail:\n{bounce}"),
        None => panic!(
            "the deferred mail was not stored after the flush; maillog for {qid2}:\n{}\nqueue:\n{}",
            pf.log_for(&qid2).join("\n"),
            pf.queue()
        ),
    };
    assert_eq!(second.channel, "email");
    assert_eq!(second.subject.as_deref(), Some("故障报修：光纤宽带断网"));
    assert!(
        second.body.contains('🔴'),
        "GB18030 4-byte sequence: {}",
        second.body
    );
    assert_eq!(second.category.as_deref(), Some("fault"));
    let sent = eventually(Duration::from_secs(10), || async {
        let lines = pf.log_for(&qid2).join("\n");
        lines.contains("status=sent").then_some(lines)
    })
    .await;
    assert!(sent.is_some(), "{}", pf.log_for(&qid2).join("\n"));
    assert_eq!(store.counts().await.unwrap().messages_in, 1);
    store.close().await;
    drop(pf);
    drop_pg_database(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_sink_receives_the_ack_with_threading_headers_and_both_parts() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = tokio::task::block_in_place(|| {
        Sink::start(
            tmp.path(),
            "first",
            0,
            &["--tempfail", TEMP, "--permfail", GONE],
        )
    });
    let port = sink.port;
    let app = spawn_app(move |s, _| email_settings(s, port)).await;
    let store = app.store();

    // A GBK complaint over HTTP: one ack, threaded onto the customer's Message-ID.
    post_email(&app, fixture("gbk_complaint.eml"), "gbk_complaint.eml").await;
    let mails = sink.wait_messages(1, Duration::from_secs(20), &store).await;
    assert_eq!(mails.len(), 1, "{}", sink.diagnostics());
    let ins = store.recent_messages("in", 10).await.unwrap();
    let m = ins
        .iter()
        .find(|m| m.from_addr == "zhangsan@example.cn")
        .unwrap_or_else(|| panic!("the complaint is stored: {ins:#?}"));
    assert_eq!((m.channel.as_str(), m.dialect.as_str()), ("email", "email"));
    assert_eq!(m.to_addr, "customer-service@gw.test");
    assert_eq!(m.subject.as_deref(), Some("投诉：宽带三天无法上网"));
    assert!(m.body.contains("我要投诉"), "{}", m.body);
    assert_eq!(m.category.as_deref(), Some("complaint"));
    let case_id = m.case_id.expect("a case");
    let case = store.case(case_id).await.unwrap().expect("the case");
    assert_eq!(case.category, "complaint");
    assert!(
        case.subject.as_deref().is_some_and(|s| s.contains("投诉")),
        "{case:?}"
    );
    let case_no = format!("SB{:08}", case_id.get());
    let out = wait_outbound(
        &store,
        "zhangsan@example.cn",
        Duration::from_secs(10),
        "status sent",
        |o| o.status == "sent",
    )
    .await;
    assert_eq!(out.channel, "email");
    assert_eq!(out.kind.map(|k| k.as_str()), Some("ack"));
    assert_eq!(out.case_id, Some(case_id));
    check_ack(
        &mails[0],
        "zhangsan@example.cn",
        "20261124210301.4711@example.cn",
        &out,
        &case_no,
    );

    // 550 on RCPT: failed at once, not retried.
    post_email(&app, customer_mail(GONE, "gone-1@example.com"), GONE).await;
    let gone = wait_outbound(
        &store,
        GONE,
        Duration::from_secs(10),
        "status failed",
        |o| o.status == "failed",
    )
    .await;
    assert!(
        gone.last_error
            .as_deref()
            .is_some_and(|e| e.contains("550")),
        "{gone:?}"
    );
    let rejected_550 = |log: &[String]| {
        log.iter()
            .filter(|l| l.contains(&format!("<{GONE}>:550")))
            .count()
    };
    assert_eq!(
        rejected_550(&sink.log()),
        1,
        "one RCPT answered 550, no retry\n{}",
        sink.diagnostics()
    );

    // 451 on RCPT: retried with backoff, still queued.
    post_email(&app, customer_mail(TEMP, "temp-1@example.com"), TEMP).await;
    let temp = wait_outbound(
        &store,
        TEMP,
        Duration::from_secs(10),
        "queued with attempts >= 2",
        |o| o.status == "queued" && o.attempts >= 2,
    )
    .await;
    assert!(
        temp.last_error
            .as_deref()
            .is_some_and(|e| e.contains("451")),
        "{temp:?}"
    );
    assert!(
        sink.log()
            .iter()
            .filter(|l| l.contains(&format!("<{TEMP}>:451")))
            .count()
            >= 2,
        "{}",
        sink.diagnostics()
    );
    assert!(
        !sink.messages().iter().any(|r| sink_rcpt(r).contains(TEMP)),
        "nothing delivered to {TEMP} while it is tempfailed"
    );

    // The sink comes back on the same port without --tempfail: the retry succeeds.
    drop(sink);
    let sink2 = tokio::task::block_in_place(|| Sink::start(tmp.path(), "second", port, &[]));
    assert_eq!(sink2.port, port);
    let mails2 = sink2
        .wait_messages(1, Duration::from_secs(20), &store)
        .await;
    let temp_sent = wait_outbound(&store, TEMP, Duration::from_secs(10), "status sent", |o| {
        o.status == "sent"
    })
    .await;
    assert!(temp_sent.attempts >= 2, "{temp_sent:?}");
    assert_eq!(mails2.len(), 1, "{}", sink2.diagnostics());
    let h = raw_headers(&mails2[0]);
    assert_eq!(sink_rcpt(&mails2[0]), format!("<{TEMP}>"));
    assert_eq!(
        one_header(&h, "Message-ID"),
        format!("<sb-{}@gw.test>", temp_sent.id)
    );
    assert_eq!(one_header(&h, "In-Reply-To"), "<temp-1@example.com>");
    // The failed one stays failed: nothing for gone@ reached either sink.
    assert!(!mails2.iter().any(|r| sink_rcpt(r).contains(GONE)));
    assert_eq!(
        store.message(gone.id).await.unwrap().unwrap().status,
        "failed"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_replies_dsns_and_list_mail_get_no_ack() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = tokio::task::block_in_place(|| Sink::start(tmp.path(), "sink", 0, &[]));
    let port = sink.port;
    let app = spawn_app(move |s, _| email_settings(s, port)).await;
    let store = app.store();

    // A normal mail first: its ack shows the path works and how long an ack takes.
    post_email(&app, fixture("gbk_complaint.eml"), "gbk_complaint.eml").await;
    sink.wait_messages(1, Duration::from_secs(20), &store).await;
    let first_ack = wait_outbound(
        &store,
        "zhangsan@example.cn",
        Duration::from_secs(10),
        "status sent",
        |o| o.status == "sent",
    )
    .await;

    // Machine mail: stored, never answered.
    let no_ack: [(&str, &str); 6] = [
        (
            "auto_submitted.eml",
            "自动回复：[SB00000042] 投诉：宽带三天无法上网",
        ),
        ("precedence_bulk.eml", "Black Friday: 50% off fibre routers"),
        ("list_message.eml", "[broadband-users] Outage in Tianhe?"),
        ("dsn_failed_5xx.eml", "Undelivered Mail Returned to Sender"),
        ("mailer_daemon.eml", "failure notice"),
        ("noreply_sender.eml", "Your order #10086 has shipped"),
    ];
    for (name, _) in no_ack {
        post_email(&app, fixture(name), name).await;
    }
    // The same DSN about our first ack (its Message-ID and recipient): marks it failed.
    let dsn = String::from_utf8(fixture("dsn_failed_5xx.eml"))
        .unwrap()
        .replace(
            "20261125021502.4AbCdE1234@mx.example.net",
            "20261125021502.ours@mx.example.net",
        )
        .replace(
            "out-7@switchboard.local",
            &format!("sb-{}@gw.test", first_ack.id),
        )
        .replace("nosuchuser@example.cn", "zhangsan@example.cn");
    post_email(&app, dsn.into_bytes(), "DSN about our ack").await;

    // A second normal mail after them all: once its ack is in, an ack for any of the machine
    // mails, queued earlier, would have been too.
    post_email(&app, fixture("gb18030_fault.eml"), "gb18030_fault.eml").await;
    let mails = sink.wait_messages(2, Duration::from_secs(20), &store).await;
    wait_outbound(
        &store,
        "lisi@example.cn",
        Duration::from_secs(10),
        "status sent",
        |o| o.status == "sent",
    )
    .await;

    let mut rcpts: Vec<String> = mails.iter().map(|r| sink_rcpt(r)).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        vec![
            "<lisi@example.cn>".to_string(),
            "<zhangsan@example.cn>".into()
        ],
        "only the two customers got mail\n{}",
        sink.diagnostics()
    );
    let outs = store.recent_messages("out", 100).await.unwrap();
    assert_eq!(outs.len(), 2, "{outs:#?}");
    let c = store.counts().await.unwrap();
    assert_eq!(c.messages_out, 2, "{c:?}");
    assert_eq!(c.messages_in, 2 + 6 + 1, "{c:?}");

    let ins = store.recent_messages("in", 100).await.unwrap();
    for (name, subject) in no_ack {
        assert!(
            ins.iter()
                .any(|m| m.channel == "email" && m.subject.as_deref() == Some(subject)),
            "{name} is stored with subject {subject:?}: {:#?}",
            ins.iter().map(|m| &m.subject).collect::<Vec<_>>()
        );
    }

    // The DSN naming <sb-ID@gw.test> marked that ack failed; the other ack is untouched.
    let bounced = eventually(Duration::from_secs(5), || async {
        let m = store.message(first_ack.id).await.unwrap()?;
        (m.status == "failed").then_some(m)
    })
    .await;
    assert!(
        bounced.is_some(),
        "the DSN marks our ack failed: {:?}",
        store.message(first_ack.id).await.unwrap()
    );
    app.shutdown().await;
}

/// A throw-away CA and a certificate for 127.0.0.1 signed by it (Debian `openssl`):
/// (ca.pem, cert.pem, key.pem) under `dir`.
fn make_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    const OPENSSL: &str = "/usr/bin/openssl";
    assert!(
        Path::new(OPENSSL).exists(),
        "{OPENSSL} is missing: apt-get install openssl (tests/run.sh does it)"
    );
    let p = |n: &str| dir.join(n);
    std::fs::write(
        p("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(OPENSSL)
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "openssl {args:?}: {}", output_text(&o));
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=switchboard test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}

/// `email.smtp.tls = starttls` and `tls` (implicit, SMTPS) against the sink speaking each, its
/// certificate trusted through `email.smtp.ca_file`: the ack arrives over TLS. Then the relay
/// is not trusted (no ca_file), and one that offers no STARTTLS while it is required: nothing
/// goes out in clear, the message stays queued and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_starttls_and_implicit_tls_deliver_encrypted_and_never_fall_back_to_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_pki(tmp.path());
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    for (mode, tls) in [("starttls", SmtpTls::Starttls), ("implicit", SmtpTls::Tls)] {
        let sink = tokio::task::block_in_place(|| {
            Sink::start(
                tmp.path(),
                mode,
                0,
                &["--tls", mode, "--tls-cert", cert, "--tls-key", key],
            )
        });
        let (port, ca) = (sink.port, ca.clone());
        let app = spawn_app(move |s, _| {
            email_settings(s, port);
            s.email.smtp.tls = tls;
            s.email.smtp.ca_file = Some(ca);
        })
        .await;
        let store = app.store();
        let customer = format!("{mode}@example.com");
        post_email(
            &app,
            customer_mail(&customer, &format!("{mode}-1@example.com")),
            mode,
        )
        .await;
        let mails = sink.wait_messages(1, Duration::from_secs(20), &store).await;
        let h = raw_headers(&mails[0]);
        assert!(
            one_header(&h, "X-Sink-TLS").starts_with("TLSv1."),
            "{mode}: the ack came over TLS\n{}",
            sink.diagnostics()
        );
        assert_eq!(sink_rcpt(&mails[0]), format!("<{customer}>"));
        assert_eq!(
            one_header(&h, "In-Reply-To"),
            format!("<{mode}-1@example.com>")
        );
        let out = wait_outbound(&store, &customer, Duration::from_secs(10), "sent", |o| {
            o.status == "sent"
        })
        .await;
        assert_eq!(out.attempts, 1, "{out:?}");
        app.shutdown().await;
    }

    // Implicit TLS to a relay whose CA we were not told about: refused, retried, never sent.
    let untrusted = ["--tls", "implicit", "--tls-cert", cert, "--tls-key", key];
    never_sent_in_clear(
        tmp.path(),
        "untrusted",
        &untrusted,
        SmtpTls::Tls,
        None,
        "certificate",
    )
    .await;
    // STARTTLS required, the relay does not offer it: no mail in clear.
    never_sent_in_clear(
        tmp.path(),
        "plain",
        &[],
        SmtpTls::Starttls,
        Some(ca),
        "starttls",
    )
    .await;
}

/// A sink started with `sink_args`, the gateway sending with `tls` (and `ca_file`): the ack
/// to `{name}@example.com` stays queued, retried, with `why` in its error; the sink gets nothing.
async fn never_sent_in_clear(
    dir: &Path,
    name: &str,
    sink_args: &[&str],
    tls: SmtpTls,
    ca_file: Option<PathBuf>,
    why: &str,
) {
    let sink = tokio::task::block_in_place(|| Sink::start(dir, name, 0, sink_args));
    let port = sink.port;
    let app = spawn_app(move |s, _| {
        email_settings(s, port);
        s.email.smtp.tls = tls;
        s.email.smtp.ca_file = ca_file;
    })
    .await;
    let store = app.store();
    let customer = format!("{name}@example.com");
    post_email(
        &app,
        customer_mail(&customer, &format!("{name}-1@example.com")),
        name,
    )
    .await;
    let out = wait_outbound(
        &store,
        &customer,
        Duration::from_secs(10),
        "queued with attempts >= 2",
        |o| o.status == "queued" && o.attempts >= 2,
    )
    .await;
    let err = out.last_error.clone().unwrap_or_default().to_lowercase();
    assert!(err.contains(why), "{name}: {out:?}");
    assert!(sink.messages().is_empty(), "{}", sink.diagnostics());
    app.shutdown().await;
}

/// An agent answers an email case over the API: the real SMTP sink receives a person's reply
/// (no Auto-Submitted), sent where the ack went (the return path), threaded onto both customer
/// mails (In-Reply-To the latest, References both), subject `Re: [SB…] …`, the agent's text in
/// both parts, on the case as kind `reply`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reply_on_an_email_case_is_threaded_and_not_auto_submitted() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = tokio::task::block_in_place(|| Sink::start(tmp.path(), "sink", 0, &[]));
    let port = sink.port;
    let app = spawn_app(move |s, _| email_settings(s, port)).await;
    let store = app.store();
    let customer = "wang@example.com";
    post_email(&app, customer_mail(customer, "first@example.com"), "first").await;
    sink.wait_messages(1, Duration::from_secs(20), &store).await;
    let case_id = store.recent_messages("in", 1).await.unwrap()[0]
        .case_id
        .expect("a case");
    let case_no = format!("SB{:08}", case_id.get());
    // The customer answers our ack: same case, second Message-ID in the thread, and an
    // envelope sender that differs from From, so our answers go to that return path.
    let return_path = "wang+bounces@example.com";
    let follow_up = format!(
        "Return-Path: <{return_path}>\n{}",
        String::from_utf8(customer_mail(customer, "second@example.com")).unwrap()
    )
    .replace(
        "Subject: Broadband down since Monday",
        &format!("Subject: Re: [{case_no}] Broadband down\nIn-Reply-To: <first@example.com>"),
    );
    post_email(&app, follow_up.into_bytes(), "follow-up").await;
    eventually(Duration::from_secs(10), || async {
        (store.case(case_id).await.unwrap()?.message_count >= 2).then_some(())
    })
    .await
    .expect("the follow-up joins the case");

    let agent = app.token("agent").await;
    let text = "Hello, an engineer will visit tomorrow between 9 and 12.";
    let r = app
        .client
        .post(format!(
            "{}/api/v1/cases/{}/replies",
            app.base,
            case_id.get()
        ))
        .bearer_auth(&agent)
        .json(&serde_json::json!({ "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let body: serde_json::Value = r.json().await.unwrap();
    let reply_id = body["message_id"].as_i64().unwrap();
    assert_eq!(body["channel"], "email");

    let reply = eventually(Duration::from_secs(20), || async {
        sink.messages().into_iter().find(|m| {
            raw_headers(m).iter().any(|(n, v)| {
                n.eq_ignore_ascii_case("Message-ID") && v.contains(&format!("sb-{reply_id}@"))
            })
        })
    })
    .await
    .unwrap_or_else(|| panic!("the reply reaches the sink\n{}", sink.diagnostics()));
    let h = raw_headers(&reply);
    assert_eq!(sink_rcpt(&reply), format!("<{return_path}>"));
    assert_eq!(one_header(&h, "In-Reply-To"), "<second@example.com>");
    assert_eq!(
        one_header(&h, "References"),
        "<first@example.com> <second@example.com>"
    );
    let subject = one_header(&h, "Subject");
    assert!(
        subject.starts_with(&format!("Re: [{case_no}]")),
        "{subject}"
    );
    assert!(
        header_values(&h, "Auto-Submitted").is_empty(),
        "a person's reply is not auto-submitted"
    );
    let parsed = mail_parser::MessageParser::default().parse(&reply).unwrap();
    assert!(parsed.body_text(0).unwrap().contains(text));
    assert!(parsed.body_html(0).unwrap().contains(text));
    let rec = wait_outbound(
        &store,
        return_path,
        Duration::from_secs(10),
        "reply sent",
        |o| o.id.get() == reply_id && o.status == "sent",
    )
    .await;
    assert_eq!(
        (rec.kind.map(|k| k.as_str()), rec.case_id),
        (Some("reply"), Some(case_id))
    );
    app.shutdown().await;
}

/// The SMTP pool reuses its connections: 24 acks reach the sink over at most
/// `email.smtp.concurrency` (4) TCP connections, each mail its own transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_share_a_few_pooled_smtp_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = tokio::task::block_in_place(|| Sink::start(tmp.path(), "pool", 0, &[]));
    let port = sink.port;
    let app = spawn_app(move |s, _| {
        email_settings(s, port);
        s.email.smtp.concurrency = 4;
    })
    .await;
    let store = app.store();
    for i in 0..24 {
        let from = format!("pool{i}@example.com");
        post_email(
            &app,
            customer_mail(&from, &format!("pool-{i}@example.com")),
            &from,
        )
        .await;
    }
    let mails = sink
        .wait_messages(24, Duration::from_secs(30), &store)
        .await;
    assert_eq!(mails.len(), 24);
    let peers: std::collections::HashSet<String> = sink
        .log()
        .iter()
        .filter(|l| l.contains("result=delivered"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("peer=")))
        .map(str::to_string)
        .collect();
    assert!(
        !peers.is_empty() && peers.len() <= 4,
        "24 mails over {} connections: {peers:?}\n{}",
        peers.len(),
        sink.diagnostics()
    );
    app.shutdown().await;
}

/// The real binary with a policy in seconds: a complaint's deadline notices reach a real SMTP
/// server (tier 1 by email) and the SMS bridge (tier 2 by SMS) each at its step, never before
/// its due instant and within 2.5 s after it (the scheduler fires within a second; the rest is
/// the send), one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sla_notices_from_the_real_binary_reach_a_real_smtp_server_and_the_bridge_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(dir.path(), "sla-maildir", 0, &[]);
    let bridge = common::StubBridge::start(202, "0: Accepted for delivery").await;
    let port = free_port();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[database]
url = "sqlite://{db}/sla.db"
[email]
from = "{OUR_FROM}"
[email.smtp]
enabled = true
host = "127.0.0.1"
port = {smtp}
tls = "none"
backoff_base_ms = 50
backoff_max_ms = 200
[sms.outbound]
url = "{bridge}/cgi-bin/sendsms"
backoff_base_ms = 50
backoff_max_ms = 200
[sla]
contacts = [{{ tier = 1, email = ["window@ops.test"] }}, {{ tier = 2, sms = ["+8613900000002"] }}]
[sla.complaint]
answer_within = "4s"
resolve_within = "8s"
warn_before = "2s"
escalate = [{{ tier = 2, after = "6s" }}]
"#,
            db = dir.path().display(),
            smtp = sink.port,
            bridge = bridge.url,
        ),
    )
    .unwrap();
    let mut gw = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("SWITCHBOARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn switchboard");
    let base = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::new();
    wait_ready(port).await;

    let t0 = Instant::now();
    let r = c
        .get(format!(
            "{base}/inbound/sms/kannel?id=sla-1&from=%2B8613800138000&to=10000&text={}",
            common::enc("我要投诉，宽带三天没修好")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Email notices: watch the Maildir and note when each arrives.
    let mut email_at: Vec<Duration> = Vec::new();
    let deadline = t0 + Duration::from_secs(14);
    while Instant::now() < deadline {
        let n = sink.messages().len();
        while email_at.len() < n {
            email_at.push(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sms: Vec<Duration> = bridge
        .requests()
        .iter()
        .filter(|r| r.param("to").as_deref() == Some("8613900000002"))
        .map(|r| r.at - t0)
        .collect();
    let _ = Command::new("kill").arg(gw.id().to_string()).status();
    let _ = gw.wait();

    let within = |got: Duration, due_s: u64| {
        let due = Duration::from_secs(due_s);
        got >= due && got <= due + Duration::from_millis(2500)
    };
    // Tier 1: the answer warning (due at 2 s), by email.
    assert_eq!(
        email_at.len(),
        1,
        "emails at {email_at:?}\n{}",
        sink.diagnostics()
    );
    assert!(
        within(email_at[0], 2),
        "answer warning at {:?}",
        email_at[0]
    );
    let mail = &sink.messages()[0];
    let h = raw_headers(mail);
    assert_eq!(sink_rcpt(mail), "<window@ops.test>");
    assert_eq!(one_header(&h, "Auto-Submitted"), "auto-generated");
    // Tier 2 by SMS: the missed answer (4 s, one tier up), the resolve warning (6 s) and
    // breach (8 s); the ladder's tier 2 at 6 s finds the case there and says nothing.
    assert_eq!(sms.len(), 3, "tier 2 SMS at {sms:?}");
    for (got, due) in sms.iter().zip([4, 6, 8]) {
        assert!(within(*got, due), "SMS due at {due} s came at {got:?}");
    }
    // The customer's own ack went to the customer.
    assert!(
        bridge
            .requests()
            .iter()
            .any(|r| r.param("to").as_deref() == Some("8613800138000"))
    );
}

/// An email marketing campaign through a real SMTP server: every mail carries
/// `List-Unsubscribe` with a signed one-click URL and `List-Unsubscribe-Post`; posting it
/// (as a mail client does) opts the address out at once, so the next campaign skips it; a
/// forged link is refused.
#[tokio::test(flavor = "multi_thread")]
async fn an_email_campaign_carries_a_working_one_click_unsubscribe() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = tokio::task::block_in_place(|| Sink::start(tmp.path(), "campaign", 0, &[]));
    let port = sink.port;
    let app = spawn_app(move |s, _| {
        email_settings(s, port);
        s.campaigns.dispatcher = true;
    })
    .await;
    let store = app.store();
    let token = app.token("marketing").await;
    let campaign = |name: &str| {
        serde_json::json!({
            "name": name, "kind": "marketing", "channel": "email", "rate_per_sec": 50.0,
            "subject": "【某某通信】宽带升级优惠",
            "template": "【某某通信】{{ name }}您好，千兆宽带本月八折。回复TD退订",
        })
    };
    let csv = "email,name,consent\nli@example.cn,李雷,2026-11-01 web\nhan@example.cn,韩梅梅,2026-11-02 营业厅\n";
    let (st, v) = app
        .api("POST", "/api/v1/campaigns", &token, Some(campaign("一")))
        .await;
    assert_eq!(st, 201, "{v}");
    let id = v["campaign"]["id"].as_i64().unwrap();
    let (st, v) = app
        .post_with(
            &format!("/api/v1/campaigns/{id}/recipients"),
            &token,
            "text/csv",
            csv,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        app.api(
            "POST",
            &format!("/api/v1/campaigns/{id}/start"),
            &token,
            None
        )
        .await
        .0,
        200
    );
    let mails = sink.wait_messages(2, Duration::from_secs(30), &store).await;
    let li = mails
        .iter()
        .find(|m| sink_rcpt(m).contains("li@example.cn"))
        .expect("a mail to li");
    let h = raw_headers(li);
    assert_eq!(
        one_header(&h, "List-Unsubscribe-Post"),
        "List-Unsubscribe=One-Click"
    );
    let link = one_header(&h, "List-Unsubscribe")
        .trim_matches(|c| c == '<' || c == '>')
        .to_string();
    let path = &link[link.find("/unsubscribe/").expect("our route")..];
    // A forged token (another address) is refused; a GET only shows the button.
    let forged = format!("{}x", path);
    assert_eq!(
        app.post(
            &forged,
            "application/x-www-form-urlencoded",
            "List-Unsubscribe=One-Click"
        )
        .await
        .0,
        404
    );
    let (st, page) = app.get(path).await;
    assert_eq!(st, 200);
    assert!(page.contains("method=post"), "{page}");
    let (st, body) = app
        .post(
            path,
            "application/x-www-form-urlencoded",
            "List-Unsubscribe=One-Click",
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("退订"), "{body}");
    // The next campaign skips li.
    let (_, v) = app
        .api("POST", "/api/v1/campaigns", &token, Some(campaign("二")))
        .await;
    let id2 = v["campaign"]["id"].as_i64().unwrap();
    app.post_with(
        &format!("/api/v1/campaigns/{id2}/recipients"),
        &token,
        "text/csv",
        csv,
    )
    .await;
    let (_, v) = app
        .api(
            "POST",
            &format!("/api/v1/campaigns/{id2}/preview"),
            &token,
            None,
        )
        .await;
    assert_eq!(v["preview"]["suppressed"]["opted_out"], 1, "{v}");
    app.shutdown().await;
}
