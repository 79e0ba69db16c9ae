/**
 * The client of one media server and room: publish, subscribe, room events, and
 * recovery from network changes (ICE restart of everything it holds).
 * @module
 */
import { CascadeError } from "./errors.js";
import { Http, trimBase, type TokenSource } from "./http.js";
import { Publication, type PublishOptions } from "./publication.js";
import type { Resource, ResourceContext } from "./resource.js";
import { RoomEvents } from "./room.js";
import { Subscription, type SubscribeOptions, type TrackCounts } from "./subscription.js";

/** Options of a {@link Client}. */
export interface ClientOptions {
  /** Media server base URL, e.g. `https://m1.example.test`. */
  server: string;
  room: string;
  token: TokenSource;
  /** Injectable for tests. */
  fetch?: typeof fetch;
  rtcConfig?: RTCConfiguration;
  /** Injectable for tests. */
  RTCPeerConnection?: typeof RTCPeerConnection;
  /** Injectable for tests; without one (and none global) there are no server-sent events. */
  EventSource?: typeof EventSource;
  /** Restart ICE on `online` and connection-change events (default true). */
  watchNetwork?: boolean;
}

/** One publication of {@link Client.publications}. */
export interface PublicationInfo {
  resource: string;
  user: string;
  tracks: { kind: string; mid: string }[];
}

/** Media server client for one room. */
export class Client {
  readonly server: string;
  readonly room: string;
  readonly #http: Http;
  readonly #ctx: ResourceContext;
  readonly #token: TokenSource;
  readonly #ES: typeof EventSource | undefined;
  readonly #resources = new Set<Resource>();
  readonly #unwatch: (() => void)[] = [];
  readonly #healing = new Set<Resource>();
  #closed = false;

