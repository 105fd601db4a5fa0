//! Statement text both engines run as it is. Placeholders are `$N`, which PostgreSQL, sqlx on
//! SQLite and rusqlite all accept; rusqlite numbers `$N` by first appearance, so every
//! statement here names `$1`, `$2`, … in that order (a unit test checks it on SQLite).
//! What a statement means for the business is decided in `crate::intake`, not here.
//!
//! The texts are `static`s, not `const`s: the SQLite writer finds its prepared statements by
//! a text's address (`store/sqlite/stmts.rs`), and a `const` may have a copy at each place it
//! is used.

/// A message already stored under this dedupe key (`$1`).
pub static DUPLICATE_BY_KEY: &str = "SELECT id FROM messages WHERE dedupe_key = $1";

/// An id-less message with the same content hash since `$2`.
/// MIN, not ORDER BY id LIMIT 1: that builds a sorter on SQLite on every run; NULL if none.
pub static DUPLICATE_BY_HASH: &str = "SELECT MIN(id) FROM messages WHERE content_hash = $1 \
     AND created_at >= $2";

/// The survey waiting for an answer from this address (channel, address, now).
pub static SURVEY_WAIT: &str = "SELECT survey, case_id FROM survey_waits \
     WHERE channel = $1 AND address = $2 AND expires_at > $3";

/// A case's progress, only for its own customer (case id, customer).
pub static CASE_PROGRESS: &str = "SELECT id, status, category, tier, resolve_due_at FROM cases \
     WHERE id = $1 AND customer = $2";

/// The case one of our outbound messages belongs to, in any status (message id).
pub static CASE_OF_OUR_MESSAGE: &str = "SELECT c.id, c.category, c.tier, c.status FROM messages m \
     JOIN cases c ON c.id = m.case_id WHERE m.id = $1 AND m.direction = 'out'";

/// A case by its number, in any status, only the customer's own (case id, customer).
pub static CASE_OF_CUSTOMER: &str = "SELECT id, category, tier, status FROM cases \
     WHERE id = $1 AND customer = $2";

/// The customer's active cases on a channel touched since `$3`, with when (a customer has
/// one, rarely a few): `intake::decide::latest` picks the most recent. No ORDER BY … LIMIT 1:
/// on SQLite that builds a sorter on every run, for every message.
pub static RECENT_OPEN_CASES: &str = "SELECT id, category, tier, status, last_message_at \
     FROM cases WHERE customer = $1 AND channel = $2 \
     AND (status = 'open' OR status = 'acknowledged' OR status = 'in_progress') \
     AND last_message_at >= $3";

/// A case's status and tier set by intake (a reopen, a close after a return visit) (status,
/// tier, now, whether the resolution is forgotten (`IntakeTx::set_status`), case id).
pub static SET_CASE_STATUS: &str = "UPDATE cases SET status = $1, tier = $2, last_message_at = $3, \
     resolved_at = CASE WHEN $4 THEN NULL ELSE resolved_at END, \
     resolution_code = CASE WHEN $4 THEN NULL ELSE resolution_code END \
     WHERE id = $5";

/// A return visit answered or ended (state, answer, now, case id).
pub static FINISH_VISIT: &str = "UPDATE return_visits SET state = $1, answer = $2, \
     answered_at = $3, due_at = NULL, lease_until = NULL WHERE case_id = $4";

/// Another message on a case (now, category, tier, case id).
pub static TOUCH_CASE: &str = "UPDATE cases SET last_message_at = $1, \
     message_count = message_count + 1, category = $2, tier = $3 WHERE id = $4";

/// (case id, at, kind, detail).
pub static INSERT_CASE_EVENT: &str =
    "INSERT INTO case_events (case_id, at, kind, detail) VALUES ($1, $2, $3, $4)";

/// (channel, customer, category, tier, lang, subject, rules version, now, ack due, resolve due,
/// city, linked case).
pub static INSERT_CASE: &str = "INSERT INTO cases (channel, customer, category, status, tier, \
     lang, subject, rules_version, opened_at, last_message_at, ack_due_at, resolve_due_at, city, \
     linked_case_id) \
     VALUES ($1, $2, $3, 'open', $4, $5, $6, $7, $8, $8, $9, $10, $11, $12) RETURNING id";

