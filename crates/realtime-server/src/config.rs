//! Configuration from the environment, with upstream's parsing rules.

/// The server's configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {}
