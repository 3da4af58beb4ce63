//! Bearer authentication of the admin and metrics endpoints (upstream's `check_auth`): exactly
//! one `Authorization: Bearer <token>` header, the token percent-decoded with whitespace
//! removed, not blocklisted, HS256/384/512-signed with one of the configured secrets, `exp`
//! (when present) in the future, `iat` (when present) a number, and every
//! `JWT_CLAIM_VALIDATORS` entry equal when the claim is present. Any failure is a 403 with an
//! empty body.
//!
//! Deliberate difference: changes (create, update, delete, reload, shutdown) also require the
//! token's `role` to be `service_role` or absent, so the anon key (valid for the compose
//! healthcheck) cannot alter tenants.

use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

/// What an admin token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAccess {
    /// Reads only (any valid token).
    Read,
    /// Reads and changes (`role` is `service_role` or absent).
    Write,
}

/// Why a token was refused (never sent to the client; all map to 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header, several, or not `Bearer `.
    #[error("missing or malformed Authorization header")]
    MissingBearer,
    /// The token is on the blocklist.
    #[error("token is blocklisted")]
    Blocklisted,
    /// No secret is configured.
    #[error("no secret configured")]
    NoSecret,
    /// Bad signature, algorithm or encoding.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// `exp` in the past or not a number.
    #[error("token expired")]
    Expired,
    /// `iat` is not a number.
    #[error("iat is not a number")]
    BadIat,
    /// A `JWT_CLAIM_VALIDATORS` entry did not match.
    #[error("claim {0} does not match")]
    ClaimMismatch(String),
}

/// Extracts the bearer token: exactly one header, `Bearer ` prefix (case-sensitive), the rest
/// percent-decoded with every whitespace character removed.
pub fn bearer_token(headers: &HeaderMap) -> Result<String, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(AuthError::MissingBearer);
    };
    let value = value.to_str().map_err(|_| AuthError::MissingBearer)?;
    let raw = value
        .strip_prefix("Bearer ")
        .ok_or(AuthError::MissingBearer)?;
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| AuthError::Invalid("token is not UTF-8 after percent-decoding".into()))?;
    Ok(decoded.chars().filter(|c| !c.is_whitespace()).collect())
}

/// Verifies `token` against `secrets` in turn and returns its claims.
pub fn verify(
    token: &str,
    secrets: &[&str],
    blocklist: &[String],
    validators: &Map<String, Value>,
    now: i64,
) -> Result<Map<String, Value>, AuthError> {
    if blocklist.iter().any(|b| b == token) {
        return Err(AuthError::Blocklisted);
    }
    if secrets.is_empty() {
        return Err(AuthError::NoSecret);
    }
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
    if !matches!(
        header.alg,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    ) {
        return Err(AuthError::Invalid(format!(
            "algorithm {:?} is not allowed",
            header.alg
        )));
    }
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;

    let mut last = AuthError::NoSecret;
    for secret in secrets {
        match jsonwebtoken::decode::<Map<String, Value>>(
            token,
            &DecodingKey::from_secret(secret.as_bytes()),
            &validation,
        ) {
            Ok(data) => {
                check_claims(&data.claims, validators, now)?;
                return Ok(data.claims);
            }
            Err(e) => last = AuthError::Invalid(e.to_string()),
        }
    }
    Err(last)
}

fn check_claims(
    claims: &Map<String, Value>,
    validators: &Map<String, Value>,
    now: i64,
) -> Result<(), AuthError> {
    if let Some(exp) = claims.get("exp") {
        match exp.as_f64() {
            Some(exp) if exp > now as f64 => {}
            _ => return Err(AuthError::Expired),
        }
    }
    if let Some(iat) = claims.get("iat") {
        if !iat.is_number() {
            return Err(AuthError::BadIat);
        }
    }
    for (name, expected) in validators {
        if let Some(actual) = claims.get(name) {
            if actual != expected {
                return Err(AuthError::ClaimMismatch(name.clone()));
            }
        }
    }
    Ok(())
}

/// What the claims allow on the admin API.
pub fn access(claims: &Map<String, Value>) -> AdminAccess {
    match claims.get("role") {
        None => AdminAccess::Write,
        Some(Value::String(r)) if r == "service_role" => AdminAccess::Write,
        Some(_) => AdminAccess::Read,
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "your-super-secret-jwt-token-with-at-least-32-characters-long";

    fn token(alg: Algorithm, claims: Value, secret: &str) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn check(t: &str) -> Result<Map<String, Value>, AuthError> {
        verify(t, &[SECRET], &[], &Map::new(), 1_000)
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), Err(AuthError::MissingBearer));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer_token(&h), Err(AuthError::MissingBearer));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer a%2Eb c\t.d"),
        );
        assert_eq!(bearer_token(&h).unwrap(), "a.bc.d");
        h.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(bearer_token(&h), Err(AuthError::MissingBearer));
    }

    #[test]
    fn algorithms_and_claims() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            assert!(check(&token(alg, json!({}), SECRET)).is_ok());
        }
        assert!(check(&token(Algorithm::HS256, json!({"exp": 2000}), SECRET)).is_ok());
        assert_eq!(
            check(&token(Algorithm::HS256, json!({"exp": 999}), SECRET)),
            Err(AuthError::Expired)
        );
        assert_eq!(
            check(&token(Algorithm::HS256, json!({"exp": "2000"}), SECRET)),
            Err(AuthError::Expired)
        );
        assert_eq!(
            check(&token(Algorithm::HS256, json!({"iat": "x"}), SECRET)),
            Err(AuthError::BadIat)
        );
        assert!(check(&token(Algorithm::HS256, json!({"iat": 5}), SECRET)).is_ok());
        assert!(matches!(
            check(&token(Algorithm::HS256, json!({}), "other-secret")),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(check("not.a.jwt"), Err(AuthError::Invalid(_))));
        // alg none
        assert!(check("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.e30.").is_err());
    }

    #[test]
    fn second_secret_blocklist_validators() {
        let next = "the-next-secret-with-at-least-32-characters";
        let t = token(Algorithm::HS256, json!({"iss": "y"}), next);
        assert!(verify(&t, &[SECRET, next], &[], &Map::new(), 0).is_ok());
        assert_eq!(
            verify(
                &t,
                &[SECRET, next],
                std::slice::from_ref(&t),
                &Map::new(),
                0
            ),
            Err(AuthError::Blocklisted)
        );
        let validators = json!({"iss": "x"}).as_object().unwrap().clone();
        assert_eq!(
            verify(&t, &[next], &[], &validators, 0),
            Err(AuthError::ClaimMismatch("iss".into()))
        );
        let without = token(Algorithm::HS256, json!({"role": "anon"}), next);
        assert!(verify(&without, &[next], &[], &validators, 0).is_ok());
        assert_eq!(
            verify(&without, &[], &[], &validators, 0),
            Err(AuthError::NoSecret)
        );
    }

    #[test]
    fn write_access_by_role() {
        assert_eq!(access(json!({}).as_object().unwrap()), AdminAccess::Write);
        assert_eq!(
            access(json!({"role": "service_role"}).as_object().unwrap()),
            AdminAccess::Write
        );
        assert_eq!(
            access(json!({"role": "anon"}).as_object().unwrap()),
            AdminAccess::Read
        );
        assert_eq!(
            access(json!({"role": 1}).as_object().unwrap()),
            AdminAccess::Read
        );
    }
}
