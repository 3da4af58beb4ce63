//! Pure decoder of pgoutput logical replication messages (protocol versions 1 and 2).
//!
//! The input is the payload of one `XLogData` message; the output borrows nothing so it can be
//! handed across tasks. Every read is bounds-checked: arbitrary bytes yield an error, never a
//! panic, so the decoder can be fuzzed on its own.

use bytes::Bytes;

use crate::lsn::Lsn;

/// Why a pgoutput message could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The message ended before a field was complete.
    #[error("pgoutput message truncated while reading {0}")]
    Truncated(&'static str),
    /// An unknown message tag or tuple-data kind.
    #[error("unknown pgoutput {what} tag {tag:#04x}")]
    UnknownTag {
        /// What was being read.
        what: &'static str,
        /// The byte found.
        tag: u8,
    },
    /// A string that is not NUL-terminated UTF-8.
    #[error("invalid string in pgoutput {0}")]
    InvalidString(&'static str),
    /// A count or length field that is negative.
    #[error("negative {0} in pgoutput message")]
    NegativeLength(&'static str),
    /// Bytes left over after a complete message, a sign of a misread layout.
    #[error("{0} unexpected trailing bytes after a pgoutput message")]
    TrailingBytes(usize),
    /// An empty input.
    #[error("empty pgoutput message")]
    Empty,
}

/// One column of a `Relation` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity key (flag bit 1); every column under REPLICA IDENTITY FULL.
    pub is_key: bool,
    /// Column name.
    pub name: String,
    /// Type OID.
    pub type_oid: u32,
    /// Type modifier (`atttypmod`).
    pub type_modifier: i32,
}

/// A `Relation` message: the shape of a table, sent before its first change in a session and
/// again after its schema changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Relation OID.
    pub oid: u32,
    /// Schema name; the server sends an empty string for `pg_catalog`.
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// Replica identity setting: `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    /// Columns in table order (dropped and generated columns excluded).
    pub columns: Vec<RelationColumn>,
}

/// One value of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    /// SQL NULL (`n`).
    Null,
    /// Unchanged TOASTed value not sent (`u`).
    UnchangedToast,
    /// Text representation (`t`).
    Text(Bytes),
    /// Binary representation (`b`), only with the `binary` option.
    Binary(Bytes),
}

/// Column values in relation column order.
pub type Tuple = Vec<TupleValue>;

/// A decoded pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogicalMessage {
    /// `B`: start of a transaction.
    Begin {
        /// LSN of the commit record.
        final_lsn: Lsn,
        /// Commit time, microseconds since 2000-01-01 UTC.
        commit_time: i64,
        /// Transaction id.
        xid: u32,
    },
    /// `C`: end of a transaction.
    Commit {
        /// Flags (unused).
        flags: u8,
        /// LSN of the commit record.
        commit_lsn: Lsn,
        /// End LSN of the transaction.
        end_lsn: Lsn,
        /// Commit time, microseconds since 2000-01-01 UTC.
        commit_time: i64,
    },
    /// `R`: relation description.
    Relation(Relation),
    /// `Y`: type description (custom types).
    Type {
        /// Type OID.
        oid: u32,
        /// Schema name; empty for `pg_catalog`.
        namespace: String,
        /// Type name.
        name: String,
    },
    /// `I`: insert.
    Insert {
        /// Relation OID.
        relation: u32,
        /// The new row.
        new: Tuple,
    },
    /// `U`: update.
    Update {
        /// Relation OID.
        relation: u32,
        /// Old key columns (`K`) or the full old row (`O`) when the identity allows it.
        old: Option<Tuple>,
        /// Whether `old` holds only key columns (`K`).
        old_is_key: bool,
        /// The new row.
        new: Tuple,
    },
    /// `D`: delete.
    Delete {
        /// Relation OID.
        relation: u32,
        /// Key columns (`K`) or the full old row (`O`).
        old: Tuple,
        /// Whether `old` holds only key columns (`K`).
        old_is_key: bool,
    },
    /// `T`: truncate.
    Truncate {
        /// Option bits (cascade, restart identity).
        options: u8,
        /// Relation OIDs.
        relations: Vec<u32>,
    },
    /// `O`: origin.
    Origin {
        /// Commit LSN on the origin server.
        lsn: Lsn,
        /// Origin name.
        name: String,
    },
    /// `M`: logical decoding message (`pg_logical_emit_message`).
    Message {
        /// Transactional flag.
        transactional: bool,
        /// LSN of the message.
        lsn: Lsn,
        /// Prefix.
        prefix: String,
        /// Content.
        content: Bytes,
    },
    /// `S`: start of a block of a streamed in-progress transaction (protocol 2).
    StreamStart {
        /// Transaction id.
        xid: u32,
        /// Whether this is the transaction's first block.
        first_segment: bool,
    },
    /// `E`: end of a streamed block (protocol 2).
    StreamStop,
    /// `c`: commit of a streamed transaction (protocol 2).
    StreamCommit {
        /// Transaction id.
        xid: u32,
        /// Flags (unused).
        flags: u8,
        /// LSN of the commit record.
        commit_lsn: Lsn,
        /// End LSN of the transaction.
        end_lsn: Lsn,
        /// Commit time, microseconds since 2000-01-01 UTC.
        commit_time: i64,
    },
    /// `A`: abort of a streamed (sub)transaction (protocol 2).
    StreamAbort {
        /// Top-level transaction id.
        xid: u32,
        /// Aborted subtransaction id (equal to `xid` when the whole transaction aborted).
        subxid: u32,
    },
}

