//! Test harness: a real Kannel 1.4.5 (bearerbox + smsbox) plus the fake SMSC
//! client `/usr/lib/kannel/test/fakesmsc`, all on 127.0.0.1, for integration
//! tests of switchboard's Kannel adapter. Debian: `apt-get install kannel kannel-extras`.
//! If a binary is missing, [`Kannel::start`] fails with an error naming it (never skips).
//!
//! Facts established by running Kannel 1.4.5 (Debian 1.4.5-12) on loopback
//! (raw captures in `tests/kannel/FINDINGS.md`):
//!
//! 1. MO via `get-url` (`%I %p %P %T %c %C %b %i %u`), request is `GET ... HTTP/1.1`,
//!    headers only `Connection: keep-alive`, `User-Agent: Kannel/1.4.5`, `Host`.
//!    * `%I` = lowercase hyphenated UUID (`c7fd4a0f-d420-4239-aa6d-2716e3a67679`),
//!      `%T` = Unix epoch seconds (`1795645874`), `%i` = smsc-id (`fake`), `%u` = empty
//!      unless the MO had a UDH.
//!    * `%b` = raw message bytes, form-urlencoded: `A-Za-z0-9` and `-_.!~*'()` literal,
//!      space -> `+`, every other byte -> `%XX` (uppercase hex).
//!    * English text MO: `coding=0&charset=UTF-8&text=Hello+world+%26+more%2Bstuff+100%25+ok%3F`.
//!    * UCS-2 MO (你好 A 😀), `mo-recode = false`: `coding=2&charset=UTF-16BE&text=O%60Y%7D%00+%00A%00+%D8%3D%DE%00`
//!      i.e. the raw UTF-16BE bytes, form-urlencoded byte by byte (0x4F -> `O`, 0x20 -> `+`).
//!      Decode: percent/plus-decode to BYTES first, then UTF-16BE.
//!    * Same MO with `mo-recode = true` (an smsbox-group key; in core it is a fatal config
//!      error): converted to UTF-8: `coding=0&charset=UTF-8&text=%E4%BD%A0%E5%A5%BD+A+%F0%9F%98%80`.
//!    * 8-bit (`data`) MO: `coding=1&charset=8-BIT`. Concatenated (UDH) MO parts are
//!      re-assembled by bearerbox: one webhook call, `udh=` empty, `ts` of first part.
//!    * Webhook status/body are ignored (`max-messages = 0`); no retry on 500 with
//!      `http-request-retry = 0`; webhook unreachable -> MO is dropped (smsbox logs
//!      `Couldn't fetch`), never retried, no error SMS. Webhook latency after injection: ~1-3 ms.
//! 2. `post-url`: `POST` with body = raw message bytes; `Content-Type: text/plain; charset="UTF-8"`
//!    (coding 0), `text/plain; charset="UTF-16BE"` (coding 2), `application/octet-stream`
//!    (coding 1); headers `X-Kannel-To`, `X-Kannel-Time: 2026-11-25 22:32:58` (local time,
//!    no zone), `X-Kannel-SMSC`, `X-Kannel-Coding`, `X-Kannel-Service: default`.
//!    `X-Kannel-From` is ONLY sent with `send-sender = true` in the sms-service. No message id.
//! 3. MT via `GET /cgi-bin/sendsms?username&password&from&to&text[&coding&charset]`:
//!    `202 Accepted`, `Content-type: text/html`, body `0: Accepted for delivery`
//!    (bad credentials: `403` `Authorization failed for sendsms`; no `to`: `400`
//!    `Missing receiver number, rejected`). fakesmsc logs each MT on STDERR (stdout stays
//!    empty) as `YYYY-MM-DD HH:MM:SS [pid] [0] DEBUG: Got message N: <FROM TO TYPE DATA>`:
//!    * 7-bit: `<10000 8613800138000 text Hello there, it's 50% & more>` (raw UTF-8, not
//!      encoded; non-GSM chars become `?`, e.g. UTF-8 你好 without coding=2 -> `??`).
//!      A `\n` in the text splits it into several `Got message` lines (merged back here).
//!    * `coding=2&charset=UTF-16BE` (or `coding=2&charset=UTF-8`, Kannel converts):
//!      `<10000 8613800138000 ucs-2 O%60Y%7D%00+%00A%00+%D8%3D%DE%00>` (same encoding as `%b`).
//!    * `coding=1`: `... data <urlencoded>`. Long (concatenated) MTs: one line per part,
//!      `... udh %05%00%03%07%02%01 data <urlencoded bytes>`, the coding is NOT shown.
//!    * `dlr-mask=31`: the fake SMSC fires two DLRs right after the MT is written:
//!      `GET /dlr/kannel?msg=42&type=8` (SMSC ack, `%A`=`ACK/`) then `...&type=1` (delivered).
//!      In a DLR `%p` is the handset (MT receiver) and `%P` the MT sender.
//!    * MT appears in fakesmsc output 0-1 s after sendsms returns (interactive fakesmsc
//!      only reads the socket when its 1 s stdin select() times out).
//! 4. fakesmsc with no message arguments = interactive mode: one line per MO on stdin,
//!    same syntax as its CLI (`FROM TO text|data|ucs2|udh UDH DATA...`), stays connected
//!    and logs MTs until stdin EOF / SIGTERM. Quirks handled here: stdin read via
//!    `fgets` (256 byte buffer, so a line is at most 254 bytes + `\n`) after `select()`,
//!    so two lines arriving together get the second one stuck in stdio's buffer: write
//!    one line, then wait for `DEBUG: fakesmsc: sent message N` before the next. `-i 0`
//!    disables its send throttle. `-m 1` does NOT exit after sending. The fake SMSC
//!    serves ONE client at a time (a second fakesmsc connects but is not read until the
//!    first disconnects). No `utf8` MO type in 1.4.5 (rejected as invalid syntax).
//!    Startup: bearerbox admin/smsbox/smsc ports listen after ~0.1 s; smsbox's sendsms
//!    port after ~0.05 s but bearerbox lists the box in `/status.txt` only after ~1 s;
//!    fakesmsc shows `FAKE:port (online` after ~0.05 s. SIGTERM: all exit in < 0.2 s
//!    (bearerbox up to ~1.5 s).
//! 5. Config (`tests/kannel/kannel.conf.tmpl`): everything bound to 127.0.0.1
//!    (`admin-interface`, `smsbox-interface`, `sendsms-interface`, smsc `our-host`),
//!    `log-level = 1` into the tempdir, no store-file, `dlr-storage = internal`,
//!    `sms-resend-freq = 1`, `http-request-retry = 0`, `http-timeout = 10`.
//!
//! Usage: one `Kannel` per test, created and dropped in the test; `Drop` stops all
//! processes (SIGTERM, then SIGKILL after 5 s). Set `KANNEL_KEEP_LOGS=1` to keep the
//! temp dir (config + logs) after the test; [`Kannel::logs`] returns their tails.
//! Everything here is blocking (startup ~1.2 s; `inject_*` waits for fakesmsc's ack;
//! `wait_for_mts` polls with `thread::sleep`). In async tests where the gateway runs in
//! the same runtime use `#[tokio::test(flavor = "multi_thread")]` or `spawn_blocking`
//! (`Kannel` is `Send + Sync`, share it via `Arc`), or a current-thread runtime deadlocks.

