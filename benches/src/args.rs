//! Command-line flags of the form `--name value`, with defaults.

use crate::BenchError;

/// Parsed `--name value` pairs.
pub struct Args {
    pairs: Vec<(String, String)>,
}

impl Args {
    /// Reads the process arguments; `--help` lists `usage` and exits.
    pub fn from_env(usage: &str) -> Result<Args, BenchError> {
        let raw: Vec<String> = std::env::args().skip(1).collect();
        if raw.iter().any(|a| a == "--help" || a == "-h") {
            println!("{usage}");
            std::process::exit(0);
        }
        let mut pairs = Vec::new();
        let mut it = raw.into_iter();
        while let Some(name) = it.next() {
            let Some(key) = name.strip_prefix("--") else {
                return Err(BenchError::Setup(format!(
                    "unexpected argument `{name}`\n{usage}"
                )));
            };
            let Some(value) = it.next() else {
                return Err(BenchError::Setup(format!("--{key} needs a value\n{usage}")));
            };
            pairs.push((key.to_string(), value));
        }
        Ok(Args { pairs })
    }

    /// The number given as `--name`, or `default`.
    pub fn number(&self, name: &str, default: u64) -> Result<u64, BenchError> {
        match self.pairs.iter().rev().find(|(k, _)| k == name) {
            None => Ok(default),
            Some((_, v)) => v.parse().map_err(|_| {
                BenchError::Setup(format!("--{name} expects a whole number, got `{v}`"))
            }),
        }
    }

    /// The text given as `--name`, if any.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
