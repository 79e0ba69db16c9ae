import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { backoffDelay, CascadeSignal, type CascadeSignalOptions, type SignalMessage } from "@cascade/signal";
import { FakeWebSocket, flush } from "../../../test/fakes.js";

// A JWT whose payload is {"sub":"alice"} (the signature is not looked at by the client).
const TOKEN = `x.${Buffer.from(JSON.stringify({ sub: "alice" })).toString("base64url")}.y`;

class MemoryStorage {
  readonly map = new Map<string, string>();
  get(k: string) {
    return this.map.get(k) ?? null;
  }
  set(k: string, v: string) {
    this.map.set(k, v);
  }
}

function opts(extra: Partial<CascadeSignalOptions> = {}): CascadeSignalOptions {
  return {
    url: "ws://sig.test/v1/connect",
    token: TOKEN,
    WebSocket: FakeWebSocket as unknown as typeof WebSocket,
    reconnect: { minMs: 100, maxMs: 1000 },
    ackDelayMs: 50,
    ...extra,
  };
}

/** Connects, playing the server's side of the handshake. */
async function connect(extra: Partial<CascadeSignalOptions> = {}, lastAcked = 0) {
  const pending = CascadeSignal.connect(opts(extra));
  await flush();
  const ws = FakeWebSocket.last();
  ws.open();
  ws.push({ type: "welcome", user: "alice", last_acked: lastAcked });
  return { s: await pending, ws };
}

/** Plays the server accepting a reconnection. */
async function reconnect(): Promise<FakeWebSocket> {
  await vi.advanceTimersByTimeAsync(1000);
  await flush();
  const ws = FakeWebSocket.last();
  ws.open();
  ws.push({ type: "welcome", user: "alice", last_acked: 0 });
  return ws;
}

const msg = (seq: number, body: unknown = { n: seq }) => ({ type: "message", seq, from: "bob", room: null, id: `b-${seq}`, body, sent_at: 1000 + seq });

