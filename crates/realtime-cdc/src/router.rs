//! Which channels want a change: the tenant's subscribers, indexed by table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;

use crate::params::ChangeParams;
use crate::sink::ChangeSink;
use crate::Action;

/// A subscriber's JWT claims with what the gate needs from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The claims as JSON text, for `request.jwt.claims` and for grouping identical claims.
    pub text: String,
    /// The `role` claim.
    pub role: String,
}

impl Claims {
    /// Extracts the role; `None` when the claims carry no string `role`.
    pub fn new(claims: &Value) -> Option<Claims> {
        let role = claims.get("role")?.as_str()?.to_string();
        Some(Claims {
            text: claims.to_string(),
            role,
        })
    }
}

/// One `postgres_changes` entry of a channel, resolved to published tables.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The id echoed to the client.
    pub id: u32,
    /// Parsed parameters.
    pub params: ChangeParams,
    /// Relation OIDs the entry matched when subscribing (validated against).
    pub tables: Vec<u32>,
    /// The entry's `subscription_id` in `realtime.subscription`.
    pub uuid: uuid::Uuid,
}

impl Binding {
    /// Whether a change on `schema.table` concerns this entry. Names are matched with SQL
    /// `LIKE` semantics (`*` = any), as upstream resolves them against the publication; doing
    /// it per change also covers tables added to the publication after subscribing (pgoutput
    /// only streams published tables).
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        let m = |pattern: &str, name: &str| pattern == "*" || like(pattern, name);
        m(&self.params.schema, schema) && m(&self.params.table, table)
    }
}

/// SQL `LIKE` with no escape character: `%` any run, `_` any one character.
pub fn like(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // reachable[j]: pattern prefix so far matches text prefix of length j.
    let mut reachable = vec![false; t.len() + 1];
    reachable[0] = true;
    for &pc in &p {
        let mut next = vec![false; t.len() + 1];
        match pc {
            '%' => {
                let mut any = false;
                for j in 0..=t.len() {
                    any |= reachable[j];
                    next[j] = any;
                }
            }
            _ => {
                for j in 0..t.len() {
                    if reachable[j] && (pc == '_' || pc == t[j]) {
                        next[j + 1] = true;
                    }
                }
            }
        }
        reachable = next;
    }
    reachable[t.len()]
}

/// One channel.
#[derive(Debug)]
pub struct Subscriber {
    /// Registry key.
    pub key: u64,
    /// Channel topic (`realtime:…`).
    pub topic: String,
    /// Current claims (replaced on token refresh).
    pub claims: RwLock<Arc<Claims>>,
    /// Entries in join order.
    pub bindings: Vec<Binding>,
    /// Where this channel's events go.
    pub sink: Arc<dyn ChangeSink>,
}

impl Subscriber {
    /// A snapshot of the current claims.
    pub fn claims(&self) -> Arc<Claims> {
        match self.claims.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// A subscriber with the indexes of its bindings that match a change's table and action.
pub struct Candidate {
    /// The channel.
    pub subscriber: Arc<Subscriber>,
    /// Indexes into `subscriber.bindings`.
    pub bindings: Vec<usize>,
}

/// The tenant's subscribers.
#[derive(Default)]
pub struct Router {
    inner: Mutex<HashMap<u64, Arc<Subscriber>>>,
}

impl Router {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Subscriber>>> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Adds a channel.
    pub fn insert(&self, sub: Arc<Subscriber>) {
        self.lock().insert(sub.key, sub);
    }

    /// Removes a channel; returns how many remain.
    pub fn remove(&self, key: u64) -> usize {
        let mut g = self.lock();
        g.remove(&key);
        g.len()
    }

    /// Removes every channel and tells each sink (the pipeline was stopped under them).
    pub fn clear(&self) {
        let gone = std::mem::take(&mut *self.lock());
        for s in gone.into_values() {
            s.sink.pipeline_stopped();
        }
    }

    /// Number of channels.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no channel is subscribed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every channel (for system messages).
    pub fn all(&self) -> Vec<Arc<Subscriber>> {
        self.lock().values().cloned().collect()
    }

    /// Channels with at least one binding on `schema.table` that accepts `action`, ordered
    /// by key (i.e. subscription order) so delivery order is deterministic.
    pub fn candidates(&self, schema: &str, table: &str, action: Action) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = self
            .lock()
            .values()
            .filter_map(|s| {
                let bindings: Vec<usize> = s
                    .bindings
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.matches(schema, table) && b.params.action.accepts(action))
                    .map(|(i, _)| i)
                    .collect();
                (!bindings.is_empty()).then(|| Candidate {
                    subscriber: s.clone(),
                    bindings,
                })
            })
            .collect();
        out.sort_by_key(|c| c.subscriber.key);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_semantics() {
        assert!(like("my_table", "myxtable"));
        assert!(like("my_table", "my_table"));
        assert!(!like("my_table", "my_tablex"));
        assert!(like("pub%", "public"));
        assert!(like("%", ""));
        assert!(!like("a_", "a"));
        assert!(like(r"a\b", r"a\b"));
    }
}
