//! Row ids as types of their own, so a message id cannot be passed where a case id is meant.
//! Each is the row's integer: a number in JSON (serde's newtype), an integer column in both
//! engines (sqlx and rusqlite), the same value the id always had.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An integer column (sqlx on both engines, rusqlite): the type read from and written as an
/// `i64` by the two conversions. Row ids and `Tier` use it.
macro_rules! int_column {
    ($t:ty, $from:expr, $to:expr) => {
        impl<DB: sqlx::Database> sqlx::Type<DB> for $t
        where
            i64: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <i64 as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <i64 as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $t
        where
            i64: sqlx::Decode<'r, DB>,
        {
            fn decode(
                v: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let from: fn(i64) -> $t = $from;
                Ok(from(<i64 as sqlx::Decode<'r, DB>>::decode(v)?))
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $t
        where
            i64: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                let to: fn(&$t) -> i64 = $to;
                <i64 as sqlx::Encode<'q, DB>>::encode_by_ref(&to(self), buf)
            }
        }

        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                let to: fn(&$t) -> i64 = $to;
                Ok(to(self).into())
            }
        }

        impl rusqlite::types::FromSql for $t {
            fn column_result(
                v: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                let from: fn(i64) -> $t = $from;
                Ok(from(v.as_i64()?))
            }
        }
    };
}
pub(crate) use int_column;

macro_rules! row_id {
    ($(#[$doc:meta])* $t:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $t(pub i64);

        /// The bare number, as the `i64` id it replaces printed in logs.
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl $t {
            /// The row's integer.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl From<$t> for i64 {
            fn from(id: $t) -> i64 {
                id.0
            }
        }

        int_column!($t, |v| $t(v), |t: &$t| t.0);
    };
}

row_id!(
    /// A case's row id; customers see it as its number (`SB00000042`, [`CaseId::number`]).
    /// The row id comes from the database sequence, so numbers are unique across instances.
    CaseId
);
row_id!(
    /// A message's row id (inbound and outbound share the table).
    MessageId
);
row_id!(
    /// A campaign's row id (a recurring campaign's runs have ids of their own).
    CampaignId
);

/// No `Display`: a case id is written either as the case number customers see
/// ([`CaseId::number`]) or as the row's integer ([`CaseId::get`]: URLs, cursors, logs), and
/// the compiler makes each place say which. (With a `Display` as `SB…`, formatting a typed
/// case id into an API path or the paging cursor compiled and broke them: the tests caught
/// both while the ids were being typed.)
impl CaseId {
    /// The case number as customers see it: `SB` and the row id in at least eight digits.
    pub fn number(self) -> String {
        format!("SB{:08}", self.0)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for CampaignId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_numbers_in_json_and_integers_in_sqlite() {
        assert_eq!(serde_json::to_string(&MessageId(42)).unwrap(), "42");
        assert_eq!(serde_json::from_str::<CaseId>("7").unwrap(), CaseId(7));
        assert_eq!(CaseId(123).number(), "SB00000123");
        assert_eq!(CaseId(123_456_789_012).number(), "SB123456789012");
        assert_eq!(CampaignId(9).to_string(), "9");
        // Logs print them as the integers they replace.
        assert_eq!(format!("{:?}", Some(MessageId(42))), "Some(42)");
        assert_eq!(format!("{:?}", CaseId(7)), "7");
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let back: MessageId = c
            .query_row("SELECT ?1 + 1", [MessageId(41)], |r| r.get(0))
            .unwrap();
        assert_eq!(back, MessageId(42));
        let kind: String = c
            .query_row("SELECT typeof(?1)", [CampaignId(1)], |r| r.get(0))
            .unwrap();
        assert_eq!(kind, "integer");
    }
}
