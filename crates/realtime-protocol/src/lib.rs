//! Phoenix channel messages and the Realtime serializers, free of IO.
//!
//! Layout:
//! - [`message`]: the five-field Phoenix message and the outbound kinds the server sends.
//! - [`v1`]: vsn 1.0.0, JSON objects in text frames.
//! - [`v2`]: vsn 2.0.0, JSON arrays in text frames and the binary kinds (3 in, 4 out).
//! - [`codec`]: the entry points a socket uses: decode an inbound frame for its vsn, encode an
//!   outbound message once per serializer.
//! - [`reply`]: upstream's reply and `system` message shapes and error strings.
//!
//! Nothing here knows sockets, tokio or Postgres; every function is pure and fuzzable.
#![warn(missing_docs)]

pub mod codec;
pub mod message;
pub mod reply;
pub mod v1;
pub mod v2;

pub use codec::{decode, encode, DecodeError, Frame, InFrame, Vsn};
pub use message::{BroadcastEncoding, Inbound, Message, Outbound, UserBroadcast};
