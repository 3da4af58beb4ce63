//! The labels every series carries: `region`, `host` and `id`, derived from `REGION` and the
//! node name as upstream derives them (`config/runtime.exs`, `Realtime.Nodes`).

/// This node's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLabels {
    /// `REGION`, or `nil` when unset (upstream renders a nil label that way).
    pub region: String,
    /// The host part of the node name (`realtime@127.0.0.1` → `127.0.0.1`).
    pub host: String,
    /// The short node id.
    pub id: String,
}

impl NodeLabels {
    /// Labels for `node_name` (`<app>@<host>`) in `region`.
    pub fn new(region: Option<&str>, node_name: &str) -> NodeLabels {
        let host = node_name
            .split_once('@')
            .map(|(_, h)| h)
            .unwrap_or(node_name)
            .to_string();
        NodeLabels {
            region: region.unwrap_or("nil").to_string(),
            id: short_id(node_name, &host),
            host,
        }
    }

    /// The labels as (name, value) pairs.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            ("host", &self.host),
            ("id", &self.id),
            ("region", &self.region),
        ]
    }
}

impl Default for NodeLabels {
    fn default() -> NodeLabels {
        NodeLabels::new(None, "realtime@127.0.0.1")
    }
}

/// Upstream's `short_node_id_from_name`: the 6th and 7th groups of an IPv6 host, the whole
/// node name on `127.0.0.1`, the host otherwise.
fn short_id(node_name: &str, host: &str) -> String {
    let parts: Vec<&str> = host.splitn(8, ':').collect();
    if parts.len() == 8 {
        return format!("{}{}", parts[5], parts[6]);
    }
    if host == "127.0.0.1" {
        return node_name.to_string();
    }
    host.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_upstream() {
        let l = NodeLabels::new(None, "realtime@127.0.0.1");
        assert_eq!(l.region, "nil");
        assert_eq!(l.host, "127.0.0.1");
        assert_eq!(l.id, "realtime@127.0.0.1");
        let l = NodeLabels::new(Some("eu-west-1"), "realtime@fdaa:0:1:a7b:b2:1:2:3");
        assert_eq!(l.id, "12");
        assert_eq!(l.region, "eu-west-1");
        let l = NodeLabels::new(None, "realtime@10.0.0.5");
        assert_eq!(l.id, "10.0.0.5");
    }
}