/// Option bit of [`LogicalMessage::Truncate`]: `CASCADE`.
pub const TRUNCATE_CASCADE: u8 = 1;
/// Option bit of [`LogicalMessage::Truncate`]: `RESTART IDENTITY`.
pub const TRUNCATE_RESTART_IDENTITY: u8 = 2;

/// Decodes one pgoutput message sent outside a streamed-transaction block.
///
/// This covers everything the server sends unless `streaming 'on'` was requested.
pub fn decode(buf: &[u8]) -> Result<LogicalMessage, DecodeError> {
    decode_with(buf, false).map(|(_, message)| message)
}

/// Decodes one pgoutput message sent between [`LogicalMessage::StreamStart`] and
/// [`LogicalMessage::StreamStop`], where `R`, `Y`, `I`, `U`, `D`, `T` and `M` carry the
/// streamed transaction's id before their usual fields.
///
/// Returns that id for those messages and `None` for the others.
pub fn decode_in_stream(buf: &[u8]) -> Result<(Option<u32>, LogicalMessage), DecodeError> {
    decode_with(buf, true)
}

fn decode_with(buf: &[u8], in_stream: bool) -> Result<(Option<u32>, LogicalMessage), DecodeError> {
    let mut r = Reader::new(buf);
    let tag = r.u8("message tag").map_err(|_| DecodeError::Empty)?;
    let carries_xid = in_stream && matches!(tag, b'R' | b'Y' | b'I' | b'U' | b'D' | b'T' | b'M');
    let xid = if carries_xid {
        Some(r.u32("streamed xid")?)
    } else {
        None
    };
    let message = match tag {
        b'B' => LogicalMessage::Begin {
            final_lsn: r.lsn("begin final_lsn")?,
            commit_time: r.i64("begin commit_time")?,
            xid: r.u32("begin xid")?,
        },
        b'C' => LogicalMessage::Commit {
            flags: r.u8("commit flags")?,
            commit_lsn: r.lsn("commit commit_lsn")?,
            end_lsn: r.lsn("commit end_lsn")?,
            commit_time: r.i64("commit commit_time")?,
        },
        b'R' => LogicalMessage::Relation(relation(&mut r)?),
        b'Y' => LogicalMessage::Type {
            oid: r.u32("type oid")?,
            namespace: r.cstr("type namespace")?,
            name: r.cstr("type name")?,
        },
        b'I' => {
            let relation = r.u32("insert relation")?;
            match r.u8("insert tuple kind")? {
                b'N' => {}
                tag => return Err(unknown("insert tuple", tag)),
            }
            LogicalMessage::Insert {
                relation,
                new: tuple(&mut r)?,
            }
        }
        b'U' => {
            let relation = r.u32("update relation")?;
            let (old, old_is_key) = match r.u8("update tuple kind")? {
                b'K' => (Some(tuple(&mut r)?), true),
                b'O' => (Some(tuple(&mut r)?), false),
                b'N' => (None, false),
                tag => return Err(unknown("update tuple", tag)),
            };
            if old.is_some() {
                match r.u8("update new tuple kind")? {
                    b'N' => {}
                    tag => return Err(unknown("update new tuple", tag)),
                }
            }
            LogicalMessage::Update {
                relation,
                old,
                old_is_key,
                new: tuple(&mut r)?,
            }
        }
        b'D' => {
            let relation = r.u32("delete relation")?;
            let old_is_key = match r.u8("delete tuple kind")? {
                b'K' => true,
                b'O' => false,
                tag => return Err(unknown("delete tuple", tag)),
            };
            LogicalMessage::Delete {
                relation,
                old: tuple(&mut r)?,
                old_is_key,
            }
        }
        b'T' => {
            let count = r.count_i32("truncate relation count")?;
            let options = r.u8("truncate options")?;
            // Each OID takes four bytes: never reserve more than the input can hold.
            let mut relations = Vec::with_capacity(count.min(r.remaining() / 4));
            for _ in 0..count {
                relations.push(r.u32("truncate relation")?);
            }
            LogicalMessage::Truncate { options, relations }
        }
        b'O' => LogicalMessage::Origin {
            lsn: r.lsn("origin lsn")?,
            name: r.cstr("origin name")?,
        },
        b'M' => {
            let flags = r.u8("message flags")?;
            let lsn = r.lsn("message lsn")?;
            let prefix = r.cstr("message prefix")?;
            let len = r.count_i32("message content length")?;
            let content = r.bytes(len, "message content")?;
            LogicalMessage::Message {
                transactional: flags & 1 == 1,
                lsn,
                prefix,
                content,
            }
        }
        b'S' => LogicalMessage::StreamStart {
            xid: r.u32("stream start xid")?,
            first_segment: r.u8("stream start first_segment")? == 1,
        },
        b'E' => LogicalMessage::StreamStop,
        b'c' => LogicalMessage::StreamCommit {
            xid: r.u32("stream commit xid")?,
            flags: r.u8("stream commit flags")?,
            commit_lsn: r.lsn("stream commit commit_lsn")?,
            end_lsn: r.lsn("stream commit end_lsn")?,
            commit_time: r.i64("stream commit commit_time")?,
        },
        b'A' => LogicalMessage::StreamAbort {
            xid: r.u32("stream abort xid")?,
            subxid: r.u32("stream abort subxid")?,
        },
        tag => return Err(unknown("message", tag)),
    };
    match r.remaining() {
        0 => Ok((xid, message)),
        n => Err(DecodeError::TrailingBytes(n)),
    }
}

