//! Exactly-once bookkeeping across reconnects, shared by both WAL consumers (Postgres Changes
//! and broadcast from the database): which re-sent transactions, and which rows of a partly
//! handed-on transaction, to skip.
//!
//! After a reconnect the server restarts from the slot's confirmed position, which can lag
//! behind what was handed on (status updates go out periodically, and a crash of the database
//! loses the last ones). Transactions commit in LSN order and are re-sent whole, so the commit
//! LSN of the last fully handed-on transaction and a count of the rows handed on from the one
//! in progress identify everything already delivered.

use realtime_pg::Lsn;

/// Progress that survives reconnects.
#[derive(Debug, Default)]
pub struct Resume {
    /// Commit LSN of the last transaction fully handed on.
    done_commit: Lsn,
    /// In a partly handed-on transaction: its commit LSN and how many of its rows were
    /// processed.
    partial: Option<(Lsn, usize)>,
}

/// The transaction being streamed.
#[derive(Debug)]
pub struct Txn {
    final_lsn: Lsn,
    /// Rows seen so far in this transaction.
    index: usize,
    skip_all: bool,
    skip_upto: usize,
}

impl Resume {
    /// A transaction begins (pgoutput Begin with its commit LSN).
    pub fn begin(&self, final_lsn: Lsn) -> Txn {
        let skip_upto = match self.partial {
            Some((lsn, n)) if lsn == final_lsn => n,
            _ => 0,
        };
        Txn {
            final_lsn,
            index: 0,
            skip_all: final_lsn <= self.done_commit,
            skip_upto,
        }
    }

    /// The next row change of `txn`: whether it is new (to be processed) rather than re-sent.
    pub fn next_row(&self, txn: &mut Txn) -> bool {
        txn.index += 1;
        !(txn.skip_all || txn.index <= txn.skip_upto)
    }

    /// Every row up to the one last returned by [`Resume::next_row`] was processed (handed on
    /// or deliberately dropped).
    pub fn processed(&mut self, txn: &Txn) {
        self.partial = Some((txn.final_lsn, txn.index));
    }

    /// The transaction committed after all its rows were processed (or it was re-sent and
    /// skipped).
    pub fn commit(&mut self, commit_lsn: Lsn) {
        self.done_commit = self.done_commit.max(commit_lsn);
        // A re-sent earlier transaction must not forget the partly handed-on one that the
        // server sends again after it.
        if self.partial.is_some_and(|(lsn, _)| lsn <= commit_lsn) {
            self.partial = None;
        }
    }
}

impl Txn {
    /// Whether the whole transaction was handed on before.
    pub fn is_resent(&self) -> bool {
        self.skip_all || self.skip_upto > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one transaction of `rows` inserts, stopping (a lost connection) after `upto`
    /// processed ones when given; returns the 1-based indexes delivered.
    fn run(r: &mut Resume, lsn: u64, rows: usize, upto: Option<usize>) -> Vec<usize> {
        let mut t = r.begin(Lsn(lsn));
        let mut out = Vec::new();
        for i in 1..=rows {
            if upto.is_some_and(|u| out.len() == u) {
                return out;
            }
            if r.next_row(&mut t) {
                out.push(i);
                r.processed(&t);
            }
        }
        r.commit(Lsn(lsn));
        out
    }

    #[test]
    fn resent_transactions_are_skipped() {
        let mut r = Resume::default();
        assert_eq!(run(&mut r, 100, 2, None), [1, 2]);
        assert_eq!(run(&mut r, 200, 1, None), [1]);
        // The server goes back to 100 after a reconnect.
        assert!(r.begin(Lsn(100)).is_resent());
        assert_eq!(run(&mut r, 100, 2, None), Vec::<usize>::new());
        assert_eq!(run(&mut r, 200, 1, None), Vec::<usize>::new());
        assert_eq!(run(&mut r, 300, 1, None), [1]);
    }

    #[test]
    fn a_partly_handed_on_transaction_continues_where_it_stopped() {
        let mut r = Resume::default();
        assert_eq!(run(&mut r, 100, 5, Some(2)), [1, 2]);
        // Re-sent whole: only the rest goes out.
        assert!(r.begin(Lsn(100)).is_resent());
        assert_eq!(run(&mut r, 100, 5, None), [3, 4, 5]);
        assert_eq!(run(&mut r, 100, 5, None), Vec::<usize>::new());
        // Another transaction is not affected by the count.
        assert_eq!(run(&mut r, 150, 2, None), [1, 2]);
    }

    #[test]
    fn a_resent_earlier_transaction_keeps_the_partial_count() {
        let mut r = Resume::default();
        assert_eq!(run(&mut r, 90, 2, None), [1, 2]);
        assert_eq!(run(&mut r, 100, 3, Some(1)), [1]);
        // The server's confirmed position was before 90: it sends 90 again, then 100.
        assert_eq!(run(&mut r, 90, 2, None), Vec::<usize>::new());
        assert_eq!(run(&mut r, 100, 3, None), [2, 3]);
        assert_eq!(run(&mut r, 110, 1, None), [1]);
    }
}
