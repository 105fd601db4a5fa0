//! Test harness: a real Jasmin 0.11.0 (`jasmind.py` from the virtualenv made by
//! `tests/jasmin/setup.sh`) with its own redis-server, a RabbitMQ vhost of its own, and the SMPP
//! SMSC simulator `tests/jasmin/smsc.py`, all on 127.0.0.1, configured by applying
//! `config/examples/jasmin.txt` through jCli exactly as an operator would. If something is
//! missing, [`Jasmin::start`] fails with an error naming it (never skips).
//!
//! Facts established against the real thing (details and raw captures:
//! `tests/jasmin/FINDINGS.md`, `fixtures/jasmin/`):
//!
//! 1. MO to the HTTP connector: `POST` (or `GET`, fields in the query after the connector URL's
//!    own) form `id=<uuid>&from=&to=&origin-connector=smsc&content=<raw bytes>&binary=<hex>&
//!    priority=0&coding=<ONE RAW BYTE>`: `coding` is the data_coding byte itself,
//!    percent-encoded (`%08` UCS-2, `%00` GSM, `%F0`, and `H` for 0x48), not decimal text.
//!    Jasmin acks the SMSC's deliver_sm (status 0) before it throws to HTTP.
//! 2. Long MOs: reassembled (one throw, no UDH, `coding` of part 1) for SAR TLVs and the 8-bit
//!    UDH `05 00 03`, but only when the last part arrives last; out of order the message is
//!    lost. The 16-bit UDH `06 08 04` is not reassembled: one throw per part, UDH in `content`.
//! 3. Retries: anything but status < 400 with body `ACK/Jasmin` (404 too, in 0.11.0) is thrown
//!    again with the same `id` every `retry_delay` (here 1 s) up to `max_retries` (here 10)
//!    more times, then dropped. A webhook slower than `http_timeout` (here 5 s) gets the same id
//!    again although the first request arrived whole.
//! 4. `/send`: `200` `Success "<uuid>"`, `403 Error "Authentication failure for username:u"`,
//!    `403 Error "User throughput exceeded"`, `412 Error "No route found"`, `400 Error "..."`.
//!    DLRs to `dlr-url` (dlr-level 3): first `level=1&message_status=ESME_ROK&connector=smsc`,
//!    then `level=2&message_status=DELIVRD&connector=<smsc msgid>&id_smsc=...&sub&dlvrd&subdate&
//!    donedate&err&text`, both with `id` = the uuid /send returned.
//! 5. jasmind is started through `tests/jasmin/run_jasmind.py` (moves jasmind's machine-wide
//!    `/tmp/jasmind` lock into the temp dir so several tests can each run one), with a cleared
//!    environment (Jasmin reads `SECTION_KEY` variables as config), `--enable-dlr-lookup
//!    --enable-dlr-thrower` (DLRs need both), and `tests/jasmin/jasmin.cfg.tmpl`.
//! 6. Each instance locks one of the vhosts `switchboard_test_0..7` (flock on
//!    `/tmp/switchboard-jasmin-slot-N.lock`) and empties it (rabbitmqctl delete/add/permissions,
//!    ~3 s) so nothing queued by an earlier test is thrown at this one; Jasmin 0.11.0 ignores
//!    `redis-client dbid` without a password, so each instance gets its own redis-server.
//!    Startup ~6-10 s in all.
//!
//! Usage: one `Jasmin` per test, created and dropped in the test; `Drop` stops everything
//! (SIGTERM, SIGKILL after 5 s). `JASMIN_KEEP_LOGS=1` keeps the temp dir; [`Jasmin::logs`]
//! returns the tails of all logs. Everything here is blocking: in async tests use
//! `#[tokio::test(flavor = "multi_thread")]` and `spawn_blocking` (`Jasmin` is `Send + Sync`).

// A harness API: not every method or field is used by today's tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{decode_utf16be, free_ports, is_executable, port_open, stop};

const CONFIG_TEMPLATE: &str = include_str!("../../jasmin/jasmin.cfg.tmpl");
/// The operator's jCli script, applied as is (placeholders substituted).
pub const JCLI_SCRIPT: &str = include_str!("../../../config/examples/jasmin.txt");
const DEFAULT_VENV: &str = "/var/tmp/switchboard-jasmin-venv";
const SETUP_HINT: &str = "run `bash tests/jasmin/setup.sh` (as root on Debian)";
const SLOTS: usize = 8;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(20);
pub const JCLI_USER: &str = "jcliadmin";
pub const JCLI_PASSWORD: &str = "jclipwd";
pub const SMSC_SYSTEM_ID: &str = "sbsmsc";
pub const SMSC_PASSWORD: &str = "sbsmscpw";

unsafe extern "C" {
    fn flock(fd: i32, operation: i32) -> i32;
}
const LOCK_EX: i32 = 2;
const LOCK_NB: i32 = 4;

