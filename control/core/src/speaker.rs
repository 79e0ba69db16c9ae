//! Active speaker detection for a room, from the audio levels publishers put in their
//! RTP packets (RFC 6464 client-to-mixer audio level header extension).
//!
//! The data plane reads the extension element and hands up the loudest level per
//! period; a [`SpeakerDetector`] takes (publication, level, time) samples and decides which
//! publication is the dominant speaker, with a windowed average, a silence threshold
//! and hysteresis, and reports only changes. It is sans-IO and allocates only when it
//! first sees a publication. It does not read packets off the forwarding path itself
//! (the data plane hands levels up) and does not tell clients (the room does).

/// The `a=extmap` URI of the RFC 6464 audio level extension.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// The level RFC 6464 uses for digital silence (-127 dBov).
pub const SILENT: u8 = 127;

/// Duration of one averaging slot: each slot keeps the loudest level seen in it.
const SLOT_US: u64 = 20_000;
/// Most slots a window can span (640 ms).
const MAX_SLOTS: usize = 32;

/// One RFC 6464 audio level sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLevel {
    /// The V flag: the sender's voice activity detector heard speech.
    pub voice: bool,
    /// The level in -dBov: 0 is the loudest (0 dBov), 127 silence.
    pub level: u8,
}

/// How a [`SpeakerDetector`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeakerConfig {
    /// Span of the level average, from 20 to 640 ms (rounded to 20 ms slots). Slots in
    /// which a publication sent nothing (DTX, mute) count as silence.
    pub window_us: u64,
    /// A publication whose average is not louder than this (-dBov) never becomes
    /// dominant: -50 dBov by default.
    pub silence_level: u8,
    /// How much louder (dB) than the dominant speaker a challenger must be...
    pub margin_db: u8,
    /// ...and for how long, to take over.
    pub switch_after_us: u64,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        Self {
            window_us: 400_000,
            silence_level: 50,
            margin_db: 3,
            switch_after_us: 400_000,
        }
    }
}

/// The recent levels of one publication.
#[derive(Debug, Clone)]
struct LevelHistory<K> {
    id: K,
    /// Loudest level per slot, indexed by slot number modulo [`MAX_SLOTS`].
    slots: [u8; MAX_SLOTS],
    /// Slot number (time / [`SLOT_US`]) of the newest sample.
    newest: u64,
}

impl<K> LevelHistory<K> {
    fn new(id: K, slot: u64) -> Self {
        Self {
            id,
            slots: [SILENT; MAX_SLOTS],
            newest: slot,
        }
    }

    fn record(&mut self, slot: u64, level: u8) {
        if slot > self.newest {
            let start = (self.newest + 1).max(slot.saturating_sub(MAX_SLOTS as u64 - 1));
            for s in start..=slot {
                self.slots[(s % MAX_SLOTS as u64) as usize] = SILENT;
            }
            self.newest = slot;
        } else if self.newest - slot >= MAX_SLOTS as u64 {
            return;
        }
        let cell = &mut self.slots[(slot % MAX_SLOTS as u64) as usize];
        *cell = (*cell).min(level);
    }

    /// Average level (-dBov) over the `n` complete slots before slot `now`.
    fn average(&self, now: u64, n: usize) -> u8 {
        let mut sum = 0u32;
        for back in 1..=n as u64 {
            let level = match now.checked_sub(back) {
                Some(s) if s <= self.newest && self.newest - s < MAX_SLOTS as u64 => {
                    self.slots[(s % MAX_SLOTS as u64) as usize]
                }
                _ => SILENT,
            };
            sum += u32::from(level);
        }
        // An average of u8 values fits a u8.
        (sum / n.max(1) as u32) as u8
    }
}

/// Decides the dominant speaker of one room from its publications' audio levels.
///
/// Each publication's level is averaged over a window of complete 20 ms slots (the
/// loudest sample per slot; no sample is silence). The loudest publication above the
/// silence threshold becomes dominant at once when there is none; afterwards another
/// takes over only after being louder than the dominant one by the margin for the
/// switch time. A dominant speaker who falls silent stays dominant until someone else
/// speaks, as in conferencing clients. `K` identifies a publication (e.g. a resource id).
#[derive(Debug, Clone)]
pub struct SpeakerDetector<K> {
    config: SpeakerConfig,
    window_slots: usize,
    histories: Vec<LevelHistory<K>>,
    dominant: Option<K>,
    /// The publication currently louder than the dominant one, and since when.
    challenger: Option<(K, u64)>,
}