  constructor(opts: ClientOptions) {
    this.server = trimBase(opts.server);
    this.room = opts.room;
    this.#token = opts.token;
    const f = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.#http = new Http(f, opts.token);
    const PC = opts.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    this.#ES = opts.EventSource ?? (globalThis as { EventSource?: typeof EventSource }).EventSource;
    this.#ctx = {
      http: this.#http,
      makePeerConnection: () => {
        if (!PC) throw new CascadeError("unsupported", "this environment has no RTCPeerConnection");
        return new PC(opts.rtcConfig ?? {});
      },
      EventSource: this.#ES,
      onTrouble: (r) => void this.#heal(r),
      onEnded: (r) => this.#resources.delete(r),
    };
    if (opts.watchNetwork !== false) this.#watchNetwork();
  }

  /**
   * Recovers a resource whose connection is in trouble: ICE restart (or re-publish),
   * retried with growing delays (1 s to 30 s) while the server cannot be reached or
   * is busy, until it works, the resource ends or the client closes.
   */
  async #heal(r: Resource): Promise<void> {
    if (this.#healing.has(r)) return;
    this.#healing.add(r);
    try {
      for (let attempt = 0; !this.#closed && r.state !== "ended"; attempt++) {
        try {
          await r.recover();
          return;
        } catch (e) {
          const retry = !(e instanceof CascadeError) || e.status === 0 || e.status === 408 || e.status === 429 || e.status >= 500;
          if (!retry) return;
          const wait = e instanceof CascadeError && e.retryAfter !== undefined ? e.retryAfter * 1000 : Math.min(30_000, 1000 * 2 ** attempt);
          await new Promise((resolve) => setTimeout(resolve, wait));
        }
      }
    } finally {
      this.#healing.delete(r);
    }
  }

  #roomUrl(): string {
    return `${this.server}/rtc/v1/rooms/${encodeURIComponent(this.room)}`;
  }

  #watchNetwork(): void {
    const onChange = () => void this.restartAll().catch(() => undefined);
    const g = globalThis as { addEventListener?: typeof addEventListener; removeEventListener?: typeof removeEventListener; navigator?: { connection?: EventTarget } };
    if (typeof g.addEventListener === "function" && typeof g.removeEventListener === "function") {
      const add = g.addEventListener.bind(globalThis);
      const remove = g.removeEventListener.bind(globalThis);
      add("online", onChange);
      this.#unwatch.push(() => remove("online", onChange));
    }
    const conn = g.navigator?.connection;
    if (conn && typeof conn.addEventListener === "function") {
      conn.addEventListener("change", onChange);
      this.#unwatch.push(() => conn.removeEventListener("change", onChange));
    }
  }

  #check(): void {
    if (this.#closed) throw new CascadeError("aborted", "the client is closed");
  }

  /** Publishes `stream` (WHIP). */
  async publish(stream: MediaStream, opts: PublishOptions = {}): Promise<Publication> {
    this.#check();
    const p = await Publication.create(this.#ctx, `${this.#roomUrl()}/publish`, stream, opts);
    return this.#keep(p);
  }

  /** Subscribes (WHEP) to the given publications, or to every publication of the room. */
  async subscribe(opts: SubscribeOptions = {}): Promise<Subscription> {
    this.#check();
    const audio = opts.audio !== false;
    const video = opts.video !== false;
    const resources = opts.resources ?? [];
    const mcu = opts.mode === "mcu";
    let counts: TrackCounts;
    if (mcu) {
      // One mixed audio and one composed video track, however many publications.
      counts = { audio: audio ? 1 : 0, video: video ? 1 : 0 };
    } else if (resources.length > 0) {
      counts = { audio: audio ? resources.length : 0, video: video ? resources.length : 0 };
    } else {
      counts = { audio: 0, video: 0 };
      for (const p of await this.publications()) {
        for (const t of p.tracks) {
          if (t.kind === "audio" && audio) counts.audio++;
          if (t.kind === "video" && video) counts.video++;
        }
      }
    }
    const q = new URLSearchParams();
    for (const r of resources) q.append("resource", r);
    if (mcu) {
      q.set("mode", "mcu");
      const c = opts.composition ?? {};
      if (c.layout) q.set("layout", c.layout);
      if (c.width) q.set("width", String(c.width));
      if (c.height) q.set("height", String(c.height));
      if (c.fps) q.set("fps", String(c.fps));
    }
    const qs = q.toString();
    const s = await Subscription.create(this.#ctx, `${this.#roomUrl()}/subscribe${qs ? `?${qs}` : ""}`, counts, resources);
    return this.#keep(s);
  }

  /** Holds `r` until it ends; a resource made while the client closed is stopped at once. */
  async #keep<R extends Resource>(r: R): Promise<R> {
    if (this.#closed) {
      await r.stop().catch(() => undefined);
      throw new CascadeError("aborted", "the client was closed meanwhile");
    }
    this.#resources.add(r);
    return r;
  }

  /** The room's publications (`GET {server}/rtc/v1/rooms/{room}`). */
  async publications(): Promise<PublicationInfo[]> {
    const resp = await this.#http.request(this.#roomUrl());
    const body = (await resp.json()) as { publications?: unknown };
    if (!Array.isArray(body.publications)) return [];
    return body.publications.flatMap((p: unknown): PublicationInfo[] => {
      if (!p || typeof p !== "object") return [];
      const o = p as { resource?: unknown; user?: unknown; tracks?: unknown };
      if (typeof o.resource !== "string") return [];
      const tracks = Array.isArray(o.tracks)
        ? o.tracks.flatMap((t: unknown) => {
            const x = t as { kind?: unknown; mid?: unknown } | null;
            return x && typeof x.kind === "string" ? [{ kind: x.kind, mid: typeof x.mid === "string" ? x.mid : "" }] : [];
          })
        : [];
      return [{ resource: o.resource, user: typeof o.user === "string" ? o.user : "", tracks }];
    });
  }

  /** Follows the room's events (server-sent events). */
  roomEvents(): RoomEvents {
    this.#check();
    if (!this.#ES) throw new CascadeError("unsupported", "this environment has no EventSource");
    return new RoomEvents(`${this.#roomUrl()}/events`, this.#token, this.#ES);
  }

  /** ICE restart of every publication and subscription; re-publishes (re-subscribes)
   *  those the server no longer knows. Called on network changes and ICE trouble. */
  async restartAll(): Promise<void> {
    const results = await Promise.allSettled([...this.#resources].map((r) => r.recover()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
  }

  /** Stops everything the client created. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const u of this.#unwatch.splice(0)) u();
    await Promise.allSettled([...this.#resources].map((r) => r.stop()));
  }
}