/// One MO deliver_sm for [`Jasmin::inject`].
#[derive(Debug, Clone, Default)]
pub struct MoPdu {
    pub from: String,
    pub to: String,
    pub data_coding: u8,
    pub esm_class: u8,
    pub short_message: Vec<u8>,
    /// TLV message_payload (0x0424).
    pub message_payload: Option<Vec<u8>>,
    /// TLVs sar_msg_ref_num, sar_total_segments, sar_segment_seqnum.
    pub sar: Option<(u16, u8, u8)>,
    /// Any other TLVs (tag, value).
    pub tlvs: Vec<(u16, Vec<u8>)>,
}

/// How the parts of a long MO say they belong together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concat {
    /// UDH `05 00 03 ref total seq` (esm_class 0x40).
    Udh8(u8),
    /// UDH `06 08 04 ref(2) total seq` (esm_class 0x40).
    Udh16(u16),
    /// TLVs sar_msg_ref_num / sar_total_segments / sar_segment_seqnum, no UDH.
    Sar(u16),
}

/// The parts of a long MO: `payload` cut into `part_len`-byte pieces (keep UCS-2 pieces even),
/// each with its UDH or SAR TLVs.
pub fn long_mo_parts(
    from: &str,
    to: &str,
    data_coding: u8,
    payload: &[u8],
    part_len: usize,
    concat: Concat,
) -> Vec<MoPdu> {
    let chunks: Vec<&[u8]> = payload.chunks(part_len.max(1)).collect();
    let total = chunks.len() as u8;
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let seq = i as u8 + 1;
            let mut p = MoPdu {
                from: from.into(),
                to: to.into(),
                data_coding,
                ..MoPdu::default()
            };
            match concat {
                Concat::Udh8(r) => {
                    p.esm_class = 0x40;
                    p.short_message = [&[0x05, 0x00, 0x03, r, total, seq][..], c].concat();
                }
                Concat::Udh16(r) => {
                    let [hi, lo] = r.to_be_bytes();
                    p.esm_class = 0x40;
                    p.short_message = [&[0x06, 0x08, 0x04, hi, lo, total, seq][..], c].concat();
                }
                Concat::Sar(r) => {
                    p.sar = Some((r, total, seq));
                    p.short_message = c.to_vec();
                }
            }
            p
        })
        .collect()
}

/// UTF-16BE bytes (data_coding 8).
pub fn ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect()
}

/// GSM 03.38 default alphabet, code = index.
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// GSM 03.38 extension table (after 0x1B).
const GSM_EXT: [(char, u8); 10] = [
    ('\u{c}', 0x0A),
    ('^', 0x14),
    ('{', 0x28),
    ('}', 0x29),
    ('\\', 0x2F),
    ('[', 0x3C),
    ('~', 0x3D),
    (']', 0x3E),
    ('|', 0x40),
    ('€', 0x65),
];

/// Unpacked GSM 03.38 codes (data_coding 0, one septet per byte, as SMPP carries them).
/// Panics on a character outside the alphabet.
pub fn gsm7(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for ch in text.chars() {
        if let Some(i) = GSM_BASIC.chars().position(|c| c == ch && c != '\u{1b}') {
            out.push(i as u8);
        } else if let Some((_, code)) = GSM_EXT.iter().find(|(c, _)| *c == ch) {
            out.extend([0x1B, *code]);
        } else {
            panic!("{ch:?} is not in the GSM 03.38 alphabet");
        }
    }
    out
}

/// Decode unpacked GSM 03.38 codes (lossy: unknown escapes become '?').
pub fn gsm7_decode(bytes: &[u8]) -> String {
    let basic: Vec<char> = GSM_BASIC.chars().collect();
    let mut out = String::new();
    let mut it = bytes.iter();
    while let Some(&b) = it.next() {
        if b == 0x1B {
            let next = it.next().copied().unwrap_or(0);
            out.push(
                GSM_EXT
                    .iter()
                    .find(|(_, c)| *c == next)
                    .map_or('?', |(ch, _)| *ch),
            );
        } else {
            out.push(*basic.get(b as usize).unwrap_or(&'?'));
        }
    }
    out
}

/// One submit_sm the SMSC simulator received (a line of its JSONL file).
#[derive(Debug, Clone)]
pub struct Submit {
    pub seq: u64,
    pub source_addr: String,
    pub source_addr_ton: u8,
    pub destination_addr: String,
    pub dest_addr_ton: u8,
    pub data_coding: u8,
    pub esm_class: u8,
    pub registered_delivery: u8,
    /// All of short_message.
    pub short_message: Vec<u8>,
    /// The UDH when esm_class has 0x40.
    pub udh: Option<Vec<u8>>,
    /// short_message without the UDH.
    pub payload: Vec<u8>,
    /// TLVs by tag (`"0x0424"`).
    pub tlvs: BTreeMap<String, Vec<u8>>,
    /// The message id the simulator answered (empty when it refused).
    pub message_id: String,
    /// The submit_sm_resp status the simulator answered.
    pub command_status: u32,
    pub raw: serde_json::Value,
}

