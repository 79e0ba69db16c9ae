/**
 * getStats summaries: the counters an application shows or a test asserts, summed
 * over a peer connection's RTP streams.
 * @module
 */

/** A peer connection's statistics summed over its RTP streams (`Publication.stats`, `Subscription.stats`). */
export interface StatsSummary {
  bytesSent: number;
  bytesReceived: number;
  packetsLost: number;
  framesDecoded: number;
  framesEncoded: number;
  /** The largest frame width sent or received. */
  frameWidth?: number;
  frameHeight?: number;
  /** The loudest inbound audio level (0..1). */
  audioLevel?: number;
  /** Seconds, from the selected candidate pair. */
  roundTripTime?: number;
  /** Bits per second, from the selected candidate pair. */
  availableOutgoingBitrate?: number;
}

type Entry = Record<string, unknown> & { type?: string; id?: string };

function num(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) ? v : 0;
}

/** Sums a stats report's `inbound-rtp`/`outbound-rtp` and reads its nominated candidate pair. */
export function summarizeStats(report: RTCStatsReport | Map<string, Entry>): StatsSummary {
  const s: StatsSummary = { bytesSent: 0, bytesReceived: 0, packetsLost: 0, framesDecoded: 0, framesEncoded: 0 };
  const entries: Entry[] = [];
  report.forEach((v: unknown) => entries.push(v as Entry));
  const max = (a: number | undefined, b: unknown) => (typeof b === "number" ? Math.max(a ?? 0, b) : a);
  let pair: Entry | undefined;
  for (const e of entries) {
    switch (e.type) {
      case "inbound-rtp":
        s.bytesReceived += num(e.bytesReceived);
        s.packetsLost += num(e.packetsLost);
        s.framesDecoded += num(e.framesDecoded);
        s.frameWidth = max(s.frameWidth, e.frameWidth);
        s.frameHeight = max(s.frameHeight, e.frameHeight);
        if ((e.kind ?? e.mediaType) === "audio") s.audioLevel = max(s.audioLevel, e.audioLevel);
        break;
      case "outbound-rtp":
        s.bytesSent += num(e.bytesSent);
        s.framesEncoded += num(e.framesEncoded);
        s.frameWidth = max(s.frameWidth, e.frameWidth);
        s.frameHeight = max(s.frameHeight, e.frameHeight);
        break;
      case "transport":
        if (typeof e.selectedCandidatePairId === "string") {
          pair = entries.find((x) => x.id === e.selectedCandidatePairId) ?? pair;
        }
        break;
      case "candidate-pair":
        if (!pair && (e.nominated === true || e.selected === true) && e.state === "succeeded") pair = e;
        break;
    }
  }
  if (pair) {
    if (typeof pair.currentRoundTripTime === "number") s.roundTripTime = pair.currentRoundTripTime;
    if (typeof pair.availableOutgoingBitrate === "number") s.availableOutgoingBitrate = pair.availableOutgoingBitrate;
  }
  return s;
}
