//! The binary's contract: `migrate`, `classify`, and start-up refusing a bad config with the
//! file, the key and the reason.

use crate::common::spawn_app;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
}

#[test]
fn migrate_creates_and_migrates_the_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sub/dir/sb.db");
    let out = bin()
        .arg("migrate")
        .env(
            "SWITCHBOARD__DATABASE__URL",
            format!("sqlite://{}", db.display()),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(db.is_file());
    // Idempotent.
    let again = bin()
        .arg("migrate")
        .env(
            "SWITCHBOARD__DATABASE__URL",
            format!("sqlite://{}", db.display()),
        )
        .output()
        .unwrap();
    assert!(again.status.success());
}

#[test]
fn classify_explains_in_text_and_json() {
    let out = bin()
        .args(["classify", "我要投诉，宽带三天没修好"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("category: complaint"), "{text}");
    assert!(text.contains("投诉"), "{text}");
    let out = bin()
        .args(["classify", "--json", "no signal since this morning"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["category"], "fault");
    assert!(v["hits"][0]["rule_id"].is_string());
    assert!(v["hits"][0]["start"].is_number());
}

#[test]
fn a_bad_config_file_stops_start_up_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[sms.outbound]\nrate_per_sec = \"fast\"\n").unwrap();
    let out = bin()
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rate_per_sec") && err.contains("bad.toml"),
        "{err}"
    );
    let out = bin()
        .arg("serve")
        .env("SWITCHBOARD__SERVER__LISTEN", "0.0.0.0:0")
        .env(
            "SWITCHBOARD__DATABASE__URL",
            format!("sqlite://{}/x.db", dir.path().display()),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("inbound.kannel_token"));
}

