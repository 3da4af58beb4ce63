//! Admin API create/update of a tenant (§5.4): casting and validating the `tenant` object the
//! way upstream's changesets do, then building the row to store. Pure: no IO.

use chrono::{NaiveDateTime, Timelike, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::crypto::Crypto;
use crate::extension::{default_cdc_settings, Extension, POSTGRES_CDC_RLS, REQUIRED_SETTINGS};
use crate::registry::{TenantDefaults, UpsertError};
use crate::tenant::Tenant;

/// Current UTC time truncated to whole seconds, as every registry timestamp is stored.
pub fn now_utc_seconds() -> NaiveDateTime {
    let now = Utc::now().naive_utc();
    now.with_nanosecond(0).unwrap_or(now)
}

/// `POST /api/tenants` pre-check: the external id the create targets, or the 422 body
/// `{"errors":{"external_id":["can't be blank"]}}`.
pub fn external_id_for_create(tenant_params: &Value) -> Result<String, UpsertError> {
    match tenant_params.get("external_id").and_then(Value::as_str) {
        Some(id) if !id.trim().is_empty() => Ok(id.to_string()),
        _ => Err(UpsertError::Invalid(
            json!({"errors": {"external_id": ["can't be blank"]}}),
        )),
    }
}

/// The row to write for an upsert.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    /// The tenant as it will be stored (extensions included).
    pub tenant: Tenant,
    /// Whether the extension rows are replaced by `tenant.extensions`.
    pub replace_extensions: bool,
}

#[derive(Default)]
struct Errors(Map<String, Value>);

impl Errors {
    fn add(&mut self, field: &str, msg: &str) {
        let entry = self
            .0
            .entry(field.to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.push(Value::from(msg));
        }
    }
}

/// Ecto `:string` cast: strings only; blank strings become NULL.
fn cast_string(v: &Value) -> Result<Option<String>, ()> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(()),
    }
}

/// Ecto `:integer` cast: integers, or strings holding a whole integer; must fit `integer`.
fn cast_int(v: &Value) -> Result<Option<i32>, ()> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .map(Some)
            .ok_or(()),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => s.parse::<i32>().map(Some).map_err(|_| ()),
        _ => Err(()),
    }
}

/// Ecto `:boolean` cast: booleans and the strings `true`/`false`/`1`/`0`.
fn cast_bool(v: &Value) -> Result<Option<bool>, ()> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) if s == "true" || s == "1" => Ok(Some(true)),
        Value::String(s) if s == "false" || s == "0" => Ok(Some(false)),
        _ => Err(()),
    }
}

/// Ecto `:map` cast: JSON objects only.
fn cast_map(v: &Value) -> Result<Option<Value>, ()> {
    match v {
        Value::Null => Ok(None),
        Value::Object(_) => Ok(Some(v.clone())),
        _ => Err(()),
    }
}

