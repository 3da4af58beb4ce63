//! Plain-text log lines in upstream's layout: `HH:MM:SS.mmm key=value [level] message`.