// A harness API: not every method or field is used by today's tests.
#![allow(dead_code)]

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{decode_utf16be, free_ports, is_executable, port_open, stop};

/// Where Debian's kannel-extras installs the fake SMSC client.
pub const FAKESMSC: &str = "/usr/lib/kannel/test/fakesmsc";

const TEMPLATE: &str = include_str!("../../kannel/kannel.conf.tmpl");
const INSTALL_HINT: &str = "run `apt-get install kannel kannel-extras` (Debian/Ubuntu)";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
const INJECT_ACK_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);
/// fakesmsc reads stdin with `fgets(buf, 256)`: at most 254 bytes plus `\n`.
pub const MAX_INJECT_LINE: usize = 254;

/// One MT as logged by fakesmsc (`Got message N: <FROM TO TYPE DATA>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMt {
    pub from: String,
    pub to: String,
    /// `text` (7-bit, printed raw), `data` (8-bit), `ucs-2`, or `udh` (one part of a
    /// concatenated message; its coding is not shown by fakesmsc).
    pub kind: String,
    /// The UDH bytes for `kind == "udh"`.
    pub udh: Option<Vec<u8>>,
    /// Message payload bytes (decoded from the url-encoding for data/ucs-2/udh).
    pub bytes: Vec<u8>,
    /// Decoded text: `ucs-2` decoded from UTF-16BE; `text` as printed; `data`/`udh`
    /// as UTF-8 (lossy). For multi-part UCS-2 use [`join_parts`].
    pub text: String,
    /// The content between `<` and `>` (continuation lines joined with `\n`).
    pub raw: String,
}

