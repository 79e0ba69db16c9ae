//! Where control meets the data plane: the one plain-data [`command::Command`] type
//! control sends to every data-plane worker, the [`command::MediaEvent`]s the workers
//! send back, and the values they carry (session ids, SSRCs, payload types and
//! sequence numbers as their own types, SRTP keying material, the
//! RFC 7983 first-byte demultiplexer both sides classify datagrams with, and the
//! address per-address limits count a source as).
//!
//! Everything here is a value: `Clone + PartialEq + Debug`, no shared runtime state,
//! no I/O and no dependency beyond `std`, so the sans-IO control core can depend on it
//! without reaching the data plane's sockets and threads.

pub mod addr;
pub mod command;
pub mod demux;
pub mod ids;
pub mod keys;
