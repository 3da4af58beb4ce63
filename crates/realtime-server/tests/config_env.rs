//! Environment variables (CONTROL-PLANE §1): upstream's defaults and parsing rules, ignored
//! variables, and start-up validation whose messages name the variable and the fix.

use std::time::Duration;

use realtime_server::config::{Config, ConfigError, Env, IpVersion, LogLevel};
use serde_json::json;

fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_env(&pairs.iter().copied().collect::<Env>())
}

fn ok(pairs: &[(&str, &str)]) -> Config {
    config(pairs).unwrap_or_else(|e| panic!("{pairs:?}: {e}"))
}

fn err(pairs: &[(&str, &str)]) -> String {
    match config(pairs) {
        Ok(_) => panic!("{pairs:?} accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn upstream_defaults() {
    let c = ok(&[]);
    assert_eq!(c.port, 4000);
    assert_eq!(c.max_header_length, 4096);
    assert_eq!(c.websocket_max_heap_size, 50_000_000);
    assert_eq!(c.connect_error_backoff, Duration::from_millis(2000));
    assert_eq!(c.channel_error_backoff, Duration::from_millis(5000));
    assert_eq!(c.no_channel_timeout, Duration::from_millis(600_000));
    assert_eq!(c.client_presence_max_calls, 5);
    assert_eq!(c.client_presence_window, Duration::from_millis(30_000));
    assert_eq!(c.tenant_cache_expiration, Duration::from_millis(30_000));
    assert_eq!(c.db.host, "127.0.0.1");
    assert_eq!(c.db.port, 5432);
    assert_eq!(c.db.name, "postgres");
    assert_eq!(c.db.user, "supabase_admin");
    assert_eq!(c.db.password, "postgres");
    assert_eq!(c.db.pool_size, 5);
    assert!(!c.db.ssl);
    assert_eq!(c.db.ip_version, None);
    assert!(c.standalone);
    assert_eq!(c.api_jwt_secret, None);
    assert_eq!(c.metrics_jwt_secret, None);
    assert!(c.jwt_claim_validators.is_empty());
    assert!(!c.seed_self_host);
    assert_eq!(c.self_host_tenant_name, "realtime-dev");
    assert_eq!(c.tenant_defaults.max_concurrent_users, 200);
    assert_eq!(c.tenant_defaults.max_events_per_second, 100);
    assert_eq!(c.tenant_defaults.max_joins_per_second, 100);
    assert_eq!(c.tenant_defaults.max_channels_per_client, 100);
    assert_eq!(c.tenant_defaults.max_bytes_per_second, 100_000);
    assert_eq!(c.slot_name_suffix, None);
    assert_eq!(
        c.slot_name("supabase_realtime_replication_slot"),
        "supabase_realtime_replication_slot_"
    );
    assert!(!c.janitor.enabled);
    assert_eq!(c.janitor.schedule_timer, Duration::from_millis(14_400_000));
    assert!(c.janitor.schedule_randomize);
    assert_eq!(c.janitor.run_after, Duration::from_millis(600_000));
    assert_eq!(c.janitor.chunk_size, 10);
    assert_eq!(c.janitor.max_children, 5);
    assert_eq!(c.log_level, LogLevel::Info);
    assert!(!c.disable_healthcheck_logging);
    assert_eq!(c.region, None);
    assert_eq!(c.node_name, "realtime@127.0.0.1");
    assert_eq!(c.rlimit_nofile, None);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // The seed's own fallbacks differ from the registry connection's.
    assert_eq!(c.seed.db_host, "host.docker.internal");
    assert_eq!(c.seed.db_port, "5433");
    assert_eq!(
        c.seed.jwt_secret,
        "super-secret-jwt-token-with-at-least-32-characters-long"
    );
}

#[test]
fn self_hosted_compose_environment() {
    // §1.2, including the Erlang-only variables and legacy ones (§8.52).
    let c = ok(&[
        ("PORT", "4000"),
        ("DB_HOST", "db"),
        ("DB_PORT", "5432"),
        ("DB_USER", "supabase_admin"),
        (
            "DB_PASSWORD",
            "your-super-secret-and-long-postgres-password",
        ),
        ("DB_NAME", "postgres"),
        ("DB_AFTER_CONNECT_QUERY", "SET search_path TO _realtime"),
        ("DB_ENC_KEY", "supabaserealtime"),
        (
            "API_JWT_SECRET",
            "your-super-secret-jwt-token-with-at-least-32-characters-long",
        ),
        (
            "SECRET_KEY_BASE",
            "UpNVntn3cDxHJpq99YMc1T1AQgQpc8kfYTuRgBiYa15BLrx8etQoXz3gZv1/u2oq",
        ),
        ("ERL_AFLAGS", "-proto_dist inet_tcp"),
        ("DNS_NODES", "''"),
        ("RLIMIT_NOFILE", "10000"),
        ("APP_NAME", "realtime"),
        ("SEED_SELF_HOST", "true"),
        ("RUN_JANITOR", "true"),
        ("FLY_ALLOC_ID", "fly123"),
        ("FLY_APP_NAME", "realtime"),
        ("ENABLE_TAILSCALE", "false"),
        ("SELF_HOSTED", "true"),
        ("JWT_SECRET", "x"),
        ("TENANT_ID", "x"),
        ("SECURE_CHANNELS", "true"),
        ("REPLICATION_MODE", "RLS"),
        ("GEN_RPC_TCP_SERVER_PORT", "not-a-number-but-ignored"),
        ("REGION_MAPPING", "{bad json, ignored"),
        ("HTTP_DYNAMIC_BUFFER_MIN", "1"),
        ("LOGS_ENGINE", "logflare"),
    ]);
    assert!(!c.standalone);
    assert_eq!(c.db.host, "db");
    assert_eq!(
        c.db.after_connect_query.as_deref(),
        Some("SET search_path TO _realtime")
    );
    assert_eq!(c.db_enc_key.as_deref(), Some(&b"supabaserealtime"[..]));
    assert!(c.seed_self_host);
    assert!(c.janitor.enabled);
    assert_eq!(c.rlimit_nofile, Some(10_000));
    assert_eq!(c.seed.db_host, "db");
    assert_eq!(c.seed.db_port, "5432");
    assert_eq!(
        c.default_tenant, None,
        "no fallback tenant outside standalone mode"
    );
    // Missing METRICS_JWT_SECRET falls back to API_JWT_SECRET with a warning.
    assert_eq!(c.metrics_jwt_secret, c.api_jwt_secret);
    assert!(
        c.warnings.iter().any(|w| w.contains("METRICS_JWT_SECRET")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn empty_values_are_unset() {
    let c = ok(&[
        ("RLIMIT_NOFILE", ""),
        ("API_JWT_SECRET", ""),
        ("PORT", ""),
        ("DB_HOST", ""),
        ("SLOT_NAME_SUFFIX", ""),
        ("JWT_CLAIM_VALIDATORS", ""),
        ("SEED_SELF_HOST", ""),
        ("LOG_LEVEL", ""),
        ("DB_ENC_KEY_GCM", ""),
        ("APP_NAME", ""),
    ]);
    assert_eq!(c.rlimit_nofile, None);
    assert_eq!(c.api_jwt_secret, None);
    assert_eq!(c.port, 4000);
    assert!(c.standalone);
    assert_eq!(c.slot_name_suffix, None);
    assert!(c.jwt_claim_validators.is_empty());
    assert!(!c.seed_self_host);
    assert_eq!(c.db_enc_key_gcm, None);
    assert_eq!(c.node_name, "realtime@127.0.0.1");
}

#[test]
fn integers_are_strict_and_errors_name_the_variable() {
    for name in [
        "PORT",
        "DB_PORT",
        "DB_POOL_SIZE",
        "MAX_HEADER_LENGTH",
        "CONNECT_ERROR_BACKOFF_MS",
        "CHANNEL_ERROR_BACKOFF_MS",
        "NO_CHANNEL_TIMEOUT_IN_MS",
        "CLIENT_PRESENCE_MAX_CALLS",
        "CLIENT_PRESENCE_WINDOW_MS",
        "TENANT_CACHE_EXPIRATION_IN_MS",
        "TENANT_MAX_CONCURRENT_USERS",
        "TENANT_MAX_EVENTS_PER_SECOND",
        "TENANT_MAX_JOINS_PER_SECOND",
        "TENANT_MAX_CHANNELS_PER_CLIENT",
        "TENANT_MAX_BYTES_PER_SECOND",
        "JANITOR_SCHEDULE_TIMER_IN_MS",
        "JANITOR_RUN_AFTER_IN_MS",
        "WEBSOCKET_MAX_HEAP_SIZE",
    ] {
        for bad in ["10_000", "5x", "1.5", "ten"] {
            let msg = err(&[(name, bad)]);
            assert!(
                msg.starts_with(&format!("env {name} expected a Integer, got \"{bad}\"")),
                "{msg}"
            );
            assert!(
                msg.contains(&format!("set {name} to a base-10 whole number")),
                "{msg}"
            );
        }
    }
    assert_eq!(ok(&[("PORT", " 4001 ")]).port, 4001);
    assert_eq!(ok(&[("PORT", "+4002")]).port, 4002);
    assert!(err(&[("PORT", "70000")]).contains("between 0 and 65535"));
    assert!(err(&[("NO_CHANNEL_TIMEOUT_IN_MS", "-1")]).starts_with("env NO_CHANNEL_TIMEOUT_IN_MS"));
    assert_eq!(
        ok(&[("TENANT_MAX_EVENTS_PER_SECOND", "-1")])
            .tenant_defaults
            .max_events_per_second,
        -1
    );
}

#[test]
fn booleans() {
    for (v, want) in [
        ("true", true),
        ("TRUE", true),
        (" 1 ", true),
        ("False", false),
        ("0", false),
    ] {
        let c = ok(&[
            ("DISABLE_HEALTHCHECK_LOGGING", v),
            ("RUN_JANITOR", v),
            ("DB_SSL", v),
            ("SEED_SELF_HOST", v),
        ]);
        assert_eq!(c.disable_healthcheck_logging, want, "{v}");
        assert_eq!(c.janitor.enabled, want, "{v}");
        assert_eq!(c.db.ssl, want, "{v}");
        assert_eq!(c.seed_self_host, want, "{v}");
    }
    for name in [
        "DISABLE_HEALTHCHECK_LOGGING",
        "RUN_JANITOR",
        "DB_SSL",
        "DB_ENC_WRITE_GCM",
        "JANITOR_SCHEDULE_RANDOMIZE",
    ] {
        let msg = err(&[(name, "yes")]);
        assert!(
            msg.starts_with(&format!(
                "env {name} expected a boolean or 0/1 values, got \"yes\""
            )),
            "{msg}"
        );
        assert!(msg.contains("true, false, 1 or 0"), "{msg}");
    }
    // SEED_SELF_HOST is compared by the entrypoint upstream: other values just do not seed.
    let c = ok(&[("SEED_SELF_HOST", "yes")]);
    assert!(!c.seed_self_host);
    assert!(c.warnings.iter().any(|w| w.contains("SEED_SELF_HOST")));
}

#[test]
fn fail_fast_variables_name_themselves() {
    let msg = err(&[("DB_ENC_KEY_GCM", "1234567890123456789012345678901")]);
    assert!(
        msg.starts_with("DB_ENC_KEY_GCM must be exactly 32 bytes for AES-256-GCM, got 31 bytes"),
        "{msg}"
    );
    let c = ok(&[("DB_ENC_KEY_GCM", "12345678901234567890123456789012")]);
    assert_eq!(c.db_enc_key_gcm.map(|k| k.len()), Some(32));

    let msg = err(&[("DB_IP_VERSION", "ipv5")]);
    assert!(
        msg.contains("Invalid IP version, please set either ipv6 or ipv4"),
        "{msg}"
    );
    assert!(msg.contains("DB_IP_VERSION"), "{msg}");
    assert_eq!(
        ok(&[("DB_IP_VERSION", "ipv4")]).db.ip_version,
        Some(IpVersion::V4)
    );
    assert_eq!(
        ok(&[("DB_IP_VERSION", "ipv6")]).db.ip_version,
        Some(IpVersion::V6)
    );

    for bad in ["[1]", "\"x\"", "{bad", "null"] {
        let msg = err(&[("JWT_CLAIM_VALIDATORS", bad)]);
        assert!(
            msg.starts_with("JWT claim validators is not a valid JSON object"),
            "{msg}"
        );
        assert!(msg.contains("JWT_CLAIM_VALIDATORS"), "{msg}");
    }
    let c = ok(&[("JWT_CLAIM_VALIDATORS", r#"{"iss":"supabase","aud":"x"}"#)]);
    assert_eq!(c.jwt_claim_validators["iss"], json!("supabase"));

    // API_JWT_JWKS is validated when the seed stores it (a stray `}` from old Compose).
    let msg = err(&[
        ("SEED_SELF_HOST", "true"),
        ("API_JWT_JWKS", r#"{"keys":[]}}"#),
    ]);
    assert!(msg.starts_with("API_JWT_JWKS is not valid JSON"), "{msg}");
    let c = ok(&[("API_JWT_JWKS", "{bad")]);
    assert!(c.warnings.iter().any(|w| w.contains("API_JWT_JWKS")));
    let c = ok(&[
        ("SEED_SELF_HOST", "true"),
        ("API_JWT_JWKS", r#"{"keys":[]}"#),
    ]);
    assert_eq!(c.seed.jwt_jwks, Some(json!({"keys": []})));
}

#[test]
fn log_levels() {
    for (v, l) in [
        ("emergency", LogLevel::Error),
        ("error", LogLevel::Error),
        ("warning", LogLevel::Warning),
        ("notice", LogLevel::Info),
        ("debug", LogLevel::Debug),
    ] {
        assert_eq!(ok(&[("LOG_LEVEL", v)]).log_level, l);
    }
    let c = ok(&[("LOG_LEVEL", "chatty")]);
    assert_eq!(c.log_level, LogLevel::Info);
    assert!(c.warnings.iter().any(|w| w.contains("LOG_LEVEL")));
}

#[test]
fn standalone_default_tenant_and_other_options() {
    let c = ok(&[("SELF_HOST_TENANT_NAME", "acme")]);
    assert_eq!(c.default_tenant.as_deref(), Some("acme"));
    let c = ok(&[
        ("DB_HOST", "db"),
        ("REALTIME_DEFAULT_TENANT", "realtime-dev"),
    ]);
    assert_eq!(c.default_tenant.as_deref(), Some("realtime-dev"));
    let c = ok(&[
        ("SLOT_NAME_SUFFIX", "blue"),
        ("REGION", "us-east-1"),
        ("NODE_NAME", "node1"),
        ("POD_IP", "10.0.0.5"),
        ("API_JWT_SECRET", "a"),
        ("API_JWT_SECRET_NEXT", "b"),
        ("METRICS_JWT_SECRET", "m"),
        ("API_TOKEN_BLOCKLIST", "t1, t2"),
        ("METRICS_TOKEN_BLOCKLIST", "t3"),
        ("REALTIME_IP_VERSION", "ipv4"),
        ("RLIMIT_NOFILE", "lots"),
        ("DB_PASSWORD", "hunter2-password"),
        ("DB_ENC_KEY", "supabaserealtime"),
    ]);
    assert_eq!(
        c.slot_name("supabase_realtime_replication_slot"),
        "supabase_realtime_replication_slot_blue"
    );
    assert_eq!(c.region.as_deref(), Some("us-east-1"));
    assert_eq!(c.node_name, "node1@10.0.0.5");
    assert_eq!(c.api_secrets(), ["a", "b"]);
    assert_eq!(c.metrics_jwt_secret.as_deref(), Some("m"));
    assert_eq!(c.api_token_blocklist, ["t1", "t2"]);
    assert_eq!(c.metrics_token_blocklist, ["t3"]);
    assert_eq!(c.listen_ip_version, Some(IpVersion::V4));
    assert_eq!(c.rlimit_nofile, None);
    assert!(c.warnings.iter().any(|w| w.contains("RLIMIT_NOFILE")));
    // Secrets never show in Debug output.
    let dbg = format!("{c:?}");
    for secret in ["hunter2-password", "supabaserealtime", "\"a\"", "\"m\""] {
        assert!(!dbg.contains(secret), "{secret} in {dbg}");
    }
}
