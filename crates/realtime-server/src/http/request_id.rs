//! The request id of every response (`x-request-id`): the W3C `baggage` entry `request-id`
//! when it is 10–200 printable ASCII characters, else the request's own `x-request-id` when it
//! is 20–200 bytes (Plug's rule), else a fresh id.

use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

/// The baggage key upstream's released image reads.
pub const BAGGAGE_KEY: &str = "request-id";

/// Chooses the request id for a request.
pub fn choose(headers: &HeaderMap) -> String {
    from_baggage(headers)
        .or_else(|| from_header(headers))
        .unwrap_or_else(generate)
}

fn from_baggage(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("baggage")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|member| {
            let kv = member.split(';').next()?;
            let (k, v) = kv.split_once('=')?;
            (k.trim() == BAGGAGE_KEY).then(|| v.trim().to_string())
        })
        .find(|v| (10..=200).contains(&v.len()) && v.bytes().all(|b| (0x21..=0x7e).contains(&b)))
}

fn from_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| (20..=200).contains(&v.len()))
        .map(str::to_string)
}

/// A fresh 20-character id (URL-safe base64 of 15 random bytes), like Plug's.
pub fn generate() -> String {
    let mut bytes = [0u8; 15];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn precedence() {
        let own = "abcdefghijklmnopqrstuvwxyz";
        assert_eq!(choose(&headers(&[("x-request-id", own)])), own);
        assert_eq!(
            choose(&headers(&[
                ("x-request-id", own),
                ("baggage", "other=1, request-id=from-baggage-1;p=2")
            ])),
            "from-baggage-1"
        );
        // Too short for either rule: a fresh id.
        let id = choose(&headers(&[
            ("x-request-id", "short"),
            ("baggage", "request-id=tiny"),
        ]));
        assert_eq!(id.len(), 20);
        assert_ne!(id, "short");
        assert_ne!(generate(), generate());
    }
}
