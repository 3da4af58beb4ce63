//! Shared state and the router that joins the HTTP API and the WebSocket gateway.

use std::sync::Arc;

use crate::config::Config;
use crate::gateway::Gateway;

/// State shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    /// Parsed configuration.
    pub config: Arc<Config>,
    /// Sessions, channels, hub, presence and limits.
    pub gateway: Arc<Gateway>,
}