/// Builds the stored tenant from `existing` (update) or from nothing (create).
pub(crate) fn prepare(
    existing: Option<&Tenant>,
    external_id: &str,
    params: &Value,
    defaults: &TenantDefaults,
    crypto: &Crypto,
    now: NaiveDateTime,
) -> Result<Prepared, UpsertError> {
    let empty = Map::new();
    let params = match params {
        Value::Object(m) => m,
        Value::Null => &empty,
        _ => {
            return Err(UpsertError::Invalid(
                json!({"errors": {"tenant": ["is invalid"]}}),
            ))
        }
    };
    let creating = existing.is_none();
    let mut errors = Errors::default();
    let mut t = match existing {
        Some(t) => t.clone(),
        None => Tenant {
            id: Uuid::new_v4(),
            name: Some(external_id.to_string()),
            external_id: external_id.to_string(),
            jwt_secret: None,
            jwt_jwks: None,
            max_concurrent_users: defaults.max_concurrent_users,
            max_events_per_second: defaults.max_events_per_second,
            max_bytes_per_second: defaults.max_bytes_per_second,
            max_channels_per_client: defaults.max_channels_per_client,
            max_joins_per_second: defaults.max_joins_per_second,
            postgres_cdc_default: Some(POSTGRES_CDC_RLS.to_string()),
            suspend: false,
            notify_private_alpha: false,
            private_only: false,
            migrations_ran: 0,
            broadcast_adapter: Some("gen_rpc".to_string()),
            max_presence_events_per_second: Some(1000),
            max_payload_size_in_kb: Some(3000),
            max_client_presence_events_per_window: None,
            client_presence_window_ms: None,
            presence_enabled: false,
            feature_flags: json!({}),
            gcm_migrated_at: None,
            inserted_at: now,
            updated_at: now,
            extensions: Vec::new(),
        },
    };
    if t.external_id.trim().is_empty() {
        errors.add("external_id", "can't be blank");
    }

    // Name: forced to the id on create; settable on update.
    if !creating {
        if let Some(v) = params.get("name") {
            match cast_string(v) {
                Ok(name) => t.name = name,
                Err(()) => errors.add("name", "is invalid"),
            }
        }
    }
    let mut new_jwt_secret = None;
    if let Some(v) = params.get("jwt_secret") {
        match cast_string(v) {
            Ok(s) => {
                new_jwt_secret = s.clone();
                t.jwt_secret = s;
            }
            Err(()) => errors.add("jwt_secret", "is invalid"),
        }
    }
    if let Some(v) = params.get("jwt_jwks") {
        match cast_map(v) {
            Ok(m) => t.jwt_jwks = m,
            Err(()) => errors.add("jwt_jwks", "is invalid"),
        }
    }
    if let Some(v) = params.get("postgres_cdc_default") {
        match cast_string(v) {
            Ok(s) => t.postgres_cdc_default = s,
            Err(()) => errors.add("postgres_cdc_default", "is invalid"),
        }
    }

    // NOT NULL limits: NULL keeps the env default on create and is refused on update.
    let required_ints: [(&str, &mut i32); 6] = [
        ("max_concurrent_users", &mut t.max_concurrent_users),
        ("max_events_per_second", &mut t.max_events_per_second),
        ("max_bytes_per_second", &mut t.max_bytes_per_second),
        ("max_channels_per_client", &mut t.max_channels_per_client),
        ("max_joins_per_second", &mut t.max_joins_per_second),
        ("migrations_ran", &mut t.migrations_ran),
    ];
    for (key, slot) in required_ints {
        if let Some(v) = params.get(key) {
            match cast_int(v) {
                Ok(Some(i)) => *slot = i,
                Ok(None) if creating => {}
                Ok(None) => errors.add(key, "can't be blank"),
                Err(()) => errors.add(key, "is invalid"),
            }
        }
    }
    let optional_ints: [(&str, &mut Option<i32>); 4] = [
        (
            "max_presence_events_per_second",
            &mut t.max_presence_events_per_second,
        ),
        ("max_payload_size_in_kb", &mut t.max_payload_size_in_kb),
        (
            "max_client_presence_events_per_window",
            &mut t.max_client_presence_events_per_window,
        ),
        (
            "client_presence_window_ms",
            &mut t.client_presence_window_ms,
        ),
    ];
    for (key, slot) in optional_ints {
        if let Some(v) = params.get(key) {
            match cast_int(v) {
                Ok(i) => *slot = i,
                Err(()) => errors.add(key, "is invalid"),
            }
        }
    }
    let bools: [(&str, &mut bool, bool); 3] = [
        ("suspend", &mut t.suspend, true),
        ("private_only", &mut t.private_only, false),
        ("presence_enabled", &mut t.presence_enabled, false),
    ];
    for (key, slot, nullable) in bools {
        if let Some(v) = params.get(key) {
            match cast_bool(v) {
                Ok(Some(b)) => *slot = b,
                Ok(None) if nullable || creating => {}
                Ok(None) => errors.add(key, "can't be blank"),
                Err(()) => errors.add(key, "is invalid"),
            }
        }
    }
    if let Some(v) = params.get("broadcast_adapter") {
        match v {
            Value::Null => t.broadcast_adapter = None,
            Value::String(s) if s == "phoenix" || s == "gen_rpc" => {
                t.broadcast_adapter = Some(s.clone())
            }
            _ => errors.add("broadcast_adapter", "is invalid"),
        }
    }
    if let Some(v) = params.get("feature_flags") {
        match v {
            Value::Object(_) => t.feature_flags = v.clone(),
            _ => errors.add("feature_flags", "is invalid"),
        }
    }

    let mut replace_extensions = creating;
    match params.get("extensions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            replace_extensions = true;
            // On create, entries lacking `type` or `settings` are dropped and the list is
            // built back to front, as upstream's controller does.
            let entries: Vec<&Value> = if creating {
                list.iter()
                    .rev()
                    .filter(|e| e.get("type").is_some() && e.get("settings").is_some())
                    .collect()
            } else {
                list.iter().collect()
            };
            let mut ext_errors = Vec::new();
            let mut any_error = false;
            let mut exts = Vec::new();
            for entry in entries {
                match prepare_extension(entry, &t.external_id, crypto, now) {
                    Ok(ext) => {
                        ext_errors.push(json!({}));
                        exts.push(ext);
                    }
                    Err(e) => {
                        any_error = true;
                        ext_errors.push(e);
                    }
                }
            }
            if any_error {
                errors
                    .0
                    .insert("extensions".into(), Value::Array(ext_errors));
            } else {
                t.extensions = exts;
            }
        }
        Some(_) => errors.add("extensions", "is invalid"),
    }

    if !errors.0.is_empty() {
        return Err(UpsertError::Invalid(
            json!({ "errors": Value::Object(errors.0) }),
        ));
    }
    // Reported from the CHECK constraint upstream, hence only once everything else is valid.
    if t.jwt_secret.is_none() && t.jwt_jwks.is_none() {
        return Err(UpsertError::Invalid(json!({
            "errors": {"jwt_secret": ["either jwt_secret or jwt_jwks must be provided"]}
        })));
    }
    if let Some(plain) = new_jwt_secret {
        t.jwt_secret = Some(crypto.encrypt(&plain)?);
    }
    t.updated_at = now;
    Ok(Prepared {
        tenant: t,
        replace_extensions,
    })
}