#[test]
fn rules_eval_reports_macro_f1_on_the_project_labeled_set() {
    let csv = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/classify/labeled.csv");
    let out = bin()
        .args(["rules", "eval", csv, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["n"].as_u64().unwrap() >= 300);
    assert!(v["macro_f1"].as_f64().unwrap() >= 0.90, "{}", v["macro_f1"]);
    assert!(v["accuracy"].as_f64().unwrap() > 0.0);
    assert_eq!(v["confusion"].as_array().unwrap().len(), 3);
    let out = bin().args(["rules", "eval", csv]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("macro-F1") && text.contains("confusion") && text.contains("misclassified"),
        "{text}"
    );
    // Bad input names the problem.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "label,text\ncomplaint,ok\nrefund,x\n").unwrap();
    let out = bin().args(["rules", "eval"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"));
    let rules = dir.path().join("r.toml");
    std::fs::write(&rules, b"fallback = \"inquiry\"\n# \xff\n").unwrap();
    let out = bin()
        .args(["rules", "eval", csv, "--rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid UTF-8 at line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rules_eval_folds_and_rules_suggest() {
    let csv = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/classify/independent/tune.csv"
    );
    let out = bin()
        .args(["rules", "eval", csv, "--folds", "3", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["folds"], 3);
    assert!(v["macro_f1"].as_f64().unwrap() >= 0.85, "{}", v["macro_f1"]);
    assert!(v["complaint_recall"].as_f64().unwrap() >= 0.90);
    assert!(v["rules_alone"]["macro_f1"].as_f64().is_some());
    let out = bin()
        .args(["rules", "eval", csv, "--folds", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());

    // suggest: a small labeled set and corrections the rules get wrong.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("r.toml");
    std::fs::write(
        &rules,
        "fallback = \"inquiry\"\n[[rules]]\nid = \"c\"\ncategory = \"complaint\"\nweight = 10.0\nkeywords = [\"投诉\"]\n[[rules]]\nid = \"f\"\ncategory = \"fault\"\nweight = 3.0\nkeywords = [\"断网\"]\n",
    )
    .unwrap();
    let labeled = dir.path().join("l.csv");
    std::fs::write(
        &labeled,
        "label,text\ncomplaint,我要投诉\nfault,断网了\nfault,光猫红灯一直亮\nfault,早上光猫红灯\ninquiry,套餐多少钱\n",
    )
    .unwrap();
    let corr = dir.path().join("c.csv");
    std::fs::write(&corr, "label,text\nfault,光猫红灯又亮了\n").unwrap();
    let out = bin()
        .args(["rules", "suggest"])
        .arg(&labeled)
        .arg("--rules")
        .arg(&rules)
        .arg("--corrections")
        .arg(&corr)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &v["suggestions"][0];
    assert_eq!(first["category"], "fault", "{v}");
    assert!(first["delta_labeled"].as_f64().unwrap() > 0.0, "{v}");
    assert!(first["delta_corrections"].as_f64().unwrap() > 0.0, "{v}");
    let out = bin()
        .args(["rules", "suggest"])
        .arg(&labeled)
        .arg("--rules")
        .arg(&rules)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Δlabeled") && text.contains("光猫"), "{text}");
}

#[test]
fn rules_backtest_lists_messages_whose_category_would_change() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/bt.db", dir.path().display());
    // Store three messages through the real intake path.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = db.clone();
        let app = spawn_app(move |s, _| {
            s.database.url = switchboard::config::Secret::new(url);
            s.sms.outbound.enabled = false;
        })
        .await;
        for (i, t) in [
            "zzqq 请问套餐多少钱",
            "hello there",
            "zzqq 请问营业厅几点开门",
        ]
        .iter()
        .enumerate()
        {
            let (st, _) = app
                .kannel_mo(&format!("b{i}"), &format!("1380000000{i}"), t)
                .await;
            assert_eq!(st, 200);
        }
        app.shutdown().await;
    });
    let candidate = dir.path().join("candidate.toml");
    std::fs::write(
        &candidate,
        format!("{}\n[[rules]]\nid = \"complaint.extra\"\ncategory = \"complaint\"\nweight = 10.0\nkeywords = [\"zzqq\"]\n", switchboard::classify::DEFAULT_RULES),
    )
    .unwrap();
    let out = bin()
        .args(["rules", "backtest", "--since", "1d", "--rules"])
        .arg(&candidate)
        .env("SWITCHBOARD__DATABASE__URL", &db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("replayed 3 messages"), "{text}");
    assert!(text.contains("2 would change"), "{text}");
    assert!(text.contains("inquiry -> complaint: 2"), "{text}");
    assert!(
        text.contains("zzqq 请问套餐多少钱") && !text.contains("hello there"),
        "{text}"
    );
    let out = bin()
        .args(["rules", "backtest", "--since", "1y", "--rules"])
        .arg(&candidate)
        .env("SWITCHBOARD__DATABASE__URL", &db)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn sighup_reloads_the_rules_file_and_refuses_a_broken_one() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, switchboard::classify::DEFAULT_RULES).unwrap();
    let db = format!("sqlite://{}/hup.db", dir.path().display());
    let token = {
        let out = bin()
            .args(["token", "create", "--name", "ops1", "--role", "ops"])
            .env("SWITCHBOARD__DATABASE__URL", &db)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let port = crate::common::free_port();
    let mut child = bin()
        .arg("serve")
        .env("SWITCHBOARD__DATABASE__URL", &db)
        .env("SWITCHBOARD__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("SWITCHBOARD__CLASSIFIER__RULES", &rules)
        .env("SWITCHBOARD__SMS__OUTBOUND__ENABLED", "false")
        .spawn()
        .unwrap();
    let client = reqwest::blocking::Client::new();
    let live = |client: &reqwest::blocking::Client| -> Option<String> {
        let r = client
            .get(format!("http://127.0.0.1:{port}/api/v1/rules"))
            .bearer_auth(&token)
            .send()
            .ok()?;
        let v: serde_json::Value = r.json().ok()?;
        v["live"].as_str().map(str::to_string)
    };
    let wait_live = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if live(&client).as_deref() == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "live rules never became {want}: {:?}",
                live(&client)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_live("v1");
    let hup = |pid: u32| {
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
    };
    std::fs::write(
        &rules,
        format!(
            "{}\n[[rules]]\nid = \"x\"\ncategory = \"complaint\"\nkeywords = [\"zzqq\"]\n",
            switchboard::classify::DEFAULT_RULES
        ),
    )
    .unwrap();
    hup(child.id());
    wait_live("v2");
    // A broken file is refused and v2 stays.
    std::fs::write(
        &rules,
        "fallback = \"inquiry\"\n[[rules]]\nid = \"y\"\ncategory = \"fault\"\npatterns = ['(']\n",
    )
    .unwrap();
    hup(child.id());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(live(&client).as_deref(), Some("v2"));
    assert!(child.try_wait().unwrap().is_none(), "still running");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// `classify --live` uses the version active in the database, not the file; without one it
/// says so.
#[test]
fn classify_live_uses_the_database_version() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/live.db", dir.path().display());
    let out = bin()
        .args(["classify", "--live", "zzqq 请问套餐多少钱"])
        .env("SWITCHBOARD__DATABASE__URL", &db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no rules version is live"), "{err}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = switchboard::store::open(&db, 2, 8).await.unwrap();
        let source = format!(
            "{}\n[[rules]]\nid = \"complaint.extra\"\ncategory = \"complaint\"\nweight = 10.0\nkeywords = [\"zzqq\"]\n",
            switchboard::classify::DEFAULT_RULES
        );
        let id = s
            .insert_rule_version(&switchboard::store::NewRuleVersion {
                created_at: 0,
                created_by: "test".into(),
                sha: "x".into(),
                source,
                note: None,
                diff: None,
                macro_f1: None,
            })
            .await
            .unwrap();
        s.activate_rule_version(id, "test", 0).await.unwrap();
        s.close().await;
    });
    let live = bin()
        .args(["classify", "--live", "--json", "zzqq 请问套餐多少钱"])
        .env("SWITCHBOARD__DATABASE__URL", &db)
        .output()
        .unwrap();
    assert!(
        live.status.success(),
        "{}",
        String::from_utf8_lossy(&live.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&live.stdout).unwrap();
    assert_eq!(v["category"], "complaint");
    assert_eq!(v["rules_version"], "v1");
    let file = bin()
        .args(["classify", "--json", "zzqq 请问套餐多少钱"])
        .env("SWITCHBOARD__DATABASE__URL", &db)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&file.stdout).unwrap();
    assert_eq!(v["category"], "inquiry");
    let both = bin()
        .args(["classify", "--live", "--rules", "x.toml", "hi"])
        .output()
        .unwrap();
    assert!(!both.status.success());
}

#[test]
fn report_sla_prints_the_cases_of_the_window_as_a_table_json_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/report.db", dir.path().display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = db.clone();
        let app = spawn_app(move |s, _| {
            s.database.url = switchboard::config::Secret::new(url);
            s.sms.outbound.enabled = false;
        })
        .await;
        for (i, t) in ["我要投诉，信号太差", "宽带断网了，修一下"]
            .iter()
            .enumerate()
        {
            let (st, _) = app
                .kannel_mo(&format!("r{i}"), &format!("1380000000{i}"), t)
                .await;
            assert_eq!(st, 200);
        }
        app.shutdown().await;
    });
    let run = |args: &[&str]| {
        let out = bin()
            .args(["report", "sla"])
            .args(args)
            .env("SWITCHBOARD__DATABASE__URL", &db)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = run(&[]);
    assert!(table.starts_with("category"), "{table}");
    assert!(
        table.contains("complaint") && table.contains("fault"),
        "{table}"
    );
    let v: serde_json::Value = serde_json::from_str(&run(&["--since", "1d", "--json"])).unwrap();
    assert_eq!(v["lines"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["lines"][0]["category"], "complaint");
    assert_eq!(v["lines"][0]["cases"], 1);
    let csv = run(&["--csv"]);
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let out = bin()
        .args(["report", "sla", "--since", "soon"])
        .env("SWITCHBOARD__DATABASE__URL", &db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));
}

/// `switchboard campaign …` on the configured database: create, import (GBK file, a bad row
/// reported by line), preview, start, status, pause, cancel; a bad request fails naming why.
#[test]
fn campaign_commands_create_import_preview_and_change_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/camp.db", dir.path().display());
    let run = |args: &[&str]| {
        bin()
            .arg("campaign")
            .args(args)
            .env("SWITCHBOARD__DATABASE__URL", &db)
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let out = run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let bad = run(&[
        "create",
        "--name",
        "x",
        "--kind",
        "marketing",
        "--rate",
        "10",
        "--template",
        "五折",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("signature"));
    let id = ok(&[
        "create",
        "--name",
        "缴费提醒",
        "--kind",
        "payment_reminder",
        "--rate",
        "50",
        "--template",
        "{{ name }}您好，您本月话费{{ amount }}元，请按时缴纳。",
    ]);
    let id = id.trim();
    let csv = dir.path().join("r.csv");
    let (gbk, _, _) = encoding_rs::GBK
        .encode("phone,name,amount\n13800138000,张三,58\nxyz,李四,12\n13900139000,王五,99\n");
    std::fs::write(&csv, &gbk).unwrap();
    let out = ok(&["import", id, csv.to_str().unwrap()]);
    assert!(
        out.contains("2 accepted") && out.contains("1 invalid"),
        "{out}"
    );
    assert!(out.contains("gb18030") && out.contains("line 3"), "{out}");
    let p: serde_json::Value = serde_json::from_str(&ok(&["preview", id, "--n", "1"])).unwrap();
    assert_eq!(p["messages"], 2, "{p}");
    assert!(
        p["samples"][0]["text"].as_str().unwrap().contains("58元"),
        "{p}"
    );
    assert!(ok(&["start", id]).contains("running"));
    let s: serde_json::Value = serde_json::from_str(&ok(&["status", id])).unwrap();
    assert_eq!(s["campaign"]["status"], "running");
    assert_eq!(s["progress"]["pending"], 2);
    assert!(ok(&["pause", id]).contains("paused"));
    assert!(ok(&["cancel", id]).contains("cancelled"));
    let again = run(&["resume", id]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("cancelled"));
}