impl ReceivedMt {
    /// `(reference, total, seq)` from a concatenation UDH (IE 0x00 or 0x08).
    pub fn concat_info(&self) -> Option<(u16, u8, u8)> {
        let udh = self.udh.as_ref()?;
        let mut i = 1; // udh[0] = UDHL
        while i + 1 < udh.len() {
            let (iei, len) = (udh[i], udh[i + 1] as usize);
            let d = udh.get(i + 2..i + 2 + len)?;
            match (iei, len) {
                (0x00, 3) => return Some((d[0] as u16, d[1], d[2])),
                (0x08, 4) => return Some((u16::from_be_bytes([d[0], d[1]]), d[2], d[3])),
                _ => {}
            }
            i += 2 + len;
        }
        None
    }
}

/// Join the parts of one concatenated MT (any order) into text, decoding the
/// joined bytes as UTF-16BE if `ucs2`, else as UTF-8 (lossy).
pub fn join_parts(parts: &[ReceivedMt], ucs2: bool) -> String {
    let mut v: Vec<&ReceivedMt> = parts.iter().collect();
    v.sort_by_key(|m| m.concat_info().map(|c| c.2).unwrap_or(0));
    let bytes: Vec<u8> = v.iter().flat_map(|m| m.bytes.iter().copied()).collect();
    if ucs2 {
        decode_utf16be(&bytes)
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

pub struct Kannel {
    dir: Option<tempfile::TempDir>,
    admin_port: u16,
    smsbox_port: u16,
    smsc_port: u16,
    sendsms_port: u16,
    username: String,
    password: String,
    bearerbox: Option<Child>,
    smsbox: Option<Child>,
    fakesmsc: Option<Child>,
    /// fakesmsc stdin + number of lines injected so far (the lock serialises injections).
    injector: Mutex<(Option<ChildStdin>, usize)>,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Kannel {
    /// Start bearerbox, smsbox and an interactive fakesmsc on free loopback ports.
    /// `gateway_get_url` becomes the sms-service `get-url` (Kannel escapes like `%b`
    /// are passed through); `mo_recode` sets smsbox `mo-recode`.
    pub fn start(gateway_get_url: &str, mo_recode: bool) -> io::Result<Kannel> {
        let bins = Bins::find()?;
        if gateway_get_url.contains('"') || gateway_get_url.contains('\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "gateway URL must not contain '\"' or newline",
            ));
        }
        // Free ports are picked by bind+drop, so another process may grab one before
        // Kannel binds it: retry the whole startup a few times.
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(&bins, gateway_get_url, mo_recode) {
                Ok(k) => return Ok(k),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap())
    }

    fn try_start(bins: &Bins, url: &str, mo_recode: bool) -> io::Result<Kannel> {
        let dir = tempfile::Builder::new()
            .prefix("switchboard-kannel-")
            .tempdir()?;
        let ports = free_ports(4)?;
        let password = format!("sbpw{}x{}", std::process::id(), ports[0]);
        let mut k = Kannel {
            dir: Some(dir),
            admin_port: ports[0],
            smsbox_port: ports[1],
            smsc_port: ports[2],
            sendsms_port: ports[3],
            username: "switchboard".to_string(),
            password,
            bearerbox: None,
            smsbox: None,
            fakesmsc: None,
            injector: Mutex::new((None, 0)),
            lines: Arc::new(Mutex::new(Vec::new())),
            readers: Vec::new(),
        };
        // On any error below, dropping `k` stops whatever was already started.
        let conf = k.dir().join("kannel.conf");
        std::fs::write(&conf, k.render_config(url, mo_recode))?;

        k.bearerbox = Some(k.spawn_box(&bins.bearerbox, "bearerbox", &conf)?);
        let smsbox_port = k.smsbox_port;
        k.wait_ready("bearerbox", |k| {
            Ok(k.status()?.is_some() && port_open(smsbox_port) && port_open(k.smsc_port))
        })?;

        k.smsbox = Some(k.spawn_box(&bins.smsbox, "smsbox", &conf)?);
        k.wait_ready("smsbox", |k| {
            Ok(port_open(k.sendsms_port) && k.status()?.is_some_and(|s| s.contains("smsbox:")))
        })?;

        let mut child = Command::new(&bins.fakesmsc)
            .args(["-H", "127.0.0.1", "-r", &k.smsc_port.to_string(), "-i", "0"])
            .current_dir(k.dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spawn_error(&bins.fakesmsc, e))?;
        let stdin = child.stdin.take();
        for out in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = Arc::clone(&k.lines);
            k.readers.push(thread::spawn(move || {
                let mut r = BufReader::new(out);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match r.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            while buf.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
                                buf.pop();
                            }
                            lines
                                .lock()
                                .unwrap()
                                .push(String::from_utf8_lossy(&buf).into_owned());
                        }
                    }
                }
            }));
        }
        k.fakesmsc = Some(child);
        k.injector.lock().unwrap().0 = stdin;
        let online = format!("FAKE:{} (online", k.smsc_port);
        k.wait_ready("fakesmsc", |k| {
            Ok(k.status()?.is_some_and(|s| s.contains(&online)))
        })?;
        Ok(k)
    }

    /// `http://127.0.0.1:PORT/cgi-bin/sendsms`
    pub fn sendsms_url(&self) -> String {
        format!("http://127.0.0.1:{}/cgi-bin/sendsms", self.sendsms_port)
    }
    pub fn username(&self) -> &str {
        &self.username
    }
    pub fn password(&self) -> &str {
        &self.password
    }
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }
    pub fn sendsms_port(&self) -> u16 {
        self.sendsms_port
    }
    /// Temp dir holding `kannel.conf` and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("tempdir").path()
    }

    /// Inject a 7-bit text MO (arrives as coding=0, charset=UTF-8). Must not
    /// contain newlines; line limit [`MAX_INJECT_LINE`] bytes. Panics on failure.
    pub fn inject_text(&self, from: &str, to: &str, text: &str) {
        self.inject_line(&format!("{from} {to} text {text}"));
    }

    /// Inject a UCS-2 MO: `text` is sent as UTF-16BE, url-encoded for fakesmsc
    /// (type `ucs2`). Arrives as coding=2/UTF-16BE, or coding=0/UTF-8 with mo-recode.
    pub fn inject_ucs2(&self, from: &str, to: &str, text: &str) {
        let bytes: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
        self.inject_line(&format!("{from} {to} ucs2 {}", encode_for_fakesmsc(&bytes)));
    }

    /// Inject an 8-bit MO (type `data`, arrives as coding=1, charset=8-BIT).
    pub fn inject_data(&self, from: &str, to: &str, data: &[u8]) {
        self.inject_line(&format!("{from} {to} data {}", encode_for_fakesmsc(data)));
    }

    /// Send one raw fakesmsc line (`FROM TO TYPE ...`, e.g. `udh %05%00%03%01%02%01 part+one`)
    /// and wait until fakesmsc reports it sent. Panics on failure.
    pub fn inject_line(&self, line: &str) {
        assert!(
            !line.contains(['\n', '\r']),
            "fakesmsc line must not contain newlines: {line:?}"
        );
        assert!(
            line.len() <= MAX_INJECT_LINE,
            "fakesmsc stdin lines are limited to {MAX_INJECT_LINE} bytes, got {}: {line:?}",
            line.len()
        );
        let mut inj = self.injector.lock().unwrap();
        let stdin = inj.0.as_mut().expect("fakesmsc stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("writing to fakesmsc failed: {e}\n{}", self.logs()));
        inj.1 += 1;
        let ack = format!("fakesmsc: sent message {}", inj.1);
        let deadline = Instant::now() + INJECT_ACK_TIMEOUT;
        while !self.lines.lock().unwrap().iter().any(|l| l.ends_with(&ack)) {
            if Instant::now() > deadline {
                panic!(
                    "fakesmsc did not acknowledge MO line {line:?}\n{}",
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// All raw lines fakesmsc printed so far (its log goes to stderr).
    pub fn fakesmsc_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// All MTs fakesmsc received so far, in order.
    pub fn received_mts(&self) -> Vec<ReceivedMt> {
        parse_mts(&self.fakesmsc_lines())
    }

    /// Poll until at least `n` MTs were received or `timeout` passed; returns all
    /// MTs received so far (may be fewer than `n`: assert on the length). Allow
    /// >= 3 s: fakesmsc prints MTs up to 1 s late.
    pub fn wait_for_mts(&self, n: usize, timeout: Duration) -> Vec<ReceivedMt> {
        let deadline = Instant::now() + timeout;
        loop {
            let mts = self.received_mts();
            if mts.len() >= n || Instant::now() >= deadline {
                return mts;
            }
            thread::sleep(POLL);
        }
    }

    /// bearerbox `/status.txt` (None if not reachable / not 200).
    pub fn status(&self) -> io::Result<Option<String>> {
        match http_get(
            self.admin_port,
            &format!("/status.txt?password={}", self.password),
        ) {
            Ok((200, body)) => Ok(Some(body)),
            Ok(_) => Ok(None),
            Err(_) => Ok(None),
        }
    }

    /// Tails of all logs, for assertion messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in [
            "bearerbox.stderr",
            "bearerbox.log",
            "smsbox.stderr",
            "smsbox.log",
            "smsbox-access.log",
        ] {
            let text = std::fs::read(self.dir().join(name))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("==== {name} (last 40 lines) ====\n"));
            for l in &lines[lines.len().saturating_sub(40)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out.push_str("==== fakesmsc ====\n");
        for l in self.fakesmsc_lines() {
            out.push_str(&l);
            out.push('\n');
        }
        out
    }

    fn render_config(&self, url: &str, mo_recode: bool) -> String {
        let log_dir = self.dir().display().to_string();
        let mut t = TEMPLATE.to_string();
        for (k, v) in [
            ("{ADMIN_PORT}", self.admin_port.to_string()),
            ("{SMSBOX_PORT}", self.smsbox_port.to_string()),
            ("{SMSC_PORT}", self.smsc_port.to_string()),
            ("{SENDSMS_PORT}", self.sendsms_port.to_string()),
            ("{LOG_DIR}", log_dir),
            ("{SENDSMS_USER}", self.username.clone()),
            ("{SENDSMS_PASS}", self.password.clone()),
            (
                "{MO_RECODE}",
                if mo_recode { "true" } else { "false" }.to_string(),
            ),
            ("{GATEWAY_URL_GET}", url.to_string()), // last: the URL is not re-scanned
        ] {
            t = t.replace(k, &v);
        }
        t
    }

    fn spawn_box(&self, bin: &Path, name: &str, conf: &Path) -> io::Result<Child> {
        let err = File::create(self.dir().join(format!("{name}.stderr")))?;
        Command::new(bin)
            .arg("-v") // stderr log level: 2 = warnings and worse
            .arg("2")
            .arg(conf)
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(err.try_clone()?)
            .stderr(err)
            .spawn()
            .map_err(|e| spawn_error(bin, e))
    }

    fn wait_ready(
        &mut self,
        what: &str,
        mut ready: impl FnMut(&Kannel) -> io::Result<bool>,
    ) -> io::Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let mut exited = None;
            for (name, child) in [
                ("bearerbox", &mut self.bearerbox),
                ("smsbox", &mut self.smsbox),
                ("fakesmsc", &mut self.fakesmsc),
            ] {
                if let Some(st) = child.as_mut().map(Child::try_wait).transpose()?.flatten() {
                    *child = None;
                    exited = Some(format!("{name} exited during startup ({st})"));
                }
            }
            if let Some(msg) = exited {
                return Err(io::Error::other(format!("{msg}\n{}", self.logs())));
            }
            if ready(self)? {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{what} not ready after {STARTUP_TIMEOUT:?}\n{}",
                        self.logs()
                    ),
                ));
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Kannel {
    fn drop(&mut self) {
        // Closing stdin alone makes fakesmsc exit; then SIGTERM everything,
        // fakesmsc -> smsbox -> bearerbox, SIGKILL whatever is still alive after 5 s.
        if let Ok(mut inj) = self.injector.lock() {
            inj.0 = None;
        }
        for child in [
            self.fakesmsc.take(),
            self.smsbox.take(),
            self.bearerbox.take(),
        ]
        .into_iter()
        .flatten()
        {
            stop(child);
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        if std::env::var_os("KANNEL_KEEP_LOGS").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("KANNEL_KEEP_LOGS: kept {}", dir.path().display());
            std::mem::forget(dir); // skip TempDir's cleanup
        }
    }
}

struct Bins {
    bearerbox: PathBuf,
    smsbox: PathBuf,
    fakesmsc: PathBuf,
}

impl Bins {
    fn find() -> io::Result<Bins> {
        let fakesmsc = PathBuf::from(FAKESMSC);
        if !is_executable(&fakesmsc) {
            return Err(missing(&format!(
                "fakesmsc ({FAKESMSC}, package kannel-extras)"
            )));
        }
        Ok(Bins {
            bearerbox: find_sbin("bearerbox")?,
            smsbox: find_sbin("smsbox")?,
            fakesmsc,
        })
    }
}

fn find_sbin(name: &str) -> io::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            missing(&format!(
                "{name} (package kannel, usually /usr/sbin/{name})"
            ))
        })
}

