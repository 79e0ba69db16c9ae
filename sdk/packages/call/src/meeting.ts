/**
 * A meeting: publish in a room, follow its publications (room events plus the
 * initial list), one subscription per remote publication, the active speaker.
 * @module
 */
import type { Client, Publication, RoomEvents, Subscription } from "@cascade/core";
import type { SignalChannel } from "@cascade/signal";
import type { CallAgentOptions } from "./agent.js";

/** One remote participant (one publication). */
export interface Participant {
  user: string;
  stream?: MediaStream;
  subscription?: Subscription;
}

/** Detail of the meeting's events. */
export interface ParticipantDetail {
  user: string;
  resource: string;
  stream?: MediaStream;
}

/** Options of {@link Meeting.join}. */
export interface MeetingOptions {
  client: Client;
  media?: { audio?: boolean; video?: boolean };
  getMedia?: CallAgentOptions["getMedia"];
  /** When given, the meeting joins the signal room of the same name (presence). */
  signal?: SignalChannel;
}

/**
 * A meeting in one room. Events: `participant_joined`/`participant_left`
 * (`CustomEvent<{user, resource}>`), `track` (`CustomEvent<{user, resource,
 * stream}>`), `active_speaker` (`CustomEvent<{user, resource}>`).
 */
export class Meeting extends EventTarget {
  readonly #client: Client;
  readonly #participants = new Map<string, Participant>();
  readonly #signal: SignalChannel | undefined;
  #events: RoomEvents | undefined;
  #publication: Publication | undefined;
  #localStream: MediaStream;
  #activeSpeaker: string | undefined;
  #left = false;

  private constructor(client: Client, localStream: MediaStream, signal: SignalChannel | undefined) {
    super();
    this.#client = client;
    this.#localStream = localStream;
    this.#signal = signal;
  }

  /** Publishes the local media and subscribes to every other publication of the room. */
  static async join(opts: MeetingOptions): Promise<Meeting> {
    const media = { audio: opts.media?.audio !== false, video: opts.media?.video !== false };
    const getMedia = opts.getMedia ?? ((c) => navigator.mediaDevices.getUserMedia(c));
    const stream = await getMedia(media);
    const m = new Meeting(opts.client, stream, opts.signal);
    try {
      await m.#start();
    } catch (e) {
      await m.leave();
      throw e;
    }
    return m;
  }

  async #start(): Promise<void> {
    this.#publication = await this.#client.publish(this.#localStream, { simulcast: true });
    // Events first, then the list: nothing published in between is missed.
    try {
      const events = this.#client.roomEvents();
      this.#events = events;
      let opened = 0;
      events.addEventListener("open", () => {
        // After a reconnection of the stream, what changed meanwhile comes from the list.
        if (opened++ > 0) void this.#resync().catch(() => undefined);
      });
      events.addEventListener("publication_added", (ev) => this.#added((ev as CustomEvent<{ resource: string; user: string }>).detail));
      events.addEventListener("publication_removed", (ev) => this.#removed((ev as CustomEvent<{ resource: string }>).detail.resource));
      events.addEventListener("active_speaker", (ev) => {
        const d = (ev as CustomEvent<{ resource: string; user: string }>).detail;
        if (d.resource === this.#activeSpeaker) return;
        this.#activeSpeaker = d.resource;
        this.dispatchEvent(new CustomEvent("active_speaker", { detail: { user: d.user, resource: d.resource } }));
      });
    } catch {
      // No EventSource here: only the publications present at join are seen.
    }
    for (const p of await this.#client.publications()) this.#added(p);
    if (this.#signal?.join) await this.#signal.join(this.#client.room).catch(() => undefined);
  }

  /** Brings the participants in line with the room's publications. */
  async #resync(): Promise<void> {
    const pubs = await this.#client.publications();
    const now = new Set(pubs.map((p) => p.resource));
    for (const resource of [...this.#participants.keys()]) if (!now.has(resource)) this.#removed(resource);
    for (const p of pubs) this.#added(p);
  }

  #added(p: { resource: string; user: string }): void {
    if (this.#left || p.resource === this.#publication?.resource || this.#participants.has(p.resource)) return;
    const part: Participant = { user: p.user };
    this.#participants.set(p.resource, part);
    this.dispatchEvent(new CustomEvent<ParticipantDetail>("participant_joined", { detail: { user: p.user, resource: p.resource } }));
    this.#client
      .subscribe({ resources: [p.resource] })
      .then((sub) => {
        if (this.#participants.get(p.resource) !== part) {
          void sub.stop();
          return;
        }
        part.subscription = sub;
        sub.addEventListener("track", (ev) => {
          const { stream } = (ev as CustomEvent<{ stream: MediaStream }>).detail;
          part.stream = stream;
          this.dispatchEvent(new CustomEvent<ParticipantDetail>("track", { detail: { user: p.user, resource: p.resource, stream } }));
        });
        sub.addEventListener("ended", () => this.#removed(p.resource));
      })
      .catch(() => this.#removed(p.resource));
  }

  #removed(resource: string): void {
    const part = this.#participants.get(resource);
    if (!part) return;
    this.#participants.delete(resource);
    void part.subscription?.stop().catch(() => undefined);
    this.dispatchEvent(new CustomEvent<ParticipantDetail>("participant_left", { detail: { user: part.user, resource } }));
  }

  /** Remote participants by publication resource URL. */
  get participants(): ReadonlyMap<string, Participant> {
    return this.#participants;
  }
  get localStream(): MediaStream {
    return this.#localStream;
  }
  /** Our own publication. */
  get publication(): Publication | undefined {
    return this.#publication;
  }
  /** The resource URL of the active speaker (may be our own publication). */
  get activeSpeaker(): string | undefined {
    return this.#activeSpeaker;
  }

  setMuted(kind: "audio" | "video", muted: boolean): void {
    for (const t of this.#localStream.getTracks()) if (t.kind === kind) t.enabled = !muted;
  }

  /** Asks for the layer of `resource`'s video that fits a tile of that size. */
  async preferSize(resource: string, width: number, height: number): Promise<void> {
    await this.#participants.get(resource)?.subscription?.preferSize(width, height);
  }

  /** Leaves: deletes the publication and every subscription, stops the local tracks. */
  async leave(): Promise<void> {
    if (this.#left) return;
    this.#left = true;
    this.#events?.close();
    this.#participants.clear();
    await this.#client.close();
    for (const t of this.#localStream.getTracks()) t.stop();
    if (this.#signal?.leave) await this.#signal.leave(this.#client.room).catch(() => undefined);
  }
}
