/**
 * A subscription (WHEP): remote publications received from the media server, with
 * per-track layer preferences.
 * @module
 */
import { negotiate, Resource, type ResourceContext } from "./resource.js";

/** Options of {@link Client.subscribe}. */
export interface SubscribeOptions {
  /** Resource URLs of publications (they may name other servers: the server cascades). Default: the whole room. */
  resources?: string[];
  /**
   * Default `sfu`: one track per publication. `mcu`: one mixed audio track (without
   * the user's own voice when it publishes too) and one composed video track.
   */
  mode?: "sfu" | "mcu";
  /** The composition an MCU subscription asks for (server defaults: a 640x360 grid at 15 fps). */
  composition?: Composition;
  /** Receive audio (default true). */
  audio?: boolean;
  /** Receive video (default true). */
  video?: boolean;
}

/** The composed video of an MCU subscription. */
export interface Composition {
  /** `grid` (publish order, row-major) or `speaker` (the active speaker large). */
  layout?: "grid" | "speaker";
  width?: number;
  height?: number;
  fps?: number;
}

/** A subscriber's video preferences (PATCH JSON). */
export interface LayerPreferences {
  /** The m-line; default every video track of the subscription. */
  mid?: string;
  /** The highest simulcast layer (0 = lowest bit rate). */
  maxLayer?: number;
  maxWidth?: number;
  maxHeight?: number;
  paused?: boolean;
}

/** Detail of a `track` event. */
export interface TrackDetail {
  track: MediaStreamTrack;
  stream: MediaStream;
  /** The publication's resource URL, when the subscription can tell. */
  resource?: string;
}

/** Transceivers to offer: how many audio and video tracks may arrive. */
export interface TrackCounts {
  audio: number;
  video: number;
}

/**
 * Remote publications received from a media server.
 *
 * Events: `track` (`CustomEvent<{track, stream, resource?}>`; tracks that arrive
 * while the subscription is being made are announced just after it resolves),
 * `state`, `ended`.
 */
export class Subscription extends Resource {
  /** One per remote stream (msid), in arrival order. */
  readonly streams: MediaStream[] = [];
  readonly #url: string;
  readonly #counts: TrackCounts;
  readonly #resources: string[];
  #lastSize = "";
  /** Track events that came before {@link Client.subscribe} resolved (they fire while
   *  the answer is applied): dispatched again a task later, when listeners are on. */
  #early: TrackDetail[] | undefined = [];

  private constructor(ctx: ResourceContext, url: string, counts: TrackCounts, resources: string[]) {
    super(ctx);
    this.#url = url;
    this.#counts = counts;
    this.#resources = resources;
  }

  /** Subscribes at `url` with `counts` receive-only transceivers. @internal */
  static async create(ctx: ResourceContext, url: string, counts: TrackCounts, resources: string[]): Promise<Subscription> {
    const s = new Subscription(ctx, url, counts, resources);
    await s.#subscribe();
    setTimeout(() => {
      const early = s.#early ?? [];
      s.#early = undefined;
      for (const detail of early) s.dispatchEvent(new CustomEvent<TrackDetail>("track", { detail }));
    }, 0);
    return s;
  }

  async #subscribe(): Promise<void> {
    const pc = this.ctx.makePeerConnection();
    pc.addEventListener("track", (ev: RTCTrackEvent) => this.#onTrack(ev));
    try {
      for (const kind of ["audio", "video"] as const) {
        for (let i = 0; i < this.#counts[kind]; i++) pc.addTransceiver(kind, { direction: "recvonly" });
      }
      this.attach(pc, await negotiate(this.ctx.http, pc, this.#url));
    } catch (e) {
      pc.close();
      throw e;
    }
  }

  #onTrack(ev: RTCTrackEvent): void {
    const stream = ev.streams[0] ?? new MediaStream([ev.track]);
    let known = this.streams.find((s) => s.id === stream.id);
    if (!known) {
      known = stream;
      this.streams.push(stream);
    } else if (!known.getTracks().includes(ev.track)) {
      known.addTrack(ev.track);
    }
    const resource = this.#resourceOf(stream.id);
    const detail: TrackDetail = resource === undefined ? { track: ev.track, stream: known } : { track: ev.track, stream: known, resource };
    if (this.#early) this.#early.push(detail);
    else this.dispatchEvent(new CustomEvent<TrackDetail>("track", { detail }));
  }

  /** The server names each stream after the publication's id (the URL's last segment). */
  #resourceOf(streamId: string): string | undefined {
    const byId = this.#resources.find((r) => r.replace(/\/+$/, "").split("/").pop() === streamId);
    if (byId) return byId;
    return this.#resources.length === 1 ? this.#resources[0] : undefined;
  }

  /** Subscribes again (a new resource URL) after the server lost the subscription. */
  protected async renew(): Promise<void> {
    const old = this.pc;
    this.streams.length = 0;
    await this.#subscribe();
    old.close();
  }

  /** Sets video preferences: highest layer, largest size, or paused (PATCH, JSON). */
  async setPreferences(p: LayerPreferences): Promise<void> {
    const body: Record<string, unknown> = {};
    if (p.mid !== undefined) body.mid = p.mid;
    if (p.maxLayer !== undefined) body.max_layer = p.maxLayer;
    if (p.maxWidth !== undefined) body.max_width = Math.round(p.maxWidth);
    if (p.maxHeight !== undefined) body.max_height = Math.round(p.maxHeight);
    if (p.paused !== undefined) body.paused = p.paused;
    await this.ctx.http.request(this.resource, {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  /**
   * Asks for the layer that fits a tile of `width`×`height` CSS pixels (times the
   * device pixel ratio); a zero size pauses the video. Repeated sizes send nothing.
   */
  async preferSize(width: number, height: number, mid?: string): Promise<void> {
    const ratio = typeof devicePixelRatio === "number" && devicePixelRatio > 0 ? devicePixelRatio : 1;
    const w = Math.ceil((width * ratio) / 16) * 16;
    const h = Math.ceil((height * ratio) / 16) * 16;
    const key = `${mid ?? "*"}:${w}x${h}`;
    if (key === this.#lastSize) return;
    this.#lastSize = key;
    const base: LayerPreferences = mid === undefined ? {} : { mid };
    try {
      if (w === 0 || h === 0) await this.setPreferences({ ...base, paused: true });
      else await this.setPreferences({ ...base, paused: false, maxWidth: w, maxHeight: h });
    } catch (e) {
      this.#lastSize = "";
      throw e;
    }
  }
}