fn missing(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("Kannel test harness: missing binary {what}; {INSTALL_HINT}"),
    )
}

fn spawn_error(bin: &Path, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("failed to spawn {}: {e}; {INSTALL_HINT}", bin.display()),
    )
}

/// Minimal HTTP/1.0 GET on 127.0.0.1 (std only): (status, body).
fn http_get(port: u16, path: &str) -> io::Result<(u16, String)> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad HTTP response"))?;
    Ok((status, body.to_string()))
}

/// Url-encoding accepted by fakesmsc/smsc_fake (`%XX` and `+`, other bytes literal).
/// Printable ASCII except `%` and `+` is kept literal to fit more into a 254-byte line.
pub fn encode_for_fakesmsc(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if (0x21..=0x7e).contains(&b) && b != b'%' && b != b'+' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// Kannel-style url-decoding to bytes: `+` -> space, `%XX` -> byte, rest literal.
pub fn url_decode_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 3 <= b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Parse fakesmsc log lines into MTs (see module docs for the format).
pub fn parse_mts(lines: &[String]) -> Vec<ReceivedMt> {
    let mut mts: Vec<ReceivedMt> = Vec::new();
    for line in lines {
        let Some(content) = got_message_content(line) else {
            continue;
        };
        match parse_mt(content) {
            Some(mt) => mts.push(mt),
            // A '\n' inside a 7-bit MT splits it into several "Got message" lines.
            None => match mts.last_mut() {
                Some(prev) if prev.kind == "text" => {
                    prev.text.push('\n');
                    prev.text.push_str(content);
                    prev.raw.push('\n');
                    prev.raw.push_str(content);
                    prev.bytes = prev.text.as_bytes().to_vec();
                }
                _ => {}
            },
        }
    }
    mts
}

/// `... DEBUG: Got message 3: <CONTENT>` -> CONTENT (also matches INFO level).
fn got_message_content(line: &str) -> Option<&str> {
    let i = line.find("Got message ")?;
    let rest = &line[i + "Got message ".len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    rest[digits..].strip_prefix(": <")?.strip_suffix('>')
}

fn parse_mt(content: &str) -> Option<ReceivedMt> {
    let mut it = content.splitn(4, ' ');
    let (from, to, kind) = (it.next()?, it.next()?, it.next()?);
    let rest = it.next().unwrap_or("");
    if from.is_empty() || to.is_empty() {
        return None;
    }
    let (udh, bytes, text) = match kind {
        "text" => (None, rest.as_bytes().to_vec(), rest.to_string()),
        "data" => {
            let b = url_decode_bytes(rest);
            let t = String::from_utf8_lossy(&b).into_owned();
            (None, b, t)
        }
        "ucs-2" => {
            let b = url_decode_bytes(rest);
            let t = decode_utf16be(&b);
            (None, b, t)
        }
        "udh" => {
            let (u, d) = rest.split_once(" data ")?;
            let b = url_decode_bytes(d);
            let t = String::from_utf8_lossy(&b).into_owned();
            (Some(url_decode_bytes(u)), b, t)
        }
        _ => return None,
    };
    Some(ReceivedMt {
        from: from.into(),
        to: to.into(),
        kind: kind.into(),
        udh,
        bytes,
        text,
        raw: content.into(),
    })
}
