//! CPU pinning: a bench can keep the server under test on one core and its own load generator
//! on the other, so neither steals the other's time and the server's CPU is a known budget.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The core servers are pinned to; `usize::MAX` when they are not.
static SERVER_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Pins every server spawned from now on to `cpu`.
pub fn pin_servers(cpu: usize) {
    SERVER_CPU.store(cpu, Ordering::Relaxed);
}

/// The core servers are pinned to, if any.
pub fn server_cpu() -> Option<usize> {
    match SERVER_CPU.load(Ordering::Relaxed) {
        usize::MAX => None,
        cpu => Some(cpu),
    }
}

/// Makes `cmd` start on the servers' core when [`pin_servers`] set one (a server, or a
/// `redis-server` that is part of the servers' budget).
pub fn pin_command(cmd: &mut std::process::Command) {
    if let Some(cpu) = server_cpu() {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs between fork and exec and makes one system call.
        unsafe {
            cmd.pre_exec(move || match set_affinity(cpu) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            });
        }
    }
}

/// Pins the calling thread (and the threads it starts later) to `cpu`; false when the kernel
/// refuses (fewer cores, or a restricted CPU set).
pub fn pin_current_thread(cpu: usize) -> bool {
    set_affinity(cpu) == 0
}

/// Sets the calling thread's affinity to the single core `cpu`; returns the raw result so it can
/// be called between fork and exec.
pub fn set_affinity(cpu: usize) -> libc::c_int {
    // SAFETY: `cpu_set_t` is plain data, zeroed is its empty set, and the call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    }
}

/// Number of cores this process may run on.
pub fn available() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
