//! Data-plane workers and the handle control holds to drive them.
//!
//! One worker thread per socket of a SO_REUSEPORT group on the media port. Each
//! worker loops: apply pending commands to its table replica, receive a batch,
//! forward it, run timers, send the batch, publish its counters. STUN and DTLS, and the
//! table's media events, go up to control through a bounded channel (dropped and
//! counted when control lags); STUN and DTLS from sources no session validated only
//! within the table's upcall budget ([`crate::budget`]), so a flood of them is dropped
//! before it is copied for the channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use socket2::Socket;

use crate::budget::UpcallBudgetConfig;
use crate::command::{Command, Upcall};
use crate::handoff::{Homes, NackHandoff};
use crate::io::{self, BatchRecv, BatchSend, uring, userspace};
use crate::stats::{self, DropReason, LocalStats, WorkerStats};
use crate::table::{Disposition, ForwardingTable, SessionShared, TransmitSink};

/// How long a worker waits for packets before it looks at commands and timers.
const IDLE_WAKE: Duration = Duration::from_millis(10);

/// Depth of the STUN/DTLS channel to control.
const UPCALL_QUEUE: usize = 4096;

/// Depth of each worker's inbox of NACKs handed over by other workers.
const HANDOFF_QUEUE: usize = 1024;

/// Which I/O backend the workers should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// io_uring when the kernel permits it, else recvmmsg/sendmmsg.
    #[default]
    Auto,
    /// recvmmsg/sendmmsg.
    Userspace,
    /// io_uring; fails to start when the kernel refuses it.
    IoUring,
}

