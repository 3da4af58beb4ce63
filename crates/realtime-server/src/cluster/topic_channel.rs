//! The Redis channel of a topic: `realtime:<db>:<private 0|1>:<tenant length>:<tenant>:<sub>`.
//! The database number is part of it because Redis shares Pub/Sub across its databases, so two
//! clusters on one Redis stay apart by using different databases; the tenant's length keeps
//! names unambiguous whatever characters tenants and topics hold.

use bytes::Bytes;

use crate::gateway::hub::TopicKey;

/// The channel name for `key`.
pub fn name(db: i64, key: &TopicKey) -> Bytes {
    named(db, "", key)
}

/// A Redis name for `key` of `kind` (`""` for its channel, `"p:"` for its presence hash):
/// `realtime:<db>:<kind><private 0|1>:<tenant length>:<tenant>:<sub>`.
pub fn named(db: i64, kind: &str, key: &TopicKey) -> Bytes {
    Bytes::from(format!(
        "realtime:{db}:{kind}{}:{}:{}:{}",
        u8::from(key.private),
        key.tenant.len(),
        key.tenant,
        key.sub
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(tenant: &str, private: bool, sub: &str) -> TopicKey {
        TopicKey {
            tenant: Arc::from(tenant),
            private,
            sub: Arc::from(sub),
        }
    }

    #[test]
    fn namespaces_never_collide() {
        assert_ne!(
            name(0, &key("a:b", false, "c")),
            name(0, &key("a", false, "b:c"))
        );
        assert_ne!(
            name(0, &key("t", false, "c")),
            name(0, &key("t", true, "c"))
        );
        assert_ne!(
            name(0, &key("t", false, "c")),
            name(1, &key("t", false, "c"))
        );
        assert_eq!(
            name(3, &key("realtime-dev", true, "room")),
            Bytes::from_static(b"realtime:3:1:12:realtime-dev:room")
        );
    }
}
