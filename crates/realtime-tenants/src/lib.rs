//! The `_realtime` registry and the tenant database schema.
//!
//! Layout:
//! - [`tenant_migrations`]: installs and upgrades the `realtime` schema in a tenant database.

pub mod tenant_migrations;
