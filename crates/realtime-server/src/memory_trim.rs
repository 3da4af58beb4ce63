//! Gives freed memory back to the system after many sockets closed. glibc's allocator keeps
//! what a burst of connections freed in its arenas; without a trim the process keeps its peak
//! resident size long after the sockets are gone. (The binary and the image both link glibc;
//! on another libc this does nothing.)

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::gateway::Gateway;

/// How often the socket count is looked at.
const EVERY: Duration = Duration::from_secs(5);

/// Sockets that must have closed since the peak of the last period to trim.
const CLOSED_SINCE_PEAK: usize = 256;

/// Starts the watcher; it stops with `shutdown`.
pub fn spawn(gateway: Arc<Gateway>, shutdown: CancellationToken) {
    if !available() {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
            let now = gateway.session_count();
            if gateway.take_session_peak().saturating_sub(now) >= CLOSED_SINCE_PEAK {
                trim();
            }
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn available() -> bool {
    true
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn available() -> bool {
    false
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        released = released != 0,
        "returned freed memory to the system"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
