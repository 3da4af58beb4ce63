//! A node's identity: random at every start, so a restarted process is a new node and its
//! predecessor's presence entries are told apart from its own.

use std::fmt;

/// 16 random bytes naming this process among the nodes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 16]);

impl NodeId {
    /// A fresh id.
    pub fn random() -> NodeId {
        NodeId(*uuid::Uuid::new_v4().as_bytes())
    }

    /// All 32 hex digits (names in Redis).
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads [`NodeId::hex`] back.
    pub fn from_hex(text: &str) -> Option<NodeId> {
        if text.len() != 32 || !text.is_ascii() {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(NodeId(out))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_garbage() {
        let n = NodeId([0xab; 16]);
        assert_eq!(NodeId::from_hex(&n.hex()), Some(n));
        assert_eq!(NodeId::from_hex("zz"), None);
        assert_eq!(NodeId::from_hex(&"g".repeat(32)), None);
        assert_eq!(NodeId::from_hex(&"é".repeat(16)), None);
    }
}
