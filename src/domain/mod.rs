//! Newtypes parsed at the edge. A value of these types exists only if it is valid, so the
//! rest of the code never re-checks. No I/O here.

mod address;
mod email_address;
mod ids;
mod phone;

pub use address::Address;
pub use email_address::{EmailAddress, EmailAddressError};
pub use ids::{CampaignId, CaseId, MessageId};
pub use phone::{PhoneError, PhoneNumber};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How a message reached us or leaves us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Email,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Email => "email",
        }
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sms" => Ok(Channel::Sms),
            "email" => Ok(Channel::Email),
            other => Err(format!("unknown channel {other:?}")),
        }
    }
}

/// Whether a message came in or goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "in" => Some(Direction::In),
            "out" => Some(Direction::Out),
            _ => None,
        }
    }
}

/// Column impls for an enum stored as its `as_str()` text, on both sqlx engines and rusqlite.
/// A stored value `$parse` does not know is read as `$fallback`, with a warning naming it, so
/// one hand-edited or newer-version row cannot fail a whole batch (an SLA round, a work queue
/// page, every intake of that customer): an unknown status reads as `closed` (not active), an
/// unknown category as `inquiry`, as before these columns were typed.
macro_rules! text_column {
    ($t:ty, $what:literal, $parse:expr, $fallback:expr) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
        impl $t {
            /// The stored text read back; see `text_column!`.
            pub fn from_column(s: &str) -> $t {
                let parse: fn(&str) -> Option<$t> = $parse;
                parse(s).unwrap_or_else(|| {
                    let fallback: $t = $fallback;
                    tracing::warn!(
                        value = %crate::domain::scrub(s),
                        read_as = fallback.as_str(),
                        concat!("unknown ", $what, " in the database")
                    );
                    fallback
                })
            }
        }
        impl<DB: sqlx::Database> sqlx::Type<DB> for $t
        where
            String: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as sqlx::Type<DB>>::compatible(ty)
            }
        }
        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $t
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(
                v: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let s = <&'r str as sqlx::Decode<'r, DB>>::decode(v)?;
                Ok(<$t>::from_column(s))
            }
        }
        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $t
        where
            &'q str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&'q str as sqlx::Encode<'q, DB>>::encode_by_ref(&self.as_str(), buf)
            }
        }
        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }
        impl rusqlite::types::FromSql for $t {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                Ok(<$t>::from_column(v.as_str()?))
            }
        }
    };
}

pub use crate::cases::CaseStatus;
text_column!(
    CaseStatus,
    "case status",
    CaseStatus::parse,
    CaseStatus::Closed
);
pub use crate::cases::CaseEventKind;
// History: an unknown kind reads as a note, which nothing acts on.
text_column!(
    CaseEventKind,
    "case event kind",
    CaseEventKind::parse,
    CaseEventKind::Note
);
// A campaign of an unknown kind or channel reads as marketing / SMS, but is never dispatched
// (`campaigns::dispatchable_predicate`): its recipients wait for the version that wrote it.
text_column!(
    crate::campaigns::Kind,
    "campaign kind",
    crate::campaigns::Kind::parse,
    crate::campaigns::Kind::Marketing
);
text_column!(
    crate::campaigns::import::Target,
    "campaign channel",
    crate::campaigns::import::Target::parse,
    crate::campaigns::import::Target::Sms
);
pub use crate::campaigns::CampaignStatus;
// An unknown status reads as paused: nothing of such a campaign goes out.
text_column!(
    CampaignStatus,
    "campaign status",
    CampaignStatus::parse,
    CampaignStatus::Paused
);
text_column!(Channel, "channel", |s| s.parse().ok(), Channel::Sms);
text_column!(Direction, "direction", Direction::parse, Direction::In);
text_column!(Category, "category", |s| s.parse().ok(), Category::Inquiry);
// An unknown outbound kind (a newer version queued it) goes out under the strictest rules: the
// bulk lane's quiet hours, and withdrawn at its claim if the customer opted out.
text_column!(
    MessageKind,
    "message kind",
    MessageKind::parse,
    MessageKind::Marketing
);

