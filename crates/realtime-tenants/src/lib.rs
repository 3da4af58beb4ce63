//! realtime-tenants
