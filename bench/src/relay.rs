//! The reference: a plain UDP relay with no crypto, one socket and one thread. A
//! subscriber registers by sending a 1-byte hello from its socket; every other
//! datagram is copied to every registered subscriber, `recvmmsg` in and `sendmmsg`
//! out in batches of 32. It is what forwarding costs with nothing but the kernel's
//! UDP path, the ceiling Cascade's packet rate is compared with.

use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::netio::{Batch, Epoll, plain_buffers, v4};

/// Counters the relay shares with the bench.
#[derive(Default)]
pub(crate) struct RelayStats {
    pub(crate) packets_in: AtomicU64,
    pub(crate) packets_out: AtomicU64,
    pub(crate) send_failed: AtomicU64,
    pub(crate) subscribers: AtomicUsize,
    /// Kernel thread id of the relay thread (for its CPU time).
    pub(crate) tid: AtomicI32,
}

/// A running relay.
pub(crate) struct RawRelay {
    pub(crate) addr: SocketAddrV4,
    pub(crate) stats: Arc<RelayStats>,
    stop: Arc<AtomicBool>,
    reset: Arc<Mutex<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RawRelay {
    pub(crate) fn start(bind: SocketAddrV4) -> anyhow::Result<Self> {
        let socket = UdpSocket::bind(bind)?;
        socket.set_nonblocking(true)?;
        // The sizes `cascade serve` asks for, without bypassing `rmem_max` (as it does).
        plain_buffers(&socket, 8 << 20);
        let addr = v4(socket.local_addr()?)?;
        let stats = Arc::new(RelayStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let reset = Arc::new(Mutex::new(false));
        let thread = {
            let (stats, stop, reset) = (stats.clone(), stop.clone(), reset.clone());
            std::thread::Builder::new()
                .name("raw-relay".into())
                .spawn(move || relay_loop(&socket, &stats, &stop, &reset))?
        };
        while stats.tid.load(Ordering::Acquire) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Self {
            addr,
            stats,
            stop,
            reset,
            thread: Some(thread),
        })
    }

    /// Forgets every subscriber.
    pub(crate) fn reset(&self) {
        *self.reset.lock().unwrap_or_else(|p| p.into_inner()) = true;
        for _ in 0..500 {
            if self.stats.subscribers.load(Ordering::Acquire) == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// CPU seconds the relay thread used so far.
    pub(crate) fn cpu_seconds(&self) -> Option<f64> {
        crate::procfs::thread_cpu_seconds(self.stats.tid.load(Ordering::Acquire))
    }
}

impl Drop for RawRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn relay_loop(socket: &UdpSocket, stats: &RelayStats, stop: &AtomicBool, reset: &Mutex<bool>) {
    stats.tid.store(crate::netio::gettid(), Ordering::Release);
    let fd = socket.as_raw_fd();
    let mut ep = match Epoll::new(1) {
        Ok(ep) => ep,
        Err(e) => {
            eprintln!("raw relay: epoll: {e}");
            return;
        }
    };
    if let Err(e) = ep.add(fd, 0) {
        eprintln!("raw relay: epoll_ctl: {e}");
        return;
    }
    let mut subscribers: Vec<SocketAddrV4> = Vec::new();
    let mut rx = Batch::new();
    let mut tx = Batch::new();
    let (mut n_in, mut n_out, mut n_failed) = (0u64, 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        {
            let mut r = reset.lock().unwrap_or_else(|p| p.into_inner());
            if *r {
                subscribers.clear();
                stats.subscribers.store(0, Ordering::Release);
                *r = false;
            }
        }
        if ep.wait(20).count() == 0 {
            continue;
        }
        loop {
            let k = rx.recv(fd);
            if k == 0 {
                break;
            }
            for j in 0..k {
                let from = rx.source(j);
                let d = rx.datagram_mut(j);
                if d.len() == 1 {
                    if !subscribers.contains(&from) {
                        subscribers.push(from);
                        stats
                            .subscribers
                            .store(subscribers.len(), Ordering::Release);
                    }
                    continue;
                }
                n_in += 1;
                for &dest in &subscribers {
                    tx.push_copy(d, Some(dest));
                    if tx.is_full() {
                        let q = tx.len();
                        let ok = tx.send(fd);
                        n_out += ok as u64;
                        n_failed += (q - ok) as u64;
                    }
                }
            }
            if tx.len() > 0 {
                let q = tx.len();
                let ok = tx.send(fd);
                n_out += ok as u64;
                n_failed += (q - ok) as u64;
            }
            stats.packets_in.store(n_in, Ordering::Relaxed);
            stats.packets_out.store(n_out, Ordering::Relaxed);
            stats.send_failed.store(n_failed, Ordering::Relaxed);
        }
    }
}
