//! Non-Linux stub: BPF is never available and a fast path can never exist.

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

use crate::{Counter, EbpfError, FanoutPeer, GuardConfig, GuardVerdict, Unavailable, XdpMode};

pub(crate) fn probe() -> Result<(), Unavailable> {
    Err(Unavailable::NotLinux)
}

/// Uninhabited: [`FastPath::load`] always fails, so no method can be reached.
pub(crate) enum FastPath {}

impl FastPath {
    pub(crate) fn load(_media_port: u16, _config: &GuardConfig) -> Result<Self, EbpfError> {
        Err(Unavailable::NotLinux.into())
    }

    pub(crate) fn attach_interface(
        &mut self,
        _ifname: &str,
        _config: &GuardConfig,
    ) -> Result<(), EbpfError> {
        match *self {}
    }

    pub(crate) fn attach_reuseport(
        &mut self,
        _sockets: &[BorrowedFd<'_>],
    ) -> Result<(), EbpfError> {
        match *self {}
    }

    pub(crate) fn allow(&mut self, _peer: SocketAddr, _local: SocketAddr) -> Result<(), EbpfError> {
        match *self {}
    }

    pub(crate) fn revoke(
        &mut self,
        _peer: SocketAddr,
        _local: SocketAddr,
    ) -> Result<(), EbpfError> {
        match *self {}
    }

    pub(crate) fn steer(&mut self, _peer: SocketAddr, _worker: u32) -> Result<(), EbpfError> {
        match *self {}
    }

    pub(crate) fn unsteer(&mut self, _peer: SocketAddr) -> Result<(), EbpfError> {
        match *self {}
    }

    pub(crate) fn set_fanout(
        &mut self,
        _source: SocketAddr,
        _peers: &[FanoutPeer],
        _local_subscribers: bool,
    ) -> Result<(), EbpfError> {
        match *self {}
    }

    pub(crate) fn clear_fanout(&mut self, _source: SocketAddr) -> Result<(), EbpfError> {
        match *self {}
    }

    pub(crate) fn counters(&self) -> Result<Vec<(&'static str, u64)>, EbpfError> {
        match *self {}
    }

    pub(crate) fn counter(&self, _counter: Counter) -> Result<u64, EbpfError> {
        match *self {}
    }

    pub(crate) fn judge(&self, _frame: &[u8]) -> Result<GuardVerdict, EbpfError> {
        match *self {}
    }

    pub(crate) fn xdp_mode(&self) -> Option<XdpMode> {
        match *self {}
    }
}
