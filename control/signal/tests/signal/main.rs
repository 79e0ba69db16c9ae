//! `cascade signal` over real sockets: real WebSocket clients against a server
//! started in-process on 127.0.0.1:0 with a temporary store file.

mod bad_input;
mod common;
mod delivery;
mod rooms;
