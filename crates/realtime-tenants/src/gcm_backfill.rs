//! The encryption reconciler (§3.5): moves a tenant's legacy AES-128-ECB secrets to
//! AES-256-GCM with compare-and-set writes, then stamps `gcm_migrated_at`.

use serde_json::Value;

use crate::crypto::{Crypto, CryptoError};
use crate::extension::ENCRYPTED_SETTINGS;
use crate::feature_flags::GCM_ENCRYPTION_BACKFILL;
use crate::registry::{Registry, RegistryError};
use crate::tenant::Tenant;

/// Why a reconciliation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A value could not be decrypted or re-encrypted.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A row changed (or vanished) between the load and the write; retried on a later load.
    #[error("tenant {0} changed during re-encryption")]
    Changed(String),
}

/// Whether a freshly loaded tenant should be reconciled.
pub fn needs_backfill(crypto: &Crypto, tenant: &Tenant) -> bool {
    crypto.write_gcm() && tenant.gcm_migrated_at.is_none() && tenant.has_legacy_secrets()
}

fn re_encrypt(crypto: &Crypto, stored: &str) -> Result<String, CryptoError> {
    let plain = crypto.decrypt(stored)?.value;
    crypto.encrypt_gcm(&plain)
}

/// Re-encrypts every legacy value of `tenant` when the `gcm_encryption_backfill` flag is on
/// for it. Returns whether anything was done.
pub async fn reconcile(
    registry: &Registry,
    crypto: &Crypto,
    tenant: &Tenant,
) -> Result<bool, ReconcileError> {
    let Registry::Postgres(pg) = registry else {
        return Ok(false);
    };
    if !needs_backfill(crypto, tenant)
        || !registry
            .feature_flag_enabled(tenant, GCM_ENCRYPTION_BACKFILL)
            .await?
    {
        return Ok(false);
    }
    let id = &tenant.external_id;
    if let Some(old) = tenant.jwt_secret.as_deref().filter(|s| !Crypto::is_gcm(s)) {
        let new = re_encrypt(crypto, old)?;
        if !pg.cas_jwt_secret(id, old, &new).await? {
            return Err(ReconcileError::Changed(id.clone()));
        }
    }
    for ext in &tenant.extensions {
        let Value::Object(settings) = &ext.settings else {
            continue;
        };
        let mut new = settings.clone();
        let mut changed = false;
        for key in ENCRYPTED_SETTINGS {
            if let Some(Value::String(old)) = settings.get(key) {
                if !Crypto::is_gcm(old) {
                    new.insert(key.to_string(), Value::String(re_encrypt(crypto, old)?));
                    changed = true;
                }
            }
        }
        if changed
            && !pg
                .cas_extension_settings(ext.id, id, &ext.settings, &Value::Object(new))
                .await?
        {
            return Err(ReconcileError::Changed(id.clone()));
        }
    }
    pg.set_gcm_migrated_at(id).await?;
    tracing::info!(external_id = %id, project = %id, "secrets re-encrypted with AES-256-GCM");
    Ok(true)
}
