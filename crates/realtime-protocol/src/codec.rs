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
    /// Negotiates the `vsn` query value the way Phoenix does: the value must be a semantic
    /// version matching `~> 1.0.0` (V1) or `~> 2.0.0` (V2); anything else is refused (HTTP 403).
    /// A missing parameter means `1.0.0` and is the caller's concern.
    pub fn parse(s: &str) -> Option<Vsn> {
        let v = crate::semver::Version::parse(s)?;
        // `~> X.0.0` is `>= X.0.0 and < X.1.0`; a pre-release of X.0.0 sorts below X.0.0.
        if v.minor != 0 || (v.patch == 0 && v.pre_release) {
            return None;
        }
        match v.major {
            1 => Some(Vsn::V1),
            2 => Some(Vsn::V2),
            _ => None,
        }
    }

    /// The canonical version string (`1.0.0` or `2.0.0`).
    pub fn as_str(self) -> &'static str {
        match self {
            Vsn::V1 => "1.0.0",
            Vsn::V2 => "2.0.0",
        }
    }
}

impl Default for Vsn {
    /// A socket without a `vsn` parameter speaks 1.0.0.
    fn default() -> Self {
        Vsn::V1
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

impl Frame {
    /// The encoded bytes, whatever the frame type.
    pub fn bytes(&self) -> &Bytes {
        match self {
            Frame::Text(b) | Frame::Binary(b) => b,
        }
    }

    /// Whether this is a binary frame.
    pub fn is_binary(&self) -> bool {
        matches!(self, Frame::Binary(_))
    }

    /// Encoded size in bytes.
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// Whether the frame carries no bytes (never true for frames built by [`encode`]).
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }
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
