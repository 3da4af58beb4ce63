//! The `_realtime` registry and the tenant database schema.
//!
//! Layout:
//! - [`crypto`]: AES-128-ECB (legacy, bare base64) and AES-256-GCM (`g1:`) for stored secrets.
//! - [`tenant`]: the [`Tenant`] model, its decrypted secrets, limits and API rendering.
//! - [`extension`]: the [`Extension`] model and decrypted [`CdcSettings`].
//! - [`feature_flags`]: feature flag rows and their per-tenant resolution.
//! - [`upsert`]: admin API create/update validation (pure).
//! - [`registry`]: the [`Registry`] store (PostgreSQL or in memory), its connection pool, and
//!   the read-only inspection `realtime doctor` runs ([`registry::diagnosis`]).
//! - [`registry_migrations`]: the 33 `_realtime` migrations with upstream's version numbers.
//! - [`cache`]: the [`TenantCache`] with its TTL.
//! - [`gcm_backfill`]: re-encryption of legacy secrets with AES-256-GCM on load.
//! - [`seed`]: the `SEED_SELF_HOST` default tenant.
//! - [`host`]: tenant id from the Host header.
//! - [`tenant_migrations`]: installs and upgrades the `realtime` schema in a tenant database.

pub mod cache;
pub mod crypto;
pub mod extension;
pub mod feature_flags;
pub mod gcm_backfill;
pub mod host;
pub mod registry;
pub mod registry_migrations;
pub mod seed;
pub mod tenant;
pub mod tenant_migrations;
pub mod upsert;

pub use cache::TenantCache;
pub use crypto::{Crypto, CryptoError, Decrypted};
pub use extension::{CdcSettings, Extension};
pub use host::external_id_from_host;
pub use registry::{
    IpVersion, Registry, RegistryConfig, RegistryError, TenantDefaults, UpsertError, Upserted,
};
pub use registry_migrations::{MigrationReport, RegistryMigrationError};
pub use seed::{seed_self_host, SeedConfig, SeedError};
pub use tenant::{Tenant, TenantError};
