//! Media quality: simulcast layers (SSRCs learnt from rtp-stream-ids, rates, peaks and
//! sizes), each subscriber's layer from its bandwidth estimate and its `PATCH`
//! preferences, bandwidth probes so an estimate can grow, and the active speaker of
//! each room from audio levels; all fed by the data plane's [`MediaEvent`]s. It creates
//! no resource and installs routes only through `routes`.

use std::time::{Duration, Instant};

use cascade_command::command::{Command, MediaEvent, MediaKind};
use cascade_command::ids::Ssrc;

use super::dto::{RoomEvent, RoomEventKind, SubscriptionPreferences};
use super::resource::{PublishedTrack, Resource, ResourceId};
use super::{Sfu, SfuOutput};
use crate::error::ApiError;
use crate::speaker::{self, AudioLevel, SpeakerConfig, SpeakerDetector};

/// Bit rate set aside for each audio track when layers are chosen.
const AUDIO_RESERVE_BPS: u64 = 50_000;
/// Share of a subscriber's estimate (after audio) its video layers may take.
const LAYER_HEADROOM: f64 = 0.85;
/// How soon after publishing a publisher's simulcast layers are expected to show.
pub const LAYERS_SHOW_WITHIN: Duration = Duration::from_secs(5);
/// A layer's peak rate loses 1/`PEAK_DECAY` of itself with every rate report (one a
/// second) that does not renew it.
const PEAK_DECAY: u64 = 8;
/// A layer that reported no bit rate for this long is not being sent.
const LAYER_STALE: Duration = Duration::from_secs(3);
/// How long one probe lasts, and the pause between probes (doubling up to the max
/// while probes fail to raise the estimate).
const PROBE_DURATION: Duration = Duration::from_millis(1000);
pub(super) const PROBE_BACKOFF_MIN: Duration = Duration::from_millis(1500);
const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(3);
/// A probe aims this much above the next layer's bit rate (the estimate after a probe
/// is 90 % of what the subscriber acknowledged).
const PROBE_HEADROOM: f64 = 1.6;

/// One simulcast layer of a published video track.
#[derive(Debug, Clone)]
pub struct SimulcastLayer {
    pub rid: String,
    /// Learnt from the stream's rtp-stream-id (or signalled with `a=ssrc-group:SIM`).
    pub ssrc: Option<u32>,
    pub rtx_ssrc: Option<u32>,
    /// Last second's bit rate, when it was measured, and the last keyframe's size.
    pub bps: u64,
    pub rate_at: Option<Instant>,
    /// The recent peak of `bps` (decaying by [`PEAK_DECAY`] a report): a layer is
    /// taken only when its peak fits, so that a dip of its rate (an encoder ramping
    /// up, a quiet scene) does not switch a subscriber up and straight back down.
    pub peak_bps: u64,
    pub width: u16,
    pub height: u16,
}

impl PublishedTrack {
    /// Every (SSRC, RTX SSRC) this track sends media with, with its rate, size and
    /// recent peak rate, layers in bit-rate order (the offer's order until rates are
    /// known).
    pub(super) fn sources(&self, now: Instant) -> Vec<(u32, Option<u32>, u64, u16, u16, u64)> {
        if self.layers.is_empty() {
            return vec![(self.ssrc, self.rtx_ssrc, 0, 0, 0, 0)];
        }
        let mut v: Vec<_> = self
            .layers
            .iter()
            .filter_map(|l| {
                let fresh = l
                    .rate_at
                    .is_none_or(|t| now.saturating_duration_since(t) < LAYER_STALE);
                fresh.then_some((l.ssrc?, l.rtx_ssrc, l.bps, l.width, l.height, l.peak_bps))
            })
            .collect();
        if v.iter().all(|l| l.2 > 0) {
            v.sort_by_key(|l| l.2);
        }
        v
    }
}

