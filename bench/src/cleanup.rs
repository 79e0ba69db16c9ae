//! What the bench must undo when it is interrupted: the network namespaces it made.
//! [`Netns`](crate::netns::Netns) and [`Lan`](crate::netns::Lan) register their
//! namespaces here while they exist. On SIGINT, SIGTERM or SIGHUP a watcher thread
//! deletes the registered ones and ends the process (servers started by the bench
//! follow through their parent-death signal); the signal handler itself only writes
//! one byte to a pipe.

use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

/// Namespaces to delete on interruption.
static NAMESPACES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Write end of the pipe the signal handler wakes the watcher with (-1: not installed).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// Records a namespace the bench created.
pub(crate) fn register(ns: &str) {
    let mut list = NAMESPACES.lock().unwrap_or_else(|p| p.into_inner());
    if !list.iter().any(|n| n == ns) {
        list.push(ns.to_string());
    }
}

/// Forgets a namespace the bench deleted.
pub(crate) fn unregister(ns: &str) {
    NAMESPACES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|n| n != ns);
}

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = WAKE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; `b` lives for the call.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// Installs the handlers and the watcher thread (once; later calls do nothing).
pub(crate) fn install() {
    if WAKE_FD.load(Ordering::Relaxed) >= 0 {
        return;
    }
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two-element array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        eprintln!(
            "cannot watch for interruption: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    let (read_fd, write_fd) = (fds[0], fds[1]);
    WAKE_FD.store(write_fd, Ordering::Relaxed);
    let spawned = std::thread::Builder::new()
        .name("cleanup".into())
        .spawn(move || {
            let mut b = 0u8;
            loop {
                // SAFETY: reads one byte into `b` from the pipe this thread owns.
                let n = unsafe { libc::read(read_fd, (&mut b as *mut u8).cast(), 1) };
                if n == 1 {
                    break;
                }
                if n < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                    continue;
                }
                return;
            }
            let list = NAMESPACES.lock().unwrap_or_else(|p| p.into_inner()).clone();
            eprintln!(
                "\ninterrupted (signal {b}): removing {} network namespace(s)",
                list.len()
            );
            for ns in list {
                let _ = Command::new("ip").args(["netns", "del", &ns]).status();
            }
            std::process::exit(128 + i32::from(b));
        });
    if let Err(e) = spawned {
        eprintln!("cannot watch for interruption: {e}");
        return;
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction with a handler that only calls write(2).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}
