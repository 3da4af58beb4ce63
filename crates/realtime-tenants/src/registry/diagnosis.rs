//! Read-only inspection of the registry for `realtime doctor`: reachability, the
//! `schema_migrations` layout (judged by the migration runner's own rules), the tenants, and
//! whether each stored secret is a ciphertext under the configured keys.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use realtime_pg::connect as pg;
use serde_json::Value;

use crate::crypto::{Crypto, CryptoError};
use crate::extension::ENCRYPTED_SETTINGS;
use crate::registry::pool::{connect_options, registry_error};
use crate::registry::{RegistryConfig, RegistryError};
use crate::registry_migrations::{self, RegistryMigrationError, SchemaMigrationsShape};
use crate::tenant::Tenant;

/// Limits that keep a diagnosis from hanging on an unreachable or stuck database.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Resolving, connecting and authenticating.
    pub connect: Duration,
    /// Each statement (`statement_timeout`).
    pub statement: Duration,
}

/// The state of `schema_migrations` in the registry schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaMigrations {
    /// No table yet: the first start (or `realtime migrate`) creates it.
    Missing,
    /// Made by another tool in a shape the runner refuses; the runner's message and fix.
    Incompatible(String),
    /// Usable.
    Usable {
        /// Its shape.
        shape: SchemaMigrationsShape,
        /// Known versions recorded.
        applied: usize,
        /// Known versions not recorded yet, ascending.
        pending: Vec<i64>,
    },
    /// Reading it failed.
    Unreadable(String),
}

/// What the registry looks like.
#[derive(Debug)]
pub struct RegistryDiagnosis {
    /// `host:port/dbname`.
    pub target: String,
    /// The schema unqualified names resolve to (`None`: no schema of the search_path exists).
    pub schema: Option<String>,
    /// `schema_migrations`.
    pub schema_migrations: SchemaMigrations,
    /// Every tenant with its extensions, or why they could not be read.
    pub tenants: Result<Vec<Tenant>, String>,
}

/// Connects once (no retries: the doctor reports instead of waiting) and inspects the
/// registry without changing it.
pub async fn diagnose(
    config: &RegistryConfig,
    limits: Limits,
) -> Result<RegistryDiagnosis, RegistryError> {
    let mut opts = connect_options(config);
    opts.connect_timeout = limits.connect;
    let target = format!("{}:{}/{}", config.host, config.port, config.dbname);
    let client = pg::connect(&opts)
        .await
        .map_err(|e| registry_error(config, e))?;
    // Set after connecting rather than in the startup packet, which poolers may refuse.
    client
        .batch_execute(&format!(
            "SET statement_timeout = {}",
            limits.statement.as_millis().max(1)
        ))
        .await?;
    let schema: Option<String> = client
        .query_one("SELECT current_schema()::text", &[])
        .await?
        .get(0);
    let schema_migrations = match &schema {
        None => SchemaMigrations::Missing,
        Some(schema) => schema_migrations(&client, schema).await,
    };
    let tenants = crate::registry::postgres::load_all(&client)
        .await
        .map_err(|e| e.to_string());
    Ok(RegistryDiagnosis {
        target,
        schema,
        schema_migrations,
        tenants,
    })
}

async fn schema_migrations(client: &tokio_postgres::Client, schema: &str) -> SchemaMigrations {
    match registry_migrations::inspect_schema_migrations(client, schema).await {
        Ok(None) => SchemaMigrations::Missing,
        Err(RegistryMigrationError::IncompatibleSchemaMigrations(m)) => {
            SchemaMigrations::Incompatible(m)
        }
        Err(e) => SchemaMigrations::Unreadable(e.to_string()),
        Ok(Some(shape)) => match registry_migrations::applied_and_pending(client, schema).await {
            Ok((applied, pending)) => SchemaMigrations::Usable {
                shape,
                applied,
                pending,
            },
            Err(e) => SchemaMigrations::Unreadable(e.to_string()),
        },
    }
}

/// How a stored secret reads under the configured keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretState {
    /// A ciphertext that decrypts.
    Encrypted,
    /// Not a ciphertext at all: stored in plaintext. `ciphertext` is the value encrypted with
    /// the write cipher (`None` when no key can encrypt).
    Plaintext {
        /// What to store instead.
        ciphertext: Option<String>,
    },
    /// Shaped like an AES-128-ECB ciphertext but it does not decrypt under `DB_ENC_KEY`:
    /// written with another key, or a plaintext that happens to be valid base64 of whole
    /// blocks (a hex string, say). `ciphertext` as for [`SecretState::Plaintext`].
    OtherKeyOrPlaintext {
        /// What to store if it is a plaintext.
        ciphertext: Option<String>,
    },
    /// Cannot be decrypted with the configured keys.
    Undecryptable(CryptoError),
}

impl SecretState {
    /// Whether the value reads as intended.
    pub fn is_ok(&self) -> bool {
        matches!(self, SecretState::Encrypted)
    }
}