impl Submit {
    fn from_json(v: serde_json::Value) -> Option<Submit> {
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
        let h = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .and_then(|x| hex::decode(x).ok())
        };
        let tlvs = v
            .get("tlvs")
            .and_then(|t| t.as_object())
            .map(|o| {
                o.iter()
                    .filter_map(|(k, x)| Some((k.clone(), hex::decode(x.as_str()?).ok()?)))
                    .collect()
            })
            .unwrap_or_default();
        Some(Submit {
            seq: n("seq"),
            source_addr: s("source_addr"),
            source_addr_ton: n("source_addr_ton") as u8,
            destination_addr: s("destination_addr"),
            dest_addr_ton: n("dest_addr_ton") as u8,
            data_coding: n("data_coding") as u8,
            esm_class: n("esm_class") as u8,
            registered_delivery: n("registered_delivery") as u8,
            short_message: h("short_message_hex")?,
            udh: h("udh_hex"),
            payload: h("payload_hex")?,
            tlvs,
            message_id: s("message_id"),
            command_status: n("command_status") as u32,
            raw: v,
        })
    }

    /// The payload decoded by data_coding: 8 UTF-16BE, 0 GSM 03.38, 3 Latin-1, else UTF-8
    /// (lossy). For a multi-part message use [`join_submits`].
    pub fn text(&self) -> String {
        decode_by_dcs(&self.payload, self.data_coding)
    }

    /// `(reference, total, seq)` from a concatenation UDH (IE 0x00 or 0x08) or SAR TLVs.
    pub fn concat_info(&self) -> Option<(u16, u8, u8)> {
        if let Some(udh) = &self.udh {
            let mut i = 1;
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
        }
        let r = self.tlvs.get("0x020C")?;
        let t = self.tlvs.get("0x020E")?;
        let s = self.tlvs.get("0x020F")?;
        Some((u16::from_be_bytes([r[0], *r.get(1)?]), t[0], s[0]))
    }
}