/// Casts, defaults, validates and encrypts one extension; `Err` holds its error object.
fn prepare_extension(
    entry: &Value,
    external_id: &str,
    crypto: &Crypto,
    now: NaiveDateTime,
) -> Result<Extension, Value> {
    let mut errors = Errors::default();
    let Some(obj) = entry.as_object() else {
        errors.add("type", "can't be blank");
        errors.add("settings", "can't be blank");
        return Err(Value::Object(errors.0));
    };
    let ext_type = match obj.get("type") {
        Some(v) => match cast_string(v) {
            Ok(Some(s)) if s == "postgres" => Some(POSTGRES_CDC_RLS.to_string()),
            Ok(s) => s,
            Err(()) => {
                errors.add("type", "is invalid");
                None
            }
        },
        None => None,
    };
    let mut settings = match obj.get("settings") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => {
            errors.add("settings", "is invalid");
            None
        }
    };
    if let Some(m) = settings.as_mut() {
        // The API accepts `postgres_changes_pool` and stores upstream's misspelled key.
        if let Some(v) = m.remove("postgres_changes_pool") {
            m.insert("subcriber_pool_size".into(), v);
        }
    }
    if ext_type.is_none() && !errors.0.contains_key("type") {
        errors.add("type", "can't be blank");
    }
    if settings.is_none() && !errors.0.contains_key("settings") {
        errors.add("settings", "can't be blank");
    }
    let is_cdc = ext_type.as_deref() == Some(POSTGRES_CDC_RLS);
    if let (true, Some(m)) = (is_cdc, settings.as_mut()) {
        let mut merged = default_cdc_settings();
        merged.extend(std::mem::take(m));
        *m = merged;
        // Upstream lists these errors last-declared first.
        for (key, _) in REQUIRED_SETTINGS.iter().rev() {
            match m.get(*key) {
                None | Some(Value::Null) => {
                    errors.add("settings", &format!("{key} can't be blank"))
                }
                Some(Value::String(_)) => {}
                Some(_) => errors.add("settings", &format!("{key} is invalid")),
            }
        }
    }
    if !errors.0.is_empty() {
        return Err(Value::Object(errors.0));
    }
    let mut settings = settings.unwrap_or_default();
    if is_cdc {
        for (key, encrypted) in REQUIRED_SETTINGS {
            if !encrypted {
                continue;
            }
            if let Some(Value::String(plain)) = settings.get(key) {
                let enc = crypto.encrypt(plain).map_err(
                    |e| json!({"settings": [format!("{key} could not be encrypted: {e}")]}),
                )?;
                settings.insert(key.to_string(), Value::String(enc));
            }
        }
    }
    Ok(Extension {
        id: Uuid::new_v4(),
        r#type: ext_type,
        settings: Value::Object(settings),
        tenant_external_id: external_id.to_string(),
        inserted_at: now,
        updated_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crypto() -> Crypto {
        Crypto::new(Some(b"supabaserealtime".to_vec()), None, false).unwrap()
    }

    fn create(params: Value) -> Result<Prepared, UpsertError> {
        prepare(
            None,
            "acme",
            &params,
            &TenantDefaults::default(),
            &crypto(),
            now_utc_seconds(),
        )
    }

    fn errors(r: Result<Prepared, UpsertError>) -> Value {
        match r {
            Err(UpsertError::Invalid(v)) => v,
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[test]
    fn missing_settings_are_listed_last_declared_first() {
        let body = json!({"jwt_secret": "s", "extensions": [{"type": "postgres_cdc_rls", "settings": {"db_port": 1}}]});
        assert_eq!(
            errors(create(body)),
            json!({"errors": {"extensions": [{"settings": [
                "db_password can't be blank",
                "db_user can't be blank",
                "db_name can't be blank",
                "db_port is invalid",
                "db_host can't be blank",
                "region can't be blank"
            ]}]}})
        );
    }

    #[test]
    fn create_drops_entries_without_type_or_settings_and_renames_postgres() {
        let body = json!({"jwt_secret": "s", "name": "ignored", "extensions": [
            {"type": "postgres_cdc_rls"},
            {"settings": {}},
            {"type": "postgres", "settings": {"region": "r", "db_host": "h", "db_port": "1",
              "db_name": "n", "db_user": "u", "db_password": "p"}}
        ]});
        let t = create(body).unwrap().tenant;
        assert_eq!(t.name.as_deref(), Some("acme"));
        assert_eq!(t.extensions.len(), 1);
        assert_eq!(t.extensions[0].r#type.as_deref(), Some("postgres_cdc_rls"));
        assert_eq!(t.extensions[0].tenant_external_id, "acme");
        assert_eq!(t.jwt_secret.as_deref(), Some("yagfesGEgF5Qj+uu5rt0bA=="));
        assert_eq!(
            crypto().decrypt("yagfesGEgF5Qj+uu5rt0bA==").unwrap().value,
            "s"
        );
    }

    #[test]
    fn casts_follow_ecto() {
        let t = create(json!({
            "jwt_secret": "s",
            "max_concurrent_users": "12",
            "suspend": "true",
            "private_only": "0",
            "max_client_presence_events_per_window": 3,
            "broadcast_adapter": "phoenix",
            "feature_flags": {"x": true}
        }))
        .unwrap()
        .tenant;
        assert_eq!(t.max_concurrent_users, 12);
        assert!(t.suspend && !t.private_only);
        assert_eq!(t.max_client_presence_events_per_window, Some(3));
        assert_eq!(t.broadcast_adapter.as_deref(), Some("phoenix"));
        assert_eq!(t.feature_flags, json!({"x": true}));

        assert_eq!(
            errors(create(json!({
                "jwt_secret": 5,
                "max_joins_per_second": 1.5,
                "private_only": "maybe",
                "jwt_jwks": "keys",
                "max_bytes_per_second": 4_000_000_000i64,
                "extensions": {}
            }))),
            json!({"errors": {
                "jwt_secret": ["is invalid"],
                "max_joins_per_second": ["is invalid"],
                "private_only": ["is invalid"],
                "jwt_jwks": ["is invalid"],
                "max_bytes_per_second": ["is invalid"],
                "extensions": ["is invalid"]
            }})
        );
        // A blank secret is no secret.
        assert_eq!(
            errors(create(json!({"jwt_secret": "  "}))),
            json!({"errors": {"jwt_secret": ["either jwt_secret or jwt_jwks must be provided"]}})
        );
    }

    #[test]
    fn create_uses_env_defaults_for_missing_or_null_limits() {
        let d = TenantDefaults {
            max_concurrent_users: 1,
            max_events_per_second: 2,
            max_joins_per_second: 3,
            max_channels_per_client: 4,
            max_bytes_per_second: 5,
        };
        let p = prepare(
            None,
            "acme",
            &json!({"jwt_secret": "s", "max_events_per_second": null}),
            &d,
            &crypto(),
            now_utc_seconds(),
        )
        .unwrap();
        let t = p.tenant;
        assert_eq!(
            (
                t.max_concurrent_users,
                t.max_events_per_second,
                t.max_joins_per_second,
                t.max_channels_per_client,
                t.max_bytes_per_second
            ),
            (1, 2, 3, 4, 5)
        );
        assert_eq!(t.max_presence_events_per_second, Some(1000));
        assert_eq!(t.max_payload_size_in_kb, Some(3000));
        assert!(p.replace_extensions);
        assert_eq!(t.inserted_at, t.updated_at);
    }

    #[test]
    fn update_keeps_omitted_fields_and_refuses_null_limits() {
        let base = create(json!({"jwt_secret": "s", "max_concurrent_users": 9}))
            .unwrap()
            .tenant;
        let p = prepare(
            Some(&base),
            "acme",
            &json!({"name": "renamed"}),
            &TenantDefaults::default(),
            &crypto(),
            now_utc_seconds(),
        )
        .unwrap();
        assert!(!p.replace_extensions);
        assert_eq!(p.tenant.name.as_deref(), Some("renamed"));
        assert_eq!(p.tenant.max_concurrent_users, 9);
        assert_eq!(p.tenant.jwt_secret, base.jwt_secret, "not re-encrypted");
        assert_eq!(p.tenant.id, base.id);
        let r = prepare(
            Some(&base),
            "acme",
            &json!({"max_concurrent_users": null}),
            &TenantDefaults::default(),
            &crypto(),
            now_utc_seconds(),
        );
        assert_eq!(
            errors(r),
            json!({"errors": {"max_concurrent_users": ["can't be blank"]}})
        );
    }

    #[test]
    fn gcm_writes_encrypt_with_gcm() {
        let c = Crypto::new(None, Some(vec![9; 32]), true).unwrap();
        let body = json!({"jwt_secret": "s", "extensions": [{"type": "postgres_cdc_rls", "settings": {
            "region": "r", "db_host": "h", "db_port": "1", "db_name": "n", "db_user": "u", "db_password": "p"}}]});
        let t = prepare(
            None,
            "acme",
            &body,
            &TenantDefaults::default(),
            &c,
            now_utc_seconds(),
        )
        .unwrap()
        .tenant;
        assert!(t.jwt_secret.as_deref().unwrap().starts_with("g1:"));
        let cdc = t.cdc_settings(&c).unwrap().unwrap();
        assert_eq!(
            (cdc.host.as_str(), cdc.port, cdc.password.as_str()),
            ("h", 1, "p")
        );
        assert_eq!(t.extensions[0].settings["region"], "r");
    }
}
