//! Which channels want a change: the tenant's subscribers, indexed by relation and by `eq`
//! filter value, so routing a change costs what it reaches rather than the subscriber count.
//!
//! A binding's schema and table patterns are matched once per (binding, relation): the first
//! change on a relation builds its routes, which then follow subscribers joining and leaving
//! and are rebuilt when pgoutput describes the relation differently (renamed, columns
//! altered). A binding with an indexable `col=eq.value` filter ([`crate::eq_index`]) sits
//! under that column's canonical value and is reached by one hash lookup; every other
//! binding of the relation is reached by each of its changes. The filters are still
//! evaluated in SQL afterwards: the index only pre-selects, and never leaves out a binding
//! whose filters could pass.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use realtime_pg::pgoutput::{Relation, TupleValue};
use serde_json::Value;

use crate::eq_index::{self, EqValue};
use crate::params::{ChangeParams, FilterOp};
use crate::sink::ChangeSink;
use crate::Action;

/// A subscriber's JWT claims with what the gate needs from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The claims as JSON text, for `request.jwt.claims` and for grouping identical claims
    /// (shared: verdicts are keyed by it for every row of a batch).
    pub text: Arc<str>,
    /// The `role` claim.
    pub role: String,
}

impl Claims {
    /// Extracts the role; `None` when the claims carry no string `role`.
    pub fn new(claims: &Value) -> Option<Claims> {
        let role = claims.get("role")?.as_str()?.to_string();
        Some(Claims {
            text: Arc::from(claims.to_string()),
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
    /// Canonical texts of the entry's indexable `eq` filters, per table of `tables`.
    pub eq_values: Vec<EqValue>,
    /// The entry's `subscription_id` in `realtime.subscription`.
    pub uuid: uuid::Uuid,
}

impl Binding {
    /// Whether a change on `schema.table` concerns this entry. Names are matched with SQL
    /// `LIKE` semantics (`*` = any), as upstream resolves them against the publication; doing
    /// it per relation seen also covers tables added to the publication after subscribing
    /// (pgoutput only streams published tables).
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        let m = |pattern: &str, name: &str| pattern == "*" || like(pattern, name);
        m(&self.params.schema, schema) && m(&self.params.table, table)
    }

    /// Where this entry is reached on `relation`: the column position and canonical text of
    /// its first indexable `eq` filter, or `None` when every change of the relation must
    /// reach it. A filter is indexable only if its value was canonicalised for this table
    /// under the column's current type, and the column is in pgoutput's tuples (stored
    /// generated columns are not, before PostgreSQL 18; the evaluation reads them later).
    fn index_key<'a>(&'a self, relation: &Relation) -> Option<(usize, &'a str)> {
        self.params
            .filters
            .iter()
            .enumerate()
            .filter(|(_, f)| f.op == FilterOp::Eq && !f.negate)
            .find_map(|(i, f)| {
                let value = self
                    .eq_values
                    .iter()
                    .find(|v| v.table == relation.oid && v.filter == i)?;
                let position = relation.columns.iter().position(|c| c.name == f.column)?;
                let column = &relation.columns[position];
                (column.type_oid == value.type_oid && eq_index::indexable(column.type_oid))
                    .then_some((position, value.text.as_str()))
            })
    }
}

/// SQL `LIKE` with no escape character: `%` any run, `_` any one character.
pub fn like(pattern: &str, text: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    // reachable[j]: the pattern read so far matches the text prefix of length j.
    let mut reachable = vec![false; t.len() + 1];
    let mut next = vec![false; t.len() + 1];
    reachable[0] = true;
    for pc in pattern.chars() {
        match pc {
            '%' => {
                let mut any = false;
                for j in 0..=t.len() {
                    any |= reachable[j];
                    next[j] = any;
                }
            }
            _ => {
                next[0] = false;
                for j in 0..t.len() {
                    next[j + 1] = reachable[j] && (pc == '_' || pc == t[j]);
                }
            }
        }
        std::mem::swap(&mut reachable, &mut next);
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
    /// Indexes into `subscriber.bindings`, in join order.
    pub bindings: Vec<usize>,
}

/// One binding of one subscriber in a relation's routes.
struct Entry {
    subscriber: Arc<Subscriber>,
    binding: usize,
}

/// Bindings whose `eq` filter is on one column: canonical text → entries.
struct ColumnIndex {
    position: usize,
    values: HashMap<String, Vec<Entry>>,
}

/// The bindings concerned by one relation.
struct Routes {
    /// The description the routes were built from.
    relation: Relation,
    /// Reached by every change of the relation.
    every: Vec<Entry>,
    /// Reached only when a column holds a value, per column.
    by_value: Vec<ColumnIndex>,
}

impl Routes {
    fn build(relation: &Relation, subscribers: &BTreeMap<u64, Arc<Subscriber>>) -> Routes {
        let mut routes = Routes {
            relation: relation.clone(),
            every: Vec::new(),
            by_value: Vec::new(),
        };
        for sub in subscribers.values() {
            routes.add(sub);
        }
        routes
    }

    fn add(&mut self, sub: &Arc<Subscriber>) {
        for (i, b) in sub.bindings.iter().enumerate() {
            if !b.matches(&self.relation.namespace, &self.relation.name) {
                continue;
            }
            let entry = Entry {
                subscriber: sub.clone(),
                binding: i,
            };
            match b.index_key(&self.relation) {
                None => self.every.push(entry),
                Some((position, text)) => {
                    let column = match self.by_value.iter().position(|c| c.position == position) {
                        Some(k) => &mut self.by_value[k],
                        None => {
                            self.by_value.push(ColumnIndex {
                                position,
                                values: HashMap::new(),
                            });
                            let last = self.by_value.len() - 1;
                            &mut self.by_value[last]
                        }
                    };
                    column
                        .values
                        .entry(text.to_string())
                        .or_default()
                        .push(entry);
                }
            }
        }
    }

    /// Takes `sub`'s entries out, looking only where [`Routes::add`] put them.
    fn remove(&mut self, sub: &Subscriber) {
        let key = sub.key;
        let mut scan_every = false;
        for b in &sub.bindings {
            if !b.matches(&self.relation.namespace, &self.relation.name) {
                continue;
            }
            let Some((position, text)) = b.index_key(&self.relation) else {
                scan_every = true;
                continue;
            };
            let Some(k) = self.by_value.iter().position(|c| c.position == position) else {
                continue;
            };
            let column = &mut self.by_value[k];
            if let Some(list) = column.values.get_mut(text) {
                list.retain(|e| e.subscriber.key != key);
                if list.is_empty() {
                    column.values.remove(text);
                }
            }
            if column.values.is_empty() {
                self.by_value.swap_remove(k);
            }
        }
        if scan_every {
            self.every.retain(|e| e.subscriber.key != key);
        }
    }
}

#[derive(Default)]
struct State {
    /// By key, i.e. subscription order.
    subscribers: BTreeMap<u64, Arc<Subscriber>>,
    /// Per relation OID, built on its first change.
    routes: HashMap<u32, Routes>,
}

/// The tenant's subscribers.
#[derive(Default)]
pub struct Router {
    inner: Mutex<State>,
}

impl Router {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Adds a channel.
    pub fn insert(&self, sub: Arc<Subscriber>) {
        let mut g = self.lock();
        let State {
            subscribers,
            routes,
        } = &mut *g;
        if let Some(old) = subscribers.insert(sub.key, sub.clone()) {
            for r in routes.values_mut() {
                r.remove(&old);
            }
        }
        for r in routes.values_mut() {
            r.add(&sub);
        }
    }

    /// Removes a channel; returns how many remain.
    pub fn remove(&self, key: u64) -> usize {
        let mut g = self.lock();
        let State {
            subscribers,
            routes,
        } = &mut *g;
        if let Some(old) = subscribers.remove(&key) {
            for r in routes.values_mut() {
                r.remove(&old);
            }
        }
        subscribers.len()
    }

    /// Removes every channel and tells each sink (the pipeline was stopped under them).
    pub fn clear(&self) {
        let gone = {
            let mut g = self.lock();
            g.routes.clear();
            std::mem::take(&mut g.subscribers)
        };
        for s in gone.into_values() {
            s.sink.pipeline_stopped();
        }
    }

    /// Number of channels.
    pub fn len(&self) -> usize {
        self.lock().subscribers.len()
    }

    /// Whether no channel is subscribed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every channel (for system messages), in subscription order.
    pub fn all(&self) -> Vec<Arc<Subscriber>> {
        self.lock().subscribers.values().cloned().collect()
    }

    /// Channels with at least one binding on `relation` that accepts `action` and whose
    /// indexed `eq` filter (if any) holds the change's value, ordered by key (subscription
    /// order), bindings in join order.
    ///
    /// `new` and `old` are the change's pgoutput tuples; like the filter evaluation, a DELETE
    /// is judged on its old identity and the others on the new tuple.
    pub fn candidates(
        &self,
        relation: &Relation,
        action: Action,
        new: Option<&[TupleValue]>,
        old: Option<&[TupleValue]>,
    ) -> Vec<Candidate> {
        let tuple = if action == Action::Delete { old } else { new };
        let mut g = self.lock();
        let State {
            subscribers,
            routes,
        } = &mut *g;
        let routes = match routes.entry(relation.oid) {
            // A new description (rename, columns added, dropped or retyped) moves column
            // positions and types under the index: rebuild.
            MapEntry::Occupied(o) if o.get().relation != *relation => {
                let r = o.into_mut();
                *r = Routes::build(relation, subscribers);
                r
            }
            MapEntry::Occupied(o) => o.into_mut(),
            MapEntry::Vacant(v) => v.insert(Routes::build(relation, subscribers)),
        };
        let mut reached: Vec<&Entry> = routes.every.iter().collect();
        for column in &routes.by_value {
            match tuple.and_then(|t| t.get(column.position)) {
                Some(TupleValue::Text(bytes)) => {
                    // The same decoding the change's columns get, so the index compares
                    // exactly what the filter evaluation will.
                    let text = String::from_utf8_lossy(bytes);
                    if let Some(list) = column.values.get(text.as_ref()) {
                        reached.extend(list);
                    }
                }
                // Binary values cannot be compared as text here: let the evaluation decide.
                Some(TupleValue::Binary(_)) => {
                    reached.extend(column.values.values().flatten());
                }
                // NULL equals nothing; an absent value (unchanged TOAST) fails the filter.
                Some(TupleValue::Null | TupleValue::UnchangedToast) | None => {}
            }
        }
        let mut out: BTreeMap<u64, Candidate> = BTreeMap::new();
        for e in reached {
            if !e.subscriber.bindings[e.binding]
                .params
                .action
                .accepts(action)
            {
                continue;
            }
            out.entry(e.subscriber.key)
                .or_insert_with(|| Candidate {
                    subscriber: e.subscriber.clone(),
                    bindings: Vec::new(),
                })
                .bindings
                .push(e.binding);
        }
        out.into_values()
            .map(|mut c| {
                c.bindings.sort_unstable();
                c
            })
            .collect()
    }

    /// How many entries a change on `oid` reaches whatever its values (for tests).
    #[cfg(test)]
    fn unindexed(&self, oid: u32) -> Option<usize> {
        self.lock().routes.get(&oid).map(|r| r.every.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{parse, ChangeParams};
    use bytes::Bytes;
    use realtime_pg::pgoutput::RelationColumn;
    use serde_json::json;

    #[test]
    fn like_semantics() {
        assert!(like("my_table", "myxtable"));
        assert!(like("my_table", "my_table"));
        assert!(!like("my_table", "my_tablex"));
        assert!(like("pub%", "public"));
        assert!(like("%", ""));
        assert!(!like("a_", "a"));
        assert!(like(r"a\b", r"a\b"));
        assert!(like("%ab%c", "xxabyyc"));
        assert!(!like("%ab%c", "xxabyy"));
        assert!(like("é_", "éa"));
        assert!(!like("", "a"));
        assert!(like("", ""));
    }

    const TEXT: u32 = crate::value::oid::TEXT;
    const UUID: u32 = crate::value::oid::UUID;
    const INT4: u32 = crate::value::oid::INT4;
    const NUMERIC: u32 = crate::value::oid::NUMERIC;

    fn relation(oid: u32, schema: &str, name: &str, columns: &[(&str, u32)]) -> Relation {
        Relation {
            oid,
            namespace: schema.into(),
            name: name.into(),
            replica_identity: b'd',
            columns: columns
                .iter()
                .map(|(n, t)| RelationColumn {
                    is_key: *n == "id",
                    name: (*n).into(),
                    type_oid: *t,
                    type_modifier: -1,
                })
                .collect(),
        }
    }

    fn messages() -> Relation {
        relation(
            100,
            "public",
            "messages",
            &[("id", INT4), ("user_id", UUID), ("amount", NUMERIC)],
        )
    }

    fn tuple(values: &[Option<&str>]) -> Vec<TupleValue> {
        values
            .iter()
            .map(|v| match v {
                Some(s) => TupleValue::Text(Bytes::copy_from_slice(s.as_bytes())),
                None => TupleValue::Null,
            })
            .collect()
    }

    fn params(entry: serde_json::Value) -> ChangeParams {
        parse(&entry).unwrap()
    }

    /// A binding whose `eq` filters were canonicalised for `tables` with the given texts.
    fn binding(id: u32, entry: serde_json::Value, eq: &[(u32, usize, u32, &str)]) -> Binding {
        Binding {
            id,
            params: params(entry),
            tables: eq.iter().map(|e| e.0).collect(),
            eq_values: eq
                .iter()
                .map(|&(table, filter, type_oid, text)| EqValue {
                    table,
                    filter,
                    type_oid,
                    text: text.into(),
                })
                .collect(),
            uuid: uuid::Uuid::nil(),
        }
    }

    /// A sink for routing tests, which never deliver.
    #[derive(Debug)]
    struct Unused;

    impl crate::sink::ChangeSink for Unused {
        fn push(&self, _: crate::CdcEvent, _: &mut crate::sink::SinkCache) -> bool {
            true
        }
        fn pipeline_stopped(&self) {}
    }

    fn subscriber(key: u64, bindings: Vec<Binding>) -> Arc<Subscriber> {
        let sink = Arc::new(Unused);
        Arc::new(Subscriber {
            key,
            topic: format!("realtime:{key}"),
            claims: RwLock::new(Arc::new(Claims {
                text: "{}".into(),
                role: "anon".into(),
            })),
            bindings,
            sink,
        })
    }

    fn user(i: u64) -> String {
        format!("00000000-0000-0000-0000-{i:012x}")
    }

    /// `(key, binding indexes)` of each candidate.
    fn reach(
        router: &Router,
        rel: &Relation,
        action: Action,
        values: &[Option<&str>],
    ) -> Vec<(u64, Vec<usize>)> {
        let t = tuple(values);
        let (new, old) = if action == Action::Delete {
            (None, Some(t.as_slice()))
        } else {
            (Some(t.as_slice()), None)
        };
        router
            .candidates(rel, action, new, old)
            .into_iter()
            .map(|c| (c.subscriber.key, c.bindings))
            .collect()
    }

    #[test]
    fn a_thousand_eq_subscribers_cost_one_lookup() {
        let rel = messages();
        let router = Router::default();
        for i in 0..1000u64 {
            let filter = format!("user_id=eq.{}", user(i).to_uppercase());
            router.insert(subscriber(
                i,
                vec![binding(
                    1,
                    json!({"schema": "public", "table": "messages", "filter": filter}),
                    &[(100, 0, UUID, &user(i))],
                )],
            ));
        }
        for i in [0u64, 1, 517, 999] {
            let u = user(i);
            assert_eq!(
                reach(&router, &rel, Action::Insert, &[Some("1"), Some(&u), None]),
                vec![(i, vec![0])]
            );
        }
        // Nothing is scanned per change: every binding sits behind its value.
        assert_eq!(router.unindexed(100), Some(0));
        let stranger = user(5000);
        assert!(reach(
            &router,
            &rel,
            Action::Insert,
            &[Some("1"), Some(&stranger), None]
        )
        .is_empty());
        assert!(reach(&router, &rel, Action::Insert, &[Some("1"), None, None]).is_empty());
    }

    #[test]
    fn names_are_matched_with_wildcards_and_like() {
        let router = Router::default();
        let entries = [
            json!({"schema": "*"}),
            json!({"schema": "public"}),
            json!({"schema": "pub%", "table": "mess_ges"}),
            json!({"schema": "public", "table": "other"}),
            json!({"schema": "private", "table": "*"}),
            json!({"table": "%"}),
        ];
        for (k, e) in entries.iter().enumerate() {
            router.insert(subscriber(k as u64, vec![binding(1, e.clone(), &[])]));
        }
        let keys = |rel: &Relation| -> Vec<u64> {
            reach(&router, rel, Action::Update, &[Some("1"), None, None])
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(keys(&messages()), vec![0, 1, 2, 5]);
        let private = relation(200, "private", "messages", &[("id", INT4)]);
        assert_eq!(keys(&private), vec![0, 4]);
    }

    #[test]
    fn canonical_values_are_what_the_wal_is_compared_with() {
        let rel = messages();
        let router = Router::default();
        let upper = "ABCDEF01-2345-6789-ABCD-EF0123456789";
        let lower = upper.to_lowercase();
        router.insert(subscriber(
            1,
            vec![binding(
                1,
                json!({"schema": "public", "table": "messages", "filter": format!("user_id=eq.{upper}")}),
                &[(100, 0, UUID, &lower)],
            )],
        ));
        assert_eq!(
            reach(
                &router,
                &rel,
                Action::Insert,
                &[Some("1"), Some(&lower), None]
            ),
            vec![(1, vec![0])]
        );
        assert!(reach(
            &router,
            &rel,
            Action::Insert,
            &[Some("1"), Some(upper), None]
        )
        .is_empty());
    }

    #[test]
    fn unindexed_filters_reach_every_change() {
        let rel = messages();
        let router = Router::default();
        // numeric has no canonical text: no value was recorded, so no index.
        router.insert(subscriber(
            1,
            vec![binding(
                1,
                json!({"schema": "public", "table": "messages", "filter": "amount=eq.1.50"}),
                &[],
            )],
        ));
        // Negated and non-`eq` filters are not indexed either.
        router.insert(subscriber(
            2,
            vec![binding(
                1,
                json!({"schema": "public", "table": "messages", "filter": "id=not.eq.3"}),
                &[(100, 0, INT4, "3")],
            )],
        ));
        router.insert(subscriber(
            3,
            vec![binding(
                1,
                json!({"schema": "public", "table": "messages", "filter": "id=gt.3"}),
                &[],
            )],
        ));
        // A value canonicalised under another type (the column was altered since) is not
        // trusted.
        router.insert(subscriber(
            4,
            vec![binding(
                1,
                json!({"schema": "public", "table": "messages", "filter": "user_id=eq.X"}),
                &[(100, 0, TEXT, "X")],
            )],
        ));
        // A column pgoutput does not send (stored generated) is evaluated later.
        router.insert(subscriber(
            5,
            vec![binding(
                1,
                json!({"schema": "public", "table": "messages", "filter": "total=eq.3"}),
                &[(100, 0, INT4, "3")],
            )],
        ));
        // Values recorded for another table of a wildcard entry do not apply here.
        router.insert(subscriber(
            6,
            vec![binding(
                1,
                json!({"schema": "public", "table": "*", "filter": "id=eq.3"}),
                &[(999, 0, INT4, "3")],
            )],
        ));
        let all: Vec<(u64, Vec<usize>)> = (1..=6).map(|k| (k, vec![0])).collect();
        assert_eq!(
            reach(
                &router,
                &rel,
                Action::Insert,
                &[Some("1"), Some(&user(1)), Some("1.5")]
            ),
            all
        );
        assert_eq!(router.unindexed(100), Some(6));
    }

    #[test]
    fn the_first_indexable_eq_filter_decides_and_others_are_left_to_sql() {
        let rel = messages();
        let router = Router::default();
        router.insert(subscriber(
            1,
            vec![binding(
                1,
                json!({"schema": "public", "table": "messages", "filter": "amount=eq.2,id=eq.7,user_id=eq.x"}),
                &[(100, 1, INT4, "7"), (100, 2, UUID, "x")],
            )],
        ));
        assert_eq!(
            reach(
                &router,
                &rel,
                Action::Insert,
                &[Some("7"), Some("y"), Some("2")]
            ),
            vec![(1, vec![0])]
        );
        assert!(reach(
            &router,
            &rel,
            Action::Insert,
            &[Some("8"), Some("x"), Some("2")]
        )
        .is_empty());
    }

    #[test]
    fn deletes_are_routed_on_the_old_identity() {
        let rel = messages();
        let router = Router::default();
        router.insert(subscriber(
            1,
            vec![binding(
                1,
                json!({"schema": "public", "table": "messages", "filter": "id=eq.7"}),
                &[(100, 0, INT4, "7")],
            )],
        ));
        assert_eq!(
            reach(&router, &rel, Action::Delete, &[Some("7"), None, None]),
            vec![(1, vec![0])]
        );
        let new = tuple(&[Some("7"), None, None]);
        let old = tuple(&[Some("8"), None, None]);
        assert!(router
            .candidates(&rel, Action::Delete, Some(&new), Some(&old))
            .is_empty());
        assert_eq!(
            router
                .candidates(&rel, Action::Update, Some(&new), Some(&old))
                .len(),
            1
        );
        // Unchanged TOAST is absent from the change: the filter cannot pass.
        let toast = vec![
            TupleValue::UnchangedToast,
            TupleValue::Null,
            TupleValue::Null,
        ];
        assert!(router
            .candidates(&rel, Action::Update, Some(&toast), None)
            .is_empty());
        // Binary values cannot be compared here: the evaluation decides.
        let binary = vec![
            TupleValue::Binary(Bytes::from_static(&[0, 0, 0, 8])),
            TupleValue::Null,
            TupleValue::Null,
        ];
        assert_eq!(
            router
                .candidates(&rel, Action::Insert, Some(&binary), None)
                .len(),
            1
        );
    }

    #[test]
    fn joins_and_leaves_update_built_routes() {
        let rel = messages();
        let router = Router::default();
        let eq = |k: u64, id: &str| {
            subscriber(
                k,
                vec![binding(
                    1,
                    json!({"schema": "public", "table": "messages", "filter": format!("id=eq.{id}")}),
                    &[(100, 0, INT4, id)],
                )],
            )
        };
        router.insert(eq(1, "7"));
        let row = [Some("7"), None, None];
        assert_eq!(reach(&router, &rel, Action::Insert, &row).len(), 1);
        // Routes for the relation now exist; later joins must land in them.
        router.insert(eq(2, "7"));
        router.insert(subscriber(
            3,
            vec![binding(1, json!({"schema": "public"}), &[])],
        ));
        let keys = |r: &Router| -> Vec<u64> {
            reach(r, &rel, Action::Insert, &row)
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(keys(&router), vec![1, 2, 3]);
        assert_eq!(router.remove(1), 2);
        assert_eq!(keys(&router), vec![2, 3]);
        router.remove(3);
        assert_eq!(keys(&router), vec![2]);
        assert_eq!(router.unindexed(100), Some(0));
        router.remove(2);
        assert!(keys(&router).is_empty());
        router.insert(eq(4, "7"));
        assert_eq!(keys(&router), vec![4]);
        router.clear();
        assert!(keys(&router).is_empty());
        assert!(router.is_empty());
    }

    #[test]
    fn a_new_relation_description_rebuilds_its_routes() {
        let router = Router::default();
        router.insert(subscriber(
            1,
            vec![binding(
                1,
                json!({"schema": "public", "table": "messages", "filter": "user_id=eq.u"}),
                &[(100, 0, UUID, "u")],
            )],
        ));
        let rel = messages();
        assert_eq!(
            reach(&router, &rel, Action::Insert, &[Some("1"), Some("u"), None]).len(),
            1
        );
        // A column dropped before user_id moves it; the index must follow.
        let moved = relation(100, "public", "messages", &[("user_id", UUID)]);
        assert_eq!(
            reach(&router, &moved, Action::Insert, &[Some("u")]).len(),
            1
        );
        // Retyped to text: the uuid text is no longer a safe key, every change is checked.
        let retyped = relation(100, "public", "messages", &[("user_id", TEXT)]);
        assert_eq!(
            reach(&router, &retyped, Action::Insert, &[Some("U")]).len(),
            1
        );
        assert_eq!(router.unindexed(100), Some(1));
        // Renamed table: the entry no longer concerns it.
        let renamed = relation(100, "public", "notes", &[("user_id", UUID)]);
        assert!(reach(&router, &renamed, Action::Insert, &[Some("u")]).is_empty());
    }

    #[test]
    fn order_is_by_subscription_then_join_order_and_actions_filter() {
        let rel = messages();
        let router = Router::default();
        let b = |id: u32, event: &str, filter: Option<&str>| {
            let mut e = json!({"event": event, "schema": "public", "table": "messages"});
            let mut eq = Vec::new();
            if let Some(f) = filter {
                e["filter"] = json!(f);
                eq.push((100, 0, INT4, "7"));
            }
            binding(id, e, &eq)
        };
        // Inserted out of key order; bindings mix indexed and unindexed.
        router.insert(subscriber(
            9,
            vec![
                b(1, "*", Some("id=eq.7")),
                b(2, "INSERT", None),
                b(3, "DELETE", None),
            ],
        ));
        router.insert(subscriber(
            3,
            vec![
                b(1, "UPDATE", None),
                b(2, "*", Some("id=eq.7")),
                b(3, "*", None),
            ],
        ));
        let row = [Some("7"), None, None];
        assert_eq!(
            reach(&router, &rel, Action::Insert, &row),
            vec![(3, vec![1, 2]), (9, vec![0, 1])]
        );
        assert_eq!(
            reach(&router, &rel, Action::Update, &row),
            vec![(3, vec![0, 1, 2]), (9, vec![0])]
        );
        assert_eq!(
            reach(&router, &rel, Action::Delete, &[Some("8"), None, None]),
            vec![(3, vec![2]), (9, vec![2])]
        );
        let keys: Vec<u64> = router.all().iter().map(|s| s.key).collect();
        assert_eq!(keys, vec![3, 9]);
    }
}
