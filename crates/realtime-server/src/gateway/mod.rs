//! The WebSocket gateway (`/socket/websocket`) and the REST broadcast routes.

/// Sessions, channels, the topic hub, presence and limits of this process.
#[derive(Default)]
pub struct Gateway {}
