//! Entry points for a socket: decode inbound frames, encode outbound messages.

use bytes::Bytes;

use crate::message::{Inbound, Outbound};

/// Serializer version negotiated by the `vsn` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vsn {
    /// `1.0.0`: JSON objects.
    V1,
    /// `2.0.0`: JSON arrays and binary frames.
    V2,
}

impl Vsn {
    /// Parses the `vsn` query value; upstream accepts exactly these two.
    pub fn parse(s: &str) -> Option<Vsn> {
        match s {
            "1.0.0" => Some(Vsn::V1),
            "2.0.0" => Some(Vsn::V2),
            _ => None,
        }
    }
}

/// An inbound WebSocket data frame.
#[derive(Debug, Clone, Copy)]
pub enum InFrame<'a> {
    /// Text frame.
    Text(&'a str),
    /// Binary frame.
    Binary(&'a [u8]),
}

/// An encoded outbound WebSocket data frame; cheap to clone and share among receivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Text frame (UTF-8 JSON).
    Text(Bytes),
    /// Binary frame.
    Binary(Bytes),
}

/// Why an inbound frame was dropped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Not valid JSON, or not the expected JSON shape.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// Binary frame of an unknown kind or with sizes running past the end.
    #[error("malformed binary frame: {0}")]
    MalformedBinary(&'static str),
}

/// Decodes one inbound frame for the socket's serializer.
pub fn decode(vsn: Vsn, frame: InFrame<'_>) -> Result<Inbound, DecodeError> {
    match vsn {
        Vsn::V1 => crate::v1::decode(frame),
        Vsn::V2 => crate::v2::decode(frame),
    }
}

/// Encodes one outbound message; `None` when the message is not delivered with this
/// serializer (binary user broadcasts to vsn 1.0.0, or header strings over 255 bytes in kind 4).
pub fn encode(vsn: Vsn, msg: &Outbound) -> Option<Frame> {
    match vsn {
        Vsn::V1 => crate::v1::encode(msg),
        Vsn::V2 => crate::v2::encode(msg),
    }
}
