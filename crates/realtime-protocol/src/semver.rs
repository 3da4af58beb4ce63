//! Just enough semantic-version parsing to negotiate the `vsn` query parameter (PROTOCOL.md §1.2).

/// A parsed `MAJOR.MINOR.PATCH[-PRE][+BUILD]` version; only what negotiation needs is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Version {
    pub(crate) major: u64,
    pub(crate) minor: u64,
    pub(crate) patch: u64,
    /// Whether a pre-release part (`-rc.1`) was present.
    pub(crate) pre_release: bool,
}

impl Version {
    /// Parses a strict semantic version (no leading zeros, no missing parts, no whitespace).
    pub(crate) fn parse(s: &str) -> Option<Version> {
        let (rest, build) = match s.split_once('+') {
            Some((rest, build)) => (rest, Some(build)),
            None => (s, None),
        };
        if let Some(build) = build {
            if !identifiers_valid(build, false) {
                return None;
            }
        }
        let (core, pre) = match rest.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (rest, None),
        };
        if let Some(pre) = pre {
            if !identifiers_valid(pre, true) {
                return None;
            }
        }
        let mut parts = core.split('.');
        let major = number(parts.next()?)?;
        let minor = number(parts.next()?)?;
        let patch = number(parts.next()?)?;
        if parts.next().is_some() {
            return None;
        }
        Some(Version {
            major,
            minor,
            patch,
            pre_release: pre.is_some(),
        })
    }
}

/// A numeric part: ASCII digits, no leading zero unless it is `0`.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Dot-separated non-empty identifiers of `[0-9A-Za-z-]`; numeric pre-release identifiers may
/// not have leading zeros.
fn identifiers_valid(s: &str, pre_release: bool) -> bool {
    s.split('.').all(|id| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !(pre_release
                && id.len() > 1
                && id.starts_with('0')
                && id.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use super::Version;

    #[test]
    fn parses_plain_pre_release_and_build() {
        let v = Version::parse("2.0.0").unwrap();
        assert_eq!((v.major, v.minor, v.patch, v.pre_release), (2, 0, 0, false));
        let v = Version::parse("1.0.3-rc.1+build.5").unwrap();
        assert_eq!((v.major, v.minor, v.patch, v.pre_release), (1, 0, 3, true));
        assert!(Version::parse("1.0.0+exp.sha.5114f85").is_some());
    }

    #[test]
    fn rejects_malformed_versions() {
        for bad in [
            "",
            "1",
            "1.0",
            "1.0.0.0",
            "01.0.0",
            "1.00.0",
            "1.0.0-",
            "1.0.0+",
            "1.0.0-01",
            "1.0.0-a..b",
            " 1.0.0",
            "1.0.0 ",
            "v1.0.0",
            "1.0.x",
            "a.b.c",
            "1.0.0-ä",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad:?}");
        }
    }
}