fn decode_by_dcs(b: &[u8], dcs: u8) -> String {
    match dcs {
        8 => decode_utf16be(b),
        0 => gsm7_decode(b),
        3 => b.iter().map(|&c| c as char).collect(),
        _ => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Join the parts of one concatenated MT (any order) into text.
pub fn join_submits(parts: &[Submit]) -> String {
    let mut v: Vec<&Submit> = parts.iter().collect();
    v.sort_by_key(|m| m.concat_info().map(|c| c.2).unwrap_or(0));
    let bytes: Vec<u8> = v.iter().flat_map(|m| m.payload.iter().copied()).collect();
    decode_by_dcs(&bytes, v.first().map_or(0, |m| m.data_coding))
}

/// Group submits into messages: parts of one concatenated MT (same destination and
/// reference) become one entry, in arrival order of their first part.
pub fn messages(submits: &[Submit]) -> Vec<Vec<Submit>> {
    let mut out: Vec<Vec<Submit>> = Vec::new();
    for s in submits {
        match s.concat_info() {
            Some((r, total, _)) if total > 1 => {
                if let Some(m) = out.iter_mut().find(|m| {
                    m[0].destination_addr == s.destination_addr
                        && m[0].concat_info().is_some_and(|c| c.0 == r && c.1 == total)
                        && m.len() < total as usize
                }) {
                    m.push(s.clone());
                } else {
                    out.push(vec![s.clone()]);
                }
            }
            _ => out.push(vec![s.clone()]),
        }
    }
    out
}

struct Ports {
    smpp_server: u16,
    smpps_pb: u16,
    cm_pb: u16,
    http: u16,
    router_pb: u16,
    redis: u16,
    jcli: u16,
    interceptor: u16,
    smsc: u16,
    smsc_ctl: u16,
}

pub struct Jasmin {
    dir: Option<tempfile::TempDir>,
    venv: PathBuf,
    ports: Ports,
    vhost: String,
    username: String,
    password: String,
    redis: Option<Child>,
    smsc: Option<Child>,
    jasmind: Option<Child>,
    /// The flock'ed slot file; closing it releases the vhost for other tests.
    _slot: File,
}

impl Jasmin {
    /// Start redis-server, the SMSC simulator and jasmind on free loopback ports, apply
    /// `config/examples/jasmin.txt` through jCli with `gateway_mo_url` as `${SWITCHBOARD_URL}`
    /// (the HTTP connector every MO goes to, method POST), and wait until the SMPP connector
    /// is bound to the simulator.
    pub fn start(gateway_mo_url: &str) -> io::Result<Jasmin> {
        if gateway_mo_url.contains(char::is_whitespace) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "gateway URL must not contain whitespace (jCli reads it as one token)",
            ));
        }
        let venv = Venv::find()?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let (slot, vhost) = take_slot(deadline)?;
        reset_vhost(&vhost)?;
        // Free ports are picked by bind+drop, so another process may grab one before it is
        // bound again: retry the whole startup a few times.
        let mut slot = Some(slot);
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(&venv, gateway_mo_url, &vhost, &mut slot, deadline) {
                Ok(j) => return Ok(j),
                Err(e) => {
                    last = Some(e);
                    // a failed attempt may have queued something: start clean again
                    reset_vhost(&vhost)?;
                }
            }
            if Instant::now() > deadline {
                break;
            }
        }
        Err(last.unwrap())
    }

    fn try_start(
        venv: &Venv,
        url: &str,
        vhost: &str,
        slot: &mut Option<File>,
        deadline: Instant,
    ) -> io::Result<Jasmin> {
        let dir = tempfile::Builder::new()
            .prefix("switchboard-jasmin-")
            .tempdir()?;
        let p = free_ports(10)?;
        let ports = Ports {
            smpp_server: p[0],
            smpps_pb: p[1],
            cm_pb: p[2],
            http: p[3],
            router_pb: p[4],
            redis: p[5],
            jcli: p[6],
            interceptor: p[7],
            smsc: p[8],
            smsc_ctl: p[9],
        };
        std::fs::create_dir_all(dir.path().join("store"))?;
        let mut j = Jasmin {
            dir: Some(dir),
            venv: venv.root.clone(),
            ports,
            vhost: vhost.to_string(),
            username: "switchboard".into(),
            password: format!("sb{}", std::process::id() % 100_000_000),
            redis: None,
            smsc: None,
            jasmind: None,
            _slot: slot
                .take()
                .ok_or_else(|| io::Error::other("jasmin slot lost"))?,
        };
        let result = j.boot(venv, url, deadline);
        match result {
            Ok(()) => Ok(j),
            Err(e) => {
                let e = io::Error::new(e.kind(), format!("{e}\n{}", j.logs()));
                // hand the slot back for the next attempt; Drop stops the processes
                let f = j._slot.try_clone()?;
                *slot = Some(f);
                drop(j);
                Err(e)
            }
        }
    }

    fn boot(&mut self, venv: &Venv, url: &str, deadline: Instant) -> io::Result<()> {
        let d = self.dir().to_path_buf();
        std::fs::write(d.join("jasmin.cfg"), self.render_config(&venv.spec))?;

        self.redis = Some(self.spawn(
            "redis",
            Command::new(&venv.redis_server).args([
                "--port",
                &self.ports.redis.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]),
        )?);
        self.smsc = Some(
            self.spawn(
                "smsc",
                Command::new(venv.python())
                    .arg(tests_dir().join("jasmin/smsc.py"))
                    .args(["--smpp-port", &self.ports.smsc.to_string()])
                    .args(["--control-port", &self.ports.smsc_ctl.to_string()])
                    .arg("--submits")
                    .arg(d.join("submits.jsonl"))
                    .args(["--system-id", SMSC_SYSTEM_ID, "--password", SMSC_PASSWORD]),
            )?,
        );
        let (redis, ctl) = (self.ports.redis, self.ports.smsc_ctl);
        self.wait_ready("redis-server and the SMSC simulator", deadline, |_| {
            Ok(port_open(redis) && port_open(ctl))
        })?;

        let store = format!("{}/", d.join("store").display());
        let mut cmd = Command::new(venv.python());
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &d)
            .env("LANG", "C.UTF-8")
            .env("ROOT_PATH", &d)
            .env("LOG_PATH", &d)
            .env("CONFIG_PATH", &d)
            .env("STORE_PATH", store)
            .env("SB_JASMIND_LOCK", d.join("jasmind"))
            .arg(tests_dir().join("jasmin/run_jasmind.py"))
            .arg(venv.root.join("bin/jasmind.py"))
            .arg("-c")
            .arg(d.join("jasmin.cfg"))
            .args(["--enable-dlr-lookup", "--enable-dlr-thrower"]);
        self.jasmind = Some(self.spawn("jasmind", &mut cmd)?);
        let (jcli, http) = (self.ports.jcli, self.ports.http);
        self.wait_ready("jasmind (jCli and HTTP API ports)", deadline, |_| {
            Ok(port_open(jcli) && port_open(http))
        })?;
        // jasmind goes on when one of its services cannot listen (a free port taken by another
        // process meanwhile); without its router no MO is routed. Fail, so `start` retries.
        let out = std::fs::read_to_string(d.join("jasmind.out")).unwrap_or_default();
        if out.contains("Couldn't listen on") {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "jasmind could not listen on one of its ports",
            ));
        }

        let script = render_script(
            JCLI_SCRIPT,
            &[
                ("SMSC_HOST", "127.0.0.1".into()),
                ("SMSC_PORT", self.ports.smsc.to_string()),
                ("SMSC_USERNAME", SMSC_SYSTEM_ID.into()),
                ("SMSC_PASSWORD", SMSC_PASSWORD.into()),
                ("SWITCHBOARD_URL", url.into()),
                ("JASMIN_USER", self.username.clone()),
                ("JASMIN_PASSWORD", self.password.clone()),
            ],
        )?;
        let lines: Vec<&str> = script.iter().map(String::as_str).collect();
        self.jcli(&lines)?;

        // Bound when the simulator lists the bind and jCli shows the connector BOUND_TRX.
        self.wait_ready("the smppc connector to bind", deadline, |j| {
            let bound = j
                .smsc_status()
                .ok()
                .and_then(|s| s.get("binds")?.as_array().map(|b| !b.is_empty()))
                .unwrap_or(false);
            Ok(bound && j.jcli(&["smppccm -l"])?.contains("BOUND_TRX"))
        })?;
        Ok(())
    }

    /// Jasmin's HTTP API `/send` URL.
    pub fn send_url(&self) -> String {
        format!("http://127.0.0.1:{}/send", self.ports.http)
    }
    pub fn http_port(&self) -> u16 {
        self.ports.http
    }
    pub fn jcli_port(&self) -> u16 {
        self.ports.jcli
    }
    /// The /send user (from `config/examples/jasmin.txt`'s `${JASMIN_USER}`).
    pub fn username(&self) -> &str {
        &self.username
    }
    pub fn password(&self) -> &str {
        &self.password
    }
    pub fn vhost(&self) -> &str {
        &self.vhost
    }
    /// Temp dir holding `jasmin.cfg`, the store, `submits.jsonl` and every log.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("tempdir").path()
    }

    /// Type these lines into jCli (logged in as jcliadmin); returns the transcript. Fails when
    /// jCli refuses a line.
    pub fn jcli(&self, lines: &[&str]) -> io::Result<String> {
        let mut c = JCli::connect(self.ports.jcli)?;
        c.login(JCLI_USER, JCLI_PASSWORD)?;
        let mut transcript = String::new();
        for line in lines {
            let ans = c.command(line)?;
            transcript.push_str(&format!("{line}\n{ans}\n"));
            if jcli_refused(&ans) {
                return Err(io::Error::other(format!(
                    "jCli refused {line:?}: {ans}\ntranscript:\n{transcript}"
                )));
            }
        }
        let _ = c.command("quit");
        Ok(transcript)
    }

    /// Send every MO to another URL from now on: a new HTTP connector (cid `mo<N>`) and the
    /// MO DefaultRoute replaced. `method` is `POST` or `GET`.
    pub fn route_mo_to(&self, url: &str, method: &str) -> io::Result<()> {
        let cid = format!("mo{}", self.ports.http ^ (url.len() as u16));
        let add = [
            "httpccm -a".to_string(),
            format!("cid {cid}"),
            format!("url {url}"),
            format!("method {method}"),
            "ok".into(),
            "morouter -r 0".into(),
            "morouter -a".into(),
            "type DefaultRoute".into(),
            format!("connector http({cid})"),
            "ok".into(),
        ];
        let lines: Vec<&str> = add.iter().map(String::as_str).collect();
        self.jcli(&lines).map(|_| ())
    }

    /// Inject one MO deliver_sm from the SMSC simulator; returns Jasmin's deliver_sm_resp
    /// command_status (0 = ESME_ROK).
    pub fn inject(&self, pdu: &MoPdu) -> io::Result<u32> {
        let mut cmd = serde_json::json!({
            "cmd": "deliver",
            "source_addr": pdu.from,
            "destination_addr": pdu.to,
            "data_coding": pdu.data_coding,
            "esm_class": pdu.esm_class,
            "short_message_hex": hex::encode(&pdu.short_message),
            "tlvs": pdu.tlvs.iter().map(|(t, v)| serde_json::json!({"tag": t, "value_hex": hex::encode(v)})).collect::<Vec<_>>(),
            "timeout": 20,
        });
        if let Some(p) = &pdu.message_payload {
            cmd["message_payload_hex"] = hex::encode(p).into();
        }
        if let Some((r, t, s)) = pdu.sar {
            cmd["sar_msg_ref_num"] = r.into();
            cmd["sar_total_segments"] = t.into();
            cmd["sar_segment_seqnum"] = s.into();
        }
        let ans = self.control(&cmd)?;
        ans.get("command_status")
            .and_then(|s| s.as_u64())
            .map(|s| s as u32)
            .ok_or_else(|| io::Error::other(format!("SMSC simulator: {ans}")))
    }

    /// Inject an MO with these raw fields; returns Jasmin's deliver_sm_resp status.
    pub fn inject_mo(
        &self,
        from: &str,
        to: &str,
        data_coding: u8,
        short_message: &[u8],
        esm_class: u8,
    ) -> io::Result<u32> {
        self.inject(&MoPdu {
            from: from.into(),
            to: to.into(),
            data_coding,
            esm_class,
            short_message: short_message.to_vec(),
            ..MoPdu::default()
        })
    }

    /// A UCS-2 MO (data_coding 8, UTF-16BE); at most 70 UTF-16 units fit.
    pub fn inject_ucs2(&self, from: &str, to: &str, text: &str) -> io::Result<u32> {
        self.inject_mo(from, to, 8, &ucs2(text), 0)
    }

    /// A GSM-7 MO (data_coding 0, unpacked GSM 03.38 codes); at most 160 septets fit.
    pub fn inject_gsm7(&self, from: &str, to: &str, text: &str) -> io::Result<u32> {
        self.inject_mo(from, to, 0, &gsm7(text), 0)
    }

    /// Inject the parts of a long MO in the given order (indexes into [`long_mo_parts`]).
    pub fn inject_parts(&self, parts: &[MoPdu], order: &[usize]) -> io::Result<Vec<u32>> {
        order.iter().map(|&i| self.inject(&parts[i])).collect()
    }

    /// Receipts for later submits: `stat` DELIVRD (default), UNDELIV, REJECTD, ... or `none`.
    pub fn set_receipts(&self, stat: &str, err: &str) -> io::Result<()> {
        self.control(&serde_json::json!({"cmd": "receipts", "stat": stat, "err": err}))
            .map(|_| ())
    }

    /// Answer the next submit_sm with these command_status values (e.g. 0x58 throttled).
    pub fn set_submit_statuses(&self, statuses: &[u32]) -> io::Result<()> {
        self.control(&serde_json::json!({"cmd": "submit_status", "statuses": statuses}))
            .map(|_| ())
    }

    /// The simulator's `status` answer (`binds`, `submits`, `receipts_acked`).
    pub fn smsc_status(&self) -> io::Result<serde_json::Value> {
        self.control(&serde_json::json!({"cmd": "status"}))
    }

    fn control(&self, cmd: &serde_json::Value) -> io::Result<serde_json::Value> {
        let mut s = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.ports.smsc_ctl).into(),
            Duration::from_secs(2),
        )?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.write_all(format!("{cmd}\n").as_bytes())?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("SMSC simulator answered {line:?}: {e}"),
            )
        })?;
        if v.get("ok").and_then(|o| o.as_bool()) != Some(true) {
            return Err(io::Error::other(format!(
                "SMSC simulator refused {cmd}: {v}"
            )));
        }
        Ok(v)
    }

    /// Every submit_sm the simulator received so far, in order.
    pub fn submits(&self) -> Vec<Submit> {
        let text = std::fs::read_to_string(self.dir().join("submits.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter_map(Submit::from_json)
            .collect()
    }

    /// Poll until at least `n` submit_sm arrived or `timeout` passed; returns all so far
    /// (may be fewer: assert on the length).
    pub fn wait_for_submits(&self, n: usize, timeout: Duration) -> Vec<Submit> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.submits();
            if s.len() >= n || Instant::now() >= deadline {
                return s;
            }
            thread::sleep(POLL);
        }
    }

    /// Lines of the deliver_sm thrower's log (each HTTP throw of an MO, its errors and retries).
    pub fn mo_thrower_log(&self) -> Vec<String> {
        read_lines(&self.dir().join("deliversm-thrower.log"))
    }

    /// Lines of the DLR thrower's log.
    pub fn dlr_thrower_log(&self) -> Vec<String> {
        read_lines(&self.dir().join("dlr-thrower.log"))
    }

    /// Tails of all logs, for assertion messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in [
            "jasmind.out",
            "messages.log",
            "deliversm-thrower.log",
            "dlr-thrower.log",
            "http-api.log",
            "default-smsc.log",
            "smppclient-manager.log",
            "router.log",
            "jcli.log",
            "amqp-client.log",
            "smsc.out",
            "redis.out",
        ] {
            let lines = read_lines(&self.dir().join(name));
            if lines.is_empty() {
                continue;
            }
            out.push_str(&format!("==== {name} (last 40 lines) ====\n"));
            for l in &lines[lines.len().saturating_sub(40)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn render_config(&self, spec: &Path) -> String {
        let p = &self.ports;
        let mut t = CONFIG_TEMPLATE.to_string();
        for (k, v) in [
            ("{SMPP_SERVER_PORT}", p.smpp_server.to_string()),
            ("{SMPPS_PB_PORT}", p.smpps_pb.to_string()),
            ("{CM_PB_PORT}", p.cm_pb.to_string()),
            ("{HTTP_PORT}", p.http.to_string()),
            ("{ROUTER_PB_PORT}", p.router_pb.to_string()),
            ("{REDIS_PORT}", p.redis.to_string()),
            ("{JCLI_PORT}", p.jcli.to_string()),
            ("{INTERCEPTOR_PORT}", p.interceptor.to_string()),
            ("{AMQP_VHOST}", self.vhost.clone()),
            ("{AMQP_SPEC}", spec.display().to_string()),
            ("{DIR}", self.dir().display().to_string()),
        ] {
            t = t.replace(k, &v);
        }
        t
    }

    fn spawn(&self, name: &str, cmd: &mut Command) -> io::Result<Child> {
        let out = File::create(self.dir().join(format!("{name}.out")))?;
        cmd.current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "failed to spawn {name} ({:?}): {e}; {SETUP_HINT}",
                        cmd.get_program()
                    ),
                )
            })
    }

    fn wait_ready(
        &mut self,
        what: &str,
        deadline: Instant,
        mut ready: impl FnMut(&Jasmin) -> io::Result<bool>,
    ) -> io::Result<()> {
        loop {
            for (name, child) in [
                ("redis-server", &mut self.redis),
                ("smsc.py", &mut self.smsc),
                ("jasmind", &mut self.jasmind),
            ] {
                if let Some(st) = child.as_mut().map(Child::try_wait).transpose()?.flatten() {
                    *child = None;
                    return Err(io::Error::other(format!(
                        "{name} exited during startup ({st})"
                    )));
                }
            }
            if ready(self).unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("waiting for {what}: not ready after {STARTUP_TIMEOUT:?}"),
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Jasmin {
    fn drop(&mut self) {
        // jasmind first (it unbinds from the SMSC and closes its AMQP channels), then the rest.
        for child in [self.jasmind.take(), self.smsc.take(), self.redis.take()]
            .into_iter()
            .flatten()
        {
            stop(child);
        }
        if std::env::var_os("JASMIN_KEEP_LOGS").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("JASMIN_KEEP_LOGS: kept {}", dir.path().display());
            std::mem::forget(dir); // skip TempDir's cleanup
        }
    }
}

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

struct Venv {
    root: PathBuf,
    spec: PathBuf,
    redis_server: PathBuf,
}

impl Venv {
    fn find() -> io::Result<Venv> {
        let root = std::env::var_os("JASMIN_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_VENV));
        let missing = |what: String| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("Jasmin test harness: {what}; {SETUP_HINT}"),
            )
        };
        let stamp = root.join(".switchboard-jasmin-ready");
        if !stamp.is_file() {
            return Err(missing(format!(
                "JASMIN_VENV not set up ({} has no {})",
                root.display(),
                stamp.display()
            )));
        }
        for f in ["bin/python", "bin/jasmind.py"] {
            if !is_executable(&root.join(f)) {
                return Err(missing(format!("{} missing", root.join(f).display())));
            }
        }
        let spec = root.join("share/jasmin/resource/amqp0-9-1.xml");
        if !spec.is_file() {
            return Err(missing(format!("{} missing", spec.display())));
        }
        let redis_server = find_bin("redis-server").ok_or_else(|| {
            missing("redis-server not found (Debian package redis-server)".into())
        })?;
        if find_bin("rabbitmqctl").is_none() {
            return Err(missing(
                "rabbitmqctl not found (Debian package rabbitmq-server)".into(),
            ));
        }
        Ok(Venv {
            root,
            spec,
            redis_server,
        })
    }

    fn python(&self) -> PathBuf {
        self.root.join("bin/python")
    }
}