/// The backend the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Userspace,
    IoUring,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Userspace => "userspace",
            Backend::IoUring => "io_uring",
        }
    }

    /// Resolves a choice against what this kernel permits.
    pub fn resolve(choice: BackendChoice) -> Result<Self, DataplaneError> {
        match choice {
            BackendChoice::Userspace => Ok(Backend::Userspace),
            BackendChoice::IoUring => uring::probe()
                .map(|()| Backend::IoUring)
                .map_err(DataplaneError::IoUringUnavailable),
            BackendChoice::Auto => match uring::probe() {
                Ok(()) => Ok(Backend::IoUring),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    // EPERM from io_uring_setup: a seccomp profile (container
                    // runtimes' defaults) or the kernel.io_uring_disabled sysctl.
                    tracing::warn!(
                        reason = %e,
                        "io_uring blocked (EPERM: seccomp profile or kernel.io_uring_disabled): \
                         using recvmmsg/sendmmsg; allow io_uring_setup/enter/register \
                         (deploy/seccomp.json) for the io_uring data plane"
                    );
                    Ok(Backend::Userspace)
                }
                Err(e) => {
                    tracing::info!(reason = %e, "io_uring not available: using recvmmsg/sendmmsg");
                    Ok(Backend::Userspace)
                }
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    pub listen: SocketAddr,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    pub backend: BackendChoice,
    /// Each worker's budget for STUN/DTLS from sources no session validated.
    pub upcall_budget: UpcallBudgetConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("cannot bind media port {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("io_uring is not available: {0}")]
    IoUringUnavailable(std::io::Error),
    #[error("media socket setup failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Control's handle on the running data plane.
pub struct Dataplane {
    commands: Vec<Sender<(Command, SessionShared)>>,
    stats: Vec<Arc<WorkerStats>>,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
    control_socket: Socket,
    /// Duplicates of the workers' sockets, in worker order (for reuseport steering).
    worker_sockets: Vec<Socket>,
    local_addr: SocketAddr,
    backend: Backend,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("local_addr", &self.local_addr)
            .field("workers", &self.commands.len())
            .field("backend", &self.backend)
            .finish()
    }
}

impl Dataplane {
    /// Binds the media port and starts the workers. Returns the handle and the
    /// channel on which STUN/DTLS datagrams arrive for control.
    pub fn start(config: &DataplaneConfig) -> Result<(Self, Receiver<Upcall>), DataplaneError> {
        let workers = if config.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.workers
        };
        let sockets = io::bind_reuseport_group(config.listen, workers).map_err(|source| {
            DataplaneError::Bind {
                addr: config.listen,
                source,
            }
        })?;
        let local_addr = sockets[0]
            .local_addr()?
            .as_socket()
            .ok_or_else(|| std::io::Error::other("media socket has no IP address"))?;
        let control_socket = sockets[0].try_clone()?;
        let backend = Backend::resolve(config.backend)?;
        let (upcall_tx, upcall_rx) = crossbeam_channel::bounded(UPCALL_QUEUE);
        let homes = Arc::new(Homes::default());
        let (inbox_tx, mut inbox_rx): (Vec<_>, Vec<_>) = (0..sockets.len())
            .map(|_| crossbeam_channel::bounded::<NackHandoff>(HANDOFF_QUEUE))
            .unzip();
        let inboxes: Arc<[Sender<NackHandoff>]> = inbox_tx.into();
        inbox_rx.reverse();
        let mut commands = Vec::new();
        let mut stats = Vec::new();
        let mut threads = Vec::new();
        let mut worker_sockets = Vec::new();
        for (i, socket) in sockets.into_iter().enumerate() {
            worker_sockets.push(socket.try_clone()?);
            // Bounds the recvmmsg wait (also of a worker whose ring setup fails).
            userspace::set_recv_timeout(&socket, IDLE_WAKE)?;
            let (tx, rx) = crossbeam_channel::unbounded();
            let shared = Arc::new(WorkerStats::default());
            let mut table = ForwardingTable::with_homes(i as u32, homes.clone());
            table.set_upcall_budget(config.upcall_budget);
            let worker = Worker {
                table,
                inbox: inbox_rx
                    .pop()
                    .ok_or_else(|| std::io::Error::other("one inbox per worker"))?,
                inboxes: inboxes.clone(),
                commands: rx,
                upcalls: upcall_tx.clone(),
                stats: shared.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("cascade-dp{i}"))
                .spawn(move || worker.run(socket, backend))?;
            commands.push(tx);
            stats.push(shared);
            threads.push(thread);
        }
        tracing::info!(%local_addr, workers, backend = backend.name(), "data plane started");
        Ok((
            Self {
                commands,
                stats,
                threads: std::sync::Mutex::new(threads),
                control_socket,
                worker_sockets,
                local_addr,
                backend,
            },
            upcall_rx,
        ))
    }

    /// The media port's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The workers' sockets, in worker order.
    pub fn worker_sockets(&self) -> &[Socket] {
        &self.worker_sockets
    }

    /// The I/O backend the workers run.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Sends a command to every worker, with the state their replicas of what it
    /// creates share (made here, once).
    pub fn command(&self, cmd: Command) {
        let shared = SessionShared::for_command(&cmd);
        for tx in &self.commands {
            // A worker only goes away at shutdown; nothing to do then.
            let _ = tx.send((cmd.clone(), shared.clone()));
        }
    }

    /// Sends a control datagram (STUN response, DTLS record) from the media port.
    pub fn send_control(&self, data: &[u8], dest: SocketAddr) {
        if let Err(e) = self.control_socket.send_to(data, &dest.into()) {
            tracing::debug!(%dest, error = %e, "control datagram not sent");
        }
    }

    /// Counters summed over all workers.
    pub fn stats(&self) -> LocalStats {
        stats::sum(self.stats.iter().map(|s| &**s))
    }

    /// Stops the workers and waits for them.
    pub fn shutdown(&self) {
        self.command(Command::Shutdown);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// The table queues what it forwards straight into the backend's send batch.
impl<S: BatchSend> TransmitSink for S {
    fn next_buffer(&mut self) -> &mut [u8] {
        BatchSend::next_buffer(self)
    }

    fn commit(&mut self, len: usize, dest: SocketAddr) {
        BatchSend::commit(self, len, dest);
    }
}

struct Worker {
    table: ForwardingTable,
    /// NACKs other workers hand to this one (it receives the publisher's media).
    inbox: Receiver<NackHandoff>,
    /// Every worker's inbox, by worker index.
    inboxes: Arc<[Sender<NackHandoff>]>,
    commands: Receiver<(Command, SessionShared)>,
    upcalls: Sender<Upcall>,
    stats: Arc<WorkerStats>,
}

impl Worker {
    fn run(mut self, socket: Socket, backend: Backend) {
        if backend == Backend::IoUring {
            match uring::UringIo::new(&socket) {
                Ok(mut io) => {
                    let (rx, tx) = io.split();
                    self.forward(rx, tx);
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "io_uring setup failed on this worker; using recvmmsg/sendmmsg");
                }
            }
        }
        let mut rx = userspace::RecvBatch::new(&socket);
        let mut tx = userspace::SendBatch::new(&socket);
        self.forward(&mut rx, &mut tx);
    }

    /// The worker loop, the same for every backend.
    fn forward(&mut self, rx: &mut impl BatchRecv, tx: &mut impl BatchSend) {
        loop {
            let n = match rx.recv_batch(IDLE_WAKE) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "media socket receive failed");
                    std::thread::sleep(IDLE_WAKE);
                    0
                }
            };
            // Commands sent while the worker waited apply to the batch that woke it.
            let now = Instant::now();
            let mut running = true;
            while let Ok((cmd, shared)) = self.commands.try_recv() {
                running &= self.table.apply_shared(now, cmd, shared, tx);
            }
            if !running {
                break;
            }
            while let Ok(h) = self.inbox.try_recv() {
                self.table.handle_handoff(now, &h, tx);
            }
            for i in 0..n {
                let Some((from, buf)) = rx.datagram(i) else {
                    continue;
                };
                if self.table.handle_datagram(now, from, buf, tx) == Disposition::ToControl {
                    let up = Upcall::Datagram {
                        from,
                        data: buf.to_vec(),
                    };
                    if let Err(TrySendError::Full(_)) = self.upcalls.try_send(up) {
                        self.table.stats.drop(DropReason::ControlBusy);
                    }
                }
            }
            rx.recycle();
            if self.table.poll_timeout().is_some_and(|t| t <= now) {
                self.table.handle_timeout(now, tx);
            }
            for (worker, h) in self.table.handoffs.drain(..) {
                let sent = self
                    .inboxes
                    .get(worker as usize)
                    .is_some_and(|inbox| inbox.try_send(h).is_ok());
                if !sent {
                    self.table.stats.drop(DropReason::WorkerBusy);
                }
            }
            for e in self.table.events.drain(..) {
                if let Err(TrySendError::Full(_)) = self.upcalls.try_send(Upcall::Media(e)) {
                    self.table.stats.drop(DropReason::ControlBusy);
                }
            }
            tx.flush();
            self.table.stats.drops[DropReason::SendFailed as usize] += tx.take_failed();
            self.table.stats.drops[DropReason::Malformed as usize] += rx.take_dropped();
            self.stats.publish(&mut self.table.stats);
        }
    }
}
