//! Several nodes as one server, through Redis. This crate is the transport: it knows topics
//! only as byte strings and messages only as bytes; the server decides what they mean.
//!
//! Layout:
//! - [`target`]: `REDIS_URL` checked and shown without its password.
//! - [`node`]: this process's identity among the nodes.
//! - [`link`]: the connections to Redis, kept alive and re-established; node-local delivery
//!   goes on while Redis is away.
//! - [`publisher`]: messages to other nodes, in order, pipelined, never waited for.
//! - [`interest`]: which channels this node listens to (only topics with local subscribers),
//!   re-subscribed after Redis comes back, and the messages that arrive on them.
//! - [`state`]: state kept in Redis: hashes, and each node's alive key.
//! - [`streams`]: append-only logs (the relay of a tenant's changes between nodes).

pub mod interest;
pub mod link;
pub mod node;
pub mod publisher;
pub mod state;
pub mod streams;
pub mod target;

pub use link::{probe, Inbox, Link};
pub use node::NodeId;
pub use publisher::HashWrite;
pub use target::{RedisTarget, TargetError};
