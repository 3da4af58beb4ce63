//! Reading variables with upstream's `Realtime.Env` rules: strict integers, `true`/`1`/
//! `false`/`0` booleans, comma lists; an empty value counts as unset.

use std::collections::HashMap;
use std::time::Duration;

use super::error::ConfigError;

/// A snapshot of the environment, injected so tests never touch the process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Env {
            vars: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

impl Env {
    /// The process environment (variables that are not valid UTF-8 are skipped).
    pub fn from_process() -> Env {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }

    /// The same snapshot without `name` (the doctor uses it to find every bad variable, not
    /// only the first).
    pub fn without(&self, name: &str) -> Env {
        let mut vars = self.vars.clone();
        vars.remove(name);
        Env { vars }
    }

    /// The value of `name`; an empty string is treated as unset (the Supabase CLI passes
    /// `RLIMIT_NOFILE=""`, and an empty secret must never become a valid key).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The value of `name` or `default`.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_string()
    }

    /// An owned optional value.
    pub fn opt(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    /// A base-10 integer (optional sign, surrounding whitespace tolerated) within `T`'s range.
    pub fn integer<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: TryFrom<i64> + Copy + std::fmt::Display + Bounded,
    {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        let err = || ConfigError::Integer {
            name,
            value: raw.to_string(),
            default: default.to_string(),
            range: T::range(),
        };
        let trimmed = raw.trim();
        let digits = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let n: i64 = trimmed.parse().map_err(|_| err())?;
        T::try_from(n).map_err(|_| err())
    }

    /// A duration given in milliseconds.
    pub fn millis(&self, name: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
        self.integer::<u64>(name, default_ms)
            .map(Duration::from_millis)
    }

    /// A boolean: trimmed, case-insensitive `true`/`1` or `false`/`0`.
    pub fn boolean(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(ConfigError::Boolean {
                name,
                value: raw.to_string(),
            }),
        }
    }

    /// A comma-separated list, items trimmed, empty items dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The accepted range of an integer type, for error messages.
pub trait Bounded {
    /// E.g. `" between 0 and 65535"`.
    fn range() -> String;
}

macro_rules! bounded {
    ($($t:ty),*) => {$(
        impl Bounded for $t {
            fn range() -> String {
                format!(" between {} and {}", <$t>::MIN, <$t>::MAX)
            }
        }
    )*};
}
bounded!(u16, u32, u64, usize, i32, i64);

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().copied().collect()
    }

    #[test]
    fn integers_are_strict() {
        let e = env(&[
            ("A", "10"),
            ("B", "-3"),
            ("C", "+7"),
            ("D", " 5 "),
            ("E", "10_000"),
            ("F", "5x"),
            ("G", ""),
            ("H", "70000"),
            ("I", "-"),
            ("J", "1.5"),
        ]);
        assert_eq!(e.integer::<i64>("A", 0), Ok(10));
        assert_eq!(e.integer::<i64>("B", 0), Ok(-3));
        assert_eq!(e.integer::<i64>("C", 0), Ok(7));
        assert_eq!(e.integer::<i64>("D", 0), Ok(5));
        assert!(e.integer::<i64>("E", 0).is_err());
        assert!(e.integer::<i64>("F", 0).is_err());
        assert_eq!(e.integer::<i64>("G", 42), Ok(42));
        assert!(e.integer::<u16>("H", 1).is_err());
        assert!(e.integer::<u64>("B", 1).is_err());
        assert!(e.integer::<i64>("I", 1).is_err());
        assert!(e.integer::<i64>("J", 1).is_err());
        assert_eq!(e.integer::<i64>("MISSING", 9), Ok(9));
    }

    #[test]
    fn integer_error_names_variable_form_and_fix() {
        let e = env(&[("PORT", "10_000")]);
        let msg = e.integer::<u16>("PORT", 4000).unwrap_err().to_string();
        assert_eq!(
            msg,
            "env PORT expected a Integer, got \"10_000\": set PORT to a base-10 whole number between 0 and 65535 (default 4000) or remove it"
        );
    }

    #[test]
    fn booleans() {
        let e = env(&[
            ("A", "TRUE"),
            ("B", " 1 "),
            ("C", "False"),
            ("D", "0"),
            ("E", "yes"),
            ("F", ""),
        ]);
        assert_eq!(e.boolean("A", false), Ok(true));
        assert_eq!(e.boolean("B", false), Ok(true));
        assert_eq!(e.boolean("C", true), Ok(false));
        assert_eq!(e.boolean("D", true), Ok(false));
        let err = e.boolean("E", false).unwrap_err().to_string();
        assert!(
            err.starts_with("env E expected a boolean or 0/1 values, got \"yes\""),
            "{err}"
        );
        assert_eq!(e.boolean("F", true), Ok(true));
    }

    #[test]
    fn lists_and_empty_strings() {
        let e = env(&[("L", " a, b ,,c "), ("S", "")]);
        assert_eq!(e.list("L"), vec!["a", "b", "c"]);
        assert!(e.list("S").is_empty());
        assert_eq!(e.get("S"), None);
        assert_eq!(e.string("S", "dflt"), "dflt");
    }
}
