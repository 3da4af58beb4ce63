//! `RLIMIT_NOFILE`: raise the soft open-files limit at start-up, capped at the hard limit.
//! Never fatal: a refusal is logged and the server keeps the current limit.

// `rlim_t` is `u64` on Linux but not everywhere, so the casts stay.
#![allow(clippy::unnecessary_cast)]

/// Sets the soft `RLIMIT_NOFILE` to `wanted` (capped at the hard limit) and returns the
/// resulting soft limit.
pub fn apply_nofile(wanted: u64) -> Result<u64, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    let target = (wanted as libc::rlim_t).min(lim.rlim_max);
    if target == lim.rlim_cur {
        return Ok(target as u64);
    }
    let new = libc::rlimit {
        rlim_cur: target,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    Ok(target as u64)
}

/// The current soft `RLIMIT_NOFILE`.
pub fn current_nofile() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur as u64)
}
