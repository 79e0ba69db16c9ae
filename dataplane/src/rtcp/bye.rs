//! Goodbye (RFC 3550 §6.6): the sources leaving and the optional reason.
//!
//! Zero-copy; malformed input gives [`RtcpError::Truncated`], never a panic. It does
//! not decide what a goodbye means for a session.

use super::{RtcpError, SsrcList};

/// Goodbye (RFC 3550 §6.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bye<'a> {
    pub ssrcs: SsrcList<'a>,
    /// The optional reason text.
    pub reason: Option<&'a [u8]>,
}

impl<'a> Bye<'a> {
    /// Reads a BYE body listing `count` sources.
    pub(super) fn parse(body: &'a [u8], count: usize) -> Result<Self, RtcpError> {
        let t = RtcpError::Truncated;
        let ssrcs = body.get(..4 * count).ok_or(t)?;
        let reason = match body.get(4 * count) {
            None => None,
            Some(&len) => {
                let start = 4 * count + 1;
                Some(body.get(start..start + usize::from(len)).ok_or(t)?)
            }
        };
        Ok(Bye {
            ssrcs: SsrcList { data: ssrcs },
            reason,
        })
    }
}
