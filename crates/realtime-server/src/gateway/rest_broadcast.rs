//! REST broadcasts (CONTROL-PLANE.md §5.5): `POST /api/broadcast` (batch, JSON broadcasts) and
//! `POST /api/broadcast/:topic/events/:event` (single message, user broadcast), fed to the hub.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use realtime_protocol::wording::rest;
use realtime_protocol::{events, reply, BroadcastEncoding, Outbound, UserBroadcast};
use serde_json::{json, Map, Value};

use crate::gateway::authorization::{Policies, PolicyContext, PolicyError};
use crate::gateway::hub::TopicKey;
use crate::gateway::jwt;
use crate::gateway::ping::{add_headers, not_acceptable, tenant_gate, Gate};
use crate::gateway::socket::json_error;
use crate::gateway::tenant_resolve::TenantView;
use crate::gateway::{Gateway, GatewayState};

/// The tenant token of a REST request: `Authorization: Bearer <t>` (scheme case-insensitive),
/// else the `apikey` header, else a scheme-less `Authorization` value.
fn rest_token(headers: &HeaderMap) -> Option<String> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(auth) = auth {
        let parts: Vec<&str> = auth.split(' ').collect();
        if parts.len() == 2 && parts[0].eq_ignore_ascii_case("bearer") {
            return Some(parts[1].to_string());
        }
    }
    if let Some(k) = headers.get("apikey").and_then(|v| v.to_str().ok()) {
        return Some(k.to_string());
    }
    auth.filter(|a| !a.contains(' ')).map(str::to_string)
}

fn authorize(gw: &Gateway, tenant: &TenantView, headers: &HeaderMap) -> Option<jwt::Claims> {
    let token = rest_token(headers)?;
    jwt::verify(
        &token,
        tenant.keys(),
        &gw.settings.jwt_claim_validators,
        jwt::now_secs(),
    )
    .ok()
}

/// Whether `Accept` names `application/octet-stream`.
fn accepts_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("application/octet-stream"))
}

/// The caller's authorisation context for a private topic.
fn auth_context(topic: &str, claims: &jwt::Claims, headers: &HeaderMap) -> PolicyContext {
    let mut x = Map::new();
    for (name, value) in headers.iter() {
        if name.as_str().starts_with("x-") {
            x.insert(
                name.as_str().to_string(),
                Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
            );
        }
    }
    PolicyContext {
        topic: topic.to_string(),
        claims: claims.clone(),
        headers: x,
    }
}

/// The single-message route's answer when the write check could not run.
fn write_check_failure(e: &PolicyError) -> Response {
    match e {
        PolicyError::Policy(_) => json_error(422, "message", rest::RLS_POLICY_ERROR),
        PolicyError::Canceled(_) => json_error(422, "message", rest::QUERY_CANCELED),
        PolicyError::MissingPartition => json_error(422, "message", rest::MISSING_PARTITION),
        PolicyError::Unavailable(_) => {
            json_error(422, "message", rest::TENANT_DATABASE_UNAVAILABLE)
        }
    }
}

/// What passed the gate.
type Gated = (
    Arc<TenantView>,
    Vec<(&'static str, axum::http::HeaderValue)>,
    jwt::Claims,
);

/// Tenant gate, then token and suspension.
async fn gate(gw: &Gateway, headers: &HeaderMap) -> Result<Gated, Response> {
    let (tenant, rate_headers) = match tenant_gate(gw, headers).await {
        Ok(v) => v,
        Err(Gate::Refused(r)) => return Err(r),
    };
    let Some(claims) = authorize(gw, &tenant, headers) else {
        return Err(json_error(401, "message", rest::UNAUTHORIZED));
    };
    if tenant.suspend {
        return Err(json_error(403, "message", rest::TENANT_SUSPENDED));
    }
    Ok((tenant, rate_headers, claims))
}

fn accepted(rate_headers: &[(&'static str, axum::http::HeaderValue)], cors: bool) -> Response {
    let mut r = StatusCode::ACCEPTED.into_response();
    add_headers(&mut r, rate_headers);
    if cors {
        r.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            axum::http::HeaderValue::from_static("*"),
        );
    }
    r
}

fn key(tenant: &TenantView, private: bool, topic: &str) -> TopicKey {
    TopicKey {
        tenant: Arc::from(tenant.external_id.as_str()),
        private,
        sub: Arc::from(topic),
    }
}

/// `POST /api/broadcast`.
pub async fn batch<S: GatewayState>(
    State(state): State<S>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gw = state.gateway().clone();
    let (tenant, rate_headers, claims) = match gate(&gw, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return json_error(400, "message", rest::BAD_REQUEST),
    };
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"errors":{"messages":[rest::CANT_BE_BLANK]}})),
        )
            .into_response();
    };
    let max = tenant.limits.max_payload_bytes();
    let mut errors = Vec::with_capacity(messages.len());
    let mut any_error = false;
    for m in messages {
        let mut e = Map::new();
        let blank = || json!([rest::CANT_BE_BLANK]);
        if !m.get("topic").map(Value::is_string).unwrap_or(false) {
            e.insert("topic".into(), blank());
        }
        if !m.get("event").map(Value::is_string).unwrap_or(false) {
            e.insert("event".into(), blank());
        }
        match m.get("payload") {
            Some(p @ Value::Object(_)) => {
                if serde_json::to_vec(p).map(|v| v.len()).unwrap_or(0) > max {
                    e.insert(
                        "payload".into(),
                        json!([rest::PAYLOAD_SIZE_EXCEEDS_TENANT_LIMIT]),
                    );
                }
            }
            _ => {
                e.insert("payload".into(), blank());
            }
        }
        any_error |= !e.is_empty();
        errors.push(Value::Object(e));
    }
    if any_error {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"errors":{"messages": errors}})),
        )
            .into_response();
    }
    let limit = tenant.limits.max_events_per_second as f64;
    let events = &gw.limits.rates(&tenant.external_id).events;
    let avg = events.average();
    if avg > limit {
        return json_error(429, "message", rest::RATE_LIMIT_EXCEEDED);
    }
    if avg + messages.len() as f64 > limit {
        return json_error(429, "message", rest::TOO_MANY_MESSAGES_IN_BATCH);
    }
    // Private topics need the caller's broadcast write permission; denied topics (and topics
    // whose check fails) are dropped silently, as upstream does.
    let mut allowed: HashMap<String, bool> = HashMap::new();
    for m in messages {
        let topic = m.get("topic").and_then(Value::as_str).unwrap_or_default();
        if m.get("private").and_then(Value::as_bool).unwrap_or(false)
            && !allowed.contains_key(topic)
        {
            let ctx = auth_context(topic, &claims, &headers);
            let ok = match gw
                .write_policies(&tenant.external_id, &ctx, Policies::default())
                .await
            {
                Ok(p) => p.broadcast_write == Some(true),
                Err(e) => {
                    tracing::warn!(tenant = %tenant.external_id, topic, error = %e, "REST broadcast authorization failed");
                    false
                }
            };
            allowed.insert(topic.to_string(), ok);
        }
    }
    for m in messages {
        let topic = m.get("topic").and_then(Value::as_str).unwrap_or_default();
        let event = m.get("event").cloned().unwrap_or(Value::Null);
        let private = m.get("private").and_then(Value::as_bool).unwrap_or(false);
        events.add(1);
        if private && allowed.get(topic) != Some(&true) {
            continue;
        }
        let meta = m
            .get("id")
            .filter(|v| !v.is_null())
            .map(|id| json!({ "id": id }));
        let payload =
            reply::broadcast_payload(event, m.get("payload").cloned().unwrap_or(json!({})), meta);
        let msg = Outbound::Message(reply::broadcast(
            None,
            format!("{}{topic}", events::TOPIC_PREFIX),
            payload,
        ));
        gw.deliver_broadcast(
            &key(&tenant, private, topic),
            &msg,
            None,
            tenant.limits.max_events_per_second,
        )
        .drained(None)
        .await;
    }
    accepted(&rate_headers, headers.contains_key(header::ORIGIN))
}

