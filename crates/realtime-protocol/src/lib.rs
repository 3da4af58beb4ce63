//! Phoenix channel messages and the Realtime serializers, free of IO.
//!
//! Layout:
//! - [`message`]: the five-field Phoenix message and the outbound kinds the server sends.
//! - [`v1`]: vsn 1.0.0, JSON objects in text frames.
//! - [`v2`]: vsn 2.0.0, JSON arrays in text frames; binary frames go to [`binary`].
//! - [`binary`]: the vsn 2.0.0 user broadcast layouts (kind 3 in, kind 4 out).
//! - [`codec`]: the entry points a socket uses: decode an inbound frame for its vsn, encode an
//!   outbound message once per serializer.
//! - [`events`]: event and topic names.
//! - [`reply`]: upstream's reply, `system` and server-push shapes.
//! - [`wording`]: upstream's error and notice strings (join refusals, stops, REST errors).
//!
//! Nothing here knows sockets, tokio or Postgres; every function is pure and fuzzable.
//! Objects the server builds come out with sorted keys, like upstream's encoder writes them.
#![warn(missing_docs)]

pub mod binary;
pub mod codec;
pub mod events;
pub mod message;
pub mod reply;
mod semver;
pub mod v1;
pub mod v2;
pub mod wording;

pub use codec::{decode, encode, DecodeError, Frame, InFrame, Vsn};
pub use message::{BroadcastEncoding, Inbound, Message, Outbound, RawMessage, UserBroadcast};