fn find_bin(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// Lock one of the vhost slots (flock, released when the file is closed, also on a crash).
fn take_slot(deadline: Instant) -> io::Result<(File, String)> {
    use std::os::fd::AsRawFd;
    loop {
        for i in 0..SLOTS {
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(format!("/tmp/switchboard-jasmin-slot-{i}.lock"))?;
            // SAFETY: flock(2) on a descriptor we own.
            if unsafe { flock(f.as_raw_fd(), LOCK_EX | LOCK_NB) } == 0 {
                return Ok((f, format!("switchboard_test_{i}")));
            }
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("all {SLOTS} Jasmin slots (/tmp/switchboard-jasmin-slot-N.lock) stay busy"),
            ));
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Empty the slot's vhost: delete it (with every queue an earlier jasmind left) and add it
/// again with guest permissions.
fn reset_vhost(vhost: &str) -> io::Result<()> {
    let ctl = find_bin("rabbitmqctl").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("rabbitmqctl not found; {SETUP_HINT}"),
        )
    })?;
    for (args, must) in [
        (vec!["delete_vhost", vhost], false),
        (vec!["add_vhost", vhost], true),
        (
            vec!["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            true,
        ),
    ] {
        let out = Command::new(&ctl).arg("-q").args(&args).output()?;
        if must && !out.status.success() {
            return Err(io::Error::other(format!(
                "rabbitmqctl {} failed ({}): {}{}; is RabbitMQ running? {SETUP_HINT}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    Ok(())
}

/// The jCli lines of a script: comments (`#`) and empty lines dropped, `${KEY}` replaced.
/// Fails on a placeholder without a value.
pub fn render_script(script: &str, values: &[(&str, String)]) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for raw in script.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut l = line.to_string();
        for (k, v) in values {
            l = l.replace(&format!("${{{k}}}"), v);
        }
        if let Some(i) = l.find("${") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("jCli script: no value for {} in {line:?}", &l[i..]),
            ));
        }
        out.push(l);
    }
    Ok(out)
}

