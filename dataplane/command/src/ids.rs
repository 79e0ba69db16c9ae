//! The numbers control and the data plane name things by, each its own type so one
//! cannot stand in for another: [`SessionId`] (one peer connection on this server),
//! [`Ssrc`] (an RTP stream), [`Pt`] (an RTP payload type) and [`SeqNo`] (an RTP
//! sequence number).
//!
//! Each is a plain `Copy` wrapper around the number it carries, printed as that
//! number. It owns no behaviour beyond conversions (and, for [`SeqNo`], the 16-bit
//! wrapping arithmetic RTP numbering needs); it must not parse or write packets.

use std::fmt;

/// Identifies one WebRTC session (one peer connection) on this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SessionId(pub u64);

/// An RTP synchronisation source (RFC 3550): one stream of RTP packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Ssrc(pub u32);

/// An RTP payload type (7 bits on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Pt(pub u8);

/// An RTP sequence number: 16 bits, wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SeqNo(pub u16);

impl SeqNo {
    /// The number `n` after this one, modulo 2^16.
    #[must_use]
    pub const fn wrapping_add(self, n: u16) -> Self {
        Self(self.0.wrapping_add(n))
    }
}

macro_rules! number {
    ($name:ident, $inner:ty) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<$inner> for $name {
            fn from(v: $inner) -> Self {
                Self(v)
            }
        }

        impl From<$name> for $inner {
            fn from(v: $name) -> Self {
                v.0
            }
        }
    };
}

number!(SessionId, u64);
number!(Ssrc, u32);
number!(Pt, u8);
number!(SeqNo, u16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_as_their_numbers() {
        assert_eq!(SessionId(42).to_string(), "42");
        assert_eq!(Ssrc(0xdead_beef).to_string(), "3735928559");
        assert_eq!(Pt(96).to_string(), "96");
        assert_eq!(SeqNo(65_535).to_string(), "65535");
    }

    #[test]
    fn convert_both_ways() {
        assert_eq!(Ssrc::from(7u32), Ssrc(7));
        assert_eq!(u32::from(Ssrc(7)), 7);
        assert_eq!(u64::from(SessionId(3)), 3);
        assert_eq!(u8::from(Pt(111)), 111);
    }

    #[test]
    fn sequence_numbers_wrap() {
        assert_eq!(SeqNo(65_535).wrapping_add(1), SeqNo(0));
        assert_eq!(SeqNo(1).wrapping_add(2), SeqNo(3));
    }
}
