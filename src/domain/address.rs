//! A customer's address on either channel: the number an SMS came from or the mailbox an
//! email came from. Parsed once at the edge (a bridge's MO, the email parser) and carried
//! typed into the intake and its statements; its `Debug` and `Display` mask it, so a log line
//! never holds the raw value. The value is [`Address::as_str`]; statements bind it as text.

use super::{Channel, EmailAddress, PhoneNumber};
use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Address {
    Phone(PhoneNumber),
    Email(EmailAddress),
}

impl Address {
    pub fn as_str(&self) -> &str {
        match self {
            Address::Phone(p) => p.as_str(),
            Address::Email(e) => e.as_str(),
        }
    }

    /// The channel an address of this shape is reached on.
    pub fn channel(&self) -> Channel {
        match self {
            Address::Phone(_) => Channel::Sms,
            Address::Email(_) => Channel::Email,
        }
    }

    /// An address stored by an earlier step (a part of a concatenated SMS), read back for
    /// `channel`. `None` if it no longer parses.
    pub fn stored(channel: Channel, s: &str) -> Option<Address> {
        match channel {
            Channel::Sms => PhoneNumber::parse(s, "86").ok().map(Address::Phone),
            Channel::Email => EmailAddress::parse(s).ok().map(Address::Email),
        }
    }
}

/// An address in either shape: a mailbox if it has an `@`, else a number (country 86 for a
/// national one). For input that carries no channel (tests, tools).
impl std::str::FromStr for Address {
    type Err = String;
    fn from_str(s: &str) -> Result<Address, String> {
        if s.contains('@') {
            EmailAddress::parse(s)
                .map(Address::Email)
                .map_err(|e| e.to_string())
        } else {
            PhoneNumber::parse(s, "86")
                .map(Address::Phone)
                .map_err(|e| e.to_string())
        }
    }
}

impl From<PhoneNumber> for Address {
    fn from(p: PhoneNumber) -> Address {
        Address::Phone(p)
    }
}

impl From<EmailAddress> for Address {
    fn from(e: EmailAddress) -> Address {
        Address::Email(e)
    }
}

impl From<Address> for String {
    fn from(a: Address) -> String {
        match a {
            Address::Phone(p) => p.into(),
            Address::Email(e) => e.into(),
        }
    }
}

impl PartialEq<&str> for Address {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Phone(p) => p.fmt(f),
            Address::Email(e) => e.fmt(f),
        }
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Phone(p) => p.fmt(f),
            Address::Email(e) => e.fmt(f),
        }
    }
}

impl<DB: sqlx::Database> sqlx::Type<DB> for Address
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

impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for Address
where
    String: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        // The raw value: statements store the address, only logs mask it.
        <String as sqlx::Encode<'q, DB>>::encode(self.as_str().to_string(), buf)
    }
}

impl rusqlite::types::ToSql for Address {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_raw_for_statements_and_masked_for_logs() {
        let p: Address = PhoneNumber::parse("13800138000", "86").unwrap().into();
        let e: Address = EmailAddress::parse("ZhangSan@example.cn").unwrap().into();
        assert_eq!((p.as_str(), p.channel()), ("+8613800138000", Channel::Sms));
        assert_eq!(
            (e.as_str(), e.channel()),
            ("zhangsan@example.cn", Channel::Email)
        );
        assert_eq!(format!("{p} {e}"), "+86138****8000 z***@example.cn");
        let dbg = format!("{p:?} {e:?} {:?}", Some(&e));
        assert!(
            !dbg.contains("0013800") && !dbg.contains("zhangsan"),
            "{dbg}"
        );
        assert_eq!(String::from(p.clone()), "+8613800138000");
        assert_eq!(Address::stored(Channel::Sms, "+8613800138000"), Some(p));
        assert_eq!(
            Address::stored(Channel::Email, "zhangsan@example.cn"),
            Some(e)
        );
        assert_eq!(Address::stored(Channel::Email, "nobody"), None);
    }
}
