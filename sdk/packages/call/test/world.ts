/**
 * A small world for call tests: a signal bus with per-user inboxes (every device of
 * a user gets each message, with seq and sent_at), and fake media servers behind
 * one fake fetch that keep the resources the calls create.
 */
import { Client } from "@cascade/core";
import type { SignalChannel, SignalMessage, SignalTarget } from "@cascade/signal";
import { CallAgent, type Call } from "@cascade/call";
import { ANSWER, camera, FakeFetch, FakePC, flush, json } from "../../../test/fakes.js";

export class Bus {
  readonly channels: FakeChannel[] = [];
  readonly #seq = new Map<string, number>();
  /** Every message sent, in order. */
  readonly log: { from: string; to: SignalTarget; body: unknown }[] = [];

  channel(user: string): FakeChannel {
    const c = new FakeChannel(this, user);
    this.channels.push(c);
    return c;
  }

  /** Stores `body` in the inbox of `to` (each of its devices gets it, the sender's too). */
  deliver(from: string, to: SignalTarget, body: unknown, sentAt = Date.now()): void {
    this.log.push({ from, to, body });
    if (!("user" in to)) return;
    const seq = (this.#seq.get(to.user) ?? 0) + 1;
    this.#seq.set(to.user, seq);
    const m: SignalMessage = { from, room: null, body: JSON.parse(JSON.stringify(body)), seq, sentAt, id: `m${seq}` };
    for (const c of this.channels.filter((x) => x.user === to.user && !x.closed)) setImmediate(() => c.receive(m));
  }

  /** The call messages of a type sent so far. */
  sent(type: string): { from: string; to: SignalTarget; body: Record<string, unknown> }[] {
    return this.log.filter((l) => (l.body as { type?: string }).type === type) as { from: string; to: SignalTarget; body: Record<string, unknown> }[];
  }
}

export class FakeChannel implements SignalChannel {
  readonly #handlers = new Set<(m: SignalMessage) => void>();
  closed = false;
  constructor(
    readonly bus: Bus,
    readonly user: string,
  ) {}
  async send(to: SignalTarget, body: unknown): Promise<void> {
    this.bus.deliver(this.user, to, body);
  }
  onMessage(h: (m: SignalMessage) => void): () => void {
    this.#handlers.add(h);
    return () => this.#handlers.delete(h);
  }
  receive(m: SignalMessage): void {
    for (const h of this.#handlers) h(m);
  }
  close(): void {
    this.closed = true;
  }
}

export interface FakeResource {
  kind: "publish" | "subscribe";
  server: string;
  room: string;
  user: string;
  resources: string[];
}

/** Media servers (any origin) that create and delete resources. */
export class Media {
  readonly f = new FakeFetch();
  readonly live = new Map<string, FakeResource>();
  readonly deleted: string[] = [];
  #n = 0;

  constructor() {
    this.f.on("POST", "http://", (r) => {
      const u = new URL(r.url);
      const m = /^\/rtc\/v1\/rooms\/([^/]+)\/(publish|subscribe)$/.exec(u.pathname);
      if (!m) return json(404, { code: "not_found", message: r.url });
      const [user = "", room = ""] = (r.headers.get("Authorization") ?? "").replace("Bearer ", "").split("@");
      if (room !== decodeURIComponent(m[1] ?? "")) return json(403, { code: "token_wrong_room", message: "room" });
      const url = `${u.origin}/rtc/v1/resources/r${++this.#n}`;
      this.live.set(url, { kind: m[2] as "publish" | "subscribe", server: u.origin, room, user, resources: u.searchParams.getAll("resource") });
      return new Response(ANSWER, { status: 201, headers: { Location: `/rtc/v1/resources/r${this.#n}`, ETag: '"e"' } });
    });
    this.f.on("DELETE", "http://", (r) => {
      if (!this.live.delete(r.url)) return json(404, { code: "unknown_resource", message: r.url });
      this.deleted.push(r.url);
      return new Response(null, { status: 200 });
    });
  }

  client(user: string, server: string): (room: string) => Client {
    return (room) =>
      new Client({
        server,
        room,
        token: `${user}@${room}`,
        fetch: this.f.fetch,
        RTCPeerConnection: FakePC as unknown as typeof RTCPeerConnection,
        watchNetwork: false,
      });
  }

  of(user: string): FakeResource[] {
    return [...this.live.values()].filter((r) => r.user === user);
  }
}

export const M1 = "http://m1.test";
export const M2 = "http://m2.test";

/** A device of a user: its channel and call agent, and what happened to it. */
export interface Device {
  user: string;
  channel: FakeChannel;
  agent: CallAgent;
  incoming: Call[];
}

export function world(ringTimeoutMs = 30_000) {
  const bus = new Bus();
  const media = new Media();
  const device = (user: string, server: string, deviceId?: string): Device => {
    const channel = bus.channel(user);
    const agent = new CallAgent({
      signal: channel,
      client: media.client(user, server),
      getMedia: async () => camera(),
      getDisplayMedia: async () => camera(),
      ringTimeoutMs,
      ...(deviceId ? { deviceId } : {}),
    });
    const d: Device = { user, channel, agent, incoming: [] };
    agent.addEventListener("incoming", (e) => d.incoming.push((e as CustomEvent<{ call: Call }>).detail.call));
    return d;
  };
  return { bus, media, device };
}

/** Plays ICE connecting on a call's subscription, and a remote stream arriving. */
export function connectMedia(call: Call): void {
  const pc = call.subscription?.pc as unknown as FakePC | undefined;
  if (!pc) throw new Error(`call ${call.id} has no subscription`);
  pc.setIce("connected");
  const id = call.subscription?.resource.split("/").pop() ?? "x";
  pc.addRemoteTrack("video", id);
}

export function endReason(call: Call): Promise<string> {
  return call.state === "ended" ? Promise.resolve(call.endReason ?? "") : new Promise((r) => call.addEventListener("ended", (e) => r((e as CustomEvent<{ reason: string }>).detail.reason)));
}

export { flush };