/// What an outbound message is (`messages.kind`). It decides the message's outbox lane, its
/// quiet hours, and whether campaign caps, consent and opt-outs apply. Inbound messages have
/// none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// The automatic acknowledgement of an inbound message.
    Ack,
    /// An agent's reply, or a self-service answer.
    Reply,
    /// A deadline warning or escalation to a support tier's contact.
    SlaNotice,
    /// The survey after a resolved case.
    ReturnVisit,
    PaymentReminder,
    Notice,
    /// A service campaign sent as urgent: the urgent lane, no quiet hours.
    UrgentNotice,
    Survey,
    Research,
    Marketing,
}

impl MessageKind {
    pub const ALL: [MessageKind; 10] = [
        MessageKind::Ack,
        MessageKind::Reply,
        MessageKind::SlaNotice,
        MessageKind::ReturnVisit,
        MessageKind::PaymentReminder,
        MessageKind::Notice,
        MessageKind::UrgentNotice,
        MessageKind::Survey,
        MessageKind::Research,
        MessageKind::Marketing,
    ];

    /// The kinds campaigns queue (for caps and suppression). The partial index
    /// `messages_campaign_to` (migration 0019) names them in this order, word for word
    /// ([`MessageKind::campaign_predicate`]), so the daily caps' query (`store::standings`)
    /// can use it: change both together.
    pub const CAMPAIGN: [MessageKind; 6] = [
        MessageKind::PaymentReminder,
        MessageKind::Notice,
        MessageKind::Survey,
        MessageKind::Research,
        MessageKind::Marketing,
        MessageKind::UrgentNotice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Ack => "ack",
            MessageKind::Reply => "reply",
            MessageKind::SlaNotice => "sla_notice",
            MessageKind::ReturnVisit => "return_visit",
            MessageKind::PaymentReminder => "payment_reminder",
            MessageKind::Notice => "notice",
            MessageKind::UrgentNotice => "urgent_notice",
            MessageKind::Survey => "survey",
            MessageKind::Research => "research",
            MessageKind::Marketing => "marketing",
        }
    }

    pub fn parse(s: &str) -> Option<MessageKind> {
        MessageKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// `(kind = 'payment_reminder' OR …)` over [`MessageKind::CAMPAIGN`], `kind` prefixed by
    /// `alias` (`"m."` or empty): the predicate of the partial index `messages_campaign_to`.
    /// Equalities, not IN: SQLite evaluates the predicate on every message insert, and builds
    /// a temporary table for an IN list of more than two constants.
    pub fn campaign_predicate(alias: &str) -> String {
        any_of(
            &format!("{alias}kind"),
            MessageKind::CAMPAIGN.map(|k| k.as_str()),
        )
    }

    /// Marketing and research: consent, opt-out, signature, footer, daytime only.
    pub fn is_commercial(self) -> bool {
        matches!(self, MessageKind::Research | MessageKind::Marketing)
    }

    /// The outbox lane of a message of this kind.
    pub fn lane(self) -> Lane {
        match self {
            MessageKind::PaymentReminder
            | MessageKind::Notice
            | MessageKind::Survey
            | MessageKind::ReturnVisit => Lane::Service,
            MessageKind::Marketing | MessageKind::Research => Lane::Bulk,
            MessageKind::Ack
            | MessageKind::Reply
            | MessageKind::SlaNotice
            | MessageKind::UrgentNotice => Lane::Urgent,
        }
    }
}

/// One of the operator's four support tiers: 1 the service window, 2 the city branch, 3 the
/// province, 4 the national centre. Stored and written (JSON, config) as its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Tier(u8);

impl Tier {
    pub const WINDOW: Tier = Tier(1);
    pub const CITY: Tier = Tier(2);
    pub const PROVINCE: Tier = Tier(3);
    pub const NATIONAL: Tier = Tier(4);
    pub const ALL: [Tier; 4] = [Tier::WINDOW, Tier::CITY, Tier::PROVINCE, Tier::NATIONAL];

