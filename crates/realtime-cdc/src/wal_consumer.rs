//! What a WAL consumer decides, shared by Postgres Changes and broadcast from the database:
//! pgoutput messages in; rows to route, when to hand on, and which position to confirm, out.
//! No IO: the consumers ([`crate::pipeline`], [`crate::db_broadcast`]) do the routing and the
//! handing on, [`crate::reconnect`] the reading.
//!
//! Exactly once across reconnects: after a reconnect the server restarts from the slot's
//! confirmed position, which can lag behind what was handed on (status updates go out
//! periodically, and a crash of the database loses the last ones). Transactions commit in LSN
//! order and are re-sent whole, so the commit LSN of the last fully handed-on transaction and
//! a count of the rows processed of the one in progress identify everything already delivered.
//!
//! Batching: a committed transaction waits to be handed on only while more WAL is already at
//! hand ([`WalConsumer::waiting`], ended by [`WalConsumer::drained`]), so one hand-on covers
//! every transaction that arrived meanwhile; a batch never holds more than `batch_max` kept
//! rows, so a long transaction goes out in slices. The confirmed position
//! ([`WalConsumer::handed_on`]) only ever moves to the end of a transaction whose rows were all
//! handed on.

use std::collections::HashMap;
use std::sync::Arc;

use realtime_pg::pgoutput::{LogicalMessage, Relation, Tuple};
use realtime_pg::Lsn;

use crate::Action;

/// A row change not handed on before, for the consumer to route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChange {
    /// The relation as last described in this session.
    pub relation: Arc<Relation>,
    /// INSERT, UPDATE or DELETE.
    pub action: Action,
    /// The new row (INSERT, UPDATE).
    pub new: Option<Tuple>,
    /// The old row or its key (UPDATE when the replica identity sends it, DELETE).
    pub old: Option<Tuple>,
    /// `old` holds only the key columns.
    pub old_is_key: bool,
    /// Commit time of the transaction, microseconds since 2000-01-01 UTC.
    pub commit_time: i64,
}

/// What the consumer does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing: read on.
    Read,
    /// A relation was (re)described; rows that follow are read with this description.
    Described(Arc<Relation>),
    /// A new row: route it, and report [`WalConsumer::kept`] if it joins the batch.
    Route(RowChange),
    /// A row handed on before the reconnect, sent again: drop it.
    SkipResent,
    /// A change of a relation this session never described: it cannot be read, drop it.
    Undescribed(u32),
    /// Hand on every kept row now, then report [`WalConsumer::handed_on`].
    HandOn,
}

/// Progress that survives reconnects.
#[derive(Debug, Default, Clone, Copy)]
struct Resume {
    /// Commit LSN of the last transaction fully handed on.
    done_commit: Lsn,
    /// In a partly handed-on transaction: its commit LSN and how many of its rows were
    /// processed (handed on or deliberately dropped).
    partial: Option<(Lsn, usize)>,
}

/// The transaction being streamed.
#[derive(Debug)]
struct Txn {
    final_lsn: Lsn,
    commit_time: i64,
    /// Rows seen so far in this transaction.
    index: usize,
    /// Handed on whole before.
    skip_all: bool,
    /// Rows handed on before, from its start.
    skip_upto: usize,
}

impl Resume {
    fn begin(&self, final_lsn: Lsn, commit_time: i64) -> Txn {
        let skip_upto = match self.partial {
            Some((lsn, n)) if lsn == final_lsn => n,
            _ => 0,
        };
        Txn {
            final_lsn,
            commit_time,
            index: 0,
            skip_all: final_lsn <= self.done_commit,
            skip_upto,
        }
    }