/// `insert` (an `INSERT … RETURNING id` of this file) without its RETURNING clause: how the
/// SQLite writer runs it (`store/sqlite/writer.rs::insert_id`).
///
/// # Panics
/// `insert` does not end in ` RETURNING id` (a bug caught by the tests).
pub fn without_returning_id(insert: &'static str) -> &'static str {
    insert
        .strip_suffix(" RETURNING id")
        .unwrap_or_else(|| panic!("not an INSERT … RETURNING id: {insert}"))
}

/// An inbound message (15 values, see [`crate::intake::decide::InboundRow`]).
pub static INSERT_INBOUND: &str = "INSERT INTO messages (direction, channel, dialect, external_id, \
     dedupe_key, content_hash, from_addr, to_addr, subject, body, raw, category, intent, \
     rules_version, case_id, status, created_at, updated_at) \
     VALUES ('in', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'received', $15, $15) \
     RETURNING id";

/// (survey, channel, address, case id, answer, message id, at).
pub static INSERT_SURVEY_ANSWER: &str = "INSERT INTO survey_answers \
     (survey, channel, address, case_id, answer, message_id, at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// (channel, address).
pub static DELETE_SURVEY_WAIT: &str =
    "DELETE FROM survey_waits WHERE channel = $1 AND address = $2";

/// Opt-out or opt-in with its evidence (channel, address, opted out at, opted in at, message).
pub static UPSERT_CONSENT: &str = "INSERT INTO contacts \
     (channel, address, opted_out_at, opted_in_at, source_message) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (channel, address) DO UPDATE SET opted_out_at = excluded.opted_out_at, \
     opted_in_at = excluded.opted_in_at, source_message = excluded.source_message";

/// The commercial messages still queued (not being sent) to an address that opted out: their
/// campaign recipients suppressed, the messages marked, the outbox rows gone (address,
/// channel, now). Each repeats the predicate of the partial index `messages_campaign_to`
/// (migration 0019) word for word, so SQLite finds the address's messages by the index
/// instead of reading the whole table on every `TD` (a test reads the query plans).
pub static SUPPRESS_QUEUED_RECIPIENTS: &str = "UPDATE campaign_recipients SET state = 'suppressed', \
     reason = 'opted_out' WHERE message_id IN (SELECT m.id FROM messages m \
     JOIN outbox o ON o.message_id = m.id WHERE m.to_addr = $1 AND m.channel = $2 \
     AND m.direction = 'out' AND m.kind IN ('marketing', 'research') \
     AND (o.lease_until IS NULL OR o.lease_until < $3) \
     AND (m.kind = 'payment_reminder' OR m.kind = 'notice' OR m.kind = 'survey' OR m.kind = 'research' OR m.kind = 'marketing' OR m.kind = 'urgent_notice'))";

/// See [`SUPPRESS_QUEUED_RECIPIENTS`] (now, address, channel).
pub static SUPPRESS_QUEUED_MESSAGES: &str = "UPDATE messages SET status = 'suppressed', \
     last_error = 'opted out', updated_at = $1 WHERE id IN (SELECT m.id FROM messages m \
     JOIN outbox o ON o.message_id = m.id WHERE m.to_addr = $2 AND m.channel = $3 \
     AND m.direction = 'out' AND m.kind IN ('marketing', 'research') \
     AND (o.lease_until IS NULL OR o.lease_until < $1) \
     AND (m.kind = 'payment_reminder' OR m.kind = 'notice' OR m.kind = 'survey' OR m.kind = 'research' OR m.kind = 'marketing' OR m.kind = 'urgent_notice'))";

/// See [`SUPPRESS_QUEUED_RECIPIENTS`] (address, channel).
pub static DELETE_SUPPRESSED_OUTBOX: &str = "DELETE FROM outbox WHERE message_id IN \
     (SELECT m.id FROM messages m WHERE m.to_addr = $1 AND m.channel = $2 \
     AND m.direction = 'out' AND m.status = 'suppressed' AND m.kind IN ('marketing', 'research') \
     AND (m.kind = 'payment_reminder' OR m.kind = 'notice' OR m.kind = 'survey' OR m.kind = 'research' OR m.kind = 'marketing' OR m.kind = 'urgent_notice'))";

/// Email acks sent to an address since `$2`.
pub static EMAIL_ACKS_SINCE: &str = "SELECT COUNT(*) FROM messages WHERE direction = 'out' \
     AND channel = 'email' AND kind = 'ack' AND to_addr = $1 AND created_at >= $2";

/// An outbound message (14 values: channel, driver, from, to, subject, text, case id, kind,
/// encoding, segments, now, html, headers, render: an ack's rendering inputs, rendered when
/// it is sent).
pub static INSERT_OUTBOUND: &str = "INSERT INTO messages (direction, channel, dialect, from_addr, \
     to_addr, subject, body, case_id, kind, status, encoding, segments, created_at, updated_at, \
     body_html, headers, render) \
     VALUES ('out', $1, $2, $3, $4, $5, $6, $7, $8, 'queued', $9, $10, $11, $11, $12, $13, $14) \
     RETURNING id";

/// A queued ack rendered by the send that takes it (text, subject, html, encoding, segments,
/// message id): the inputs are cleared, so it is never rendered again.
pub static SET_RENDERED: &str = "UPDATE messages SET body = $1, subject = $2, body_html = $3, \
     encoding = $4, segments = $5, render = NULL WHERE id = $6 AND render IS NOT NULL";

/// (message id, channel, not before, lane).
pub static INSERT_OUTBOX: &str =
    "INSERT INTO outbox (message_id, channel, not_before, lane) VALUES ($1, $2, $3, $4)";

/// A send that went out (provider id, now, message id). A delivery report that already ended
/// the message (a failure) keeps its status and error.
pub static SEND_COMPLETE: &str = "UPDATE messages SET \
     status = CASE WHEN status = 'queued' THEN 'sent' ELSE status END, \
     provider_id = COALESCE($1, provider_id), attempts = attempts + 1, \
     last_error = CASE WHEN status = 'queued' THEN NULL ELSE last_error END, \
     updated_at = $2 WHERE id = $3";

/// A send to try again (error, now, message id). A message a delivery report already ended
/// (a DSN's failure arrived while this attempt was in flight) keeps that report's error.
pub static SEND_RETRY_MESSAGE: &str = "UPDATE messages SET attempts = attempts + 1, \
     last_error = CASE WHEN status = 'queued' THEN $1 ELSE last_error END, updated_at = $2 \
     WHERE id = $3";

/// The outbox row of a send to try again (next at, message id).
pub static SEND_RETRY_OUTBOX: &str = "UPDATE outbox SET attempts = attempts + 1, not_before = $1, \
     lease_until = NULL WHERE message_id = $2";

/// A send given up (error, now, message id). A delivery report that came while the attempt
/// was in flight (the bridge took it after all) keeps its status.
pub static SEND_FAIL: &str = "UPDATE messages SET \
     status = CASE WHEN status = 'queued' THEN 'failed' ELSE status END, attempts = attempts + 1, \
     last_error = $1, updated_at = $2 WHERE id = $3";

/// The outbox row of a finished send (message id).
pub static DELETE_OUTBOX: &str = "DELETE FROM outbox WHERE message_id = $1";

/// SQLite's outbox claim of one lane (lease until, channel, lane, now, limit): the claimed
/// (message id, attempts, not after). PostgreSQL's claim skips locked rows instead.
pub static CLAIM_OUTBOX_SQLITE: &str = "UPDATE outbox SET lease_until = $1 WHERE message_id IN \
     (SELECT message_id FROM outbox WHERE channel = $2 AND lane = $3 AND not_before <= $4 \
     AND (lease_until IS NULL OR lease_until < $4) ORDER BY not_before, message_id LIMIT $5) \
     RETURNING message_id, attempts, not_after";

/// SQLite's claim of due SLA clocks (lease until, now, limit).
pub static CLAIM_SLA_SQLITE: &str = "UPDATE sla_clock SET lease_until = $1 WHERE case_id IN \
     (SELECT case_id FROM sla_clock WHERE due_at <= $2 AND (lease_until IS NULL OR lease_until < $2) \
     ORDER BY due_at LIMIT $3) RETURNING case_id";

/// A channel's send bucket: (tokens, updated at) (channel).
pub static SEND_RATE: &str = "SELECT tokens, updated_at FROM send_rates WHERE channel = $1";

/// A channel's send bucket after a claim (channel, tokens, now).
pub static SET_SEND_RATE: &str = "INSERT INTO send_rates (channel, tokens, updated_at) \
     VALUES ($1, $2, $3) ON CONFLICT (channel) DO UPDATE SET tokens = excluded.tokens, \
     updated_at = excluded.updated_at";

/// A running campaign's dispatch lease, taken or renewed (owner, until, campaign id, now).
pub static LEASE_CAMPAIGN: &str = "UPDATE campaigns SET lease_owner = $1, lease_until = $2 \
     WHERE id = $3 AND status = 'running' \
     AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < $4)";

/// A claimed message's content (message id).
pub static OUTBOX_CONTENT: &str = "SELECT from_addr, to_addr, subject, body, body_html, headers, kind, \
     render FROM messages WHERE id = $1";

/// An outbound message by our id: (id, status) (message id).
pub static OUTBOUND_BY_ID: &str =
    "SELECT id, status FROM messages WHERE id = $1 AND direction = 'out'";

/// The newest outbound message with the bridge's id: (id, status) (provider id).
pub static OUTBOUND_BY_PROVIDER_ID: &str = "SELECT id, status FROM messages \
     WHERE provider_id = $1 AND direction = 'out' ORDER BY id DESC LIMIT 1";

/// A delivery report kept (message id or NULL, received at, status, detail).
pub static INSERT_DELIVERY_REPORT: &str = "INSERT INTO delivery_reports \
     (message_id, received_at, status, detail) VALUES ($1, $2, $3, $4)";

/// A message's delivery status (status, error or NULL to keep, now, message id, the status it
/// was read with): only if no other report moved it meanwhile.
pub static SET_DELIVERY_STATUS: &str = "UPDATE messages SET status = $1, \
     last_error = COALESCE($2, last_error), updated_at = $3 WHERE id = $4 AND status = $5";

/// A campaign's status (campaign id).
pub static CAMPAIGN_STATUS: &str = "SELECT status FROM campaigns WHERE id = $1";

/// A pending recipient to queued or suppressed (state, reason, campaign id, seq).
pub static RECIPIENT_MOVE: &str = "UPDATE campaign_recipients SET state = $1, reason = $2 \
     WHERE campaign_id = $3 AND seq = $4 AND state = 'pending'";

/// A queued campaign message's validity (not after, message id).
pub static OUTBOX_NOT_AFTER: &str = "UPDATE outbox SET not_after = $1 WHERE message_id = $2";

/// A recipient's message (message id, campaign id, seq).
pub static RECIPIENT_LINK: &str =
    "UPDATE campaign_recipients SET message_id = $1 WHERE campaign_id = $2 AND seq = $3";

/// A survey campaign's wait for an answer (channel, address, survey, sent at, expires at); a
/// return visit still waiting keeps its place.
pub static CAMPAIGN_SURVEY_WAIT: &str = "INSERT INTO survey_waits \
     (channel, address, survey, case_id, sent_at, expires_at) VALUES ($1, $2, $3, NULL, $4, $5) \
     ON CONFLICT (channel, address) DO UPDATE SET survey = excluded.survey, case_id = NULL, \
     sent_at = excluded.sent_at, expires_at = excluded.expires_at \
     WHERE survey_waits.survey <> 'return_visit' OR survey_waits.expires_at <= excluded.sent_at";

/// A message whose recipient is opted out now (message id): one row if so. Which messages an
/// opt-out holds is the caller's decision (`MessageKind::is_commercial` on the typed kind, so a
/// kind this version does not know counts as marketing, as it reads).
pub static MESSAGE_OPTED_OUT: &str = "SELECT m.id FROM messages m JOIN contacts c \
     ON c.channel = m.channel AND c.address = m.to_addr \
     WHERE m.id = $1 AND c.opted_out_at IS NOT NULL \
     AND (c.opted_in_at IS NULL OR c.opted_in_at < c.opted_out_at)";

/// A queued message withdrawn after an opt-out (now, message id).
pub static WITHDRAW_MESSAGE: &str = "UPDATE messages SET status = 'suppressed', \
     last_error = 'opted out', updated_at = $1 WHERE id = $2";

/// Its recipient (message id).
pub static WITHDRAW_RECIPIENT: &str = "UPDATE campaign_recipients SET state = 'suppressed', \
     reason = 'opted_out' WHERE message_id = $1";

/// Of `n` addresses (`$1`..`$n`), the (channel, address) pairs opted out now.
pub fn opted_out_among(n: usize) -> String {
    let list: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    format!(
        "SELECT channel, address FROM contacts WHERE address IN ({}) \
         AND opted_out_at IS NOT NULL AND (opted_in_at IS NULL OR opted_in_at < opted_out_at)",
        list.join(", ")
    )
}

/// What a case's clock has done: (steps taken mask, answered 0/1, opened at, has a clock 0/1,
/// tier, category, status) (case id).
pub static SLA_STATE: &str = "SELECT COALESCE(k.fired, 0), \
     CAST(CASE WHEN c.acked_at IS NULL OR COALESCE(c.answered_at, 0) < COALESCE(c.sla_base_at, 0) THEN 0 ELSE 1 END AS BIGINT), \
     COALESCE(c.sla_base_at, c.opened_at), \
     CAST(CASE WHEN k.case_id IS NULL THEN 0 ELSE 1 END AS BIGINT), c.tier, c.category, c.status \
     FROM cases c LEFT JOIN sla_clock k ON k.case_id = c.id WHERE c.id = $1";

/// A case's deadlines after its category changed (answer due, resolve due, case id).
pub static SET_DEADLINES: &str =
    "UPDATE cases SET ack_due_at = $1, resolve_due_at = $2 WHERE id = $3";

/// A new round of a case's clock (base, case id). The stored deadlines stay the first
/// round's: the SLA report judges the case by its first promise; the round's own deadlines
/// are the clock's and the case view's.
pub static SET_CLOCK_BASE: &str = "UPDATE cases SET sla_base_at = $1 WHERE id = $2";

/// A case's clock: next step and when (NULL: none left), steps taken (case id, step, due, mask).
pub static SET_CLOCK: &str = "INSERT INTO sla_clock (case_id, step, due_at, fired, lease_until) \
     VALUES ($1, $2, $3, $4, NULL) ON CONFLICT (case_id) DO UPDATE SET step = excluded.step, \
     due_at = excluded.due_at, fired = excluded.fired, lease_until = NULL";

/// A case clock moves on from the step, mask and due instant it was claimed with (a re-plan
/// meanwhile changes one of them) (next step, next due, mask after, case id, step before, mask
/// before, due before).
pub static SLA_MOVE_CLOCK: &str = "UPDATE sla_clock SET step = $1, due_at = $2, fired = $3, \
     lease_until = NULL WHERE case_id = $4 AND step = $5 AND fired = $6 AND due_at = $7";

/// A case clock removed if still as claimed (case id, step, mask, due).
pub static SLA_REMOVE_CLOCK: &str = "DELETE FROM sla_clock WHERE case_id = $1 AND step = $2 \
     AND fired = $3 AND due_at = $4";

/// Locks the case row before its clock (PostgreSQL; the intake locks in that order too).
pub static SLA_LOCK_CASE: &str = "SELECT id FROM cases WHERE id = $1 FOR UPDATE";

/// A case's tier moved by a step if still as claimed (tier after, case id, tier before).
pub static SLA_SET_TIER: &str = "UPDATE cases SET tier = $1 WHERE id = $2 AND tier = $3";

/// (case id).
pub static SLA_RELEASE_LEASE: &str = "UPDATE sla_clock SET lease_until = NULL WHERE case_id = $1";

/// Every shared statement, for the placeholder-order test.
#[cfg(test)]
pub const ALL: &[&str] = &[
    DUPLICATE_BY_KEY,
    DUPLICATE_BY_HASH,
    SURVEY_WAIT,
    CASE_PROGRESS,
    CASE_OF_OUR_MESSAGE,
    CASE_OF_CUSTOMER,
    RECENT_OPEN_CASES,
    SET_CASE_STATUS,
    FINISH_VISIT,
    TOUCH_CASE,
    INSERT_CASE_EVENT,
    INSERT_CASE,
    INSERT_INBOUND,
    INSERT_SURVEY_ANSWER,
    DELETE_SURVEY_WAIT,
    UPSERT_CONSENT,
    SUPPRESS_QUEUED_RECIPIENTS,
    SUPPRESS_QUEUED_MESSAGES,
    DELETE_SUPPRESSED_OUTBOX,
    EMAIL_ACKS_SINCE,
    INSERT_OUTBOUND,
    SET_RENDERED,
    INSERT_OUTBOX,
    SEND_COMPLETE,
    SEND_RETRY_MESSAGE,
    SEND_RETRY_OUTBOX,
    SEND_FAIL,
    DELETE_OUTBOX,
    CLAIM_OUTBOX_SQLITE,
    CLAIM_SLA_SQLITE,
    SEND_RATE,
    SET_SEND_RATE,
    LEASE_CAMPAIGN,
    OUTBOX_CONTENT,
    OUTBOUND_BY_ID,
    OUTBOUND_BY_PROVIDER_ID,
    INSERT_DELIVERY_REPORT,
    SET_DELIVERY_STATUS,
    CAMPAIGN_STATUS,
    RECIPIENT_MOVE,
    OUTBOX_NOT_AFTER,
    RECIPIENT_LINK,
    CAMPAIGN_SURVEY_WAIT,
    MESSAGE_OPTED_OUT,
    WITHDRAW_MESSAGE,
    WITHDRAW_RECIPIENT,
    SLA_STATE,
    SET_DEADLINES,
    SET_CLOCK_BASE,
    SET_CLOCK,
    SLA_MOVE_CLOCK,
    SLA_REMOVE_CLOCK,
    SLA_SET_TIER,
    SLA_RELEASE_LEASE,
];

/// A value bound to a built statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Int(i64),
    Text(String),
}