impl Sfu {
    /// Whether publication `id`, created less than [`LAYERS_SHOW_WITHIN`] before
    /// `now`, offered simulcast layers whose SSRC has not been seen yet (a relay
    /// opened now would not carry them). A layer still missing after that is taken to
    /// be one the publisher does not send.
    pub fn layers_pending(&self, id: &str, now: Instant) -> bool {
        matches!(self.resources.get(id), Some(Resource::Publication(p))
            if now.saturating_duration_since(p.since) < LAYERS_SHOW_WITHIN
                && p.tracks.iter().any(|t| t.layers.iter().any(|l| l.ssrc.is_none())))
    }

    /// The room's current active speaker, as the event that announced it: what a
    /// client joining after the election needs to highlight it.
    pub fn active_speaker(&self, room: &str) -> Option<RoomEvent> {
        let dominant = self.speakers.get(room)?.dominant()?;
        let Some(Resource::Publication(p)) = self.resources.get(dominant) else {
            return None;
        };
        Some(RoomEvent {
            room: room.to_owned(),
            kind: RoomEventKind::ActiveSpeaker {
                resource: self.resource_url(dominant),
                user: p.user.clone(),
            },
        })
    }

    /// An observation of the data plane.
    pub fn handle_media_event(&mut self, now: Instant, event: MediaEvent) {
        match event {
            MediaEvent::StreamIdentified {
                session,
                ssrc,
                mid,
                rid,
                repaired,
            } => {
                let ssrc = ssrc.0;
                let Some(Resource::Publication(p)) = self
                    .session_resource
                    .get(&session)
                    .and_then(|r| self.resources.get_mut(r))
                else {
                    return;
                };
                let rid = rid.as_str();
                let mid = mid.map(|m| m.as_str().into_owned());
                let Some(t) = p.tracks.iter_mut().find(|t| {
                    mid.as_ref().is_none_or(|m| *m == t.mid)
                        && t.layers.iter().any(|l| l.rid == rid)
                }) else {
                    return;
                };
                let Some(layer) = t.layers.iter_mut().find(|l| l.rid == rid) else {
                    return;
                };
                if repaired {
                    if layer.rtx_ssrc == Some(ssrc) {
                        return;
                    }
                    layer.rtx_ssrc = Some(ssrc);
                } else {
                    if layer.ssrc == Some(ssrc) {
                        return;
                    }
                    layer.ssrc = Some(ssrc);
                    if t.ssrc == 0 {
                        t.ssrc = ssrc;
                    }
                }
                tracing::info!(session = session.0, ssrc, rid = %rid, repaired, "simulcast stream identified");
                let connected = self
                    .sessions
                    .get(&session)
                    .is_some_and(|x| x.is_connected());
                if connected {
                    self.install_routes_for(now, session);
                }
            }
            MediaEvent::AudioLevel { session, level, .. } => {
                let Some(id) = self.session_resource.get(&session) else {
                    return;
                };
                let Some(Resource::Publication(p)) = self.resources.get(id) else {
                    return;
                };
                let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
                let detector = self
                    .speakers
                    .entry(p.room.clone())
                    .or_insert_with(|| SpeakerDetector::new(SpeakerConfig::default()));
                let sample = AudioLevel {
                    voice: false,
                    level: level.min(speaker::SILENT),
                };
                if let Some(dominant) = detector.record(id, sample, now_us) {
                    let user = match self.resources.get(&dominant) {
                        Some(Resource::Publication(d)) => d.user.clone(),
                        _ => String::new(),
                    };
                    let room = p.room.clone();
                    tracing::debug!(%room, resource = %dominant, "active speaker");
                    self.out.push_back(SfuOutput::Room(RoomEvent {
                        room,
                        kind: RoomEventKind::ActiveSpeaker {
                            resource: self.resource_url(&dominant),
                            user,
                        },
                    }));
                }
            }
            MediaEvent::StreamRate {
                session,
                ssrc,
                bps,
                width,
                height,
            } => {
                let ssrc = ssrc.0;
                // A relayed publication's session is its origin link, shared by all
                // publications relayed from that origin: look for the layer's SSRC.
                let Some((id, layer)) = self.resources.iter_mut().find_map(|(id, r)| match r {
                    Resource::Publication(p) if p.session == session => p
                        .tracks
                        .iter_mut()
                        .flat_map(|t| t.layers.iter_mut())
                        .find(|l| l.ssrc == Some(ssrc))
                        .map(|l| (id.clone(), l)),
                    _ => None,
                }) else {
                    return;
                };
                layer.bps = bps;
                layer.peak_bps = bps.max(layer.peak_bps - layer.peak_bps / PEAK_DECAY);
                layer.rate_at = Some(now);
                if width > 0 {
                    (layer.width, layer.height) = (width, height);
                }
                let subs: Vec<ResourceId> = self
                    .resources
                    .iter()
                    .filter_map(|(sid, r)| match r {
                        Resource::Subscription(s)
                            if s.tracks.iter().any(|d| d.publication == id) =>
                        {
                            Some(sid.clone())
                        }
                        _ => None,
                    })
                    .collect();
                for sid in subs {
                    self.select_layers(&sid, now, false);
                }
            }
            MediaEvent::Estimate { session, bps } => {
                let Some(id) = self.session_resource.get(&session).cloned() else {
                    return;
                };
                let Some(Resource::Subscription(s)) = self.resources.get_mut(&id) else {
                    return;
                };
                s.estimate = Some(bps);
                tracing::debug!(subscription = %id, bps, "bandwidth estimate");
                self.select_layers(&id, now, false);
            }
        }
    }

