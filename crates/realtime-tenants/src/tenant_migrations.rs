//! Installs and upgrades the `realtime` schema in a tenant database (SQL in `migrations/tenant/`).
