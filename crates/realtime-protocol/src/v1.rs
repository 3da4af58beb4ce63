//! vsn 1.0.0: JSON objects in text frames (PROTOCOL.md §2.2).

use crate::codec::{DecodeError, Frame, InFrame};
use crate::message::{Inbound, Outbound};

/// Decodes an inbound vsn 1.0.0 frame.
pub fn decode(_frame: InFrame<'_>) -> Result<Inbound, DecodeError> {
    Err(DecodeError::Malformed("not implemented"))
}

/// Encodes an outbound message as a vsn 1.0.0 JSON object.
pub fn encode(_msg: &Outbound) -> Option<Frame> {
    None
}
