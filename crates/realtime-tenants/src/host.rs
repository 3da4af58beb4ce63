//! The tenant id carried by a request's Host header (first DNS label, as upstream does).

/// Returns the external id for a Host header value: port stripped, lowercased, everything
/// before the first `.` (a host without a dot is used whole). `127.0.0.1` gives `127`; an
/// IPv6 literal such as `[::1]` is kept whole and matches no tenant.
pub fn external_id_from_host(host_header: &str) -> String {
    let host = host_header.trim();
    let host = if host.starts_with('[') {
        // `[v6]` or `[v6]:port`: keep the bracketed literal.
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
            _ => host,
        }
    };
    let label = if host.starts_with('[') {
        host
    } else {
        host.split('.').next().unwrap_or(host)
    };
    label.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::external_id_from_host;

    #[test]
    fn resolution_table() {
        for (host, id) in [
            ("realtime-dev.supabase-realtime", "realtime-dev"),
            ("realtime-dev.supabase-realtime:4000", "realtime-dev"),
            ("tenant.realtime.supabase.co", "tenant"),
            ("Tenant.Realtime.Supabase.co:443", "tenant"),
            ("localhost", "localhost"),
            ("localhost:4000", "localhost"),
            ("127.0.0.1", "127"),
            ("127.0.0.1:4000", "127"),
            ("[::1]", "[::1]"),
            ("[::1]:4000", "[::1]"),
            ("api.example.com", "api"),
            ("unknown.example.com", "unknown"),
            ("", ""),
        ] {
            assert_eq!(external_id_from_host(host), id, "{host}");
        }
    }
}
