//! Upstream's reply and `system` message shapes and error strings (PROTOCOL.md §3.7, §9, §15).
