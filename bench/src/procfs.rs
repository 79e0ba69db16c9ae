//! What the bench reads from `/proc`: CPU time of a process or one thread, busy time
//! of the machine or of chosen CPUs, resident memory, and per-socket UDP drop counters
//! (`/proc/net/udp`).

use std::collections::{HashMap, HashSet};

/// CPU time consumed so far, in seconds: the sum of the `schedstat` run times of the
/// tasks (nanosecond resolution), or `utime + stime` from `stat` when `schedstat` is
/// not available.
fn cpu_seconds_of(dir: &str) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("{dir}/task")).ok()?;
    let mut total_ns = 0u64;
    let mut any = false;
    for task in tasks.flatten() {
        let path = task.path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(path)
            && let Some(ns) = s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        {
            total_ns += ns;
            any = true;
        }
    }
    if any {
        return Some(total_ns as f64 / 1e9);
    }
    stat_cpu_seconds(&format!("{dir}/stat"))
}

/// `utime + stime` (fields 14 and 15) of a `stat` file, in seconds.
fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let s = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may contain spaces; fields resume after its ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((utime + stime) as f64 / hz)
}

/// CPU seconds used so far by every thread of process `pid`.
pub(crate) fn process_cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds_of(&format!("/proc/{pid}"))
}

/// CPU seconds used so far by this process, threads that exited included.
pub(crate) fn self_cpu_seconds() -> Option<f64> {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `ru` is a live, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// CPU seconds used so far by thread `tid` of this process.
pub(crate) fn thread_cpu_seconds(tid: i32) -> Option<f64> {
    let dir = format!("/proc/self/task/{tid}");
    if let Ok(s) = std::fs::read_to_string(format!("{dir}/schedstat"))
        && let Some(ns) = s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
    {
        return Some(ns as f64 / 1e9);
    }
    stat_cpu_seconds(&format!("{dir}/stat"))
}

/// Resident set size of process `pid`, in KiB (`VmRSS`).
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Receive queue (bytes) and drop counter of the UDP sockets of one local port.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UdpPort {
    pub(crate) rx_queue: u64,
    pub(crate) drops: u64,
}

/// Every UDP socket of the network namespace of `net_dir` (`/proc/self/net`,
/// `/proc/<pid>/net`), by local port (the sockets of one port, e.g. a `SO_REUSEPORT`
/// group, are summed).
pub(crate) fn udp_ports(net_dir: &str) -> HashMap<u16, UdpPort> {
    let mut out: HashMap<u16, UdpPort> = HashMap::new();
    for file in ["udp", "udp6"] {
        let Ok(s) = std::fs::read_to_string(format!("{net_dir}/{file}")) else {
            continue;
        };
        for line in s.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx_queue:rx_queue tr:when retr uid timeout inode ref pointer drops
            let (Some(local), Some(queues), Some(drops)) = (f.get(1), f.get(4), f.get(12)) else {
                continue;
            };
            let Some(port) = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
            else {
                continue;
            };
            let rx = queues
                .split(':')
                .nth(1)
                .and_then(|q| u64::from_str_radix(q, 16).ok())
                .unwrap_or(0);
            let e = out.entry(port).or_default();
            e.rx_queue += rx;
            e.drops += drops.parse::<u64>().unwrap_or(0);
        }
    }
    out
}

/// Sum over the given local ports (all of them when `ports` is `None`).
pub(crate) fn sum_ports(map: &HashMap<u16, UdpPort>, ports: Option<&HashSet<u16>>) -> UdpPort {
    let mut total = UdpPort::default();
    let pick = |p: &u16| ports.is_none_or(|set| set.contains(p));
    for (_, p) in map.iter().filter(|(port, _)| pick(port)) {
        total.rx_queue += p.rx_queue;
        total.drops += p.drops;
    }
    total
}

/// Busy seconds of one `/proc/stat` CPU line after its label: user, nice, system,
/// irq, softirq and steal (everything but idle and iowait).
fn busy_of(fields: &str) -> Option<f64> {
    let v: Vec<u64> = fields
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = v.iter().take(8).sum::<u64>() - v.get(3)? - v.get(4)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(busy as f64 / hz)
}

/// Busy CPU seconds of the whole machine so far (all CPUs, from `/proc/stat`).
pub(crate) fn machine_busy_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    busy_of(s.lines().next()?.strip_prefix("cpu ")?)
}

/// Busy seconds so far of the given CPUs together, whatever ran on them: processes,
/// the kernel on their behalf, and softirq work such as packet processing (the
/// kernel samples this at every timer tick).
pub(crate) fn cpus_busy_seconds(cpus: &[usize]) -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let mut total = 0.0;
    let mut found = 0;
    for line in s.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            continue;
        };
        let Some((num, fields)) = rest.split_once(' ') else {
            continue;
        };
        if let Ok(n) = num.parse::<usize>()
            && cpus.contains(&n)
        {
            total += busy_of(fields)?;
            found += 1;
        }
    }
    (found == cpus.len()).then_some(total)
}

/// `utime + stime + cutime + cstime` (fields 14 to 17) of a `stat` file, in seconds:
/// the process's time and that of its children it has reaped.
fn stat_cpu_seconds_with_children(path: &str) -> Option<f64> {
    let s = std::fs::read_to_string(path).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let mut ticks = 0u64;
    for i in 11..15 {
        ticks += f.get(i)?.parse::<u64>().ok()?;
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

/// CPU seconds of every process on the machine but the `exclude`d ones, by pid
/// (kernel threads included), each with its reaped children: a compiler that ran and
/// ended between two readings still shows, in its parent's time.
pub(crate) fn processes_cpu_seconds(exclude: &[u32]) -> HashMap<u32, f64> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| !exclude.contains(pid))
        .filter_map(|pid| {
            Some((
                pid,
                stat_cpu_seconds_with_children(&format!("/proc/{pid}/stat"))?,
            ))
        })
        .collect()
}

/// CPU seconds the processes of `after` used since `before` (a process new in
/// `after` counts with all its time; one that ended in between is lost).
pub(crate) fn processes_cpu_delta(before: &HashMap<u32, f64>, after: &HashMap<u32, f64>) -> f64 {
    after
        .iter()
        .map(|(pid, t)| (t - before.get(pid).copied().unwrap_or(0.0)).max(0.0))
        .sum()
}

/// Number of CPUs this process may run on.
pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The kernel's softirq threads (`ksoftirqd/N`): under load they do part of the
/// packet processing that the server's and the load's traffic causes.
pub(crate) fn ksoftirqd_pids() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("ksoftirqd/"))
        })
        .collect()
}

/// `utime + stime` of the given processes, seconds.
pub(crate) fn pids_cpu_seconds(pids: &[u32]) -> Option<f64> {
    pids.iter()
        .map(|p| stat_cpu_seconds(&format!("/proc/{p}/stat")))
        .sum()
}