fn relation(r: &mut Reader<'_>) -> Result<Relation, DecodeError> {
    let oid = r.u32("relation oid")?;
    let namespace = r.cstr("relation namespace")?;
    let name = r.cstr("relation name")?;
    let replica_identity = r.u8("relation replica identity")?;
    let count = r.count_i16("relation column count")?;
    // A column takes at least 10 bytes (flags, empty name, OID, typmod).
    let mut columns = Vec::with_capacity(count.min(r.remaining() / 10));
    for _ in 0..count {
        let flags = r.u8("column flags")?;
        columns.push(RelationColumn {
            is_key: flags & 1 == 1,
            name: r.cstr("column name")?,
            type_oid: r.u32("column type oid")?,
            type_modifier: r.i32("column type modifier")?,
        });
    }
    Ok(Relation {
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn tuple(r: &mut Reader<'_>) -> Result<Tuple, DecodeError> {
    let count = r.count_i16("tuple column count")?;
    // Every value takes at least its one kind byte.
    let mut values = Vec::with_capacity(count.min(r.remaining()));
    for _ in 0..count {
        let value = match r.u8("tuple value kind")? {
            b'n' => TupleValue::Null,
            b'u' => TupleValue::UnchangedToast,
            b't' => {
                let len = r.count_i32("text value length")?;
                TupleValue::Text(r.bytes(len, "text value")?)
            }
            b'b' => {
                let len = r.count_i32("binary value length")?;
                TupleValue::Binary(r.bytes(len, "binary value")?)
            }
            tag => return Err(unknown("tuple value", tag)),
        };
        values.push(value);
    }
    Ok(values)
}

fn unknown(what: &'static str, tag: u8) -> DecodeError {
    DecodeError::UnknownTag { what, tag }
}

/// Bounds-checked big-endian cursor over one message.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    fn lsn(&mut self, what: &'static str) -> Result<Lsn, DecodeError> {
        Ok(Lsn(u64::from_be_bytes(self.array(what)?)))
    }

    fn count_i16(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        usize::try_from(self.i16(what)?).map_err(|_| DecodeError::NegativeLength(what))
    }

    fn count_i32(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        usize::try_from(self.i32(what)?).map_err(|_| DecodeError::NegativeLength(what))
    }

    fn bytes(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        Ok(Bytes::copy_from_slice(self.take(n, what)?))
    }

    fn cstr(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::InvalidString(what))?;
        let raw = self.take(end, what)?;
        self.take(1, what)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidString(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds messages the way the server lays them out.
    #[derive(Default)]
    struct Msg(Vec<u8>);

    impl Msg {
        fn new(tag: u8) -> Self {
            Msg(vec![tag])
        }
        fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        fn i16(mut self, v: i16) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn i32(mut self, v: i32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn i64(mut self, v: i64) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn cstr(mut self, s: &str) -> Self {
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(0);
            self
        }
        fn text(self, s: &str) -> Self {
            let mut m = self.u8(b't').i32(s.len() as i32);
            m.0.extend_from_slice(s.as_bytes());
            m
        }
        fn raw(mut self, b: &[u8]) -> Self {
            self.0.extend_from_slice(b);
            self
        }
    }

    fn samples() -> Vec<Vec<u8>> {
        vec![
            Msg::new(b'B').i64(0x16B3748).i64(700_000_000).i32(735).0,
            Msg::new(b'C')
                .u8(0)
                .i64(0x16B3748)
                .i64(0x16B3778)
                .i64(700_000_000)
                .0,
            relation_bytes(),
            Msg::new(b'Y').i32(16400).cstr("public").cstr("mood").0,
            Msg::new(b'I')
                .i32(16384)
                .u8(b'N')
                .i16(3)
                .text("1")
                .u8(b'n')
                .u8(b'u')
                .0,
            Msg::new(b'U')
                .i32(16384)
                .u8(b'O')
                .i16(2)
                .text("1")
                .text("old")
                .u8(b'N')
                .i16(2)
                .text("1")
                .text("new")
                .0,
            Msg::new(b'D')
                .i32(16384)
                .u8(b'K')
                .i16(2)
                .text("1")
                .u8(b'n')
                .0,
            Msg::new(b'T').i32(2).u8(3).i32(16384).i32(16390).0,
            Msg::new(b'O').i64(0x10).cstr("origin_a").0,
            Msg::new(b'M')
                .u8(1)
                .i64(0x20)
                .cstr("pfx")
                .i32(3)
                .raw(b"abc")
                .0,
            Msg::new(b'S').i32(900).u8(1).0,
            Msg::new(b'c').i32(900).u8(0).i64(1).i64(2).i64(3).0,
            Msg::new(b'A').i32(900).i32(901).0,
        ]
    }

    fn relation_bytes() -> Vec<u8> {
        Msg::new(b'R')
            .i32(16384)
            .cstr("public")
            .cstr("items")
            .u8(b'd')
            .i16(3)
            .u8(1)
            .cstr("id")
            .i32(23)
            .i32(-1)
            .u8(0)
            .cstr("body")
            .i32(25)
            .i32(-1)
            .u8(0)
            .cstr("name")
            .i32(1043)
            .i32(24)
            .0
    }

    #[test]
    fn begin_and_commit() {
        assert_eq!(
            decode(&samples()[0]),
            Ok(LogicalMessage::Begin {
                final_lsn: Lsn(0x16B3748),
                commit_time: 700_000_000,
                xid: 735
            })
        );
        assert_eq!(
            decode(&samples()[1]),
            Ok(LogicalMessage::Commit {
                flags: 0,
                commit_lsn: Lsn(0x16B3748),
                end_lsn: Lsn(0x16B3778),
                commit_time: 700_000_000
            })
        );
    }

    #[test]
    fn relation() {
        let LogicalMessage::Relation(rel) = decode(&relation_bytes()).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!(rel.oid, 16384);
        assert_eq!(rel.namespace, "public");
        assert_eq!(rel.name, "items");
        assert_eq!(rel.replica_identity, b'd');
        assert_eq!(
            rel.columns,
            vec![
                RelationColumn {
                    is_key: true,
                    name: "id".into(),
                    type_oid: 23,
                    type_modifier: -1
                },
                RelationColumn {
                    is_key: false,
                    name: "body".into(),
                    type_oid: 25,
                    type_modifier: -1
                },
                RelationColumn {
                    is_key: false,
                    name: "name".into(),
                    type_oid: 1043,
                    type_modifier: 24
                },
            ]
        );
    }

    #[test]
    fn insert_with_null_and_unchanged_toast() {
        assert_eq!(
            decode(&samples()[4]),
            Ok(LogicalMessage::Insert {
                relation: 16384,
                new: vec![
                    TupleValue::Text(Bytes::from_static(b"1")),
                    TupleValue::Null,
                    TupleValue::UnchangedToast
                ]
            })
        );
    }

    #[test]
    fn update_variants() {
        assert_eq!(
            decode(&samples()[5]),
            Ok(LogicalMessage::Update {
                relation: 16384,
                old: Some(vec![
                    TupleValue::Text(Bytes::from_static(b"1")),
                    TupleValue::Text(Bytes::from_static(b"old"))
                ]),
                old_is_key: false,
                new: vec![
                    TupleValue::Text(Bytes::from_static(b"1")),
                    TupleValue::Text(Bytes::from_static(b"new"))
                ]
            })
        );
        let key = Msg::new(b'U')
            .i32(7)
            .u8(b'K')
            .i16(1)
            .text("1")
            .u8(b'N')
            .i16(1)
            .text("2")
            .0;
        assert_eq!(
            decode(&key),
            Ok(LogicalMessage::Update {
                relation: 7,
                old: Some(vec![TupleValue::Text(Bytes::from_static(b"1"))]),
                old_is_key: true,
                new: vec![TupleValue::Text(Bytes::from_static(b"2"))]
            })
        );
        let no_old = Msg::new(b'U').i32(7).u8(b'N').i16(1).u8(b'n').0;
        assert_eq!(
            decode(&no_old),
            Ok(LogicalMessage::Update {
                relation: 7,
                old: None,
                old_is_key: false,
                new: vec![TupleValue::Null]
            })
        );
        let bad = Msg::new(b'U').i32(7).u8(b'K').i16(0).u8(b'X').i16(0).0;
        assert_eq!(
            decode(&bad),
            Err(DecodeError::UnknownTag {
                what: "update new tuple",
                tag: b'X'
            })
        );
    }

    #[test]
    fn delete_truncate_origin_message_type() {
        assert_eq!(
            decode(&samples()[6]),
            Ok(LogicalMessage::Delete {
                relation: 16384,
                old: vec![TupleValue::Text(Bytes::from_static(b"1")), TupleValue::Null],
                old_is_key: true
            })
        );
        assert_eq!(
            decode(&samples()[7]),
            Ok(LogicalMessage::Truncate {
                options: TRUNCATE_CASCADE | TRUNCATE_RESTART_IDENTITY,
                relations: vec![16384, 16390]
            })
        );
        assert_eq!(
            decode(&samples()[8]),
            Ok(LogicalMessage::Origin {
                lsn: Lsn(0x10),
                name: "origin_a".into()
            })
        );
        assert_eq!(
            decode(&samples()[9]),
            Ok(LogicalMessage::Message {
                transactional: true,
                lsn: Lsn(0x20),
                prefix: "pfx".into(),
                content: Bytes::from_static(b"abc")
            })
        );
        assert_eq!(
            decode(&samples()[3]),
            Ok(LogicalMessage::Type {
                oid: 16400,
                namespace: "public".into(),
                name: "mood".into()
            })
        );
    }

    #[test]
    fn binary_values() {
        let m = Msg::new(b'I')
            .i32(1)
            .u8(b'N')
            .i16(1)
            .u8(b'b')
            .i32(2)
            .raw(&[0, 1])
            .0;
        assert_eq!(
            decode(&m),
            Ok(LogicalMessage::Insert {
                relation: 1,
                new: vec![TupleValue::Binary(Bytes::from_static(&[0, 1]))]
            })
        );
    }

    #[test]
    fn streaming_messages() {
        assert_eq!(
            decode(&samples()[10]),
            Ok(LogicalMessage::StreamStart {
                xid: 900,
                first_segment: true
            })
        );
        assert_eq!(decode(b"E"), Ok(LogicalMessage::StreamStop));
        assert_eq!(
            decode(&samples()[11]),
            Ok(LogicalMessage::StreamCommit {
                xid: 900,
                flags: 0,
                commit_lsn: Lsn(1),
                end_lsn: Lsn(2),
                commit_time: 3
            })
        );
        assert_eq!(
            decode(&samples()[12]),
            Ok(LogicalMessage::StreamAbort {
                xid: 900,
                subxid: 901
            })
        );
        // Inside a streamed block the change messages carry the xid first.
        let insert = Msg::new(b'I')
            .i32(900)
            .i32(16384)
            .u8(b'N')
            .i16(1)
            .text("x")
            .0;
        assert_eq!(
            decode_in_stream(&insert),
            Ok((
                Some(900),
                LogicalMessage::Insert {
                    relation: 16384,
                    new: vec![TupleValue::Text(Bytes::from_static(b"x"))]
                }
            ))
        );
        assert_eq!(
            decode_in_stream(b"E"),
            Ok((None, LogicalMessage::StreamStop))
        );
        // The same bytes read as a top-level message are misaligned and rejected.
        assert!(decode(&insert).is_err());
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert_eq!(
            decode(b"Z"),
            Err(DecodeError::UnknownTag {
                what: "message",
                tag: b'Z'
            })
        );
        let neg = Msg::new(b'I').i32(1).u8(b'N').i16(1).u8(b't').i32(-5).0;
        assert_eq!(
            decode(&neg),
            Err(DecodeError::NegativeLength("text value length"))
        );
        let neg_cols = Msg::new(b'I').i32(1).u8(b'N').i16(-1).0;
        assert!(matches!(
            decode(&neg_cols),
            Err(DecodeError::NegativeLength(_))
        ));
        let trailing = Msg::new(b'E').u8(0).0;
        assert_eq!(decode(&trailing), Err(DecodeError::TrailingBytes(1)));
        let bad_utf8 = Msg::new(b'O').i64(1).raw(&[0xff, 0xfe, 0]).0;
        assert_eq!(
            decode(&bad_utf8),
            Err(DecodeError::InvalidString("origin name"))
        );
        let no_nul = Msg::new(b'O').i64(1).raw(b"abc").0;
        assert_eq!(
            decode(&no_nul),
            Err(DecodeError::InvalidString("origin name"))
        );
        let huge_count = Msg::new(b'T').i32(i32::MAX).u8(0).0;
        assert!(matches!(
            decode(&huge_count),
            Err(DecodeError::Truncated(_))
        ));
    }

    #[test]
    fn every_prefix_of_a_valid_message_is_rejected_without_panic() {
        for msg in samples() {
            assert!(decode(&msg).is_ok(), "sample {msg:?} must decode");
            for len in 0..msg.len() {
                assert!(
                    decode(&msg[..len]).is_err(),
                    "prefix {len} of {msg:?} decoded"
                );
                let _ = decode_in_stream(&msg[..len]);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic stand-in for the fuzz target: mutate valid messages.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for msg in samples() {
            for _ in 0..2000 {
                let mut m = msg.clone();
                let flips = 1 + next() % 4;
                for _ in 0..flips {
                    let i = (next() as usize) % m.len();
                    m[i] = next() as u8;
                }
                let cut = (next() as usize) % (m.len() + 1);
                let _ = decode(&m[..cut]);
                let _ = decode_in_stream(&m[..cut]);
                let _ = decode(&m);
            }
        }
    }
}
