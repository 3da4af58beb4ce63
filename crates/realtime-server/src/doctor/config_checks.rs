//! Configuration checks: every variable through the server's own parser (each bad variable
//! reported, not only the first) and the encryption keys through the server's own key set-up.

use realtime_tenants::{Crypto, CryptoError};

use super::report::{Check, Report, Status};
use crate::config::{Config, Env};
use crate::startup;

/// What the configuration checks leave for the next checks.
pub struct ConfigOutcome {
    /// The configuration, parsed without the variables that failed.
    pub config: Config,
    /// The registry variables (`DB_*`) that failed: the registry is not checked then.
    pub bad_db_variables: Vec<&'static str>,
    /// The keys, when usable.
    pub crypto: Option<Crypto>,
}

/// Upper bound on re-parsing: there are far fewer variables that can fail.
const MAX_ERRORS: usize = 64;

/// Parses `env` like the server does and reports every problem.
pub fn check(env: &Env, report: &mut Report) -> ConfigOutcome {
    let mut current = env.clone();
    let mut failed: Vec<&'static str> = Vec::new();
    let config = loop {
        match Config::from_env(&current) {
            Ok(c) => break c,
            Err(e) if failed.len() < MAX_ERRORS && !failed.contains(&e.variable()) => {
                report.push(Check::from_error_text(
                    format!("config.{}", e.variable()),
                    Status::Fail,
                    &e.to_string(),
                ));
                failed.push(e.variable());
                current = current.without(e.variable());
            }
            // Cannot happen once the variable is removed; stop rather than loop.
            Err(_) => break Config::default(),
        }
    };
    if failed.is_empty() {
        report.push(Check::ok(
            "config",
            "every variable parses as the server reads it",
        ));
    }
    for warning in &config.warnings {
        let variable = warning.split_whitespace().next().unwrap_or("config");
        report.push(Check::from_error_text(
            format!("config.{variable}"),
            Status::Warn,
            warning,
        ));
    }
    if config.standalone {
        report.push(Check::ok(
            "mode",
            format!(
                "DB_HOST is not set: standalone mode, one tenant (`{}`) kept in memory; the registry database is not used",
                config.self_host_tenant_name
            ),
        ));
    } else {
        report.push(Check::ok(
            "mode",
            format!(
                "registry mode: tenants are read from {}:{}/{}",
                config.db.host, config.db.port, config.db.name
            ),
        ));
    }
    let crypto = keys(&config, report);
    ConfigOutcome {
        bad_db_variables: failed
            .into_iter()
            .filter(|v| v.starts_with("DB_"))
            .collect(),
        config,
        crypto,
    }
}

/// `DB_ENC_KEY`, `DB_ENC_KEY_GCM` and `DB_ENC_WRITE_GCM`, judged by the server's key set-up.
fn keys(config: &Config, report: &mut Report) -> Option<Crypto> {
    let crypto = match startup::crypto_for(config) {
        Ok(c) => c,
        Err(e) => {
            let (id, upstream) = match &e {
                CryptoError::EcbKey(None) => ("config.DB_ENC_KEY", " (the Elixir server fails with \"Bad key\")"),
                CryptoError::EcbKey(Some(_)) => (
                    "config.DB_ENC_KEY",
                    " (the Elixir server fails with \"Bad key\" / \"Unknown cipher or invalid key size\")",
                ),
                _ => ("config.DB_ENC_KEY_GCM", ""),
            };
            let mut check = Check::from_error_text(id, Status::Fail, &e.to_string());
            check.message.push_str(upstream);
            report.push(check);
            return None;
        }
    };
    match &config.db_enc_key {
        Some(k) if k.len() != 16 => report.push(Check::warn(
            "config.DB_ENC_KEY",
            format!(
                "DB_ENC_KEY is {} bytes, not the 16 AES-128 needs: values written with AES-128-ECB cannot be read (new ones are written with AES-256-GCM)",
                k.len()
            ),
            "Set DB_ENC_KEY to the 16-character key the registry was written with (self-hosted Supabase uses `supabaserealtime`)",
        )),
        Some(_) => report.push(Check::ok(
            "config.DB_ENC_KEY",
            "DB_ENC_KEY is 16 bytes (AES-128-ECB)",
        )),
        None if config.standalone => report.push(Check::ok(
            "config.DB_ENC_KEY",
            "DB_ENC_KEY is not set: standalone mode uses the self-hosted default key",
        )),
        None => report.push(Check::ok(
            "config.DB_ENC_KEY",
            "DB_ENC_KEY is not set: secrets are written and read with AES-256-GCM only",
        )),
    }
    if config.db_enc_write_gcm && config.db_enc_key_gcm.is_none() {
        report.push(Check::warn(
            "config.DB_ENC_WRITE_GCM",
            "DB_ENC_WRITE_GCM is set but DB_ENC_KEY_GCM is missing: secrets are still written with AES-128-ECB",
            "Set DB_ENC_KEY_GCM to a 32-character key, or remove DB_ENC_WRITE_GCM",
        ));
    } else if config.db_enc_key_gcm.is_some() {
        report.push(Check::ok(
            "config.DB_ENC_KEY_GCM",
            if crypto.write_gcm() {
                "DB_ENC_KEY_GCM is 32 bytes; new secrets are written with AES-256-GCM"
            } else {
                "DB_ENC_KEY_GCM is 32 bytes; `g1:` values can be read (new secrets are written with AES-128-ECB)"
            },
        ));
    }
    Some(crypto)
}
