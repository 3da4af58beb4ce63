//! The logical replication stream over the streaming replication protocol.
