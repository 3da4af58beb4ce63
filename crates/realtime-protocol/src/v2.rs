//! vsn 2.0.0: JSON arrays in text frames and binary kinds 3 and 4 (PROTOCOL.md §2.3, §2.4).

use crate::codec::{DecodeError, Frame, InFrame};
use crate::message::{Inbound, Outbound};

/// Decodes an inbound vsn 2.0.0 frame.
pub fn decode(_frame: InFrame<'_>) -> Result<Inbound, DecodeError> {
    Err(DecodeError::Malformed("not implemented"))
}

/// Encodes an outbound message as a vsn 2.0.0 frame.
pub fn encode(_msg: &Outbound) -> Option<Frame> {
    None
}