    /// `None` outside 1–4.
    pub fn new(n: i64) -> Option<Tier> {
        (1..=4).contains(&n).then_some(Tier(n as u8))
    }

    pub fn get(self) -> i64 {
        i64::from(self.0)
    }

    /// One tier up; the national centre is the top.
    pub fn up(self) -> Tier {
        Tier((self.0 + 1).min(4))
    }

    /// Its name in the customer's and the operator's language.
    pub fn name_zh(self) -> &'static str {
        match self.0 {
            1 => "营业厅服务窗口",
            2 => "地市分公司后台",
            3 => "省公司运营中心",
            _ => "全国集中运营中心",
        }
    }

    pub fn name_en(self) -> &'static str {
        match self.0 {
            1 => "service window",
            2 => "city branch back office",
            3 => "provincial operations centre",
            _ => "national operations centre",
        }
    }

    /// A stored tier read back: a value outside 1–4 (a hand-edited row) is clamped into the
    /// ladder with a warning instead of failing the batch it is in.
    pub fn from_column(n: i64) -> Tier {
        Tier::new(n).unwrap_or_else(|| {
            let t = Tier(n.clamp(1, 4) as u8);
            tracing::warn!(value = n, read_as = t.get(), "unknown tier in the database");
            t
        })
    }
}

impl PartialEq<i64> for Tier {
    fn eq(&self, n: &i64) -> bool {
        self.get() == *n
    }
}

impl Default for Tier {
    fn default() -> Tier {
        Tier::WINDOW
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl TryFrom<i64> for Tier {
    type Error = String;
    fn try_from(n: i64) -> Result<Tier, String> {
        Tier::new(n).ok_or_else(|| format!("tier {n} is not 1 to 4"))
    }
}

impl From<Tier> for i64 {
    fn from(t: Tier) -> i64 {
        t.get()
    }
}

ids::int_column!(Tier, Tier::from_column, |t: &Tier| t.get());

/// The three case categories of the operator's process. Order matters: a higher rank wins a
/// tie and a case never moves to a lower-ranked category when a reply is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Inquiry,
    Fault,
    Complaint,
}

impl Category {
    pub const ALL: [Category; 3] = [Category::Complaint, Category::Fault, Category::Inquiry];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Inquiry => "inquiry",
            Category::Fault => "fault",
            Category::Complaint => "complaint",
        }
    }

    /// The word used in Chinese acknowledgements.
    pub fn zh(self) -> &'static str {
        match self {
            Category::Inquiry => "咨询",
            Category::Fault => "故障报修",
            Category::Complaint => "投诉",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Category::Complaint => 0,
            Category::Fault => 1,
            Category::Inquiry => 2,
        }
    }
}

impl FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "inquiry" => Ok(Category::Inquiry),
            "fault" => Ok(Category::Fault),
            "complaint" => Ok(Category::Complaint),
            other => Err(format!(
                "unknown category {other:?} (expected complaint, fault or inquiry)"
            )),
        }
    }
}

/// What the customer wants, recognised before the three categories. Only `Case` opens or
/// updates a case; the others are handled by their own flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Case,
    OptOut,
    OptIn,
    Escalate,
    /// An answer to a survey that waits for this customer (decided in the transaction).
    SurveyAnswer,
    /// A self-service query: fees, points, or a case's progress.
    SelfService,
    /// Machine-sent mail (auto-reply, bounce, list, bulk): stored, never answered.
    Automated,
}

/// What a self-service message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "case")]
pub enum Query {
    Fees,
    Points,
    CaseProgress(CaseId),
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Case => "case",
            Intent::OptOut => "opt_out",
            Intent::OptIn => "opt_in",
            Intent::Escalate => "escalate",
            Intent::SurveyAnswer => "survey_answer",
            Intent::SelfService => "self_service",
            Intent::Automated => "automated",
        }
    }
}

