//! `LOG_LEVEL`: upstream's Logger levels mapped onto the four levels the server emits.

/// The global log filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `emergency`, `alert`, `critical`, `error`.
    Error,
    /// `warning` (also `warn`).
    Warning,
    /// `notice`, `info` (the default).
    Info,
    /// `debug`.
    Debug,
}

impl LogLevel {
    /// Parses a `LOG_LEVEL` value (trimmed, case-insensitive); `None` for an unknown value.
    pub fn parse(value: &str) -> Option<LogLevel> {
        match value.trim().to_ascii_lowercase().as_str() {
            "emergency" | "alert" | "critical" | "error" => Some(LogLevel::Error),
            "warning" | "warn" => Some(LogLevel::Warning),
            "notice" | "info" => Some(LogLevel::Info),
            "debug" => Some(LogLevel::Debug),
            _ => None,
        }
    }

    /// The matching `tracing` filter level.
    pub fn as_tracing(self) -> tracing::Level {
        match self {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warning => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LogLevel;

    #[test]
    fn upstream_levels_map() {
        for (v, l) in [
            ("emergency", LogLevel::Error),
            ("alert", LogLevel::Error),
            ("critical", LogLevel::Error),
            ("error", LogLevel::Error),
            ("warning", LogLevel::Warning),
            ("WARN", LogLevel::Warning),
            ("notice", LogLevel::Info),
            (" info ", LogLevel::Info),
            ("debug", LogLevel::Debug),
        ] {
            assert_eq!(LogLevel::parse(v), Some(l), "{v}");
        }
        assert_eq!(LogLevel::parse("verbose"), None);
    }
}
