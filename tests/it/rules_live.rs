//! Live classifier rules through the admin API: versions with author, diff and score; refusal
//! of rule sets that do not compile or lower macro-F1 below the floor (the live set stays);
//! activation and rollback; every case records the version that classified it.

use crate::common::{self, spawn_app};
use serde_json::json;

const EXTRA: &str = "\n[[rules]]\nid = \"complaint.test.extra\"\ncategory = \"complaint\"\nweight = 10.0\nkeywords = [\"zzqq\"]\n";

async fn sms(
    app: &common::TestApp,
    id: &str,
    from: &str,
    text: &str,
) -> switchboard::store::CaseRecord {
    assert_eq!(app.kannel_mo(id, from, text).await.0, 200);
    let m = app
        .store()
        .recent_messages("in", 1)
        .await
        .unwrap()
        .remove(0);
    app.store().case(m.case_id.unwrap()).await.unwrap().unwrap()
}

#[tokio::test]
async fn rules_are_versioned_gated_activated_and_rolled_back() {
    let app = spawn_app(|s, _| s.sms.outbound.enabled = false).await;
    let ops = app.token("ops").await;
    let agent = app.token("agent").await;

    // Version 1 is the built-in set, stored at start-up.
    let (st, list) = app.api("GET", "/api/v1/rules", &ops, None).await;
    assert_eq!(st, 200, "{list}");
    assert_eq!(list["live"], "v1");
    assert_eq!(list["versions"].as_array().unwrap().len(), 1);
    assert!(list["versions"][0]["macro_f1"].as_f64().unwrap() >= 0.9);
    assert_eq!(app.api("GET", "/api/v1/rules", &agent, None).await.0, 403);
    assert_eq!(app.api("GET", "/api/v1/rules", "nope", None).await.0, 401);

    let case = sms(&app, "a1", "13800000001", "zzqq 请问套餐多少钱").await;
    assert_eq!(
        (case.category.as_str(), case.rules_version.as_str()),
        ("inquiry", "v1")
    );

    // Refused: does not compile (named rule and line), too large a regex, below the F1 floor.
    let base = switchboard::classify::DEFAULT_RULES.to_string();
    let broken = format!(
        "{base}\n[[rules]]\nid = \"bad.regex\"\ncategory = \"fault\"\npatterns = ['(unclosed']\n"
    );
    let (st, e) = app
        .api(
            "POST",
            "/api/v1/rules",
            &ops,
            Some(json!({"source": broken})),
        )
        .await;
    assert_eq!(st, 422, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("bad.regex") && msg.contains("line "), "{msg}");
    let huge = format!(
        "{base}\n[[rules]]\nid = \"huge.regex\"\ncategory = \"fault\"\npatterns = ['\\w{{500}}\\w{{500}}\\w{{500}}']\n"
    );
    let (st, e) = app
        .api("POST", "/api/v1/rules", &ops, Some(json!({"source": huge})))
        .await;
    assert_eq!(st, 422, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("huge.regex")
    );
    let weak = "fallback = \"inquiry\"\n[[rules]]\nid = \"only\"\ncategory = \"complaint\"\nkeywords = [\"投诉\"]\n";
    let (st, e) = app
        .api("POST", "/api/v1/rules", &ops, Some(json!({"source": weak})))
        .await;
    assert_eq!(st, 422, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("below the floor"),
        "{e}"
    );
    let (st, e) = app
        .api(
            "POST",
            "/api/v1/rules",
            &ops,
            Some(json!({"source": "fallback = \"inquiry\"\nbogus = 1\n"})),
        )
        .await;
    assert_eq!(st, 422);
    assert!(e["error"]["message"].as_str().unwrap().contains("bogus"));
    assert_eq!(
        app.state.intake.classifier().version(),
        "v1",
        "the live rules stay after refusals"
    );

    // Accepted and live: a new keyword, recorded with author and diff.
    let better = format!("{base}{EXTRA}");
    let (st, a) = app
        .api(
            "POST",
            "/api/v1/rules",
            &ops,
            Some(json!({"source": better, "note": "add zzqq"})),
        )
        .await;
    assert_eq!(st, 201, "{a}");
    let v2 = a["version"].as_i64().unwrap();
    assert_eq!(a["active"], true);
    let case = sms(&app, "a2", "13800000002", "zzqq 请问套餐多少钱").await;
    assert_eq!(
        (case.category.as_str(), case.rules_version.as_str()),
        ("complaint", format!("v{v2}").as_str())
    );
    let (_, v) = app
        .api("GET", &format!("/api/v1/rules/{v2}"), &ops, None)
        .await;
    assert_eq!(v["created_by"], "ops");
    assert_eq!(v["note"], "add zzqq");
    assert!(
        v["diff"]
            .as_str()
            .unwrap()
            .contains("+keywords = [\"zzqq\"]"),
        "{}",
        v["diff"]
    );

    // Rollback to version 1.
    let (st, r) = app
        .api("POST", "/api/v1/rules/1/activate", &ops, None)
        .await;
    assert_eq!(st, 200, "{r}");
    let case = sms(&app, "a3", "13800000003", "zzqq 请问套餐多少钱").await;
    assert_eq!(
        (case.category.as_str(), case.rules_version.as_str()),
        ("inquiry", "v1")
    );
    let (_, list) = app.api("GET", "/api/v1/rules", &ops, None).await;
    assert_eq!(list["live"], "v1");
    assert_eq!(
        list["versions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["active"] == true)
            .count(),
        1
    );
    assert_eq!(
        app.api("POST", "/api/v1/rules/999/activate", &ops, None)
            .await
            .0,
        404
    );
    app.shutdown().await;
}

#[tokio::test]
async fn the_active_version_survives_a_restart() {
    let app = crate::common::spawn_app_on(crate::common::Engine::Sqlite, |s, _| {
        s.sms.outbound.enabled = false
    })
    .await;
    let ops = app.token("ops").await;
    let better = format!("{}{EXTRA}", switchboard::classify::DEFAULT_RULES);
    let (st, _) = app
        .api(
            "POST",
            "/api/v1/rules",
            &ops,
            Some(json!({"source": better})),
        )
        .await;
    assert_eq!(st, 201);
    let dir = app.shutdown().await;
    let db = format!("sqlite://{}/sb.db", dir.path().display());
    let app = spawn_app(move |s, _| {
        s.sms.outbound.enabled = false;
        s.database.url = switchboard::config::Secret::new(db);
    })
    .await;
    assert_eq!(app.state.intake.classifier().version(), "v2");
    assert_eq!(
        app.state.intake.classifier().category("zzqq"),
        switchboard::domain::Category::Complaint
    );
    app.shutdown().await;
    drop(dir);
}
