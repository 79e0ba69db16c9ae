//! [`SdpError`]: what is wrong with an SDP, and where. Every parser and check of
//! this module reports through it; the messages are meant for the HTTP client.

/// What is wrong with an SDP, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("the SDP is {len} bytes long, more than the {max} accepted")]
    TooLarge { len: usize, max: usize },
    #[error("the SDP has more than {max} {what}")]
    TooMany { what: &'static str, max: usize },
    #[error("the SDP is empty")]
    Empty,
    #[error("line {line_no}: {reason}")]
    BadLine { line_no: usize, reason: String },
    #[error("the SDP has no {line} line")]
    MissingLine { line: &'static str },
    #[error("the SDP has no active audio or video m-line")]
    NoMedia,
    #[error("m-line {m_line} (counting from 0) has no a={attr}")]
    MissingAttribute { attr: &'static str, m_line: usize },
    #[error("a=mid:{mid} is used by more than one m-line")]
    DuplicateMid { mid: String },
    #[error(
        "m-line {mid} uses protocol {protocol}; WebRTC media needs UDP/TLS/RTP/SAVPF \
         (or UDP/TLS/RTP/SAVP)"
    )]
    UnsupportedProtocol { mid: String, protocol: String },
    #[error(
        "m-line {mid} is not in the a=group:BUNDLE group \
         (this server carries all media on one transport)"
    )]
    NotBundled { mid: String },
    #[error("a=group:BUNDLE names mid {mid}, which no m-line has")]
    UnknownBundleMid { mid: String },
    #[error("m-line {mid} lacks a=rtcp-mux (RTP and RTCP must share one port)")]
    NoRtcpMux { mid: String },
    #[error("the SDP lacks a=ice-ufrag or a=ice-pwd")]
    MissingIceCredentials,
    #[error("the SDP has no a=fingerprint")]
    MissingFingerprint,
}
