//! Tenant JWT verification (PROTOCOL.md §4): token cleaning, key choice from the tenant's
//! secret or JWKS, signature check and upstream's claim rules, with its error vocabulary.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use realtime_protocol::wording::{http, join, stop};
use serde_json::{Map, Value};

/// Claims of a verified token.
pub type Claims = Map<String, Value>;

/// Why a token was refused, in upstream's categories (PROTOCOL.md §4.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three segments, or a claims segment that is not base64url.
    #[error("malformed token")]
    Malformed,
    /// Integer `exp` at or before now; `seconds` is `now - exp`.
    #[error("token expired {seconds} seconds ago")]
    Expired {
        /// How long ago the token expired.
        seconds: i64,
    },
    /// `role` or `exp` absent.
    #[error("missing role or exp")]
    MissingClaims,
    /// Signature does not verify.
    #[error("bad signature")]
    Signature,
    /// No usable key and no `kid`.
    #[error("no signer")]
    SignerNoKid,
    /// No usable JWK for the `kid`.
    #[error("no signer for kid {0}")]
    SignerKid(String),
    /// `exp` valid at verification but not after rounding (fractional `exp`).
    #[error("expiration invalid")]
    ExpirationInvalid,
    /// Anything else (bad `iat`, non-numeric `exp`, validator mismatch, bad header, …).
    #[error("invalid token: {0}")]
    Generic(String),
}

impl JwtError {
    /// HTTP status and `error` text of a refused WebSocket upgrade (PROTOCOL.md §1.5).
    pub fn connect_refusal(&self) -> (u16, String) {
        match self {
            JwtError::Malformed => (401, http::MALFORMED_JWT.into()),
            JwtError::Expired { .. } => (401, http::TOKEN_EXPIRED.into()),
            JwtError::MissingClaims => (401, http::ROLE_AND_EXP_REQUIRED.into()),
            JwtError::Signature => (401, http::SIGNATURE_ERROR.into()),
            JwtError::SignerNoKid => (401, http::SIGNER_ERROR.into()),
            JwtError::SignerKid(kid) => (401, http::signer_error_for_kid(kid)),
            JwtError::ExpirationInvalid | JwtError::Generic(_) => {
                (500, http::ERROR_CONNECTING.into())
            }
        }
    }

    /// Join error `reason` (PROTOCOL.md §4.4, join column).
    pub fn join_reason(&self) -> String {
        match self {
            JwtError::Malformed => join::MALFORMED_JWT.into(),
            JwtError::Expired { seconds } => join::token_expired(*seconds),
            JwtError::MissingClaims => join::ROLE_AND_EXP_REQUIRED.into(),
            JwtError::Signature => join::SIGNATURE_ERROR.into(),
            JwtError::SignerNoKid => join::SIGNER_ERROR.into(),
            JwtError::SignerKid(kid) => join::signer_error_for_kid(kid),
            JwtError::ExpirationInvalid => join::EXPIRATION_INVALID.into(),
            JwtError::Generic(_) => join::UNKNOWN_ERROR.into(),
        }
    }

    /// `system` error message when a channel's token is refused (PROTOCOL.md §4.4, right column).
    pub fn channel_message(&self) -> String {
        match self {
            JwtError::Malformed => stop::MALFORMED_JWT.into(),
            JwtError::Expired { seconds } => stop::token_expired(*seconds),
            JwtError::MissingClaims => stop::ROLE_AND_EXP_REQUIRED.into(),
            JwtError::Signature => stop::SIGNATURE_ERROR.into(),
            JwtError::SignerNoKid => stop::SIGNER_ERROR.into(),
            JwtError::SignerKid(kid) => stop::signer_error_for_kid(kid),
            JwtError::ExpirationInvalid => stop::expiration_invalid(0),
            JwtError::Generic(detail) => stop::invalid_token(detail),
        }
    }
}

/// The tenant's key material.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    /// Decrypted `jwt_secret`, used as raw bytes.
    pub secret: Option<&'a str>,
    /// `jwt_jwks` (`{"keys":[…]}`).
    pub jwks: Option<&'a Value>,
}

/// Percent-decodes the token and removes every whitespace character (PROTOCOL.md §4.1).
pub fn clean_token(raw: &str) -> Result<String, JwtError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => return Err(JwtError::Generic("invalid percent-encoding".into())),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    let text = String::from_utf8_lossy(&out);
    Ok(text.chars().filter(|c| !c.is_whitespace()).collect())
}

fn decode_segment(seg: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(seg.trim_end_matches('=')).ok()
}