    /// `PATCH {subscription}` with a JSON body: a subscriber's preferences for its
    /// video tracks.
    pub fn set_preferences(
        &mut self,
        now: Instant,
        id: &str,
        prefs: &SubscriptionPreferences,
    ) -> Result<(), ApiError> {
        let Some(Resource::Subscription(s)) = self.resources.get_mut(id) else {
            return Err(match self.resources.get(id) {
                Some(_) => ApiError::bad_request(
                    "not_a_subscription",
                    "preferences apply to subscriptions",
                ),
                None => ApiError::unknown_resource(id),
            });
        };
        let mut matched = false;
        for d in &mut s.tracks {
            if prefs.mid.as_ref().is_none_or(|m| *m == d.mid) {
                d.prefs = prefs.track();
                matched = true;
            }
        }
        if !matched {
            return Err(ApiError::bad_request(
                "unknown_mid",
                format!("the subscription has no m-line {:?}", prefs.mid),
            ));
        }
        self.select_layers(id, now, false);
        Ok(())
    }

    /// Chooses the layer of every video track of subscription `id` from its estimate
    /// and preferences, tells the data plane what changed (or everything, with
    /// `force`), and starts a probe when a better layer may fit.
    pub(super) fn select_layers(&mut self, id: &str, now: Instant, force: bool) {
        let Some(Resource::Subscription(sub)) = self.resources.get(id) else {
            return;
        };
        let connected = self
            .sessions
            .get(&sub.session)
            .is_some_and(|x| x.is_connected());
        if !connected {
            return;
        }
        let audio = sub
            .tracks
            .iter()
            .filter(|d| {
                matches!(self.resources.get(&d.publication),
                    Some(Resource::Publication(p)) if p.tracks.get(d.track).is_some_and(|t| t.kind == MediaKind::Audio))
            })
            .count() as u64;
        let mut budget = sub
            .estimate
            .map(|e| e.saturating_sub(audio * AUDIO_RESERVE_BPS));
        let mut choices = Vec::new();
        let mut probe_for: Option<u64> = None;
        for (i, d) in sub.tracks.iter().enumerate() {
            let Some(Resource::Publication(p)) = self.resources.get(&d.publication) else {
                continue;
            };
            let Some(t) = p
                .tracks
                .get(d.track)
                .filter(|t| t.kind == MediaKind::Video && !t.layers.is_empty())
            else {
                continue;
            };
            let layers: Vec<_> = t
                .sources(now)
                .into_iter()
                .filter(|l| l.0 != 0)
                .enumerate()
                .filter(|(n, l)| {
                    d.prefs.max_layer.is_none_or(|m| *n <= usize::from(m))
                        && (l.3 == 0 || d.prefs.max_width.is_none_or(|w| l.3 <= w))
                        && (l.4 == 0 || d.prefs.max_height.is_none_or(|h| l.4 <= h))
                })
                .map(|(_, l)| l)
                .collect();
            let choice = if d.prefs.paused || layers.is_empty() {
                None
            } else {
                match budget {
                    None => layers.last().map(|l| l.0),
                    Some(b) => {
                        // Layers are sent at their rate plus bursts (keyframes): keep
                        // headroom below the estimate to take a layer, not to keep it.
                        let fit = layers.iter().rposition(|l| {
                            // A layer whose rate is not known yet does not fit; one
                            // is kept while its rate fits, taken when its peak does.
                            let (rate, share) = if Some(l.0) == d.selected {
                                (l.2, 1.0)
                            } else {
                                (l.2.max(l.5), LAYER_HEADROOM)
                            };
                            l.2 > 0 && rate as f64 <= b as f64 * share
                        });
                        let pick = match fit {
                            Some(n) => Some(n),
                            // Nothing fits: the lowest layer unless the path collapsed.
                            None if b >= layers[0].2 / 2 => Some(0),
                            None => None,
                        };
                        let next = pick.map_or(0, |n| n + 1);
                        if let Some(l) = layers.get(next) {
                            let target = (l.2 as f64 * PROBE_HEADROOM) as u64;
                            probe_for = Some(probe_for.unwrap_or(0).max(target));
                        }
                        if let Some(n) = pick {
                            budget = Some(b.saturating_sub(layers[n].2));
                        }
                        pick.map(|n| layers[n].0)
                    }
                }
            };
            if force || choice != d.selected {
                let rank =
                    |ssrc: Option<u32>| ssrc.and_then(|x| layers.iter().position(|l| l.0 == x));
                let up = match (rank(d.selected), rank(choice)) {
                    (None, Some(_)) => true,
                    (Some(old), Some(new)) => new > old,
                    _ => false,
                };
                choices.push((i, choice, up));
            }
        }
        let subscriber = sub.session;
        let estimate = sub.estimate;
        let Some(Resource::Subscription(sub)) = self.resources.get_mut(id) else {
            return;
        };
        let mut upgraded = false;
        for (i, choice, up) in choices {
            let d = &mut sub.tracks[i];
            upgraded |= up;
            d.selected = choice;
            tracing::debug!(subscription = %id, mid = %d.mid, layer = ?choice, ?estimate, "layer selected");
            self.out.push_back(SfuOutput::Command(Command::SelectLayer {
                subscriber,
                subscriber_ssrc: Ssrc(d.ssrc),
                layer: choice.map(Ssrc),
            }));
        }
        if upgraded {
            // A probe that worked: the next layer may be tried soon.
            sub.probe_backoff = PROBE_BACKOFF_MIN;
            sub.probe_next = sub.probe_next.min(now + PROBE_BACKOFF_MIN);
        }
        if let (Some(target), None) = (probe_for, sub.probe_until)
            && now >= sub.probe_next
        {
            let bps = target + audio * AUDIO_RESERVE_BPS;
            sub.probe_until = Some(now + PROBE_DURATION);
            tracing::debug!(subscription = %id, bps, "probing");
            self.out
                .push_back(SfuOutput::Command(Command::Probe { subscriber, bps }));
        }
    }

    /// Ends probes that ran their time.
    pub(super) fn end_probes(&mut self, now: Instant) {
        for r in self.resources.values_mut() {
            if let Resource::Subscription(s) = r
                && s.probe_until.is_some_and(|t| t <= now)
            {
                s.probe_until = None;
                s.probe_next = now + s.probe_backoff;
                s.probe_backoff = (s.probe_backoff * 2).min(PROBE_BACKOFF_MAX);
                self.out.push_back(SfuOutput::Command(Command::Probe {
                    subscriber: s.session,
                    bps: 0,
                }));
            }
        }
    }
}