impl<K: Clone + Eq> SpeakerDetector<K> {
    /// A detector for a room with no publication yet.
    pub fn new(config: SpeakerConfig) -> Self {
        let window_slots = (config.window_us / SLOT_US).clamp(1, MAX_SLOTS as u64) as usize;
        Self {
            config,
            window_slots,
            histories: Vec::new(),
            dominant: None,
            challenger: None,
        }
    }

    /// The dominant speaker, if one has been chosen.
    pub fn dominant(&self) -> Option<&K> {
        self.dominant.as_ref()
    }

    /// The publication's average level (-dBov) over the window ending at `now_us`, or
    /// `None` for a publication never recorded.
    pub fn average_level(&self, id: &K, now_us: u64) -> Option<u8> {
        let h = self.histories.iter().find(|h| &h.id == id)?;
        Some(h.average(now_us / SLOT_US, self.window_slots))
    }

    /// Records publication `id`'s audio level at `now_us` (µs, any monotonic clock,
    /// the same for every call) and re-decides. Returns the new dominant speaker when it
    /// changed, `None` otherwise.
    pub fn record(&mut self, id: &K, level: AudioLevel, now_us: u64) -> Option<K> {
        let slot = now_us / SLOT_US;
        let level = level.level.min(SILENT);
        match self.histories.iter_mut().find(|h| &h.id == id) {
            Some(h) => h.record(slot, level),
            None => {
                let mut h = LevelHistory::new(id.clone(), slot);
                h.record(slot, level);
                self.histories.push(h);
            }
        }
        self.decide(now_us)
    }

    /// Forgets a publication (unpublished). Returns true when it was the dominant
    /// speaker: there is none until the next [`Self::record`] elects one (and reports it).
    pub fn remove(&mut self, id: &K) -> bool {
        self.histories.retain(|h| &h.id != id);
        if self.challenger.as_ref().is_some_and(|(c, _)| c == id) {
            self.challenger = None;
        }
        if self.dominant.as_ref() == Some(id) {
            self.dominant = None;
            return true;
        }
        false
    }

