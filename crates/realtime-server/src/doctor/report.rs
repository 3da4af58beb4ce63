//! The doctor's report model: checks with a status, a message and the fix.

use serde::Serialize;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing to do.
    Ok,
    /// Works, but something is likely to hurt (the exit code stays 0).
    Warn,
    /// Broken: the server refuses to start, or a tenant cannot work.
    Fail,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable identifier, e.g. `config.DB_ENC_KEY` or `tenant.realtime-dev.wal_level`.
    pub id: String,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub message: String,
    /// What to do about it (`null` when ok).
    pub fix: Option<String>,
}

impl Check {
    /// An ok check.
    pub fn ok(id: impl Into<String>, message: impl Into<String>) -> Check {
        Check {
            id: id.into(),
            status: Status::Ok,
            message: message.into(),
            fix: None,
        }
    }

    /// A warning with its fix.
    pub fn warn(
        id: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::with_fix(id, Status::Warn, message, fix)
    }

    /// A failure with its fix.
    pub fn fail(
        id: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::with_fix(id, Status::Fail, message, fix)
    }

    fn with_fix(
        id: impl Into<String>,
        status: Status,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            id: id.into(),
            status,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    /// A check from one of the server's own error texts, which carry their fix after `; set`,
    /// `: set`, `; fix`, `: run` and the like: the text is split there.
    pub fn from_error_text(id: impl Into<String>, status: Status, text: &str) -> Check {
        let (message, fix) = split_fix(text);
        Check {
            id: id.into(),
            status,
            message,
            fix: Some(fix),
        }
    }
}

/// Splits an error text that ends with its fix at the first `; <verb>`, `: <verb>` or
/// `. <Verb>`.
pub fn split_fix(text: &str) -> (String, String) {
    const VERBS: [&str; 8] = [
        "set ", "fix ", "run ", "create ", "rename ", "remove ", "check ", "unset ",
    ];
    // ASCII lowercasing keeps byte offsets, so positions found in `lower` index `text`.
    let lower = text.to_ascii_lowercase();
    let best = ["; ", ": ", ". "]
        .iter()
        .flat_map(|sep| VERBS.iter().map(move |verb| format!("{sep}{verb}")))
        .filter_map(|pattern| lower.find(&pattern))
        .min();
    match best {
        Some(i) => {
            let fix = &text[i + 2..];
            let mut chars = fix.chars();
            let fix = match chars.next() {
                Some(c) => c.to_uppercase().collect::<String>() + chars.as_str(),
                None => String::new(),
            };
            (text[..i].to_string(), fix)
        }
        None => (
            text.to_string(),
            "see the message above, then run `realtime doctor` again".to_string(),
        ),
    }
}

/// Every check, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// Adds a check.
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    /// The worst status (ok for an empty report).
    pub fn status(&self) -> Status {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Ok)
    }

    /// How many checks have `status`.
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_are_split_from_the_servers_wording() {
        let (m, f) = split_fix("DB_ENC_KEY must be set to exactly 16 bytes (AES-128), got 32 bytes; set DB_ENC_KEY to the 16-character key");
        assert_eq!(
            m,
            "DB_ENC_KEY must be set to exactly 16 bytes (AES-128), got 32 bytes"
        );
        assert_eq!(f, "Set DB_ENC_KEY to the 16-character key");
        let (m, f) = split_fix(
            "env PORT expected a Integer, got \"4_000\": set PORT to a base-10 whole number",
        );
        assert_eq!(m, "env PORT expected a Integer, got \"4_000\"");
        assert!(f.starts_with("Set PORT"), "{f}");
        let (m, f) = split_fix("column(s) cannot be filled: dirty; it was made by another tool. Rename the table or run: ALTER");
        assert_eq!(
            m,
            "column(s) cannot be filled: dirty; it was made by another tool"
        );
        assert_eq!(f, "Rename the table or run: ALTER");
        let (m, f) = split_fix("something odd");
        assert_eq!(m, "something odd");
        assert!(f.contains("realtime doctor"));
    }

    #[test]
    fn the_worst_status_wins() {
        let mut r = Report::default();
        assert_eq!(r.status(), Status::Ok);
        r.push(Check::ok("a", "fine"));
        r.push(Check::warn("b", "hm", "do x"));
        assert_eq!(r.status(), Status::Warn);
        r.push(Check::fail("c", "no", "do y"));
        assert_eq!(r.status(), Status::Fail);
        assert_eq!(r.count(Status::Ok), 1);
    }
}
