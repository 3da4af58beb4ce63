//! The inspector page's settings: `INSPECTOR_ENABLED` and the dashboard credentials
//! (`DASHBOARD_USER`, `DASHBOARD_PASSWORD`, `DASHBOARD_AUTH`) that protect it, as upstream
//! protects its admin dashboard.

use super::env::Env;
use super::error::ConfigError;

/// Who may open `/inspector`.
#[derive(Clone, PartialEq, Eq)]
pub enum InspectorAccess {
    /// No dashboard credentials configured: anyone who reaches the server.
    Open,
    /// HTTP basic authentication with these credentials.
    Basic {
        /// `DASHBOARD_USER`.
        user: String,
        /// `DASHBOARD_PASSWORD`.
        password: String,
    },
    /// Protection was asked for but cannot be honoured (one credential missing, or an
    /// unsupported `DASHBOARD_AUTH`): every request is refused.
    Refused,
}

impl std::fmt::Debug for InspectorAccess {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InspectorAccess::Open => f.write_str("Open"),
            InspectorAccess::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .finish_non_exhaustive(),
            InspectorAccess::Refused => f.write_str("Refused"),
        }
    }
}

/// `/inspector` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectorConfig {
    /// `INSPECTOR_ENABLED`: default on in standalone mode, off with a registry database.
    pub enabled: bool,
    /// The protection in front of the page and its assets.
    pub access: InspectorAccess,
}

impl InspectorConfig {
    /// Reads the variables; problems that leave the page locked are reported in `warnings`.
    pub fn from_env(
        env: &Env,
        standalone: bool,
        warnings: &mut Vec<String>,
    ) -> Result<InspectorConfig, ConfigError> {
        let enabled = env.boolean("INSPECTOR_ENABLED", standalone)?;
        let user = env.opt("DASHBOARD_USER");
        let password = env.opt("DASHBOARD_PASSWORD");
        let scheme = env.string("DASHBOARD_AUTH", "basic_auth");
        let access = if scheme != "basic_auth" {
            if enabled {
                warnings.push(format!(
                    "DASHBOARD_AUTH is \"{scheme}\", only basic_auth is supported; /inspector refuses every request"
                ));
            }
            InspectorAccess::Refused
        } else {
            match (user, password) {
                (None, None) => InspectorAccess::Open,
                (Some(user), Some(password)) => InspectorAccess::Basic { user, password },
                (user, _) => {
                    if enabled {
                        let missing = if user.is_some() {
                            "DASHBOARD_PASSWORD"
                        } else {
                            "DASHBOARD_USER"
                        };
                        warnings.push(format!(
                            "{missing} is not set while the other dashboard credential is; /inspector refuses every request"
                        ));
                    }
                    InspectorAccess::Refused
                }
            }
        };
        Ok(InspectorConfig { enabled, access })
    }
}