/// `POST /api/broadcast/:topic/events/:event`.
pub async fn single<S: GatewayState>(
    State(state): State<S>,
    Path((topic, event)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gw = state.gateway().clone();
    // Accept first (JSON or octet-stream), then Content-Type, then the tenant gate, whose own
    // Accept check is then already satisfied.
    if !crate::http::accept::accepts_json(&headers) && !accepts_octet_stream(&headers) {
        return not_acceptable();
    }
    let mut headers = headers;
    headers.remove(header::ACCEPT);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let binary = match content_type.as_deref() {
        None => false,
        Some("application/json") => false,
        Some("application/octet-stream") => true,
        Some(_) => return json_error(415, "error", rest::UNSUPPORTED_MEDIA_TYPE),
    };
    let (tenant, rate_headers, claims) = match gate(&gw, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut private = query.get("private").map(|v| v == "true").unwrap_or(false);
    let (encoding, payload) = if binary {
        (BroadcastEncoding::Binary, body)
    } else {
        let parsed: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(_) if content_type.is_none() => json!({}),
                Err(_) => return json_error(400, "message", rest::BAD_REQUEST),
            }
        };
        let parsed = match parsed {
            Value::Object(o) => {
                match o.get("private") {
                    Some(Value::Bool(b)) => private = *b,
                    Some(Value::String(s)) => private = s == "true",
                    _ => {}
                }
                Value::Object(o)
            }
            other => json!({ "_json": other }),
        };
        let bytes = serde_json::to_vec(&parsed).unwrap_or_default();
        (BroadcastEncoding::Json, Bytes::from(bytes))
    };
    if payload.len() > tenant.limits.max_payload_bytes() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"errors":{"payload":[rest::PAYLOAD_SIZE_EXCEEDS_TENANT_LIMIT]}})),
        )
            .into_response();
    }
    let events = &gw.limits.rates(&tenant.external_id).events;
    if events.triggered(tenant.limits.max_events_per_second) {
        return json_error(429, "message", rest::RATE_LIMIT_EXCEEDED);
    }
    if private {
        let ctx = auth_context(&topic, &claims, &headers);
        match gw
            .write_policies(&tenant.external_id, &ctx, Policies::default())
            .await
        {
            Ok(p) if p.broadcast_write == Some(true) => {}
            Ok(_) => return json_error(403, "message", rest::UNAUTHORIZED),
            Err(e) => {
                tracing::warn!(tenant = %tenant.external_id, topic = %topic, error = %e, "REST broadcast authorization failed");
                return write_check_failure(&e);
            }
        }
    }
    events.add(1);
    let msg = Outbound::UserBroadcast(UserBroadcast {
        join_ref: None,
        msg_ref: None,
        topic: format!("{}{topic}", events::TOPIC_PREFIX),
        event,
        metadata: Bytes::new(),
        encoding,
        payload,
    });
    // The answer waits until the receivers have room: a REST publisher is slowed like a
    // socket one.
    gw.deliver_broadcast(
        &key(&tenant, private, &topic),
        &msg,
        None,
        tenant.limits.max_events_per_second,
    )
    .drained(None)
    .await;
    accepted(&rate_headers, false)
}