/// The WHERE clause of the case list (the agents' work queue) for `f`, and its values, bound
/// from `$2` on (`$1` is the caller's LIMIT). Only placeholders go into the text.
///
/// The work queue asks for active cases by resolve deadline: when every status asked for is
/// an active one, the clause repeats the predicate of the partial index `cases_active_due`
/// (migration 0020) word for word, so both engines walk that index in order and stop after a
/// page instead of reading and sorting every case; the keyset cursor is a row-value
/// comparison, which the index can seek to.
pub fn case_filter(f: &super::CaseFilter) -> (String, Vec<Bind>) {
    let mut conds: Vec<String> = Vec::new();
    let mut vals: Vec<Bind> = Vec::new();
    let next = |vals: &mut Vec<Bind>, v: Bind| {
        vals.push(v);
        format!("${}", vals.len() + 1)
    };
    if !f.statuses.is_empty() {
        let list: Vec<String> = f
            .statuses
            .iter()
            .map(|st| next(&mut vals, Bind::Text(st.as_str().to_string())))
            .collect();
        conds.push(format!("status IN ({})", list.join(", ")));
        if f.statuses.iter().all(|st| st.is_active()) {
            conds.push(crate::domain::CaseStatus::active_predicate(""));
        }
    }
    if let Some(c) = &f.category {
        let n = next(&mut vals, Bind::Text(c.clone()));
        conds.push(format!("category = {n}"));
    }
    if let Some(a) = &f.assignee {
        let n = next(&mut vals, Bind::Text(a.clone()));
        conds.push(format!("assignee = {n}"));
    }
    if let Some(c) = &f.city {
        let n = next(&mut vals, Bind::Text(c.clone()));
        conds.push(format!("city = {n}"));
    }
    if let Some(t) = f.tier {
        let n = next(&mut vals, Bind::Int(t.get()));
        conds.push(format!("tier = {n}"));
    }
    if let Some(d) = f.due_before {
        let n = next(&mut vals, Bind::Int(d));
        conds.push(format!("resolve_due_at < {n}"));
    }
    if let Some(b) = f.breached {
        conds.push(format!(
            "{} EXISTS (SELECT 1 FROM case_events e WHERE e.case_id = cases.id AND e.kind = 'sla_breach')",
            if b { "" } else { "NOT" }
        ));
    }
    if let Some(t) = &f.text {
        let pattern = format!(
            "%{}%",
            t.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let n = next(&mut vals, Bind::Text(pattern));
        conds.push(format!(
            "(customer LIKE {n} ESCAPE '\\' OR subject LIKE {n} ESCAPE '\\')"
        ));
    }
    if let Some((due, id)) = f.after {
        let a = next(&mut vals, Bind::Int(due));
        let b = next(&mut vals, Bind::Int(id));
        conds.push(format!("(resolve_due_at, id) > ({a}, {b})"));
    }
    let clause = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    (clause, vals)
}

#[cfg(test)]
mod tests {
    /// A database with every SQLite migration applied.
    fn schema() -> (tempfile::TempDir, rusqlite::Connection) {
        let dir = tempfile::tempdir().unwrap();
        let c = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
        for m in std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/store/migrations/sqlite"
        ))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect::<std::collections::BTreeSet<_>>()
        {
            c.execute_batch(&std::fs::read_to_string(&m).unwrap())
                .unwrap();
        }
        (dir, c)
    }

    /// Column `col` of `EXPLAIN {prefix}` of `q`, every parameter bound to a text.
    fn explain(c: &rusqlite::Connection, prefix: &str, q: &str, col: usize) -> Vec<String> {
        let mut st = c.prepare(&format!("EXPLAIN {prefix}{q}")).unwrap();
        let n = st.parameter_count();
        st.query_map(rusqlite::params_from_iter((0..n).map(|_| "x")), |r| {
            r.get::<_, String>(col)
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    /// The work queue (active cases by resolve deadline, any filter, first page or after a
    /// cursor) walks the partial index of active cases in order: no scan of every case, no
    /// sort. Asked for closed cases too, it may read the table (history, not the queue); a
    /// city or assignee filter may take that column's index instead.
    #[test]
    fn the_work_queue_walks_the_active_case_index_on_sqlite() {
        use crate::domain::CaseStatus;
        let (_dir, c) = schema();
        let queue = crate::store::CaseFilter {
            statuses: CaseStatus::ACTIVE.to_vec(),
            ..Default::default()
        };
        let filters = [
            queue.clone(),
            crate::store::CaseFilter {
                after: Some((1, 2)),
                ..queue.clone()
            },
            crate::store::CaseFilter {
                statuses: vec![CaseStatus::Open],
                category: Some("complaint".into()),
                text: Some("138".into()),
                breached: Some(true),
                after: Some((1, 2)),
                ..queue.clone()
            },
        ];
        for f in &filters {
            let (clause, vals) = super::case_filter(f);
            // The values bind from $2 on, each placeholder once or more, none past the last.
            let mut seen: Vec<usize> = clause
                .split('$')
                .skip(1)
                .map(|t| {
                    let n: String = t.chars().take_while(char::is_ascii_digit).collect();
                    n.parse().unwrap()
                })
                .collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen, (2..=vals.len() + 1).collect::<Vec<_>>(), "{clause}");
            let q = format!("SELECT id FROM cases {clause} ORDER BY resolve_due_at, id LIMIT $1");
            let plan = explain(&c, "QUERY PLAN ", &q, 3);
            assert!(
                plan.iter().any(|l| l.contains("cases_active_due")),
                "{q}: {plan:?}"
            );
            assert!(
                !plan.iter().any(|l| l.contains("TEMP B-TREE")),
                "{q}: {plan:?}"
            );
        }
        let history = crate::store::CaseFilter {
            statuses: vec![CaseStatus::Open, CaseStatus::Closed],
            ..Default::default()
        };
        let (clause, _) = super::case_filter(&history);
        assert!(!clause.contains("status = 'open' OR"), "{clause}");
        let active = CaseStatus::active_predicate("");
        for text in [
            include_str!("migrations/sqlite/0020_work_queue_index.sql"),
            include_str!("migrations/postgres/0020_work_queue_index.sql"),
        ] {
            assert!(text.contains(&active), "{active} in {text}");
        }
    }

    /// The opt-out statements run in the intake of every `TD`: they must find the address's
    /// messages by the partial index, not by reading the messages table.
    #[test]
    fn opt_out_statements_use_the_campaign_index_on_sqlite() {
        let (_dir, c) = schema();
        for q in [
            super::SUPPRESS_QUEUED_RECIPIENTS,
            super::SUPPRESS_QUEUED_MESSAGES,
            super::DELETE_SUPPRESSED_OUTBOX,
        ] {
            let plan = explain(&c, "QUERY PLAN ", q, 3);
            assert!(
                plan.iter().any(|l| l.contains("messages_campaign_to")),
                "{q}: {plan:?}"
            );
            assert!(
                !plan
                    .iter()
                    .any(|l| l.starts_with("SCAN m") || l == "SCAN messages"),
                "{q}: {plan:?}"
            );
        }
    }

    /// The intake's lookups run for every message on the writer thread: each must reach its
    /// rows through an index, and the threading lookup through the partial index of active
    /// cases (migration 0019), whose predicate it must repeat word for word.
    #[test]
    fn the_intake_lookups_use_indexes_on_sqlite() {
        let (_dir, c) = schema();
        let plan = |q: &str| explain(&c, "QUERY PLAN ", q, 3);
        for q in [
            super::DUPLICATE_BY_KEY,
            super::DUPLICATE_BY_HASH,
            super::CASE_OF_CUSTOMER,
            super::CASE_OF_OUR_MESSAGE,
            super::RECENT_OPEN_CASES,
            super::SURVEY_WAIT,
        ] {
            let p = plan(q);
            assert!(
                p.iter()
                    .all(|l| !l.starts_with("SCAN") || l.contains("INDEX")),
                "{q}: {p:?}"
            );
        }
        let p = plan(super::RECENT_OPEN_CASES);
        assert!(
            p.iter().any(|l| l.contains("cases_customer_active")),
            "{p:?}"
        );
        let active = crate::domain::CaseStatus::active_predicate("");
        for text in [
            super::RECENT_OPEN_CASES,
            include_str!("migrations/sqlite/0019_partial_index_predicates.sql"),
        ] {
            assert!(text.contains(&active), "{active} in {text}");
        }
    }

    /// SQLite evaluates a partial index's predicate on every insert into its table; an IN
    /// list of more than two constants there (or in a hot lookup) builds a temporary b-tree
    /// on every run of the statement. None of the writer's per-message statements may.
    #[test]
    fn the_intake_statements_build_no_temporary_tables_on_sqlite() {
        let (_dir, c) = schema();
        for q in [
            super::without_returning_id(super::INSERT_INBOUND),
            super::without_returning_id(super::INSERT_OUTBOUND),
            super::without_returning_id(super::INSERT_CASE),
            super::INSERT_OUTBOX,
            super::SET_CLOCK,
            super::RECENT_OPEN_CASES,
            super::TOUCH_CASE,
            super::INSERT_CASE_EVENT,
            super::DUPLICATE_BY_KEY,
            super::DUPLICATE_BY_HASH,
            super::SURVEY_WAIT,
            super::CASE_OF_CUSTOMER,
            super::CASE_OF_OUR_MESSAGE,
        ] {
            let ops = explain(&c, "", q, 1);
            assert!(
                !ops.iter().any(|o| o == "OpenEphemeral"),
                "{q} builds a temporary table: {ops:?}"
            );
        }
    }

    /// rusqlite binds `params![a, b, …]` by index, and SQLite gives `$N` the index of its first
    /// appearance: so `$N` must appear first in the order 1, 2, 3… for the values to land where
    /// PostgreSQL puts them. Every statement is prepared against the real schema.
    #[test]
    fn every_shared_statement_numbers_its_placeholders_in_order_on_sqlite() {
        let (_dir, c) = schema();
        for sql in super::ALL {
            let s = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            let n = s.parameter_count();
            assert!(n > 0, "{sql}");
            for i in 1..=n {
                assert_eq!(s.parameter_name(i), Some(format!("${i}").as_str()), "{sql}");
            }
        }
    }
}
