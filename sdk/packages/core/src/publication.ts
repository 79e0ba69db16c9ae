/**
 * A publication (WHIP): a local stream sent to the media server, with simulcast
 * optional, track replacement and mute, and re-publishing when the server lost it.
 * @module
 */
import { negotiate, Resource, type ResourceContext } from "./resource.js";

/** Options of {@link Client.publish}. */
export interface PublishOptions {
  /** Send video as three layers (rid `q`, `h`, `f`: quarter, half, full size). */
  simulcast?: boolean;
  /** What the video is; `screen` hints the encoder to keep detail. */
  source?: "camera" | "screen";
}

/** The simulcast layers, lowest first (the server's layer 0 is the lowest bit rate). */
export const SIMULCAST_ENCODINGS: RTCRtpEncodingParameters[] = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

/** Detail of a `republished` event: the resource URL changed. */
export interface RepublishedDetail {
  resource: string;
  previous: string;
}

/**
 * A local stream published to a media server.
 *
 * Events: `state` (`CustomEvent<{state, reason?}>`), `ended`, and `republished`
 * (`CustomEvent<{resource, previous}>`) when it was published again under a new URL.
 */
export class Publication extends Resource {
  /** The published stream. */
  readonly stream: MediaStream;
  readonly #url: string;
  readonly #opts: PublishOptions;
  #senders = new Map<"audio" | "video", RTCRtpSender>();

  private constructor(ctx: ResourceContext, url: string, stream: MediaStream, opts: PublishOptions) {
    super(ctx);
    this.#url = url;
    this.stream = stream;
    this.#opts = opts;
  }

  /** Publishes `stream` at `url` (`{server}/rtc/v1/rooms/{room}/publish`). @internal */
  static async create(ctx: ResourceContext, url: string, stream: MediaStream, opts: PublishOptions = {}): Promise<Publication> {
    const p = new Publication(ctx, url, stream, opts);
    await p.#publish();
    return p;
  }

  async #publish(): Promise<void> {
    const pc = this.ctx.makePeerConnection();
    const senders = new Map<"audio" | "video", RTCRtpSender>();
    try {
      for (const track of this.stream.getTracks()) {
        const kind = track.kind === "audio" ? "audio" : "video";
        if (kind === "video" && this.#opts.source === "screen" && "contentHint" in track) track.contentHint = "detail";
        const init: RTCRtpTransceiverInit = { direction: "sendonly", streams: [this.stream] };
        if (kind === "video" && this.#opts.simulcast) init.sendEncodings = SIMULCAST_ENCODINGS.map((e) => ({ ...e }));
        const t = pc.addTransceiver(track, init);
        if (!senders.has(kind)) senders.set(kind, t.sender);
      }
      const n = await negotiate(this.ctx.http, pc, this.#url);
      this.#senders = senders;
      this.attach(pc, n);
    } catch (e) {
      pc.close();
      throw e;
    }
  }

  /** Publishes the stream again (a new resource URL) after the server lost it. */
  protected async renew(): Promise<void> {
    const previous = this.resource;
    const old = this.pc;
    await this.#publish();
    old.close();
    this.dispatchEvent(new CustomEvent<RepublishedDetail>("republished", { detail: { resource: this.resource, previous } }));
  }

  /** Sends `track` instead of the current one of its kind (null: send nothing), no renegotiation. */
  async replaceTrack(kind: "audio" | "video", track: MediaStreamTrack | null): Promise<void> {
    const sender = this.#senders.get(kind);
    if (!sender) throw new Error(`the publication has no ${kind} track`);
    const old = sender.track;
    await sender.replaceTrack(track);
    if (old) this.stream.removeTrack(old);
    if (track) this.stream.addTrack(track);
  }

  /** Mutes (sends silence/black) or unmutes the tracks of `kind`. */
  setMuted(kind: "audio" | "video", muted: boolean): void {
    for (const t of this.stream.getTracks()) if (t.kind === kind) t.enabled = !muted;
  }
}
