//! CPU placement for measurements that must tell the server's side of the machine
//! from the load's: pinning the bench's threads and a server process to disjoint
//! CPUs, and steering a veth's receive processing (RPS) to a CPU, so that the
//! kernel's work on behalf of each side runs, and is counted, on that side's CPUs.

use std::io;
use std::process::Command;

/// A CPU set as the kernel takes it.
fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: CPU_SET only writes inside `set` (it ignores CPUs past its size).
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    set
}

fn set_affinity(tid: libc::pid_t, set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: sched_setaffinity reads `size_of::<cpu_set_t>()` bytes from `set`.
    let rc = unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn get_affinity(tid: libc::pid_t) -> io::Result<libc::cpu_set_t> {
    // SAFETY: as in `cpu_set`; sched_getaffinity fills the set it is given.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is writable and of the size passed.
    let rc = unsafe { libc::sched_getaffinity(tid, size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(set)
}

fn own_threads() -> Vec<libc::pid_t> {
    std::fs::read_dir("/proc/self/task")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every thread of the bench pinned to a CPU set; threads started meanwhile inherit
/// it. Dropping the guard gives every thread the set the process had before.
pub(crate) struct Pinned {
    before: libc::cpu_set_t,
}

/// Pins every thread of this process to `cpus`.
pub(crate) fn pin_self(cpus: &[usize]) -> io::Result<Pinned> {
    let before = get_affinity(0)?;
    let set = cpu_set(cpus);
    for tid in own_threads() {
        // A thread may have ended since the listing.
        match set_affinity(tid, &set) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            r => r?,
        }
    }
    Ok(Pinned { before })
}

impl Drop for Pinned {
    fn drop(&mut self) {
        for tid in own_threads() {
            let _ = set_affinity(tid, &self.before);
        }
    }
}

/// Makes a command's process run only on `cpus` (set between fork and exec; its
/// threads inherit it).
pub(crate) fn pin_command(cmd: &mut Command, cpus: &[usize]) {
    use std::os::unix::process::CommandExt;
    let set = cpu_set(cpus);
    // SAFETY: the closure runs in the forked child before exec and only calls
    // sched_setaffinity(2), a plain system call, on a set copied in beforehand.
    unsafe {
        cmd.pre_exec(move || set_affinity(0, &set));
    }
}

/// The hexadecimal mask of `cpus` as `/sys/.../rps_cpus` takes it.
pub(crate) fn mask_hex(cpus: &[usize]) -> String {
    let mask = cpus
        .iter()
        .filter(|&&c| c < 64)
        .fold(0u64, |m, &c| m | (1 << c));
    format!("{mask:x}")
}

/// Steers the receive processing of every queue of `dev` in namespace `ns` to `cpus`
/// (Receive Packet Steering): packets the device receives are handed to those CPUs'
/// backlog and processed there in softirq, whichever CPU sent them.
pub(crate) fn steer_receive(ns: &str, dev: &str, cpus: &[usize]) -> anyhow::Result<()> {
    let script = format!(
        "for q in /sys/class/net/{dev}/queues/rx-*; do echo {} > $q/rps_cpus || exit 1; done",
        mask_hex(cpus)
    );
    crate::netns::exec_sh(ns, &script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask_hex(&[0]), "1");
        assert_eq!(mask_hex(&[1]), "2");
        assert_eq!(mask_hex(&[1, 2, 3]), "e");
        assert_eq!(mask_hex(&[]), "0");
    }
}