/// Verifies a token (already cleaned or not) at time `now` (unix seconds), returning its claims.
pub fn verify(
    raw: &str,
    keys: Keys<'_>,
    validators: &Map<String, Value>,
    now: i64,
) -> Result<Claims, JwtError> {
    let token = clean_token(raw)?;
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(JwtError::Malformed);
    }
    let claims_bytes = decode_segment(parts[1]).ok_or(JwtError::Malformed)?;
    let claims: Claims = match serde_json::from_slice::<Value>(&claims_bytes) {
        Ok(Value::Object(m)) => m,
        _ => return Err(JwtError::Generic("claims are not an object".into())),
    };
    let header: Map<String, Value> =
        match decode_segment(parts[0]).and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
            Some(Value::Object(m)) => m,
            _ => return Err(JwtError::Generic("header is not decodable".into())),
        };
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let kid = header.get("kid").and_then(Value::as_str);
    let (alg, key) = choose_key(alg_name, kid, keys)?;
    let message = format!("{}.{}", parts[0], parts[1]);
    match jsonwebtoken::crypto::verify(parts[2], message.as_bytes(), &key, alg) {
        Ok(true) => {}
        _ => return Err(JwtError::Signature),
    }
    check_claims(claims, validators, now)
}

fn choose_key(
    alg_name: &str,
    kid: Option<&str>,
    keys: Keys<'_>,
) -> Result<(Algorithm, DecodingKey), JwtError> {
    let jwk_list: Vec<&Value> = keys
        .jwks
        .and_then(|j| j.get("keys"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let find = |kty: &str, kid: &str| {
        jwk_list.iter().copied().find(|k| {
            k.get("kty").and_then(Value::as_str) == Some(kty)
                && k.get("kid").and_then(Value::as_str) == Some(kid)
        })
    };
    let asymmetric = |alg: Algorithm, kty: &str| -> Result<(Algorithm, DecodingKey), JwtError> {
        match (kid, keys.jwks.is_some()) {
            (Some(kid), true) => {
                let jwk = find(kty, kid).ok_or_else(|| JwtError::SignerKid(kid.to_string()))?;
                if kty == "OKP"
                    && !matches!(
                        jwk.get("crv").and_then(Value::as_str),
                        Some("Ed25519") | Some("Ed448")
                    )
                {
                    return Err(JwtError::SignerKid(kid.to_string()));
                }
                let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone())
                    .map_err(|_| JwtError::SignerKid(kid.to_string()))?;
                let key = DecodingKey::from_jwk(&parsed)
                    .map_err(|_| JwtError::SignerKid(kid.to_string()))?;
                Ok((alg, key))
            }
            _ => Err(JwtError::SignerNoKid),
        }
    };
    match alg_name {
        "RS256" => asymmetric(Algorithm::RS256, "RSA"),
        "RS384" => asymmetric(Algorithm::RS384, "RSA"),
        "RS512" => asymmetric(Algorithm::RS512, "RSA"),
        "ES256" => asymmetric(Algorithm::ES256, "EC"),
        "ES384" => asymmetric(Algorithm::ES384, "EC"),
        // The verifier has no P-521; such tokens fail at the signature step.
        "ES512" => asymmetric(Algorithm::ES384, "EC").and(Err(JwtError::Signature)),
        "EdDSA" | "Ed25519" | "Ed448" => asymmetric(Algorithm::EdDSA, "OKP"),
        "HS256" | "HS384" | "HS512" => {
            let alg = match alg_name {
                "HS256" => Algorithm::HS256,
                "HS384" => Algorithm::HS384,
                _ => Algorithm::HS512,
            };
            if let (Some(kid), true) = (kid, keys.jwks.is_some()) {
                let oct = jwk_list.iter().copied().find(|k| {
                    k.get("kty").and_then(Value::as_str) == Some("oct")
                        && k.get("kid").and_then(Value::as_str) == Some(kid)
                        && k.get("k").map(Value::is_string).unwrap_or(false)
                });
                if let Some(jwk) = oct {
                    let k = jwk.get("k").and_then(Value::as_str).unwrap_or("");
                    let bytes = URL_SAFE_NO_PAD
                        .decode(k.trim_end_matches('='))
                        .map_err(|_| JwtError::SignerKid(kid.to_string()))?;
                    return Ok((alg, DecodingKey::from_secret(&bytes)));
                }
            }
            match keys.secret {
                Some(secret) => Ok((alg, DecodingKey::from_secret(secret.as_bytes()))),
                None => Err(JwtError::SignerNoKid),
            }
        }
        _ => Err(JwtError::SignerNoKid),
    }
}

fn check_claims(
    claims: Claims,
    validators: &Map<String, Value>,
    now: i64,
) -> Result<Claims, JwtError> {
    if let Some(exp) = claims.get("exp") {
        let Some(n) = exp.as_f64() else {
            return Err(JwtError::Generic("exp is not a number".into()));
        };
        if n <= now as f64 {
            return match exp.as_i64() {
                Some(i) => Err(JwtError::Expired { seconds: now - i }),
                None => Err(JwtError::Generic("exp expired".into())),
            };
        }
    }
    if let Some(iat) = claims.get("iat") {
        if !iat.is_number() {
            return Err(JwtError::Generic("iat is not a number".into()));
        }
    }
    for (claim, expected) in validators {
        if let Some(actual) = claims.get(claim) {
            if actual != expected {
                return Err(JwtError::Generic(format!("claim {claim} does not match")));
            }
        }
    }
    if !claims.contains_key("role") || !claims.contains_key("exp") {
        return Err(JwtError::MissingClaims);
    }
    Ok(claims)
}

/// The claims of a token verified before (a channel keeps its token, not a second copy of its
/// claims); `None` when it is not a JWT.
pub fn claims_of(raw: &str) -> Option<Claims> {
    let token = clean_token(raw).ok()?;
    let payload = token.split('.').nth(1)?;
    match serde_json::from_slice::<Value>(&decode_segment(payload)?) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// The token's `exp` rounded to whole seconds, as upstream uses it for timers.
pub fn exp_seconds(claims: &Claims) -> Option<i64> {
    claims
        .get("exp")
        .and_then(Value::as_f64)
        .map(|f| f.round() as i64)
}

/// Current unix time in seconds.
pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn hs(claims: Value, secret: &str) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn keys(secret: &str) -> Keys<'_> {
        Keys {
            secret: Some(secret),
            jwks: None,
        }
    }

    #[test]
    fn claims_of_a_verified_token_are_its_claims() {
        let t = hs(
            json!({"role":"authenticated","sub":"u1","exp":4_000_000_000i64}),
            "s3cret",
        );
        let verified = verify(&t, keys("s3cret"), &Map::new(), 1).unwrap();
        assert_eq!(claims_of(&t), Some(verified.clone()));
        assert_eq!(claims_of(&format!("Bearer {t}")), Some(verified));
        assert_eq!(claims_of("not a token"), None);
    }

    #[test]
    fn accepts_valid_hs256() {
        let t = hs(json!({"role":"anon","exp":2000}), "s");
        let c = verify(&t, keys("s"), &Map::new(), 1000).unwrap();
        assert_eq!(c["role"], "anon");
    }

    #[test]
    fn error_categories() {
        let now = 1000;
        let none = Map::new();
        assert_eq!(
            verify("abc", keys("s"), &none, now),
            Err(JwtError::Malformed)
        );
        assert_eq!(verify("", keys("s"), &none, now), Err(JwtError::Malformed));
        let t = hs(json!({"role":"anon","exp":900}), "s");
        assert_eq!(
            verify(&t, keys("s"), &none, now),
            Err(JwtError::Expired { seconds: 100 })
        );
        let t = hs(json!({"exp":2000}), "s");
        assert_eq!(
            verify(&t, keys("s"), &none, now),
            Err(JwtError::MissingClaims)
        );
        let t = hs(json!({"role":"anon","exp":2000}), "other");
        assert_eq!(verify(&t, keys("s"), &none, now), Err(JwtError::Signature));
        let t = hs(json!({"role":"anon","exp":"x"}), "s");
        assert!(matches!(
            verify(&t, keys("s"), &none, now),
            Err(JwtError::Generic(_))
        ));
        let t = hs(json!({"role":"anon","exp":1000}), "s");
        assert_eq!(
            verify(&t, keys("s"), &none, now),
            Err(JwtError::Expired { seconds: 0 })
        );
        let t = hs(json!({"role":"anon","exp":2000,"iss":"x"}), "s");
        let v: Map<String, Value> = serde_json::from_value(json!({"iss":"y"})).unwrap();
        assert!(matches!(
            verify(&t, keys("s"), &v, now),
            Err(JwtError::Generic(_))
        ));
    }

    #[test]
    fn kid_rules() {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("k9".into());
        // A structurally valid token whose signature never gets checked: the kid misses first.
        let head = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&h).unwrap());
        let body = URL_SAFE_NO_PAD.encode(br#"{"role":"anon","exp":2000}"#);
        let t = format!("{head}.{body}.c2ln");
        let jwks = json!({"keys":[]});
        let k = Keys {
            secret: Some("s"),
            jwks: Some(&jwks),
        };
        assert_eq!(
            verify(&t, k, &Map::new(), 1000),
            Err(JwtError::SignerKid("k9".into()))
        );
        assert_eq!(
            verify(&t, keys("s"), &Map::new(), 1000),
            Err(JwtError::SignerNoKid)
        );
        // HS with a kid and an oct key.
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("o1".into());
        let t = encode(
            &h,
            &json!({"role":"anon","exp":2000}),
            &EncodingKey::from_secret(b"octkey"),
        )
        .unwrap();
        let jwks = json!({"keys":[{"kty":"oct","kid":"o1","k":URL_SAFE_NO_PAD.encode(b"octkey")}]});
        let k = Keys {
            secret: Some("s"),
            jwks: Some(&jwks),
        };
        assert!(verify(&t, k, &Map::new(), 1000).is_ok());
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean_token("a%2Eb\n c").unwrap(), "a.bc");
        assert!(clean_token("a%zz").is_err());
    }
}