/// jCli's answers that mean a line was refused (jasmin/protocols/cli/*.py).
fn jcli_refused(ans: &str) -> bool {
    [
        "Unknown",
        "Error",
        "error",
        "Invalid",
        "invalid",
        "Incorrect",
        "not found",
        "Cannot",
        "cannot",
        "Could not",
        "could not",
        "must be",
        "required",
        "Missing",
        "missing",
        "Failed",
        "failed",
    ]
    .iter()
    .any(|w| ans.contains(w))
}

/// A minimal telnet client for jCli: ignores option negotiation, strips ANSI sequences, reads up to
/// the prompt (`jcli : ` or `> ` inside an add session).
struct JCli {
    s: TcpStream,
    buf: Vec<u8>,
}

const IAC: u8 = 255;
const PROMPTS: [&str; 2] = ["jcli : ", "> "];

impl JCli {
    fn connect(port: u16) -> io::Result<JCli> {
        let s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(JCli { s, buf: Vec::new() })
    }

    /// Read what is there (up to 100 ms); false when nothing came.
    fn pump(&mut self) -> io::Result<bool> {
        let mut b = [0u8; 4096];
        let n = match self.s.read(&mut b) {
            Ok(0) => return Err(io::Error::other("jCli closed the connection")),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let data = &b[..n];
        let mut i = 0;
        while i < data.len() {
            let c = data[i];
            if c == IAC && i + 1 < data.len() {
                let cmd = data[i + 1];
                match cmd {
                    // Option negotiation is left unanswered: jCli works line by line in plain
                    // NVT anyway, and refusing makes Twisted log an OptionRefused traceback.
                    251..=254 if i + 2 < data.len() => i += 3,
                    250 => {
                        // subnegotiation: skip to IAC SE
                        let end = data[i..].windows(2).position(|w| w == [IAC, 240]);
                        i = end.map_or(data.len(), |e| i + e + 2);
                    }
                    _ => i += 2,
                }
                continue;
            }
            self.buf.push(c);
            i += 1;
        }
        Ok(true)
    }

    fn text(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(&self.buf)).replace('\r', "")
    }

