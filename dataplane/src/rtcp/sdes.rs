//! Source description (RFC 3550 §6.5), framed but left unparsed: a forwarder only
//! passes its chunks on.
//!
//! It must not interpret the items (CNAME and the rest are control's business).

/// Source description, left unparsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdes<'a> {
    pub chunk_count: u8,
    pub body: &'a [u8],
}

impl<'a> Sdes<'a> {
    /// Wraps an SDES body of `chunk_count` chunks.
    pub(super) fn parse(chunk_count: u8, body: &'a [u8]) -> Self {
        Sdes { chunk_count, body }
    }
}
