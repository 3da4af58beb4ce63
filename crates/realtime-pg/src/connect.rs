//! Ordinary (non-replication) connections to the registry and tenant databases.
