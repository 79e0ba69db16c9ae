/**
 * The client of `cascade signal`: hello with `resume_after`, sends with client ids
 * (sent again after a reconnect until accepted; the server dedups them), batched
 * acknowledgements, dedup by `seq`, reconnection with backoff and jitter, pings.
 * @module
 */
import { backoffDelay } from "./backoff.js";
import type { SignalChannel, SignalMessage, SignalTarget } from "./channel.js";
import { parseServerFrame, type ClientFrame, type ServerFrame } from "./frames.js";

/** Where the last processed `seq` is kept between page loads (e.g. `localStorage`). */
export interface SeqStorage {
  get(k: string): string | null;
  set(k: string, v: string): void;
}

/** Options of {@link CascadeSignal.connect}. */
export interface CascadeSignalOptions {
  /** `ws(s)://host:port/v1/connect`. */
  url: string;
  /** A token, or a function giving a fresh one (called for every connection). */
  token: string | (() => string | Promise<string>);
  /** Keeps the last processed `seq`, so a reload resumes where it stopped. */
  storage?: SeqStorage;
  /** Injectable for tests. */
  WebSocket?: typeof WebSocket;
  /** Reconnection delays (default 500 ms to 30 s). */
  reconnect?: { minMs?: number; maxMs?: number };
  /** Interval of pings (default 20 s); the connection is dropped after two silent intervals. */
  pingMs?: number;
  /** How long acknowledgements are gathered before one `ack` goes (default 250 ms). */
  ackDelayMs?: number;
  /** The server's `--max-message-bytes` (default 65536): larger sends are refused here. */
  maxMessageBytes?: number;
}

/** The connection's state, in `state` events. */
export type SignalState = "connecting" | "open" | "closed";

/** A frame the server refused, or a closed channel. */
export class SignalError extends Error {
  /** The server's `error` code (`unknown_room`, `bad_frame`, ...), or `closed`, `network`. */
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = "SignalError";
    this.code = code;
  }
}

/** Detail of a `presence` event. */
export interface PresenceDetail {
  user: string;
  online: boolean;
}

/** Detail of a `close` event. */
export interface CloseDetail {
  code: number;
  reason: string;
  /** Whether the client connects again. */
  reconnecting: boolean;
}

interface PendingSend {
  frame: ClientFrame & { type: "send" };
  resolve: () => void;
  reject: (e: Error) => void;
}

interface PendingRoom {
  frame: ClientFrame & { type: "join" | "leave" };
  resolve: (members: string[]) => void;
  reject: (e: Error) => void;
}

/** Server `error` codes after which the same send is retried. */
const RETRIED = new Set(["rate_limited", "unavailable"]);
const OPEN = 1;

/** The `sub` claim of a JWT, for the storage key; `undefined` for anything else. */
function tokenSubject(token: string): string | undefined {
  const part = token.split(".")[1];
  if (!part) return undefined;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
    const sub = (JSON.parse(json) as { sub?: unknown }).sub;
    return typeof sub === "string" ? sub : undefined;
  } catch {
    return undefined;
  }
}

function byteLength(frame: unknown): number {
  return new TextEncoder().encode(JSON.stringify(frame)).length;
}

function randomId(): string {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID().replace(/-/g, "").slice(0, 16);
  return Math.random().toString(36).slice(2, 12) + Date.now().toString(36);
}

/**
 * Client of `cascade signal`. Events: `open`, `close` (`CustomEvent<{code, reason,
 * reconnecting}>`), `presence` (`CustomEvent<{user, online}>`), `state`
 * (`CustomEvent<{state}>`).
 */