    /// Every row of `txn` seen so far was processed. A hand-on can come while re-sent rows
    /// are being skipped, so this never forgets what was handed on before the reconnect:
    /// nothing to record for a transaction handed on whole, a count never lowered, and the
    /// count of a later transaction kept.
    fn processed(&mut self, txn: &Txn) {
        if txn.skip_all {
            return;
        }
        self.partial = match self.partial {
            Some((lsn, n)) if lsn == txn.final_lsn => Some((lsn, n.max(txn.index))),
            Some((lsn, n)) if lsn > txn.final_lsn => Some((lsn, n)),
            _ => Some((txn.final_lsn, txn.index)),
        };
    }

    fn commit(&mut self, commit_lsn: Lsn) {
        self.done_commit = self.done_commit.max(commit_lsn);
        // A re-sent earlier transaction must not forget the partly handed-on one that the
        // server sends again after it.
        if self.partial.is_some_and(|(lsn, _)| lsn <= commit_lsn) {
            self.partial = None;
        }
    }
}

impl Txn {
    /// The next row: whether it is new rather than re-sent.
    fn next_row(&mut self) -> bool {
        self.index += 1;
        !(self.skip_all || self.index <= self.skip_upto)
    }
}

/// The state machine one WAL consumer runs; one per consumer, kept across its sessions.
///
/// Protocol: feed each pgoutput message to [`WalConsumer::message`]. While
/// [`WalConsumer::waiting`] is true, read only what is already at hand and call
/// [`WalConsumer::drained`] when nothing is. After a [`Step::Route`] the consumer either keeps
/// the row ([`WalConsumer::kept`]) or drops it. After a [`Step::HandOn`] it hands on every kept
/// row, then calls [`WalConsumer::handed_on`] and confirms the position returned, if any.
/// After a reconnect, [`WalConsumer::new_session`]; rows kept but not handed on are dropped
/// then, since the server sends them again.
#[derive(Debug)]
pub struct WalConsumer {
    resume: Resume,
    batch_max: usize,
    relations: HashMap<u32, Arc<Relation>>,
    txn: Option<Txn>,
    /// Rows kept since the last hand-on.
    kept: usize,
    /// Commit and end LSN of the last transaction whose rows are all routed but not handed on.
    commit: Option<(Lsn, Lsn)>,
    /// A [`Step::HandOn`] was given and not yet reported done.
    hand_on_due: bool,
}

impl WalConsumer {
    /// A consumer that hands on at most `batch_max` rows at once (at least 1).
    pub fn new(batch_max: usize) -> WalConsumer {
        WalConsumer {
            resume: Resume::default(),
            batch_max: batch_max.max(1),
            relations: HashMap::new(),
            txn: None,
            kept: 0,
            commit: None,
            hand_on_due: false,
        }
    }

    /// A new session starts streaming from the slot's confirmed position: relations are
    /// described again, and whatever was kept but not handed on is sent again.
    pub fn new_session(&mut self) {
        self.relations.clear();
        self.txn = None;
        self.kept = 0;
        self.commit = None;
        self.hand_on_due = false;
    }

    /// Whether a committed transaction waits to be handed on: read only what is at hand, and
    /// call [`WalConsumer::drained`] when nothing is.
    pub fn waiting(&self) -> bool {
        self.commit.is_some()
    }

    /// The next pgoutput message.
    pub fn message(&mut self, message: LogicalMessage) -> Step {
        debug_assert!(
            !self.hand_on_due,
            "a message read before the hand-on was done"
        );
        match message {
            LogicalMessage::Begin {
                final_lsn,
                commit_time,
                ..
            } => {
                self.txn = Some(self.resume.begin(final_lsn, commit_time));
                Step::Read
            }
            LogicalMessage::Commit {
                commit_lsn,
                end_lsn,
                ..
            } => {
                // Its rows are routed (or were sent before): it waits for the next hand-on.
                self.txn = None;
                self.commit = Some((commit_lsn, end_lsn));
                Step::Read
            }
            LogicalMessage::Relation(r) => {
                let r = Arc::new(r);
                self.relations.insert(r.oid, r.clone());
                Step::Described(r)
            }
            LogicalMessage::Insert { relation, new } => {
                self.row(relation, Action::Insert, Some(new), None, false)
            }
            LogicalMessage::Update {
                relation,
                old,
                old_is_key,
                new,
            } => self.row(relation, Action::Update, Some(new), old, old_is_key),
            LogicalMessage::Delete {
                relation,
                old,
                old_is_key,
            } => self.row(relation, Action::Delete, None, Some(old), old_is_key),
            // TRUNCATE never reaches clients upstream; types, origins and logical messages
            // carry nothing either consumer needs.
            _ => Step::Read,
        }
    }