beforeEach(() => {
  FakeWebSocket.instances = [];
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe("CascadeSignal", () => {
  it("says hello with the stored resume_after and the token as access_token", async () => {
    const storage = new MemoryStorage();
    storage.set("cascade.signal.seq.alice", "41");
    const { s, ws } = await connect({ storage });
    expect(ws.url).toBe(`ws://sig.test/v1/connect?access_token=${encodeURIComponent(TOKEN)}`);
    expect(ws.sent[0]).toEqual({ type: "hello", resume_after: 41 });
    expect(s.user).toBe("alice");
  });

  it("without a stored seq omits resume_after (the server resumes after the last ack)", async () => {
    const { ws } = await connect();
    expect(ws.sent[0]).toEqual({ type: "hello" });
  });

  it("delivers each seq once, stores it, and acknowledges in one batched ack", async () => {
    const storage = new MemoryStorage();
    const { s, ws } = await connect({ storage });
    const got: SignalMessage[] = [];
    s.onMessage((m) => got.push(m));
    ws.push(msg(1));
    ws.push(msg(2));
    ws.push(msg(2));
    ws.push(msg(3));
    expect(got.map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(got[0]).toEqual({ from: "bob", room: null, body: { n: 1 }, seq: 1, sentAt: 1001, id: "b-1" });
    expect(storage.get("cascade.signal.seq.alice")).toBe("3");
    expect(ws.framesOf("ack")).toEqual([]);
    await vi.advanceTimersByTimeAsync(60);
    expect(ws.framesOf("ack")).toEqual([{ type: "ack", seq: 3 }]);
  });

  it("resumes after the last processed seq on reconnect and drops what it already has", async () => {
    const { s, ws } = await connect();
    const got: number[] = [];
    s.onMessage((m) => got.push(m.seq ?? -1));
    ws.push(msg(1));
    ws.push(msg(2));
    ws.drop(1006);
    const ws2 = await reconnect();
    expect(ws2.sent[0]).toEqual({ type: "hello", resume_after: 2 });
    ws2.push(msg(2)); // at-least-once: delivered again
    ws2.push(msg(3));
    expect(got).toEqual([1, 2, 3]);
  });

  it("holds messages that come before any handler", async () => {
    const { s, ws } = await connect();
    ws.push(msg(1));
    const got: number[] = [];
    s.onMessage((m) => got.push(m.seq ?? -1));
    expect(got).toEqual([1]);
  });

  it("sends with a client id, resolves on accepted, sends again after a reconnect with the same id", async () => {
    const { s, ws } = await connect();
    let done = false;
    const sent = s.send({ user: "bob" }, { hi: 1 }).then(() => (done = true));
    const [frame] = ws.framesOf("send");
    expect(frame).toMatchObject({ type: "send", to: { user: "bob" }, body: { hi: 1 } });
    expect(typeof frame?.id).toBe("string");
    ws.drop(1006);
    // Sent while disconnected: goes after the reconnect too.
    const later = s.send({ room: "r1" }, "second");
    const ws2 = await reconnect();
    const again = ws2.framesOf("send");
    expect(again.map((f) => f.id)).toEqual([frame?.id, expect.any(String)]);
    expect(again[1]?.id).not.toBe(frame?.id);
    expect(done).toBe(false);
    ws2.push({ type: "accepted", id: frame?.id, duplicate: true });
    ws2.push({ type: "accepted", id: again[1]?.id, duplicate: false });
    await sent;
    await later;
    expect(done).toBe(true);
  });

  it("retries a rate-limited send and rejects a refused one with the server's code", async () => {
    const { s, ws } = await connect();
    const a = s.send({ user: "bob" }, 1);
    const b = s.send({ room: "nope" }, 2);
    const [fa, fb] = ws.framesOf("send");
    ws.push({ type: "error", code: "rate_limited", message: "slow down", id: fa?.id });
    ws.push({ type: "error", code: "unknown_room", message: "not a member", id: fb?.id });
    await expect(b).rejects.toMatchObject({ code: "unknown_room" });
    await vi.advanceTimersByTimeAsync(600);
    expect(ws.framesOf("send").filter((f) => f.id === fa?.id)).toHaveLength(2);
    ws.push({ type: "accepted", id: fa?.id, duplicate: false });
    await a;
  });

  it("refuses a send over the size limit, and drops the largest pending send after a 1009 close", async () => {
    const { s, ws } = await connect({ maxMessageBytes: 200 });
    await expect(s.send({ user: "bob" }, "x".repeat(300))).rejects.toMatchObject({ code: "too_large" });
    expect(ws.framesOf("send")).toEqual([]);
    const small = s.send({ user: "bob" }, "small");
    const big = s.send({ user: "bob" }, "y".repeat(120));
    ws.drop(1009, "message too big");
    await expect(big).rejects.toMatchObject({ code: "too_large" });
    const ws2 = await reconnect();
    const again = ws2.framesOf("send");
    expect(again.map((f) => f.body)).toEqual(["small"]);
    ws2.push({ type: "accepted", id: again[0]?.id, duplicate: false });
    await small;
  });

  it("reconnects with growing delays", async () => {
    const { s, ws } = await connect();
    const closes: unknown[] = [];
    s.addEventListener("close", (e) => closes.push((e as CustomEvent).detail));
    ws.drop(1011, "store failed");
    expect(closes).toEqual([{ code: 1011, reason: "store failed", reconnecting: true }]);
    expect(s.state).toBe("connecting");
    // Attempt 0 waits 50..100 ms, attempt 1 100..200 ms, attempt 2 200..400 ms.
    let count = FakeWebSocket.instances.length;
    await vi.advanceTimersByTimeAsync(101);
    await flush();
    expect(FakeWebSocket.instances.length).toBe(++count);
    FakeWebSocket.last().drop(1006);
    await vi.advanceTimersByTimeAsync(99);
    await flush();
    expect(FakeWebSocket.instances.length).toBe(count);
    await vi.advanceTimersByTimeAsync(102);
    await flush();
    expect(FakeWebSocket.instances.length).toBe(++count);
  });

  it("backoff stays between half and all of the capped exponential", () => {
    expect(backoffDelay(0, 500, 30_000, () => 0)).toBe(250);
    expect(backoffDelay(0, 500, 30_000, () => 1)).toBe(500);
    expect(backoffDelay(3, 500, 30_000, () => 1)).toBe(4000);
    expect(backoffDelay(20, 500, 30_000, () => 0)).toBe(15_000);
    expect(backoffDelay(20, 500, 30_000, () => 1)).toBe(30_000);
  });

  it("joins, leaves and reports presence", async () => {
    const { s, ws } = await connect();
    const presence: unknown[] = [];
    s.addEventListener("presence", (e) => presence.push((e as CustomEvent).detail));
    const members = s.join("room1");
    expect(ws.framesOf("join")).toEqual([{ type: "join", room: "room1" }]);
    ws.push({ type: "joined", room: "room1", members: ["alice", "bob"] });
    ws.push({ type: "presence", user: "bob", online: true });
    expect(await members).toEqual(["alice", "bob"]);
    expect(presence).toEqual([{ user: "bob", online: true }]);
    const left = s.leave("room1");
    ws.push({ type: "left", room: "room1" });
    await left;
  });

  it("pings every 20 s and drops a connection that stays silent", async () => {
    const { s, ws } = await connect();
    await vi.advanceTimersByTimeAsync(20_000);
    expect(ws.framesOf("ping")).toHaveLength(1);
    ws.push({ type: "pong" });
    await vi.advanceTimersByTimeAsync(40_000);
    expect(ws.framesOf("ping").length).toBeGreaterThanOrEqual(2);
    expect(ws.closedWith).toBeUndefined();
    await vi.advanceTimersByTimeAsync(40_000);
    expect(ws.closedWith?.code).toBe(4001);
    expect(s.state).toBe("connecting");
  });

  it("connect rejects when the first connection fails", async () => {
    const pending = CascadeSignal.connect(opts());
    await flush();
    FakeWebSocket.last().drop(1006);
    await expect(pending).rejects.toMatchObject({ code: "network" });
  });

  it("treats a refused handshake that fires only error as a close", async () => {
    const pending = CascadeSignal.connect(opts());
    await flush();
    FakeWebSocket.last().fail();
    await expect(pending).rejects.toMatchObject({ code: "network" });
    const { s } = await connect();
    FakeWebSocket.last().drop(1006);
    await vi.advanceTimersByTimeAsync(101);
    await flush();
    FakeWebSocket.last().fail();
    expect(s.state).toBe("connecting");
    const count = FakeWebSocket.instances.length;
    await vi.advanceTimersByTimeAsync(201);
    await flush();
    expect(FakeWebSocket.instances.length).toBe(count + 1);
  });

  it("ignores frames that are not JSON or not known", async () => {
    const { s, ws } = await connect();
    const got: unknown[] = [];
    s.onMessage((m) => got.push(m));
    ws.onmessage?.(Object.assign(new Event("message"), { data: "{not json" }) as MessageEvent);
    ws.push({ type: "message", seq: "x", from: "bob" });
    ws.push({ type: "wat" });
    ws.push([1, 2]);
    expect(got).toEqual([]);
  });

  it("close acknowledges, rejects pending sends and does not reconnect", async () => {
    const { s, ws } = await connect();
    s.onMessage(() => undefined);
    ws.push(msg(7));
    const pending = s.send({ user: "bob" }, 1);
    s.close();
    expect(ws.framesOf("ack")).toEqual([{ type: "ack", seq: 7 }]);
    await expect(pending).rejects.toMatchObject({ code: "closed" });
    const count = FakeWebSocket.instances.length;
    await vi.advanceTimersByTimeAsync(5000);
    expect(FakeWebSocket.instances.length).toBe(count);
    expect(s.state).toBe("closed");
  });
});
