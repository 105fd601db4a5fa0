//! E.164 phone numbers. Bridges hand us numbers in every shape (`8613800138000`,
//! `+86 138-0013-8000`, `013800138000`, `13800138000`); inside switchboard a customer is always
//! `+<country><national>` so dedupe, reply matching and opt-outs see one customer.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A customer's number. Its `Debug` and `Display` mask it (`+86138****8000`), so a number
/// formatted into a log line does not leak; the number itself is [`PhoneNumber::as_str`] (and
/// what serde writes).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("phone number is empty")]
    Empty,
    #[error(
        "phone number {0:?} contains characters other than digits, spaces, dashes, dots, parentheses and a leading +"
    )]
    BadCharacters(String),
    #[error(
        "phone number {0:?} has {1} digits; E.164 allows 3 to 15 (service numbers like 10000 are kept as short codes)"
    )]
    BadLength(String, usize),
}

impl PhoneNumber {
    /// Parses a number as a bridge sends it. `default_country` (e.g. `86`) is prefixed to
    /// national numbers. Short codes (3–6 digits, e.g. `10000`, `10001`) stay as they are,
    /// because they are service numbers, not subscribers.
    ///
    /// # Errors
    /// [`PhoneError`] says what is wrong with the input.
    pub fn parse(input: &str, default_country: &str) -> Result<Self, PhoneError> {
        let t = input.trim();
        if t.is_empty() {
            return Err(PhoneError::Empty);
        }
        let mut digits = String::with_capacity(t.len());
        let mut plus = false;
        for (i, c) in t.chars().enumerate() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if i == 0 => plus = true,
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(PhoneError::BadCharacters(input.to_string())),
            }
        }
        if digits.is_empty() {
            return Err(PhoneError::BadCharacters(input.to_string()));
        }
        let e164 = if plus {
            digits
        } else if let Some(rest) = digits.strip_prefix("00") {
            rest.to_string()
        } else if digits.len() <= 6 {
            // Short code: no country, no plus. Fewer than 3 digits is no number at all.
            if digits.len() < 3 {
                return Err(PhoneError::BadLength(input.to_string(), digits.len()));
            }
            return Ok(PhoneNumber(digits));
        } else if default_country == "86" {
            // Chinese numbering: mobiles are 11 digits starting with 1; a leading 0 is the
            // trunk prefix of landlines and of mobiles dialled as 0 + number.
            let national = digits.strip_prefix('0').unwrap_or(&digits);
            if digits.starts_with("86") && digits.len() >= 12 {
                digits
            } else {
                format!("86{national}")
            }
        } else if digits.starts_with(default_country) && digits.len() > 10 {
            digits
        } else {
            let national = digits.strip_prefix('0').unwrap_or(&digits);
            format!("{default_country}{national}")
        };
        if !(3..=15).contains(&e164.len()) || e164.starts_with('0') {
            return Err(PhoneError::BadLength(input.to_string(), e164.len()));
        }
        Ok(PhoneNumber(format!("+{e164}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits without the `+`, the form Kannel and Jasmin expect on sendsms.
    pub fn digits(&self) -> &str {
        self.0.trim_start_matches('+')
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&super::mask(&self.0))
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", super::mask(&self.0))
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneError;
    fn try_from(s: String) -> Result<Self, PhoneError> {
        PhoneNumber::parse(&s, "86")
    }
}

impl From<PhoneNumber> for String {
    fn from(p: PhoneNumber) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Formatted for a log (`{}` or `{:?}`), a number is masked; the number itself is only
    /// what `as_str`, `String::from` and serde give.
    #[test]
    fn a_number_formats_masked() {
        let p = PhoneNumber::parse("13800138000", "86").unwrap();
        assert_eq!(p.as_str(), "+8613800138000");
        assert_eq!(format!("{p}"), "+86138****8000");
        assert_eq!(format!("{p:?}"), "PhoneNumber(+86138****8000)");
        assert!(!format!("{p} {p:?} {:?}", Some(&p)).contains("0013800"));
        assert_eq!(String::from(p.clone()), "+8613800138000");
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"+8613800138000\"");
    }

    fn p(s: &str) -> String {
        String::from(PhoneNumber::parse(s, "86").unwrap())
    }

    #[test]
    fn chinese_mobiles_in_every_shape_become_one_e164_number() {
        for s in [
            "13800138000",
            "8613800138000",
            "+8613800138000",
            "008613800138000",
            "+86 138-0013-8000",
            "013800138000",
        ] {
            assert_eq!(p(s), "+8613800138000", "{s}");
        }
    }

    #[test]
    fn short_codes_stay_short_codes() {
        assert_eq!(p("10000"), "10000");
        assert_eq!(p("10001"), "10001");
        assert_eq!(p("110"), "110");
        for s in ["1", "11", "0", "00"] {
            assert!(
                matches!(
                    PhoneNumber::parse(s, "86"),
                    Err(PhoneError::BadLength(_, _))
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn foreign_numbers_with_plus_keep_their_country() {
        assert_eq!(p("+44 20 7946 0958"), "+442079460958");
        assert_eq!(
            PhoneNumber::parse("2079460958", "44").unwrap().as_str(),
            "+442079460958"
        );
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        assert_eq!(PhoneNumber::parse("  ", "86"), Err(PhoneError::Empty));
        assert!(matches!(
            PhoneNumber::parse("138abc", "86"),
            Err(PhoneError::BadCharacters(_))
        ));
        assert!(matches!(
            PhoneNumber::parse("+1234567890123456789", "86"),
            Err(PhoneError::BadLength(_, _))
        ));
        assert!(matches!(
            PhoneNumber::parse("1+3800138000", "86"),
            Err(PhoneError::BadCharacters(_))
        ));
    }
}