    fn wait_for(&mut self, done: impl Fn(&str) -> bool, what: &str) -> io::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let t = self.text();
            if done(&t) {
                self.buf.clear();
                return Ok(t);
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("jCli: no {what}; got {t:?}"),
                ));
            }
            self.pump()?;
        }
    }

    fn login(&mut self, user: &str, password: &str) -> io::Result<()> {
        let greet = self.wait_for(
            |t| t.contains("Authentication required.") || t.ends_with("jcli : "),
            "greeting",
        )?;
        if greet.ends_with("jcli : ") {
            return Ok(());
        }
        self.s.write_all(format!("{user}\r\n").as_bytes())?;
        self.wait_for(|t| t.ends_with("Password: "), "password prompt")?;
        self.s.write_all(format!("{password}\r\n").as_bytes())?;
        let t = self.wait_for(
            |t| t.ends_with("jcli : ") || t.contains("Incorrect"),
            "prompt after login",
        )?;
        if t.contains("Incorrect") {
            return Err(io::Error::other(format!("jCli login failed: {t}")));
        }
        Ok(())
    }

    /// Type one line; returns jCli's answer (echo and prompt removed).
    fn command(&mut self, line: &str) -> io::Result<String> {
        self.s.write_all(format!("{line}\r\n").as_bytes())?;
        if line == "quit" {
            return Ok(String::new());
        }
        let mut t = self.wait_for(
            |t| {
                t.starts_with(line)
                    && t.len() > line.len()
                    && PROMPTS.iter().any(|p| t.ends_with(p))
            },
            &format!("prompt after {line:?}"),
        )?;
        // persist/load answer in several writes, with prompts in between: read until quiet
        if line.starts_with("persist") || line.starts_with("load") {
            let mut quiet = Instant::now();
            while quiet.elapsed() < Duration::from_millis(400) {
                if self.pump()? {
                    quiet = Instant::now();
                }
            }
            t.push_str(&self.text());
            self.buf.clear();
        }
        let mut ans = t[line.len()..].trim().to_string();
        for p in PROMPTS {
            if let Some(a) = ans.strip_suffix(p.trim_end()) {
                ans = a.trim().to_string();
            }
        }
        Ok(ans)
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            if it.peek() == Some(&'[') {
                it.next();
                for d in it.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                it.next();
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read(p)
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