/// Classifies one stored value (the same strict reading the server applies).
pub fn classify_secret(crypto: &Crypto, stored: &str) -> SecretState {
    match crypto.decrypt(stored) {
        Err(e) => SecretState::Undecryptable(e),
        Ok(d) if !d.plaintext_fallback => SecretState::Encrypted,
        Ok(_) => {
            let ciphertext = crypto.encrypt(stored).ok();
            let block_shaped = STANDARD
                .decode(stored)
                .is_ok_and(|b| !b.is_empty() && b.len() % 16 == 0);
            if block_shaped {
                SecretState::OtherKeyOrPlaintext { ciphertext }
            } else {
                SecretState::Plaintext { ciphertext }
            }
        }
    }
}

/// Where a secret is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretField {
    /// `tenants.jwt_secret`.
    JwtSecret,
    /// A key of an extension's `settings` (`db_password`, …).
    ExtensionSetting {
        /// The extension type (`postgres_cdc_rls`).
        extension_type: String,
        /// The settings key.
        key: &'static str,
    },
}

impl SecretField {
    /// `jwt_secret` or `postgres_cdc_rls.db_password`.
    pub fn name(&self) -> String {
        match self {
            SecretField::JwtSecret => "jwt_secret".to_string(),
            SecretField::ExtensionSetting {
                extension_type,
                key,
            } => format!("{extension_type}.{key}"),
        }
    }
}

/// One stored secret of a tenant and how it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    /// Where it is.
    pub field: SecretField,
    /// How it reads.
    pub state: SecretState,
}

/// Every stored secret of `tenant`: `jwt_secret`, then the encrypted keys of each extension.
pub fn tenant_secrets(tenant: &Tenant, crypto: &Crypto) -> Vec<StoredSecret> {
    let mut out = Vec::new();
    if let Some(s) = &tenant.jwt_secret {
        out.push(StoredSecret {
            field: SecretField::JwtSecret,
            state: classify_secret(crypto, s),
        });
    }
    for ext in &tenant.extensions {
        let extension_type = ext.r#type.clone().unwrap_or_default();
        for key in ENCRYPTED_SETTINGS {
            if let Some(Value::String(s)) = ext.settings.get(key) {
                out.push(StoredSecret {
                    field: SecretField::ExtensionSetting {
                        extension_type: extension_type.clone(),
                        key,
                    },
                    state: classify_secret(crypto, s),
                });
            }
        }
    }
    out
}

/// The statement that stores `ciphertext` in place of the secret at `field` of tenant
/// `external_id`, in registry schema `schema`.
pub fn encrypt_statement(
    schema: &str,
    external_id: &str,
    field: &SecretField,
    ciphertext: &str,
) -> String {
    let schema = quote_ident(schema);
    let id = quote_literal(external_id);
    let ciphertext = quote_literal(ciphertext);
    match field {
        SecretField::JwtSecret => format!(
            "UPDATE {schema}.tenants SET jwt_secret = {ciphertext} WHERE external_id = {id};"
        ),
        SecretField::ExtensionSetting {
            extension_type,
            key,
        } => format!(
            "UPDATE {schema}.extensions SET settings = jsonb_set(settings, '{{{key}}}', to_jsonb({ciphertext}::text)) WHERE tenant_external_id = {id} AND type = {};",
            quote_literal(extension_type)
        ),
    }
}

fn quote_ident(s: &str) -> String {
    if !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crypto() -> Crypto {
        Crypto::new(Some(b"supabaserealtime".to_vec()), None, false).unwrap()
    }

    #[test]
    fn secrets_are_classified() {
        let c = crypto();
        let stored = c.encrypt("a-secret").unwrap();
        assert_eq!(classify_secret(&c, &stored), SecretState::Encrypted);
        let plain = classify_secret(&c, "super-secret-jwt-token-with-at-least-32-characters");
        let SecretState::Plaintext {
            ciphertext: Some(ct),
        } = plain
        else {
            panic!("{plain:?}");
        };
        assert_eq!(
            c.decrypt(&ct).unwrap().value,
            "super-secret-jwt-token-with-at-least-32-characters"
        );
        // Hex: valid base64 of whole blocks, yet not a ciphertext under this key.
        let other = Crypto::new(Some(b"0123456789abcdef".to_vec()), None, false).unwrap();
        let foreign = other.encrypt("x").unwrap();
        assert!(matches!(
            classify_secret(&c, &foreign),
            SecretState::OtherKeyOrPlaintext {
                ciphertext: Some(_)
            }
        ));
        assert!(matches!(
            classify_secret(&c, "g1:AAAA"),
            SecretState::Undecryptable(CryptoError::GcmKeyMissing)
        ));
    }

    #[test]
    fn statements_quote_their_values() {
        assert_eq!(
            encrypt_statement("_realtime", "o'brien", &SecretField::JwtSecret, "abc="),
            "UPDATE _realtime.tenants SET jwt_secret = 'abc=' WHERE external_id = 'o''brien';"
        );
        let field = SecretField::ExtensionSetting {
            extension_type: "postgres_cdc_rls".into(),
            key: "db_password",
        };
        assert_eq!(field.name(), "postgres_cdc_rls.db_password");
        assert_eq!(
            encrypt_statement("Reg", "t", &field, "abc="),
            "UPDATE \"Reg\".extensions SET settings = jsonb_set(settings, '{db_password}', to_jsonb('abc='::text)) WHERE tenant_external_id = 't' AND type = 'postgres_cdc_rls';"
        );
    }
}
