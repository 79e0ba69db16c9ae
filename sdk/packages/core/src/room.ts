/**
 * A room's server-sent events: publications coming and going, the active speaker.
 * @module
 */
import { resolveToken, type TokenSource } from "./http.js";

/** Detail of the room events. */
export interface RoomEventDetail {
  resource: string;
  user: string;
}

/** The event names of {@link RoomEvents}. */
export const ROOM_EVENTS = ["publication_added", "publication_removed", "active_speaker"] as const;

/** Longest wait before the stream is opened again with a fresh token. */
const MAX_REOPEN_MS = 30_000;

/**
 * Room events (SSE `{server}/rtc/v1/rooms/{room}/events?access_token=`):
 * `publication_added`, `publication_removed`, `active_speaker`, each
 * `CustomEvent<{resource, user}>`. `EventSource` reconnects by itself; when the
 * server refuses the stream (an expired token), it is opened again with a fresh
 * token after a growing delay. Also `open` and `error` (`Event`).
 */
export class RoomEvents extends EventTarget {
  #es: EventSource | undefined;
  #closed = false;
  #retry = 1000;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** @internal */
  constructor(
    readonly url: string,
    private readonly token: TokenSource,
    private readonly ES: typeof EventSource,
  ) {
    super();
    void this.#open();
  }

  async #open(): Promise<void> {
    let token: string;
    try {
      token = await resolveToken(this.token);
    } catch {
      this.#reopenLater();
      return;
    }
    if (this.#closed) return;
    const es = new this.ES(`${this.url}?access_token=${encodeURIComponent(token)}`);
    this.#es = es;
    es.addEventListener("open", () => {
      this.#retry = 1000;
      this.dispatchEvent(new Event("open"));
    });
    es.addEventListener("error", () => {
      this.dispatchEvent(new Event("error"));
      if (es.readyState === 2 && !this.#closed) this.#reopenLater();
    });
    for (const name of ROOM_EVENTS) {
      es.addEventListener(name, (ev) => {
        let d: { resource?: unknown; user?: unknown };
        try {
          d = JSON.parse((ev as MessageEvent<string>).data) as typeof d;
        } catch {
          return;
        }
        if (typeof d.resource !== "string") return;
        const detail: RoomEventDetail = { resource: d.resource, user: typeof d.user === "string" ? d.user : "" };
        this.dispatchEvent(new CustomEvent<RoomEventDetail>(name, { detail }));
      });
    }
  }

  #reopenLater(): void {
    this.#es?.close();
    const wait = this.#retry;
    this.#retry = Math.min(this.#retry * 2, MAX_REOPEN_MS);
    this.#timer = setTimeout(() => void this.#open(), wait);
  }

  /** Stops following the room. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#es?.close();
  }
}
