//! Replay protection and packet index estimation (RFC 3711 §3.3): a sliding window of
//! the indices received per SSRC, and the rollover-counter guess that turns a 16-bit
//! sequence number into a 48-bit SRTP index.
//!
//! Fixed-size, copyable state with no allocation. It does not authenticate: a window
//! is updated ([`ReplayWindow::accept`]) only after the packet verified.

use super::SrtpError;

/// Size of the replay window, for SRTP and SRTCP alike. RFC 3711 §3.3.2 asks for at
/// least 64; packets resent after a NACK (a cascade origin resends with the original
/// SSRC and index) arrive a round trip late, so the window is as wide as libwebrtc's.
const REPLAY_WINDOW: u64 = 1024;
/// 64-bit words of the replay window.
const REPLAY_WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// Sliding replay window over packet indices (RFC 3711 §3.3.2), as a ring of bits:
/// bit `index % REPLAY_WINDOW` stands for `index` while it is inside the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ReplayWindow {
    highest: Option<u64>,
    seen: [u64; REPLAY_WORDS],
}

impl ReplayWindow {
    /// The highest index accepted so far.
    pub(super) fn highest(&self) -> Option<u64> {
        self.highest
    }

    fn bit(index: u64) -> (usize, u64) {
        let i = (index % REPLAY_WINDOW) as usize;
        (i / 64, 1 << (i % 64))
    }

    fn is_seen(&self, index: u64) -> bool {
        let (w, m) = Self::bit(index);
        self.seen[w] & m != 0
    }

    fn set(&mut self, index: u64, on: bool) {
        let (w, m) = Self::bit(index);
        if on {
            self.seen[w] |= m;
        } else {
            self.seen[w] &= !m;
        }
    }

    pub(super) fn check(&self, index: u64) -> Result<(), SrtpError> {
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if index > highest {
            return Ok(());
        }
        if highest - index >= REPLAY_WINDOW || self.is_seen(index) {
            return Err(SrtpError::Replayed);
        }
        Ok(())
    }

    pub(super) fn accept(&mut self, index: u64) {
        match self.highest {
            Some(highest) if index <= highest => {
                if highest - index < REPLAY_WINDOW {
                    self.set(index, true);
                }
            }
            Some(highest) if index - highest < REPLAY_WINDOW => {
                // Indices skipped over enter the window unseen.
                for i in highest + 1..index {
                    self.set(i, false);
                }
                self.set(index, true);
                self.highest = Some(index);
            }
            _ => {
                self.seen = [0; REPLAY_WORDS];
                self.set(index, true);
                self.highest = Some(index);
            }
        }
    }
}

/// Estimates the 48-bit SRTP packet index (ROC << 16 | SEQ) of `seq` from the highest
/// index seen so far (RFC 3711 §3.3.1 and Appendix A). While the highest index is still
/// below 2^15 with ROC 0 no wrap backwards is possible, as in libsrtp. `None` when the
/// ROC would overflow 32 bits.
pub(super) fn estimate_index(highest: Option<u64>, seq: u16) -> Option<u64> {
    let Some(highest) = highest else {
        return Some(u64::from(seq));
    };
    let roc = highest >> 16;
    let s_l = (highest & 0xffff) as u16;
    let guess_roc = if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 {
            roc.saturating_sub(1)
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        roc + 1
    } else {
        roc
    };
    if guess_roc > u64::from(u32::MAX) {
        return None;
    }
    Some(guess_roc << 16 | u64::from(seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_estimation() {
        assert_eq!(estimate_index(None, 65000), Some(65000));
        // Early in ROC 0 a high sequence number is ahead, never ROC -1.
        assert_eq!(estimate_index(Some(10), 65000), Some(65000));
        // Forward wrap.
        assert_eq!(estimate_index(Some(65535), 0), Some(1 << 16));
        assert_eq!(estimate_index(Some(65000), 100), Some((1 << 16) + 100));
        // Late packet from the previous ROC.
        assert_eq!(estimate_index(Some((1 << 16) + 5), 65530), Some(65530));
        assert_eq!(
            estimate_index(Some((3 << 16) + 100), 40000),
            Some((2 << 16) + 40000)
        );
        // From the upper half, a number more than 2^15 behind is the next ROC.
        assert_eq!(
            estimate_index(Some((2 << 16) + 40000), 40001),
            Some((2 << 16) + 40001)
        );
        assert_eq!(
            estimate_index(Some((2 << 16) + 40000), 7000),
            Some((3 << 16) + 7000)
        );
        assert_eq!(
            estimate_index(Some((2 << 16) + 40000), 7232),
            Some((2 << 16) + 7232)
        );
        assert_eq!(
            estimate_index(Some((2 << 16) + 40000), 7231),
            Some((3 << 16) + 7231)
        );
        // ROC overflow.
        assert_eq!(
            estimate_index(Some((u64::from(u32::MAX) << 16) + 65535), 0),
            None
        );
    }

    #[test]
    fn replay_window() {
        let mut w = ReplayWindow::default();
        assert!(w.check(3000).is_ok());
        w.accept(3000);
        assert!(matches!(w.check(3000), Err(SrtpError::Replayed)));
        assert!(w.check(2999).is_ok());
        assert!(w.check(3001).is_ok());
        w.accept(3010);
        assert!(matches!(w.check(3000), Err(SrtpError::Replayed)));
        assert!(w.check(3005).is_ok());
        w.accept(3005);
        assert!(matches!(w.check(3005), Err(SrtpError::Replayed)));
        // Oldest index still inside the window, and the first one outside.
        assert!(w.check(3010 - 1023).is_ok());
        assert!(matches!(w.check(3010 - 1024), Err(SrtpError::Replayed)));
        // Moving forward, the slots of skipped indices are unseen again; the slot of
        // an index that left the window is reused.
        w.accept(3010 + 1000);
        assert!(matches!(w.check(3005), Err(SrtpError::Replayed)));
        assert!(w.check(3010 + 999).is_ok());
        assert!(matches!(w.check(3010), Err(SrtpError::Replayed)));
        w.accept(3010 + 1029);
        assert!(w.check(3010 + 1024).is_ok());
        assert!(w.check(3010 + 1028).is_ok());
        assert!(matches!(w.check(3010 + 1029), Err(SrtpError::Replayed)));
        assert!(matches!(w.check(3010 + 1000), Err(SrtpError::Replayed)));
        // A jump beyond the window forgets everything older.
        w.accept(9000);
        assert!(matches!(w.check(4039), Err(SrtpError::Replayed)));
        assert!(w.check(8999).is_ok());
        assert!(w.check(9000 - 1023).is_ok());
        assert!(matches!(w.check(9000), Err(SrtpError::Replayed)));
    }
}