impl FromStr for CaseId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let digits = t
            .strip_prefix("SB")
            .or_else(|| t.strip_prefix("sb"))
            .unwrap_or(t);
        match digits.parse::<i64>() {
            Ok(n) if n > 0 && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(CaseId(n))
            }
            _ => Err(format!("not a case number: {s:?} (expected SB00000123)")),
        }
    }
}

/// Language of templates sent to a customer, chosen from the script of their message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lang {
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::ZhCn => "zh-CN",
            Lang::En => "en",
        }
    }

    /// Any Han, kana or CJK punctuation makes the reply Chinese; otherwise English when the
    /// text has Latin letters; otherwise the configured default.
    pub fn detect(text: &str, default: Lang) -> Lang {
        let mut latin = false;
        for c in text.chars() {
            let u = c as u32;
            if (0x3000..=0x9FFF).contains(&u)
                || (0xF900..=0xFAFF).contains(&u)
                || (0xFF00..=0xFFEF).contains(&u)
                || (0x20000..=0x2FA1F).contains(&u)
            {
                return Lang::ZhCn;
            }
            if c.is_ascii_alphabetic() {
                latin = true;
            }
        }
        if latin { Lang::En } else { default }
    }
}

impl FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zh-CN" | "zh" | "zh-cn" => Ok(Lang::ZhCn),
            "en" => Ok(Lang::En),
            other => Err(format!("unknown language {other:?} (expected zh-CN or en)")),
        }
    }
}

/// `(column = 'a' OR column = 'b' …)`: a partial index's predicate over fixed values, as
/// equalities rather than IN, for which SQLite builds a temporary table on every run once
/// the list has more than two constants.
pub fn any_of(column: &str, values: impl IntoIterator<Item = &'static str>) -> String {
    let arms: Vec<String> = values
        .into_iter()
        .map(|v| format!("{column} = '{v}'"))
        .collect();
    format!("({})", arms.join(" OR "))
}

