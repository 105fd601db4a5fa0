//! Email addresses. A customer's address is lowercased and checked once, where the mail is
//! read; its `Debug` and `Display` mask it (`z***@example.cn`) so an address formatted into a
//! log does not leak.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A lowercased address with one `@`, a non-empty local part and domain, no whitespace or
/// control characters, at most [`EmailAddress::MAX_BYTES`] bytes (RFC 5321's path limit).
/// The address itself is [`EmailAddress::as_str`] (and what serde writes).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailAddressError {
    #[error("email address is empty")]
    Empty,
    #[error("email address of {0} bytes is over {max}", max = EmailAddress::MAX_BYTES)]
    TooLong(usize),
    #[error("email address {0:?} needs one @ between a local part and a domain")]
    NoAt(String),
    #[error("email address {0:?} contains whitespace or control characters")]
    BadCharacters(String),
}

impl EmailAddress {
    pub const MAX_BYTES: usize = 254;

    /// Reads an address as a header gives it: trimmed, angle brackets removed, lowercased.
    ///
    /// # Errors
    /// [`EmailAddressError`] says what is wrong (the input is cut to 64 characters in it).
    pub fn parse(input: &str) -> Result<Self, EmailAddressError> {
        let a = input.trim().trim_matches(['<', '>']);
        if a.is_empty() {
            return Err(EmailAddressError::Empty);
        }
        if a.len() > Self::MAX_BYTES {
            return Err(EmailAddressError::TooLong(a.len()));
        }
        let shown = || a.chars().take(64).collect::<String>();
        if a.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailAddressError::BadCharacters(shown()));
        }
        let a = a.to_lowercase();
        match a.split_once('@') {
            Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
            {
                Ok(EmailAddress(a))
            }
            _ => Err(EmailAddressError::NoAt(shown())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::mask(&self.0))
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", super::mask(&self.0))
    }
}

impl PartialEq<&str> for EmailAddress {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = EmailAddressError;
    fn try_from(s: String) -> Result<Self, EmailAddressError> {
        EmailAddress::parse(&s)
    }
}

impl From<EmailAddress> for String {
    fn from(a: EmailAddress) -> String {
        a.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_lowercased_and_formats_masked() {
        let a = EmailAddress::parse(" <ZhangSan@Example.CN> ").unwrap();
        assert_eq!(a.as_str(), "zhangsan@example.cn");
        assert_eq!(a.domain(), "example.cn");
        assert_eq!(format!("{a}"), "z***@example.cn");
        assert_eq!(format!("{a:?}"), "EmailAddress(z***@example.cn)");
        assert!(!format!("{a} {a:?} {:?}", Some(&a)).contains("zhangsan"));
        assert_eq!(String::from(a.clone()), "zhangsan@example.cn");
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            "\"zhangsan@example.cn\""
        );
        let back: EmailAddress = serde_json::from_str("\"zhangsan@example.cn\"").unwrap();
        assert_eq!(back, a);
        assert!(serde_json::from_str::<EmailAddress>("\"nobody\"").is_err());
    }

    #[test]
    fn malformed_addresses_are_refused_with_a_reason() {
        assert_eq!(EmailAddress::parse("  "), Err(EmailAddressError::Empty));
        assert_eq!(EmailAddress::parse("<>"), Err(EmailAddressError::Empty));
        for bad in ["nobody", "@example.cn", "a@", "a@b@c"] {
            assert!(
                matches!(EmailAddress::parse(bad), Err(EmailAddressError::NoAt(_))),
                "{bad}"
            );
        }
        for bad in ["a b@c.cn", "a@c.cn\r\nBcc: x@y", "a\u{0}@c.cn"] {
            assert!(
                matches!(
                    EmailAddress::parse(bad),
                    Err(EmailAddressError::BadCharacters(_))
                ),
                "{bad:?}"
            );
        }
        let long = format!("{}@example.cn", "a".repeat(250));
        assert_eq!(
            EmailAddress::parse(&long),
            Err(EmailAddressError::TooLong(long.len()))
        );
    }
}
