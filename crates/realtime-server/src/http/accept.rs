//! Content negotiation of the JSON routes: an `Accept` header, when present, must allow
//! `application/json` (as Phoenix's `accepts ["json"]`), otherwise 406.

use axum::http::{header, HeaderMap};

/// Whether the request accepts a JSON response. No (or an empty) `Accept` header accepts it.
pub fn accepts_json(headers: &HeaderMap) -> bool {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let ranges: Vec<&str> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|r| r.split(';').next().unwrap_or("").trim())
        .filter(|r| !r.is_empty())
        .collect();
    if ranges.is_empty() {
        return true;
    }
    ranges.iter().any(|r| {
        let r = r.to_ascii_lowercase();
        r == "*/*" || r == "application/*" || r == "application/json" || r == "json"
    })
}

/// Whether the client prefers a JSON error body (used for the 404 fallback).
pub fn prefers_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn h(v: Option<&str>) -> HeaderMap {
        let mut m = HeaderMap::new();
        if let Some(v) = v {
            m.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn negotiation() {
        assert!(accepts_json(&h(None)));
        assert!(accepts_json(&h(Some(""))));
        assert!(accepts_json(&h(Some("*/*"))));
        assert!(accepts_json(&h(Some("application/json"))));
        assert!(accepts_json(&h(Some("text/html, application/json;q=0.9"))));
        assert!(accepts_json(&h(Some("application/*"))));
        assert!(!accepts_json(&h(Some("text/html"))));
        assert!(!accepts_json(&h(Some("text/plain, text/html"))));
    }
}