export class CascadeSignal extends EventTarget implements SignalChannel {
  #user = "";
  readonly #opts: CascadeSignalOptions;
  readonly #WS: typeof WebSocket;
  #ws: WebSocket | undefined;
  #state: SignalState = "connecting";
  #closed = false;
  #attempt = 0;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #ackTimer: ReturnType<typeof setTimeout> | undefined;
  #lastHeard = 0;
  /** The last processed `seq`; undefined: none known (the server resumes after its last ack). */
  #processed: number | undefined;
  #acked = 0;
  #storageKey = "cascade.signal.seq";
  readonly #handlers = new Set<(m: SignalMessage) => void>();
  /** Messages that came before any handler: delivered to the first one. */
  #held: SignalMessage[] = [];
  readonly #sends = new Map<string, PendingSend>();
  readonly #rooms: PendingRoom[] = [];
  readonly #idPrefix = randomId();
  #counter = 0;
  #firstWelcome: { resolve: () => void; reject: (e: Error) => void } | undefined;

  private constructor(opts: CascadeSignalOptions) {
    super();
    this.#opts = opts;
    const WS = opts.WebSocket ?? (globalThis as { WebSocket?: typeof WebSocket }).WebSocket;
    if (!WS) throw new SignalError("unsupported", "this environment has no WebSocket");
    this.#WS = WS;
  }

  /** Connects; resolves after the server's `welcome`, rejects when the first connection fails. */
  static async connect(opts: CascadeSignalOptions): Promise<CascadeSignal> {
    const s = new CascadeSignal(opts);
    await new Promise<void>((resolve, reject) => {
      s.#firstWelcome = { resolve, reject };
      void s.#open();
    });
    return s;
  }

  /** The user of the token (from the server's `welcome`). */
  get user(): string {
    return this.#user;
  }
  get state(): SignalState {
    return this.#state;
  }
  /** The last `seq` processed (handed to the handlers). */
  get lastSeq(): number | undefined {
    return this.#processed;
  }

  #setState(s: SignalState): void {
    if (s === this.#state) return;
    this.#state = s;
    this.dispatchEvent(new CustomEvent("state", { detail: { state: s } }));
  }