    fn row(
        &mut self,
        relation: u32,
        action: Action,
        new: Option<Tuple>,
        old: Option<Tuple>,
        old_is_key: bool,
    ) -> Step {
        // pgoutput without streaming sends changes only inside Begin … Commit.
        let Some(txn) = self.txn.as_mut() else {
            return Step::Read;
        };
        if !txn.next_row() {
            return Step::SkipResent;
        }
        let Some(rel) = self.relations.get(&relation) else {
            return Step::Undescribed(relation);
        };
        Step::Route(RowChange {
            relation: rel.clone(),
            action,
            new,
            old,
            old_is_key,
            commit_time: txn.commit_time,
        })
    }

    /// The row last routed joins the batch.
    pub fn kept(&mut self) -> Step {
        debug_assert!(!self.hand_on_due, "a row kept before the hand-on was done");
        self.kept += 1;
        if self.kept >= self.batch_max {
            self.hand_on()
        } else {
            Step::Read
        }
    }

    /// No more WAL is at hand right now.
    pub fn drained(&mut self) -> Step {
        if self.commit.is_some() && !self.hand_on_due {
            self.hand_on()
        } else {
            Step::Read
        }
    }

    fn hand_on(&mut self) -> Step {
        self.hand_on_due = true;
        Step::HandOn
    }

