//! Postgres Changes: one WAL pipeline per tenant, subscriptions, filters, the RLS gate and
//! upstream-identical `postgres_changes` payloads.
