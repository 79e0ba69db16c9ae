/**
 * The call agent: one per signed-in user and device. Places calls, turns invites
 * into incoming calls (answering `busy` while a call is live, ignoring stale and
 * replayed invites), and routes every call message to its call.
 * @module
 */
import { CascadeError, type Client } from "@cascade/core";
import type { SignalChannel, SignalMessage } from "@cascade/signal";
import { Call, type CallContext } from "./call.js";
import { callMessage, parseCallMessage, type CallMedia } from "./protocol.js";

/** Options of a {@link CallAgent}. */
export interface CallAgentOptions {
  signal: SignalChannel;
  /** How to reach a media server for a room (the app mints the room's token). */
  client: (room: string) => Client;
  /** Default `navigator.mediaDevices.getUserMedia`. */
  getMedia?: (c: { audio: boolean; video: boolean }) => Promise<MediaStream>;
  /** Default `navigator.mediaDevices.getDisplayMedia({video: true})`. */
  getDisplayMedia?: () => Promise<MediaStream>;
  /** How long a call rings (default 30000 ms); older invites are ignored. */
  ringTimeoutMs?: number;
  /** How long an accepted call may take to connect its media before it ends as
   *  `failed` (default 20000 ms). */
  connectTimeoutMs?: number;
  /** This device's id (default random). */
  deviceId?: string;
}

/** Detail of the `incoming` and `outgoing` events. */
export interface CallEventDetail {
  call: Call;
}

/** Ended calls remembered so their replayed messages are ignored. */
const REMEMBERED = 64;

function randomId(): string {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function defaultGetMedia(c: CallMedia): Promise<MediaStream> {
  const md = (globalThis as { navigator?: Navigator }).navigator?.mediaDevices;
  if (!md) return Promise.reject(new CascadeError("unsupported", "this environment has no mediaDevices"));
  return md.getUserMedia({ audio: c.audio, video: c.video });
}

function defaultGetDisplayMedia(): Promise<MediaStream> {
  const md = (globalThis as { navigator?: Navigator }).navigator?.mediaDevices;
  if (!md) return Promise.reject(new CascadeError("unsupported", "this environment has no mediaDevices"));
  return md.getDisplayMedia({ video: true });
}

/**
 * Places and receives 1:1 calls over a {@link SignalChannel}. Events: `incoming`
 * (`CustomEvent<{call}>`), and `outgoing` (`CustomEvent<{call}>`, as soon as a
 * call is placed, before its invite is sent). An invite while a call is live is
 * answered `busy`.
 */
export class CallAgent extends EventTarget {
  /** This device's id. */
  readonly deviceId: string;
  readonly #opts: CallAgentOptions;
  readonly #ctx: CallContext;
  readonly #calls = new Map<string, Call>();
  readonly #unsubscribe: () => void;
  #current: Call | undefined;

  constructor(opts: CallAgentOptions) {
    super();
    this.#opts = opts;
    this.deviceId = opts.deviceId ?? randomId();
    this.#ctx = {
      signal: opts.signal,
      device: this.deviceId,
      ringTimeoutMs: opts.ringTimeoutMs ?? 30_000,
      connectTimeoutMs: opts.connectTimeoutMs ?? 20_000,
      client: opts.client,
      getMedia: opts.getMedia ?? defaultGetMedia,
      getDisplayMedia: opts.getDisplayMedia ?? defaultGetDisplayMedia,
      ended: (call) => {
        if (this.#current === call) this.#current = undefined;
        this.#forgetOld();
      },
    };
    this.#unsubscribe = opts.signal.onMessage((m) => this.#onMessage(m));
  }

  /** The call that is ringing or live, if any. */
  get current(): Call | undefined {
    return this.#current;
  }

  /** Calls `user`: publishes, sends the invite; resolves once the invite is stored. */
  async call(user: string, media: { audio?: boolean; video?: boolean } = {}): Promise<Call> {
    if (this.#current) throw new CascadeError("busy", `a call is already ${this.#current.state}`);
    const id = randomId();
    const call = new Call(this.#ctx, {
      id,
      peer: user,
      direction: "outgoing",
      room: `call-${id}`,
      media: { audio: media.audio !== false, video: media.video !== false },
    });
    this.#calls.set(id, call);
    this.#current = call;
    this.dispatchEvent(new CustomEvent<CallEventDetail>("outgoing", { detail: { call } }));
    await call.start();
    return call;
  }

  #onMessage(m: SignalMessage): void {
    const msg = parseCallMessage(m.body);
    if (!msg || m.room !== null && m.room !== undefined) return;
    const self = this.#opts.signal.user;
    if (m.from === self && msg.device === this.deviceId) return; // our own echo
    if (msg.type !== "invite") {
      this.#calls.get(msg.call)?.handle(msg, m.from, self);
      return;
    }
    if (m.from === self || this.#calls.has(msg.call) || !msg.room || !msg.resource) return;
    const ring = this.#ctx.ringTimeoutMs;
    const age = m.sentAt ? Date.now() - m.sentAt : 0;
    if (age > ring) return; // stale: replayed after a reconnect, the caller gave up long ago
    if (this.#current) {
      void this.#opts.signal.send({ user: m.from }, callMessage("busy", msg.call, this.deviceId)).catch(() => undefined);
      return;
    }
    const call = new Call(this.#ctx, {
      id: msg.call,
      peer: m.from,
      direction: "incoming",
      room: msg.room,
      media: msg.media ?? { audio: true, video: true },
      invite: msg,
    });
    this.#calls.set(msg.call, call);
    this.#current = call;
    call.ring(ring - Math.max(0, age));
    this.dispatchEvent(new CustomEvent<CallEventDetail>("incoming", { detail: { call } }));
  }

  #forgetOld(): void {
    const ended = [...this.#calls.values()].filter((c) => c.state === "ended");
    for (const c of ended.slice(0, Math.max(0, ended.length - REMEMBERED))) this.#calls.delete(c.id);
  }

  /** Hangs up the current call and stops listening. */
  async close(): Promise<void> {
    this.#unsubscribe();
    await this.#current?.hangup();
  }
}