    /// Every kept row was handed on. Returns the position to confirm to the server: the end
    /// of the last transaction that is now handed on whole, if one is new.
    pub fn handed_on(&mut self) -> Option<Lsn> {
        self.hand_on_due = false;
        self.kept = 0;
        let confirm = self.commit.take().map(|(commit_lsn, end_lsn)| {
            self.resume.commit(commit_lsn);
            end_lsn
        });
        // Inside a transaction (a slice of a long one, or the start of the next one read
        // while the previous waited): its rows so far are handed on or were dropped.
        if let Some(txn) = &self.txn {
            self.resume.processed(txn);
        }
        confirm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use realtime_pg::pgoutput::{RelationColumn, TupleValue};

    fn relation(oid: u32, name: &str) -> LogicalMessage {
        LogicalMessage::Relation(Relation {
            oid,
            namespace: "public".into(),
            name: name.into(),
            replica_identity: b'd',
            columns: vec![RelationColumn {
                is_key: true,
                name: "id".into(),
                type_oid: 25,
                type_modifier: -1,
            }],
        })
    }

    fn begin(lsn: u64) -> LogicalMessage {
        LogicalMessage::Begin {
            final_lsn: Lsn(lsn),
            commit_time: lsn as i64,
            xid: lsn as u32,
        }
    }

    fn commit(lsn: u64) -> LogicalMessage {
        LogicalMessage::Commit {
            flags: 0,
            commit_lsn: Lsn(lsn),
            end_lsn: Lsn(lsn + 8),
            commit_time: lsn as i64,
        }
    }

    fn insert(oid: u32, id: &str) -> LogicalMessage {
        LogicalMessage::Insert {
            relation: oid,
            new: vec![TupleValue::Text(Bytes::copy_from_slice(id.as_bytes()))],
        }
    }

    fn id_of(row: &RowChange) -> String {
        let tuple = row.new.as_ref().or(row.old.as_ref());
        match tuple.and_then(|t| t.first()) {
            Some(TupleValue::Text(b)) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("no id in {other:?}"),
        }
    }

    /// One transaction of the simulated WAL: commit LSN and row ids.
    #[derive(Clone)]
    struct Sent {
        lsn: u64,
        rows: Vec<String>,
    }

    impl Sent {
        fn end(&self) -> u64 {
            self.lsn + 8
        }
    }

    fn wal(sizes: &[usize]) -> Vec<Sent> {
        sizes
            .iter()
            .enumerate()
            .map(|(t, &n)| Sent {
                lsn: 100 * (t as u64 + 1),
                rows: (1..=n).map(|r| format!("{}.{r}", t + 1)).collect(),
            })
            .collect()
    }

    /// What the server sends when streaming starts at `from` (a confirmed position): every
    /// transaction ending after it, the relation first.
    fn send_from(wal: &[Sent], from: u64) -> Vec<LogicalMessage> {
        let mut out = vec![relation(1, "t")];
        for t in wal.iter().filter(|t| t.end() > from) {
            out.push(begin(t.lsn));
            out.extend(t.rows.iter().map(|r| insert(1, r)));
            out.push(commit(t.lsn));
        }
        out
    }

    /// A consumer over the machine that records what it hands on and confirms.
    struct Consumer {
        wal: WalConsumer,
        all: Vec<Sent>,
        /// Row ids kept, not yet handed on.
        pending: Vec<String>,
        delivered: Vec<String>,
        confirmed: u64,
        hand_ons: usize,
        /// Which rows are dropped by routing (nobody wants them).
        wanted: fn(&str) -> bool,
    }

    impl Consumer {
        fn new(batch_max: usize, all: &[Sent], wanted: fn(&str) -> bool) -> Consumer {
            Consumer {
                wal: WalConsumer::new(batch_max),
                all: all.to_vec(),
                pending: Vec::new(),
                delivered: Vec::new(),
                confirmed: 0,
                hand_ons: 0,
                wanted,
            }
        }

        fn step(&mut self, step: Step) {
            match step {
                Step::Route(row) => {
                    let id = id_of(&row);
                    if (self.wanted)(&id) {
                        self.pending.push(id);
                        let next = self.wal.kept();
                        self.step(next);
                    }
                }
                Step::HandOn => {
                    self.hand_ons += 1;
                    self.delivered.append(&mut self.pending);
                    if let Some(lsn) = self.wal.handed_on() {
                        self.confirm(lsn.0);
                    }
                }
                Step::Read | Step::Described(_) | Step::SkipResent | Step::Undescribed(_) => {}
            }
        }

        /// Confirming never runs ahead of what was handed on. A re-sent transaction confirms
        /// its end again; like [`LogicalStream::confirm`], a lower position changes nothing.
        ///
        /// [`LogicalStream::confirm`]: realtime_pg::replication::LogicalStream::confirm
        fn confirm(&mut self, lsn: u64) {
            for t in self.all.iter().filter(|t| t.end() <= lsn) {
                for r in t.rows.iter().filter(|r| (self.wanted)(r)) {
                    assert!(
                        self.delivered.contains(r),
                        "confirmed {lsn} before row {r} was handed on"
                    );
                }
            }
            self.confirmed = self.confirmed.max(lsn);
        }

        fn feed(&mut self, m: LogicalMessage) {
            let step = self.wal.message(m);
            self.step(step);
        }

        fn drained(&mut self) {
            let step = self.wal.drained();
            self.step(step);
        }

        fn reconnect(&mut self) {
            self.pending.clear();
            self.wal.new_session();
        }

        /// Feeds `messages`, with no more WAL at hand after those `at_hand` says, until `cut`
        /// messages were read (the connection is lost) or all were.
        fn stream(
            &mut self,
            messages: Vec<LogicalMessage>,
            cut: Option<usize>,
            at_hand: &dyn Fn(usize) -> bool,
        ) {
            for (i, m) in messages.into_iter().enumerate() {
                if cut == Some(i) {
                    return;
                }
                self.feed(m);
                if !at_hand(i) && self.wal.waiting() {
                    self.drained();
                }
            }
            self.drained();
        }

        fn expected(&self) -> Vec<String> {
            self.all
                .iter()
                .flat_map(|t| t.rows.iter())
                .filter(|r| (self.wanted)(r))
                .cloned()
                .collect()
        }
    }

    fn every(_: &str) -> bool {
        true
    }

    /// Drops every row whose number within its transaction is a multiple of 3.
    fn some(id: &str) -> bool {
        !id.ends_with(".3") && !id.ends_with(".6")
    }

    /// Resending after a reconnect at every point of the stream (between transactions,
    /// inside a batch waiting for hand-on, inside a transaction after a slice), from every
    /// position the server may still hold (its record of our confirmation can lag), twice in
    /// a row, under several patterns of WAL at hand: every row arrives exactly once, in order,
    /// and the position is never confirmed ahead of what was handed on.
    #[test]
    fn resending_at_every_point_delivers_each_row_once() {
        let all = wal(&[2, 5, 0, 1, 7, 3]);
        let patterns: [&dyn Fn(usize) -> bool; 4] =
            [&|_| false, &|_| true, &|i| i % 3 != 0, &|i| (i * 7) % 5 < 3];
        let mut runs = 0;
        for wanted in [every as fn(&str) -> bool, some] {
            for batch_max in [1, 2, 3, 512] {
                for (p, at_hand) in patterns.into_iter().enumerate() {
                    let first = send_from(&all, 0);
                    for cut in 0..first.len() {
                        let mut c = Consumer::new(batch_max, &all, wanted);
                        c.stream(first.clone(), Some(cut), at_hand);
                        // The server restarts from its last confirmed position or any
                        // earlier one.
                        let starts: Vec<u64> = std::iter::once(0)
                            .chain(all.iter().map(Sent::end))
                            .filter(|&p| p <= c.confirmed)
                            .collect();
                        for &from in &starts {
                            let again = send_from(&all, from);
                            for cut2 in [Some(1), Some(again.len() / 2), None] {
                                let mut c2 = Consumer {
                                    wal: WalConsumer {
                                        resume: c.wal.resume,
                                        ..WalConsumer::new(batch_max)
                                    },
                                    all: all.clone(),
                                    pending: c.pending.clone(),
                                    delivered: c.delivered.clone(),
                                    confirmed: c.confirmed,
                                    hand_ons: 0,
                                    wanted,
                                };
                                c2.reconnect();
                                c2.stream(again.clone(), cut2, at_hand);
                                if cut2.is_some() {
                                    c2.reconnect();
                                    c2.stream(send_from(&all, from), None, at_hand);
                                }
                                assert_eq!(
                                    c2.delivered,
                                    c2.expected(),
                                    "batch {batch_max}, cut {cut}, from {from}, cut2 {cut2:?}, pattern {p}"
                                );
                                assert_eq!(c2.confirmed, all[all.len() - 1].end());
                                assert!(c2.pending.is_empty());
                                runs += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(runs > 1000, "{runs}");
    }

    #[test]
    fn transactions_at_hand_are_handed_on_together() {
        let all = wal(&[2, 1, 3]);
        let mut c = Consumer::new(512, &all, every);
        // Everything arrives at once: one hand-on, confirming the last transaction.
        c.stream(send_from(&all, 0), None, &|_| true);
        assert_eq!(c.hand_ons, 1);
        assert_eq!(c.delivered, c.expected());
        assert_eq!(c.confirmed, 308);
    }

    #[test]
    fn a_commit_waits_only_while_wal_is_at_hand() {
        let mut m = WalConsumer::new(512);
        assert!(!m.waiting());
        for msg in [relation(1, "t"), begin(100), insert(1, "a")] {
            if let Step::Route(_) = m.message(msg) {
                assert_eq!(m.kept(), Step::Read);
            }
        }
        // Inside a transaction nothing is handed on, however long the wait.
        assert!(!m.waiting());
        assert_eq!(m.drained(), Step::Read);
        assert_eq!(m.message(commit(100)), Step::Read);
        assert!(m.waiting());
        assert_eq!(m.drained(), Step::HandOn);
        assert_eq!(m.handed_on(), Some(Lsn(108)));
        assert!(!m.waiting());
        assert_eq!(m.drained(), Step::Read);
        assert_eq!(m.handed_on(), None, "nothing new to confirm");
    }

    #[test]
    fn a_long_transaction_is_handed_on_in_slices() {
        let all = wal(&[5]);
        let mut c = Consumer::new(2, &all, every);
        let msgs = send_from(&all, 0);
        // Relation, Begin, then rows 1..=5: slices after rows 2 and 4, none confirmed.
        c.stream(msgs.clone(), Some(msgs.len() - 1), &|_| true);
        assert_eq!(c.hand_ons, 2);
        assert_eq!(c.delivered, ["1.1", "1.2", "1.3", "1.4"]);
        assert_eq!(c.pending, ["1.5"]);
        assert_eq!(c.confirmed, 0, "no confirmation inside a transaction");
        // The slices are recorded: the whole transaction comes again, only row 5 goes out.
        c.reconnect();
        c.stream(send_from(&all, 0), None, &|_| true);
        assert_eq!(c.delivered, ["1.1", "1.2", "1.3", "1.4", "1.5"]);
        assert_eq!(c.confirmed, 108);
    }

    #[test]
    fn resent_transactions_are_skipped() {
        let all = wal(&[2, 1]);
        let mut c = Consumer::new(512, &all, every);
        c.stream(send_from(&all, 0), None, &|_| false);
        assert_eq!(c.confirmed, 208);
        c.reconnect();
        let mut skipped = 0;
        for m in send_from(&all, 0) {
            let step = c.wal.message(m);
            if step == Step::SkipResent {
                skipped += 1;
            }
            c.step(step);
            c.drained();
        }
        assert_eq!(skipped, 3);
        assert_eq!(c.delivered, ["1.1", "1.2", "2.1"]);
        // Re-sent commits confirm nothing new.
        assert_eq!(c.confirmed, 208);
    }

    #[test]
    fn a_hand_on_while_skipping_keeps_the_count_of_a_partial_transaction() {
        let all = wal(&[1, 6]);
        let mut c = Consumer::new(4, &all, every);
        // Transaction 1 waits; transaction 2 goes out in a slice of 4 (with 1.1), then the
        // connection drops after row 2.5.
        let msgs = send_from(&all, 0);
        c.stream(msgs.clone(), Some(msgs.len() - 2), &|_| true);
        assert_eq!(c.delivered, ["1.1", "2.1", "2.2", "2.3"]);
        // Resent from before transaction 1: its commit waits while 2.1 and 2.2 (already
        // handed on) are skipped, then nothing is at hand.
        c.reconnect();
        for m in send_from(&all, 0).into_iter().take(6) {
            c.feed(m);
        }
        c.drained();
        c.reconnect();
        c.stream(send_from(&all, 0), None, &|_| false);
        assert_eq!(c.delivered, c.expected(), "2.2 and 2.3 must not come twice");
    }

    #[test]
    fn a_hand_on_inside_an_earlier_resent_transaction_keeps_the_later_count() {
        let all = wal(&[1, 1, 4]);
        let mut c = Consumer::new(1, &all, every);
        // Rows 3.1 and 3.2 handed on, then the connection drops.
        let msgs = send_from(&all, 0);
        c.stream(msgs, Some(10), &|_| true);
        assert_eq!(c.delivered, ["1.1", "2.1", "3.1", "3.2"]);
        // Resent from the start: transaction 1's commit waits, and the hand-on comes while
        // transaction 2 (handed on whole) is open.
        c.reconnect();
        for m in send_from(&all, 0).into_iter().take(5) {
            c.feed(m);
        }
        c.drained();
        c.reconnect();
        c.stream(send_from(&all, 0), None, &|_| false);
        assert_eq!(c.delivered, c.expected(), "3.1 and 3.2 must not come twice");
    }

    #[test]
    fn relations_described_again_are_used_for_later_rows() {
        let mut m = WalConsumer::new(512);
        let Step::Described(r) = m.message(relation(1, "before")) else {
            panic!("not described")
        };
        assert_eq!(r.name, "before");
        m.message(begin(100));
        let Step::Route(row) = m.message(insert(1, "a")) else {
            panic!("not routed")
        };
        assert_eq!(row.relation.name, "before");
        assert_eq!(row.commit_time, 100);
        m.message(relation(1, "after"));
        let Step::Route(row) = m.message(insert(1, "b")) else {
            panic!("not routed")
        };
        assert_eq!(row.relation.name, "after");
        // A new session forgets them: the server describes them again.
        m.new_session();
        m.message(begin(200));
        assert_eq!(m.message(insert(1, "c")), Step::Undescribed(1));
    }

    #[test]
    fn a_change_of_an_undescribed_relation_is_dropped_and_its_transaction_confirmed() {
        let mut m = WalConsumer::new(512);
        m.message(relation(1, "t"));
        m.message(begin(100));
        assert_eq!(m.message(insert(9, "x")), Step::Undescribed(9));
        assert!(matches!(m.message(insert(1, "y")), Step::Route(_)));
        assert_eq!(m.kept(), Step::Read);
        m.message(commit(100));
        assert_eq!(m.drained(), Step::HandOn);
        assert_eq!(m.handed_on(), Some(Lsn(108)));
    }

    #[test]
    fn updates_deletes_and_other_messages() {
        let mut m = WalConsumer::new(512);
        m.message(relation(1, "t"));
        // Outside a transaction a change is not read.
        assert_eq!(m.message(insert(1, "early")), Step::Read);
        m.message(begin(100));
        let tuple = vec![TupleValue::Text(Bytes::from_static(b"k"))];
        let Step::Route(u) = m.message(LogicalMessage::Update {
            relation: 1,
            old: Some(tuple.clone()),
            old_is_key: true,
            new: tuple.clone(),
        }) else {
            panic!("update not routed")
        };
        assert_eq!((u.action, u.old_is_key), (Action::Update, true));
        assert!(u.old.is_some() && u.new.is_some());
        let Step::Route(d) = m.message(LogicalMessage::Delete {
            relation: 1,
            old: tuple,
            old_is_key: false,
        }) else {
            panic!("delete not routed")
        };
        assert_eq!(d.action, Action::Delete);
        assert!(d.new.is_none() && d.old.is_some());
        for other in [
            LogicalMessage::Truncate {
                options: 0,
                relations: vec![1],
            },
            LogicalMessage::Type {
                oid: 1,
                namespace: String::new(),
                name: "t".into(),
            },
            LogicalMessage::Origin {
                lsn: Lsn(1),
                name: "o".into(),
            },
        ] {
            assert_eq!(m.message(other), Step::Read);
        }
    }

    #[test]
    fn a_resent_earlier_transaction_keeps_the_partial_count() {
        let all = wal(&[2, 3, 1]);
        let mut c = Consumer::new(1, &all, every);
        // 1 whole and the first row of 2 handed on (batch of 1), then the connection drops.
        let msgs = send_from(&all, 0);
        c.stream(msgs, Some(7), &|_| true);
        assert_eq!(c.delivered, ["1.1", "1.2", "2.1"]);
        // The server's confirmed position was before transaction 1: it sends 1 again, then 2.
        c.reconnect();
        c.stream(send_from(&all, 0), None, &|_| true);
        assert_eq!(c.delivered, c.expected());
    }
}
