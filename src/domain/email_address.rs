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
    // The input is not repeated: an error may reach a log.
    #[error("email address needs one @ between a local part and a domain")]
    NoAt,
    #[error("email address contains whitespace or control characters")]
    BadCharacters,
}

impl EmailAddress {
    pub const MAX_BYTES: usize = 254;

    /// Reads an address as a header gives it: trimmed, angle brackets removed, lowercased.
    ///
    /// # Errors
    /// [`EmailAddressError`] says what is wrong.
    pub fn parse(input: &str) -> Result<Self, EmailAddressError> {
        let a = input.trim().trim_matches(['<', '>']);
        if a.is_empty() {
            return Err(EmailAddressError::Empty);
        }
        if a.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailAddressError::BadCharacters);
        }
        // The bound holds for the stored form: lowercasing can lengthen a character.
        let a = a.to_lowercase();
        if a.len() > Self::MAX_BYTES {
            return Err(EmailAddressError::TooLong(a.len()));
        }
        match a.split_once('@') {
            Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
            {
                Ok(EmailAddress(a))
            }
            _ => Err(EmailAddressError::NoAt),
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
        f.pad(&super::mask(&self.0))
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
                matches!(EmailAddress::parse(bad), Err(EmailAddressError::NoAt)),
                "{bad}"
            );
        }
        for bad in ["a b@c.cn", "a@c.cn\r\nBcc: x@y", "a\u{0}@c.cn"] {
            assert!(
                matches!(
                    EmailAddress::parse(bad),
                    Err(EmailAddressError::BadCharacters)
                ),
                "{bad:?}"
            );
        }
        let long = format!("{}@example.cn", "a".repeat(250));
        assert_eq!(
            EmailAddress::parse(&long),
            Err(EmailAddressError::TooLong(long.len()))
        );
        // 'İ' is 2 bytes and lowercases to 3: the bound is on what is kept.
        let grows = format!("{}@example.cn", "İ".repeat(120));
        assert!(grows.len() <= EmailAddress::MAX_BYTES);
        assert!(matches!(
            EmailAddress::parse(&grows),
            Err(EmailAddressError::TooLong(n)) if n > EmailAddress::MAX_BYTES
        ));
        let e = EmailAddress::parse("zhangsan.secret at example.cn").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
