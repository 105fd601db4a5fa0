//! RFC 8058 one-click unsubscribe for bulk mail: every campaign mail carries
//! `List-Unsubscribe: <{server.public_url}/unsubscribe/{token}>` and
//! `List-Unsubscribe-Post: List-Unsubscribe=One-Click`; a POST to that URL opts the address out
//! at once (queued commercial mail withdrawn too), with the campaign's message as evidence.
//! The token names the campaign and the address and is signed (HMAC-SHA256, a key the
//! instances share in the database), so it cannot be forged for someone else.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

fn mac(key: &[u8], payload: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    m.update(payload.as_bytes());
    m.finalize().into_bytes()[..16].to_vec()
}

/// The token of (campaign, address).
pub fn token(key: &[u8], campaign_id: i64, address: &str) -> String {
    let payload = format!("{campaign_id}:{address}");
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        URL_SAFE_NO_PAD.encode(mac(key, &payload))
    )
}

/// (campaign, address) of a token whose signature holds.
pub fn verify(key: &[u8], token: &str) -> Option<(i64, String)> {
    let (p, sig) = token.split_once('.')?;
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(p).ok()?).ok()?;
    let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
    use subtle::ConstantTimeEq;
    if !bool::from(mac(key, &payload).ct_eq(&sig)) {
        return None;
    }
    let (id, addr) = payload.split_once(':')?;
    Some((id.parse().ok()?, addr.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_campaign_and_address_and_cannot_be_forged() {
        let t = token(b"k1", 7, "li@example.cn");
        assert_eq!(verify(b"k1", &t), Some((7, "li@example.cn".into())));
        assert_eq!(verify(b"k2", &t), None, "another key");
        let (p, s) = t.split_once('.').unwrap();
        let other = URL_SAFE_NO_PAD.encode(b"7:wang@example.cn");
        assert_eq!(
            verify(b"k1", &format!("{other}.{s}")),
            None,
            "another address"
        );
        assert_eq!(verify(b"k1", p), None);
        assert_eq!(verify(b"k1", "garbage"), None);
    }
}