  async #open(): Promise<void> {
    this.#setState("connecting");
    let token: string;
    try {
      const t = this.#opts.token;
      token = typeof t === "function" ? await t() : t;
    } catch (e) {
      this.#onClose(0, `token: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    if (this.#closed) return;
    const sub = tokenSubject(token);
    if (sub !== undefined) this.#storageKey = `cascade.signal.seq.${sub}`;
    if (this.#processed === undefined && this.#opts.storage) {
      const v = Number(this.#opts.storage.get(this.#storageKey));
      if (Number.isInteger(v) && v > 0) this.#processed = v;
    }
    const sep = this.#opts.url.includes("?") ? "&" : "?";
    let ws: WebSocket;
    try {
      ws = new this.#WS(`${this.#opts.url}${sep}access_token=${encodeURIComponent(token)}`);
    } catch (e) {
      this.#onClose(0, e instanceof Error ? e.message : String(e));
      return;
    }
    this.#ws = ws;
    ws.onopen = () => {
      const hello: ClientFrame = this.#processed === undefined ? { type: "hello" } : { type: "hello", resume_after: this.#processed };
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (ws !== this.#ws) return;
      this.#lastHeard = Date.now();
      const f = parseServerFrame(ev.data);
      if (f) this.#onFrame(f);
    };
    ws.onclose = (ev: CloseEvent) => {
      if (ws === this.#ws) this.#onClose(ev.code, ev.reason);
    };
    ws.onerror = () => {
      // A refused handshake (401) may fire only `error`, no `close` (Node's WebSocket).
      if (ws === this.#ws && ws.readyState !== OPEN) this.#onClose(1006, "connection failed");
    };
  }

  #write(f: ClientFrame): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== OPEN || this.#state !== "open") return false;
    ws.send(JSON.stringify(f));
    return true;
  }

  #onFrame(f: ServerFrame): void {
    switch (f.type) {
      case "welcome": {
        this.#user = f.user;
        this.#acked = f.last_acked;
        this.#attempt = 0;
        this.#setState("open");
        this.#startPings();
        // Everything not yet confirmed goes again, in order: the server dedups sends by id.
        for (const p of this.#sends.values()) this.#write(p.frame);
        for (const r of this.#rooms) this.#write(r.frame);
        this.dispatchEvent(new Event("open"));
        this.#firstWelcome?.resolve();
        this.#firstWelcome = undefined;
        this.#flushAck();
        break;
      }
      case "accepted": {
        const p = this.#sends.get(f.id);
        if (p) {
          this.#sends.delete(f.id);
          p.resolve();
        }
        break;
      }
      case "message":
        this.#onMessage({ from: f.from, room: f.room, body: f.body, seq: f.seq, sentAt: f.sent_at, id: f.id });
        break;
      case "joined":
      case "left": {
        const i = this.#rooms.findIndex((r) => r.frame.room === f.room && r.frame.type === (f.type === "joined" ? "join" : "leave"));
        if (i >= 0) {
          const [r] = this.#rooms.splice(i, 1);
          r?.resolve(f.type === "joined" ? f.members : []);
        }
        break;
      }
      case "presence":
        this.dispatchEvent(new CustomEvent<PresenceDetail>("presence", { detail: { user: f.user, online: f.online } }));
        break;
      case "pong":
        break;
      case "error":
        this.#onError(f);
        break;
    }
  }

  #onError(f: ServerFrame & { type: "error" }): void {
    if (f.id !== undefined) {
      const p = this.#sends.get(f.id);
      if (!p) return;
      if (RETRIED.has(f.code)) {
        // Not stored: the same id goes again a little later.
        setTimeout(() => this.#write(p.frame), 200 + Math.random() * 300);
      } else {
        this.#sends.delete(f.id);
        p.reject(new SignalError(f.code, f.message));
      }
      return;
    }
    // A join or leave the server refused (the only other frames that wait for an answer).
    const r = this.#rooms.shift();
    if (r && !RETRIED.has(f.code)) r.reject(new SignalError(f.code, f.message));
    else if (r) {
      this.#rooms.unshift(r);
      setTimeout(() => this.#write(r.frame), 200 + Math.random() * 300);
    }
  }

  #onMessage(m: SignalMessage): void {
    const seq = m.seq ?? 0;
    const upTo = Math.max(this.#processed ?? 0, ...this.#held.map((h) => h.seq ?? 0));
    if (seq <= upTo) {
      // Already processed (delivered again after a reconnect): acknowledge only.
      this.#scheduleAck();
      return;
    }
    if (this.#handlers.size === 0) {
      this.#held.push(m);
      return;
    }
    this.#deliver(m);
  }

  #deliver(m: SignalMessage): void {
    for (const h of [...this.#handlers]) {
      try {
        h(m);
      } catch (e) {
        // One handler's bug must not stop the others, nor the acknowledgement.
        queueMicrotask(() => {
          throw e;
        });
      }
    }
    if (m.seq !== undefined) {
      this.#processed = Math.max(this.#processed ?? 0, m.seq);
      this.#opts.storage?.set(this.#storageKey, String(this.#processed));
      this.#scheduleAck();
    }
  }

  #scheduleAck(): void {
    if (this.#ackTimer !== undefined) return;
    this.#ackTimer = setTimeout(() => {
      this.#ackTimer = undefined;
      this.#flushAck();
    }, this.#opts.ackDelayMs ?? 250);
  }

  #flushAck(): void {
    const seq = this.#processed ?? 0;
    if (seq > this.#acked && this.#write({ type: "ack", seq })) this.#acked = seq;
  }

  #startPings(): void {
    clearInterval(this.#pingTimer);
    const every = this.#opts.pingMs ?? 20_000;
    this.#lastHeard = Date.now();
    this.#pingTimer = setInterval(() => {
      if (Date.now() - this.#lastHeard > 2 * every + 1000) {
        // Nothing heard, not even a pong: the connection is dead without knowing it.
        this.#ws?.close(4001, "no answer to pings");
        const ws = this.#ws;
        if (ws) this.#onClose(4001, "no answer to pings");
        return;
      }
      this.#write({ type: "ping" });
    }, every);
  }

  #onClose(code: number, reason: string): void {
    clearInterval(this.#pingTimer);
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    const ws = this.#ws;
    this.#ws = undefined;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    }
    if (this.#firstWelcome) {
      // The very first connection failed: tell the caller instead of retrying.
      this.#closed = true;
      this.#setState("closed");
      this.#firstWelcome.reject(new SignalError("network", `cannot connect to ${this.#opts.url} (close ${code}${reason ? `: ${reason}` : ""})`));
      this.#firstWelcome = undefined;
      return;
    }
    if (code === 1009) {
      // The server closed for a frame over its size: the largest pending send, which
      // would close the next connection too, is dropped.
      let largest: PendingSend | undefined;
      for (const p of this.#sends.values()) if (!largest || byteLength(p.frame) > byteLength(largest.frame)) largest = p;
      if (largest) {
        this.#sends.delete(largest.frame.id);
        largest.reject(new SignalError("too_large", "the server refused the message for its size"));
      }
    }
    const reconnecting = !this.#closed;
    this.dispatchEvent(new CustomEvent<CloseDetail>("close", { detail: { code, reason, reconnecting } }));
    if (!reconnecting) {
      this.#setState("closed");
      return;
    }
    this.#setState("connecting");
    const r = this.#opts.reconnect ?? {};
    const wait = backoffDelay(this.#attempt++, r.minMs ?? 500, r.maxMs ?? 30_000);
    this.#reconnectTimer = setTimeout(() => void this.#open(), wait);
  }

  /** Stores a message for a user or a room's members; resolves once the server has
   *  it on disk (sent again after reconnects until then). */
  send(to: SignalTarget, body: unknown): Promise<void> {
    if (this.#closed) return Promise.reject(new SignalError("closed", "the signal channel is closed"));
    const id = `${this.#idPrefix}-${++this.#counter}`;
    const frame = { type: "send" as const, id, to, body };
    const max = this.#opts.maxMessageBytes ?? 65_536;
    if (byteLength(frame) > max) {
      return Promise.reject(new SignalError("too_large", `the message is over ${max} bytes`));
    }
    return new Promise<void>((resolve, reject) => {
      this.#sends.set(id, { frame, resolve, reject });
      this.#write(frame);
    });
  }

  /** Receives every new message (each `seq` once); returns the unsubscribe function. */
  onMessage(handler: (m: SignalMessage) => void): () => void {
    this.#handlers.add(handler);
    if (this.#held.length > 0) {
      const held = this.#held;
      this.#held = [];
      for (const m of held) this.#deliver(m);
    }
    return () => this.#handlers.delete(handler);
  }

  #room(frame: ClientFrame & { type: "join" | "leave" }): Promise<string[]> {
    if (this.#closed) return Promise.reject(new SignalError("closed", "the signal channel is closed"));
    return new Promise<string[]>((resolve, reject) => {
      this.#rooms.push({ frame, resolve, reject });
      this.#write(frame);
    });
  }

  /** Joins a room (stored by the server); resolves with its members. */
  join(room: string): Promise<string[]> {
    return this.#room({ type: "join", room });
  }

  async leave(room: string): Promise<void> {
    await this.#room({ type: "leave", room });
  }

  /** Closes for good: acknowledges what was processed, rejects what is pending. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
    this.#flushAck();
    const err = new SignalError("closed", "the signal channel is closed");
    for (const p of this.#sends.values()) p.reject(err);
    this.#sends.clear();
    for (const r of this.#rooms.splice(0)) r.reject(err);
    const ws = this.#ws;
    if (ws) {
      ws.close(1000, "bye");
      this.#onClose(1000, "bye");
    } else {
      this.#setState("closed");
    }
  }
}
