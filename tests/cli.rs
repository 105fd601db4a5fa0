//! The binary's contract: `migrate`, `classify`, and start-up refusing a bad config with the
//! file, the key and the reason.

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
