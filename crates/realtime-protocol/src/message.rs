//! The Phoenix message model (PROTOCOL.md §2.1) and what the server sends.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::codec::DecodeError;

/// A Phoenix message: `join_ref`, `ref`, `topic`, `event`, `payload`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The channel's join reference, when the message carries one.
    pub join_ref: Option<String>,
    /// The message reference, echoed in replies.
    pub msg_ref: Option<String>,
    /// Topic, e.g. `realtime:room1` or `phoenix`.
    pub topic: String,
    /// Event name, e.g. `phx_join`, `broadcast`, `phx_reply`.
    pub event: String,
    /// JSON payload (normally an object).
    pub payload: Value,
}

/// Encoding byte of a user broadcast (binary kinds 3 and 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastEncoding {
    /// `0`: opaque bytes.
    Binary,
    /// `1` (any non-zero inbound value): UTF-8 JSON text.
    Json,
}

/// A user broadcast that travels as raw bytes (client kind 3, server kind 4).
#[derive(Debug, Clone, PartialEq)]
pub struct UserBroadcast {
    /// Join reference of the sending channel (inbound only).
    pub join_ref: Option<String>,
    /// Message reference (inbound only).
    pub msg_ref: Option<String>,
    /// Full topic, e.g. `realtime:room1`.
    pub topic: String,
    /// The user's event name.
    pub event: String,
    /// Metadata JSON object text, empty when absent (outbound: `{"id":…}` for database rows).
    pub metadata: Bytes,
    /// How `payload` is encoded.
    pub encoding: BroadcastEncoding,
    /// The payload bytes (JSON text or opaque bytes).
    pub payload: Bytes,
}

/// Something a client sent, after decoding.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A regular message (text frame, either vsn).
    Message(Message),
    /// A binary kind-3 user broadcast push (vsn 2.0.0 only).
    UserBroadcast(UserBroadcast),
}

/// Something the server sends; encoded once per serializer by [`crate::encode`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// A regular message (replies, pushes, JSON broadcasts, presence, postgres_changes).
    Message(Message),
    /// A user broadcast: binary kind 4 on vsn 2.0.0; on vsn 1.0.0 a JSON `broadcast` event when
    /// the encoding is JSON, nothing when it is binary.
    UserBroadcast(UserBroadcast),
    /// A message whose payload text is sent exactly as given (postgres_changes, whose `data`
    /// must keep the database's jsonb rendering).
    Raw(RawMessage),
}

/// A Phoenix message whose payload is already-encoded JSON, written out byte for byte.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// The channel's join reference, when the message carries one.
    pub join_ref: Option<String>,
    /// The message reference.
    pub msg_ref: Option<String>,
    /// Topic, e.g. `realtime:room1`.
    pub topic: String,
    /// Event name, e.g. `postgres_changes`.
    pub event: String,
    /// The payload's JSON text (normally an object).
    pub payload: Arc<RawValue>,
}

impl PartialEq for RawMessage {
    fn eq(&self, other: &RawMessage) -> bool {
        self.join_ref == other.join_ref
            && self.msg_ref == other.msg_ref
            && self.topic == other.topic
            && self.event == other.event
            && self.payload.get() == other.payload.get()
    }
}

impl Message {
    /// Builds a message from its five fields.
    pub fn new(
        join_ref: Option<String>,
        msg_ref: Option<String>,
        topic: impl Into<String>,
        event: impl Into<String>,
        payload: Value,
    ) -> Message {
        Message {
            join_ref,
            msg_ref,
            topic: topic.into(),
            event: event.into(),
            payload,
        }
    }
}

impl From<Message> for Outbound {
    fn from(msg: Message) -> Outbound {
        Outbound::Message(msg)
    }
}

impl From<RawMessage> for Outbound {
    fn from(msg: RawMessage) -> Outbound {
        Outbound::Raw(msg)
    }
}

impl From<UserBroadcast> for Outbound {
    fn from(msg: UserBroadcast) -> Outbound {
        Outbound::UserBroadcast(msg)
    }
}

impl BroadcastEncoding {
    /// The encoding byte sent in kind-4 frames (`0` binary, `1` JSON).
    pub fn byte(self) -> u8 {
        match self {
            BroadcastEncoding::Binary => 0,
            BroadcastEncoding::Json => 1,
        }
    }

    /// Reads an inbound encoding byte: `0` is binary, anything else JSON (as upstream does).
    pub fn from_byte(b: u8) -> BroadcastEncoding {
        if b == 0 {
            BroadcastEncoding::Binary
        } else {
            BroadcastEncoding::Json
        }
    }
}

/// Reads a ref field (`join_ref` or `ref`): a string or null.
pub(crate) fn ref_field(v: Value, what: &'static str) -> Result<Option<String>, DecodeError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(DecodeError::Malformed(what)),
    }
}

/// Reads a field that must be a string (`topic`, `event`).
pub(crate) fn string_field(v: Value, what: &'static str) -> Result<String, DecodeError> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(DecodeError::Malformed(what)),
    }
}