    fn decide(&mut self, now_us: u64) -> Option<K> {
        let slot = now_us / SLOT_US;
        let n = self.window_slots;
        let loudest = self
            .histories
            .iter()
            .map(|h| (h, h.average(slot, n)))
            .filter(|&(_, avg)| avg < self.config.silence_level)
            .min_by_key(|&(_, avg)| avg)
            .map(|(h, avg)| (h.id.clone(), avg));
        let Some((candidate, candidate_avg)) = loudest else {
            self.challenger = None;
            return None;
        };
        let Some(dominant) = &self.dominant else {
            self.dominant = Some(candidate.clone());
            self.challenger = None;
            return Some(candidate);
        };
        if &candidate == dominant {
            self.challenger = None;
            return None;
        }
        let dominant_avg = self
            .histories
            .iter()
            .find(|h| &h.id == dominant)
            .map_or(SILENT, |h| h.average(slot, n));
        if candidate_avg.saturating_add(self.config.margin_db) > dominant_avg {
            self.challenger = None;
            return None;
        }
        match &self.challenger {
            Some((c, since)) if *c == candidate => {
                if now_us.saturating_sub(*since) >= self.config.switch_after_us {
                    self.dominant = Some(candidate.clone());
                    self.challenger = None;
                    return Some(candidate);
                }
            }
            _ => self.challenger = Some((candidate, now_us)),
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(level: u8) -> AudioLevel {
        AudioLevel { voice: true, level }
    }

    /// Feeds 20 ms packets from `speakers` (id, level; `None` = sends nothing) from
    /// `from_ms` to `to_ms` and returns the changes reported, with their times.
    fn run(
        d: &mut SpeakerDetector<&'static str>,
        from_ms: u64,
        to_ms: u64,
        speakers: &[(&'static str, Option<u8>)],
    ) -> Vec<(u64, &'static str)> {
        let mut changes = Vec::new();
        for t in (from_ms..to_ms).step_by(20) {
            for (i, &(id, lvl)) in speakers.iter().enumerate() {
                // Publications' packets are not aligned with each other.
                let now = t * 1000 + i as u64 * 7_000;
                if let Some(l) = lvl
                    && let Some(new) = d.record(&id, level(l), now)
                {
                    changes.push((now / 1000, new));
                }
            }
        }
        changes
    }

    #[test]
    fn a_tone_wins_over_silence_and_silence_never_wins() {
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        let changes = run(
            &mut d,
            0,
            5000,
            &[("silent", Some(127)), ("tone", Some(20))],
        );
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].1, "tone");
        // As soon as the window average passes the silence threshold.
        assert!((200..500).contains(&changes[0].0), "{changes:?}");
        assert_eq!(d.dominant(), Some(&"tone"));
        // Quieter than -50 dBov is silence: a room of murmurs has no dominant speaker.
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        let changes = run(&mut d, 0, 3000, &[("a", Some(60)), ("b", Some(127))]);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(d.dominant(), None);
        assert_eq!(d.average_level(&"a", 3_000_000), Some(60));
    }

    #[test]
    fn switches_when_the_other_one_speaks() {
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        let c = run(&mut d, 0, 3000, &[("alice", Some(25)), ("bob", Some(127))]);
        assert_eq!(c.iter().map(|c| c.1).collect::<Vec<_>>(), ["alice"]);
        // Alice stops, Bob talks: Bob takes over within a second, once.
        let c = run(
            &mut d,
            3000,
            6000,
            &[("alice", Some(127)), ("bob", Some(30))],
        );
        assert_eq!(c.iter().map(|c| c.1).collect::<Vec<_>>(), ["bob"], "{c:?}");
        assert!((3300..4000).contains(&c[0].0), "{c:?}");
        // Alice talks again while Bob is still talking, louder: she takes over.
        let c = run(
            &mut d,
            6000,
            9000,
            &[("alice", Some(10)), ("bob", Some(30))],
        );
        assert_eq!(
            c.iter().map(|c| c.1).collect::<Vec<_>>(),
            ["alice"],
            "{c:?}"
        );
    }

    #[test]
    fn short_bursts_and_small_differences_do_not_switch() {
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        run(&mut d, 0, 2000, &[("alice", Some(30)), ("bob", Some(127))]);
        assert_eq!(d.dominant(), Some(&"alice"));
        // Bob coughs for 200 ms, much louder.
        let mut c = run(&mut d, 2000, 2200, &[("alice", Some(30)), ("bob", Some(5))]);
        c.extend(run(
            &mut d,
            2200,
            4000,
            &[("alice", Some(30)), ("bob", Some(127))],
        ));
        assert!(c.is_empty(), "{c:?}");
        // Bob talks, only 2 dB louder than Alice, for a long time.
        let c = run(
            &mut d,
            4000,
            8000,
            &[("alice", Some(30)), ("bob", Some(28))],
        );
        assert!(c.is_empty(), "{c:?}");
        assert_eq!(d.dominant(), Some(&"alice"));
    }

    #[test]
    fn a_publication_that_stops_sending_counts_as_silent() {
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        run(&mut d, 0, 2000, &[("alice", Some(20)), ("bob", Some(127))]);
        // Alice's client stops sending (DTX or mute); Bob speaks quietly.
        let c = run(&mut d, 2000, 4000, &[("alice", None), ("bob", Some(45))]);
        assert_eq!(c.iter().map(|c| c.1).collect::<Vec<_>>(), ["bob"], "{c:?}");
        assert_eq!(d.average_level(&"alice", 4_000_000), Some(SILENT));
    }

    #[test]
    fn removing_the_dominant_speaker_elects_another() {
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        run(&mut d, 0, 1000, &[("alice", Some(20)), ("bob", Some(40))]);
        assert_eq!(d.dominant(), Some(&"alice"));
        assert!(!d.remove(&"carol"));
        assert!(d.remove(&"alice"));
        assert_eq!(d.dominant(), None);
        assert_eq!(d.average_level(&"alice", 1_000_000), None);
        let c = run(&mut d, 1000, 1100, &[("bob", Some(40))]);
        assert_eq!(c, [(1000, "bob")]);
    }

    #[test]
    fn late_and_out_of_order_samples_are_bounded() {
        let mut d = SpeakerDetector::new(SpeakerConfig::default());
        let elected: Vec<_> = (0..50u64)
            .filter_map(|i| d.record(&1u32, level(10), 9_000_000 + i * 20_000))
            .collect();
        assert_eq!(elected, [1]);
        // A sample from far in the past changes nothing and does not panic.
        assert_eq!(d.record(&1u32, level(0), 0), None);
        assert_eq!(d.record(&2u32, level(0), 0), None);
        assert_eq!(d.dominant(), Some(&1));
        // Levels above 127 cannot come from the 7-bit field; they are clamped.
        assert_eq!(
            d.record(
                &3u32,
                AudioLevel {
                    voice: false,
                    level: 200
                },
                10_000_000
            ),
            None
        );
        let d = SpeakerDetector::<u32>::new(SpeakerConfig {
            window_us: 0,
            ..SpeakerConfig::default()
        });
        assert_eq!(d.window_slots, 1);
    }
}
