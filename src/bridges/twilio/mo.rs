//! Twilio-style webhook: form fields `MessageSid`, `From`, `To`, `Body`. When an auth token is
//! configured, `X-Twilio-Signature` must equal base64(HMAC-SHA1(token, URL + every POST
//! parameter name and value sorted by name)), compared in constant time.

use crate::domain::Channel;
use crate::inbound::{BadInput, NewInbound, check_text, form_pairs, phone, text_param};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// # Errors
/// Missing or invalid fields.
pub fn parse(form: &[u8], country: &str) -> Result<NewInbound, BadInput> {
    let q = form_pairs(form);
    let from = text_param(&q, "From")?.ok_or_else(|| BadInput::missing("From"))?;
    let to = text_param(&q, "To")?.ok_or_else(|| BadInput::missing("To"))?;
    let mut body = text_param(&q, "Body")?.ok_or_else(|| BadInput::missing("Body"))?;
    check_text("Body", &mut body)?;
    Ok(NewInbound {
        channel: Channel::Sms,
        dialect: "twilio",
        external_id: text_param(&q, "MessageSid")?.filter(|s| !s.is_empty()),
        from: phone("From", &from, country)?.into(),
        to: phone("To", &to, country)?.into(),
        subject: None,
        text: body,
        raw: form.to_vec(),
        email: None,
        part: None,
    })
}

/// The signature Twilio computes for `url` and the form `params`.
pub fn signature(auth_token: &str, url: &str, form: &[u8]) -> String {
    let mut pairs: Vec<(String, String)> = form_pairs(form)
        .into_iter()
        .map(|(k, v)| (k.into_owned(), String::from_utf8_lossy(&v).into_owned()))
        .collect();
    pairs.sort();
    let mut data = url.to_string();
    for (k, v) in pairs {
        data.push_str(&k);
        data.push_str(&v);
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Constant-time check of a received signature.
pub fn verify(auth_token: &str, url: &str, form: &[u8], received: &str) -> bool {
    let expected = signature(auth_token, url, form);
    expected.as_bytes().ct_eq(received.trim().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_documented_example_signature() {
        // The example from Twilio's security documentation.
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let form = b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&To=%2B18005551212";
        assert_eq!(
            signature("12345", url, form),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert!(verify("12345", url, form, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        assert!(!verify("12345", url, form, "0/KCTR6DLpKmkAf8muzZqo1nDgQ"));
    }

    #[test]
    fn fields_are_parsed() {
        let m = parse(
            b"MessageSid=SM1&From=%2B8613800138000&To=%2B8610000&Body=hello",
            "86",
        )
        .unwrap();
        assert_eq!(m.external_id.as_deref(), Some("SM1"));
        assert_eq!(m.text, "hello");
        assert_eq!(
            parse(b"From=x&To=1&Body=h", "86").unwrap_err().field,
            "From"
        );
    }
}