/// Masks an address for logs: 13800138000 → 138****8000, alice@example.com → a***@example.com.
pub fn mask(addr: &str) -> String {
    if let Some((user, domain)) = addr.split_once('@') {
        let first: String = user.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    let chars: Vec<char> = addr.chars().collect();
    if chars.len() <= 7 {
        return "****".to_string();
    }
    let head: String = chars[..chars.len() - 8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

/// `text` (a bridge's answer, an error) with every phone number (a run of 7 or more digits)
/// and email address in it masked, for logs: a bridge that quotes the receiver back must not
/// put the number in our logs.
pub fn scrub(text: &str) -> String {
    static ADDR: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"[^\s<>"'(),;:]+@[^\s<>"'(),;:]+|\+?[0-9][0-9x\-]{5,}[0-9]"#)
            .expect("scrub pattern compiles")
    });
    if !text.bytes().any(|b| b == b'@' || b.is_ascii_digit()) {
        return text.to_string();
    }
    ADDR.replace_all(text, |c: &regex::Captures| mask(&c[0]))
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored value the enums do not know reads as the fallback on both drivers (sqlx and
    /// rusqlite), so one bad row cannot fail a batch; known values read back as written.
    #[test]
    fn unknown_stored_values_read_as_the_fallback() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let row: (CaseStatus, Category, Channel, Direction) = c
            .query_row("SELECT 'archived', 'billing', 'fax', 'sideways'", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!(
            row,
            (
                CaseStatus::Closed,
                Category::Inquiry,
                Channel::Sms,
                Direction::In
            )
        );
        let known: CaseStatus = c
            .query_row("SELECT ?1", [CaseStatus::InProgress], |r| r.get(0))
            .unwrap();
        assert_eq!(known, CaseStatus::InProgress);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
            let row: (CaseStatus, Category) = sqlx::query_as("SELECT 'Closed', 'complaint'")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(row, (CaseStatus::Closed, Category::Complaint));
            let row: (CaseStatus, Direction) = sqlx::query_as("SELECT $1, 'out'")
                .bind(CaseStatus::Acknowledged)
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(row, (CaseStatus::Acknowledged, Direction::Out));
        });
    }

    /// The later text columns: every known value reads back as itself (its text is its JSON
    /// text too); an unknown one reads as its fallback — an event kind as a note, a campaign
    /// kind as marketing (the strictest rules), a campaign channel as SMS.
    #[test]
    fn event_and_campaign_columns_round_trip_and_fall_back() {
        use crate::campaigns::{Kind, import::Target};
        let c = rusqlite::Connection::open_in_memory().unwrap();
        for k in CaseEventKind::ALL {
            let back: CaseEventKind = c.query_row("SELECT ?1", [k], |r| r.get(0)).unwrap();
            assert_eq!(back, k);
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for k in Kind::ALL {
            let back: Kind = c.query_row("SELECT ?1", [k], |r| r.get(0)).unwrap();
            assert_eq!(
                (back, serde_json::to_value(k).unwrap()),
                (k, k.as_str().into())
            );
        }
        for t in Target::ALL {
            let back: Target = c.query_row("SELECT ?1", [t], |r| r.get(0)).unwrap();
            assert_eq!(
                (back, serde_json::to_value(t).unwrap()),
                (t, t.as_str().into())
            );
        }
        let row: (CaseEventKind, Kind, Target) = c
            .query_row("SELECT 'teleported', 'sweepstakes', 'fax'", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(row, (CaseEventKind::Note, Kind::Marketing, Target::Sms));
    }

    #[test]
    fn scrub_masks_numbers_and_addresses_in_free_text() {
        assert_eq!(
            scrub("Error: receiver 8613812345678 is barred"),
            "Error: receiver 86138****5678 is barred"
        );
        assert_eq!(
            scrub("to <li.wei@example.cn> failed"),
            "to <l***@example.cn> failed"
        );
        assert_eq!(scrub("HTTP 503: try in 30 s"), "HTTP 503: try in 30 s");
        assert!(!scrub("from: \"1381234567x8\" bad").contains("1381234567x8"));
    }

    #[test]
    fn case_id_round_trips_through_display() {
        let id = CaseId(123);
        assert_eq!(id.number(), "SB00000123");
        assert_eq!("SB00000123".parse::<CaseId>().unwrap(), id);
        assert_eq!("sb123".parse::<CaseId>().unwrap(), id);
        assert!("SB".parse::<CaseId>().is_err());
        assert!("SB-1".parse::<CaseId>().is_err());
        assert!("SB0".parse::<CaseId>().is_err());
    }

    #[test]
    fn lang_detects_chinese_script_and_falls_back() {
        assert_eq!(Lang::detect("宽带坏了", Lang::En), Lang::ZhCn);
        assert_eq!(Lang::detect("my line is dead", Lang::ZhCn), Lang::En);
        assert_eq!(Lang::detect("wifi 冇信号", Lang::En), Lang::ZhCn);
        assert_eq!(Lang::detect("12345", Lang::ZhCn), Lang::ZhCn);
    }

    #[test]
    fn mask_hides_the_middle_of_numbers_and_mailboxes() {
        assert_eq!(mask("+8613800138000"), "+86138****8000");
        assert_eq!(mask("alice@example.com"), "a***@example.com");
        assert_eq!(mask("10000"), "****");
    }

    #[test]
    fn message_kinds_round_trip_pick_their_lane_and_match_the_campaign_index() {
        for k in MessageKind::ALL {
            assert_eq!(MessageKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        assert_eq!(MessageKind::parse("bulk"), None);
        assert_eq!(MessageKind::from_column("bulk"), MessageKind::Marketing);
        assert_eq!(MessageKind::Ack.lane(), Lane::Urgent);
        assert_eq!(MessageKind::SlaNotice.lane(), Lane::Urgent);
        assert_eq!(MessageKind::UrgentNotice.lane(), Lane::Urgent);
        assert_eq!(MessageKind::ReturnVisit.lane(), Lane::Service);
        assert_eq!(MessageKind::PaymentReminder.lane(), Lane::Service);
        assert_eq!(MessageKind::Marketing.lane(), Lane::Bulk);
        assert_eq!(MessageKind::Research.lane(), Lane::Bulk);
        let commercial: Vec<_> = MessageKind::ALL
            .into_iter()
            .filter(|k| k.is_commercial())
            .collect();
        assert_eq!(commercial, [MessageKind::Research, MessageKind::Marketing]);
        // The caps' query names the campaign kinds as the partial index does, word for word.
        let bare = MessageKind::campaign_predicate("");
        let aliased = MessageKind::campaign_predicate("m.");
        for (index, list) in [
            (
                include_str!("../store/migrations/sqlite/0019_partial_index_predicates.sql"),
                &bare,
            ),
            (crate::store::sql::SUPPRESS_QUEUED_RECIPIENTS, &aliased),
            (crate::store::sql::SUPPRESS_QUEUED_MESSAGES, &aliased),
            (crate::store::sql::DELETE_SUPPRESSED_OUTBOX, &aliased),
        ] {
            assert!(index.contains(list.as_str()), "{list} in {index}");
            let commercial = "kind IN ('marketing', 'research')";
            assert!(!index.contains("kind IN ('marketing'") || index.contains(commercial));
        }
    }

    #[test]
    fn tiers_are_one_to_four_go_up_to_the_national_centre_and_read_back_clamped() {
        assert_eq!(Tier::new(0), None);
        assert_eq!(Tier::new(5), None);
        assert_eq!(Tier::ALL.map(Tier::get), [1, 2, 3, 4]);
        assert_eq!(Tier::WINDOW.up(), Tier::CITY);
        assert_eq!(Tier::PROVINCE.up(), Tier::NATIONAL);
        assert_eq!(Tier::NATIONAL.up(), Tier::NATIONAL);
        assert!(Tier::WINDOW < Tier::NATIONAL);
        assert_eq!(serde_json::to_string(&Tier::PROVINCE).unwrap(), "3");
        assert_eq!(serde_json::from_str::<Tier>("2").unwrap(), Tier::CITY);
        let e = serde_json::from_str::<Tier>("7").unwrap_err().to_string();
        assert!(e.contains("tier 7 is not 1 to 4"), "{e}");
        assert_eq!(Tier::from_column(9), Tier::NATIONAL);
        assert_eq!(Tier::from_column(0), Tier::WINDOW);
        assert_eq!(Tier::CITY.name_en(), "city branch back office");
        assert_eq!(Tier::NATIONAL.name_zh(), "全国集中运营中心");
        // A report's columns keep their width.
        assert_eq!(format!("[{:>4}]", Tier::CITY), "[   2]");
        assert_eq!(format!("[{:<6}]", Channel::Sms), "[sms   ]");
    }

    #[test]
    fn category_parse_rejects_unknown_names() {
        assert_eq!(
            "Complaint".parse::<Category>().unwrap(),
            Category::Complaint
        );
        assert!("billing".parse::<Category>().is_err());
        assert!(Category::Complaint > Category::Fault && Category::Fault > Category::Inquiry);
    }
}

/// The outbox lane of a queued message: workers claim lane 0 first and give the others a
/// share of every batch (see `store::lane_quota`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lane {
    /// Replies, acknowledgements, deadline notices: a person or a promise waits on them.
    Urgent = 0,
    /// Service messages: payment reminders, return visits, business notices.
    Service = 1,
    /// Marketing and research bulk.
    Bulk = 2,
}

impl Lane {
    pub const ALL: [Lane; 3] = [Lane::Urgent, Lane::Service, Lane::Bulk];

    pub fn as_i64(self) -> i64 {
        self as i64
    }

    pub fn from_i64(n: i64) -> Option<Lane> {
        Lane::ALL.into_iter().find(|l| l.as_i64() == n)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Urgent => "urgent",
            Lane::Service => "service",
            Lane::Bulk => "bulk",
        }
    }
}
