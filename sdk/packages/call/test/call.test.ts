import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Call, CallState } from "@cascade/call";
import { FakePC } from "../../../test/fakes.js";
import { connectMedia, endReason, flush, M1, M2, world } from "./world.js";

function states(call: Call): CallState[] {
  const out: CallState[] = [];
  call.addEventListener("state", (e) => out.push((e as CustomEvent<{ state: CallState }>).detail.state));
  return out;
}

beforeEach(() => {
  FakePC.instances = [];
});
afterEach(() => {
  vi.useRealTimers();
});

/** alice on M1 calls bob on M2, up to bob's device(s) ringing. */
async function ringing(bobDevices = 1) {
  const w = world();
  const alice = w.device("alice", M1, "a1");
  const bobs = Array.from({ length: bobDevices }, (_, i) => w.device("bob", M2, `b${i + 1}`));
  const call = await alice.agent.call("bob");
  await flush();
  return { ...w, alice, bobs, call };
}

describe("a 1:1 call", () => {
  it("rings, is accepted, connects both ways across servers, and hang-up deletes every resource", async () => {
    const { bus, media, alice, bobs, call } = await ringing();
    const bob = bobs[0]!;
    const aliceStates = states(call);
    // The caller published on its server; the invite names that resource and the room.
    const [alicePub] = media.of("alice");
    expect(alicePub).toMatchObject({ kind: "publish", server: M1, room: call.room });
    const [invite] = bus.sent("invite");
    expect(invite?.body).toMatchObject({ cascade: "call", v: 1, call: call.id, device: "a1", server: M1, room: call.room, media: { audio: true, video: true } });
    const alicePubUrl = invite?.body.resource as string;
    expect(media.live.get(alicePubUrl)).toBe(alicePub);
    expect(call.state).toBe("ringing");
    expect(call.direction).toBe("outgoing");

    const incoming = bob.incoming[0]!;
    expect(incoming).toMatchObject({ id: call.id, peer: "alice", direction: "incoming", state: "ringing" });
    expect(bus.sent("ringing")).toHaveLength(1);
    expect(bob.agent.current).toBe(incoming);

    const bobStates = states(incoming);
    await incoming.accept();
    // The callee publishes on its server and subscribes there to the caller's resource (the server cascades).
    const bobRes = media.of("bob");
    expect(bobRes.map((r) => [r.kind, r.server])).toEqual(
      expect.arrayContaining([
        ["publish", M2],
        ["subscribe", M2],
      ]),
    );
    expect(bobRes.find((r) => r.kind === "subscribe")?.resources).toEqual([alicePubUrl]);
    const [accept] = bus.sent("accept");
    expect(accept?.body.resource).toBe(incoming.publication?.resource);
    expect(bus.sent("answered")).toEqual([expect.objectContaining({ from: "bob", to: { user: "bob" } })]);

    await flush();
    // The caller subscribes to the callee's publication from the accept.
    const aliceSub = media.of("alice").find((r) => r.kind === "subscribe");
    expect(aliceSub?.resources).toEqual([incoming.publication?.resource]);
    expect(call.state).toBe("connecting");

    const remote = new Promise((r) => call.addEventListener("remotestream", r));
    connectMedia(call);
    connectMedia(incoming);
    await remote;
    expect(call.state).toBe("active");
    expect(incoming.state).toBe("active");
    expect(call.remoteStream).toBeDefined();
    expect(call.startedAt).toBeTypeOf("number");
    expect(aliceStates).toEqual(["connecting", "active"]);
    expect(bobStates).toEqual(["connecting", "active"]);

    // Reconnecting while the subscription's ICE is down, active again after.
    (call.subscription?.pc as unknown as FakePC).setIce("disconnected");
    expect(call.state).toBe("reconnecting");
    (call.subscription?.pc as unknown as FakePC).setIce("connected");
    expect(call.state).toBe("active");

    const localTracks = call.localStream?.getTracks() ?? [];
    const bobEnded = endReason(incoming);
    await call.hangup();
    expect(call.endReason).toBe("hangup");
    expect(media.of("alice")).toEqual([]);
    expect(localTracks.every((t) => (t as unknown as { stopped: boolean }).stopped)).toBe(true);
    expect(await bobEnded).toBe("remote_hangup");
    await flush();
    expect(media.live.size).toBe(0);
    expect(media.deleted).toHaveLength(4);
    expect(alice.agent.current).toBeUndefined();
    expect(bob.agent.current).toBeUndefined();
  });

  it("declined: the caller ends declined and deletes its publication", async () => {
    const { media, bobs, call } = await ringing();
    const incoming = bobs[0]!.incoming[0]!;
    await incoming.decline();
    expect(incoming.endReason).toBe("declined");
    expect(await endReason(call)).toBe("declined");
    await flush();
    expect(media.live.size).toBe(0);
  });

  it("cancelled: the caller hangs up while ringing and the callee stops ringing", async () => {
    const { media, bus, bobs, call } = await ringing();
    const incoming = bobs[0]!.incoming[0]!;
    await call.hangup();
    expect(call.endReason).toBe("cancelled");
    expect(bus.sent("cancel")).toHaveLength(1);
    expect(await endReason(incoming)).toBe("cancelled");
    expect(media.live.size).toBe(0);
  });

  it("busy: an invite while a call is live is answered busy", async () => {
    const { device, media, bobs } = await ringing();
    const bob = bobs[0]!;
    await bob.incoming[0]!.accept();
    await flush();
    const carol = device("carol", M1, "c1");
    const call = await carol.agent.call("bob");
    expect(await endReason(call)).toBe("busy");
    expect(bob.incoming).toHaveLength(1);
    expect(bob.agent.current).toBe(bob.incoming[0]);
    expect(media.of("carol")).toEqual([]);
  });

  it("timeout: nobody answers within the ring time", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    const { media, bobs, call } = await ringing();
    const incoming = bobs[0]!.incoming[0]!;
    await vi.advanceTimersByTimeAsync(29_000);
    expect(call.state).toBe("ringing");
    expect(incoming.state).toBe("ringing");
    await vi.advanceTimersByTimeAsync(1_500);
    expect(await endReason(call)).toBe("timeout");
    expect(await endReason(incoming)).toBe("timeout");
    await flush();
    expect(media.live.size).toBe(0);
  });

  it("connect timeout: an accepted call whose media never connects ends failed and deletes everything", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    const { media, bobs, call } = await ringing();
    const incoming = bobs[0]!.incoming[0]!;
    await incoming.accept();
    await flush();
    expect([call.state, incoming.state]).toEqual(["connecting", "connecting"]);
    await vi.advanceTimersByTimeAsync(19_000);
    expect([call.state, incoming.state]).toEqual(["connecting", "connecting"]);
    await vi.advanceTimersByTimeAsync(2_000);
    const reasons = [await endReason(call), await endReason(incoming)];
    expect(reasons).toContain("failed");
    for (const r of reasons) expect(["failed", "remote_hangup"]).toContain(r);
    await flush();
    expect(media.live.size).toBe(0);
  });

  it("a call that connects in time is not ended by the connect timeout", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
    const { bobs, call } = await ringing();
    const incoming = bobs[0]!.incoming[0]!;
    await incoming.accept();
    await flush();
    connectMedia(call);
    connectMedia(incoming);
    await vi.advanceTimersByTimeAsync(60_000);
    expect([call.state, incoming.state]).toEqual(["active", "active"]);
  });

  it("two devices: the first accept wins, the other device stops ringing", async () => {
    const { media, bus, bobs, call } = await ringing(2);
    const [b1, b2] = bobs;
    const c1 = b1!.incoming[0]!;
    const c2 = b2!.incoming[0]!;
    expect(c1.id).toBe(c2.id);
    await c1.accept();
    expect(await endReason(c2)).toBe("answered_elsewhere");
    await flush();
    const cancel = bus.sent("cancel");
    expect(cancel.map((c) => c.body.accepted_device)).toEqual(["b1"]);
    expect(c1.state).toBe("connecting");
    expect(media.of("alice").find((r) => r.kind === "subscribe")?.resources).toEqual([c1.publication?.resource]);
    expect(call.state).toBe("connecting");
  });

  it("two devices accepting at once: the later one ends and deletes what it created", async () => {
    const { media, bobs, call } = await ringing(2);
    const [b1, b2] = bobs;
    const c1 = b1!.incoming[0]!;
    const c2 = b2!.incoming[0]!;
    await Promise.all([c1.accept(), c2.accept()]);
    expect(await endReason(c2)).toBe("answered_elsewhere");
    await flush();
    expect(c1.state).toBe("connecting");
    // b2's publication and subscription are gone; b1's remain, and alice subscribes to b1's only.
    const bobLive = media.of("bob");
    expect(bobLive).toHaveLength(2);
    expect(bobLive.find((r) => r.kind === "publish")).toBe(media.live.get(c1.publication?.resource ?? ""));
    expect(media.of("alice").filter((r) => r.kind === "subscribe").map((r) => r.resources)).toEqual([[c1.publication?.resource]]);
    expect(call.state).toBe("connecting");
  });

  it("ignores a stale invite replayed after a reconnect", async () => {
    const { bus, device } = world(30_000);
    const bob = device("bob", M2, "b1");
    bus.deliver(
      "alice",
      { user: "bob" },
      { cascade: "call", v: 1, type: "invite", call: "old", device: "a1", resource: `${M1}/rtc/v1/resources/x`, room: "call-old", server: M1 },
      Date.now() - 31_000,
    );
    await flush();
    expect(bob.incoming).toEqual([]);
    expect(bus.sent("busy")).toEqual([]);
    expect(bus.sent("ringing")).toEqual([]);
  });

  it("ignores messages of other calls, other applications' messages and forged senders", async () => {
    const { bus, bobs, call } = await ringing();
    const incoming = bobs[0]!.incoming[0]!;
    bus.deliver("alice", { user: "bob" }, { cascade: "call", v: 1, type: "cancel", call: "another", device: "a1" });
    bus.deliver("alice", { user: "bob" }, { chat: "hello" });
    bus.deliver("mallory", { user: "bob" }, { cascade: "call", v: 1, type: "cancel", call: call.id, device: "a1" });
    bus.deliver("mallory", { user: "alice" }, { cascade: "call", v: 1, type: "accept", call: call.id, device: "m1", resource: `${M1}/rtc/v1/resources/evil` });
    await flush();
    expect(incoming.state).toBe("ringing");
    expect(call.state).toBe("ringing");
  });

  it("a replayed invite of a known call rings once", async () => {
    const { bus, bobs } = await ringing();
    const [invite] = bus.sent("invite");
    bus.deliver("alice", { user: "bob" }, invite?.body);
    await flush();
    expect(bobs[0]!.incoming).toHaveLength(1);
  });

  it("remote hang-up by the callee ends the caller's call and deletes its resources", async () => {
    const { media, bobs, call } = await ringing();
    const incoming = bobs[0]!.incoming[0]!;
    await incoming.accept();
    await flush();
    await incoming.hangup();
    expect(incoming.endReason).toBe("hangup");
    expect(await endReason(call)).toBe("remote_hangup");
    await flush();
    expect(media.live.size).toBe(0);
  });

  it("when the caller's server lost its publication, it re-publishes and the callee follows", async () => {
    const { media, bus, bobs, call } = await ringing();
    const incoming = bobs[0]!.incoming[0]!;
    await incoming.accept();
    await flush();
    connectMedia(call);
    connectMedia(incoming);
    const before = call.publication!.resource;
    const oldSub = incoming.subscription!.resource;
    // The server lost it (restarted): the ICE restart's PATCH gets a 404.
    media.live.delete(before);
    await call.publication!.recover();
    await flush();
    const after = call.publication!.resource;
    expect(after).not.toBe(before);
    expect(bus.sent("moved").map((m) => m.body.resource)).toEqual([after]);
    expect(media.live.has(oldSub)).toBe(false);
    expect(media.live.get(incoming.subscription!.resource)?.resources).toEqual([after]);
    expect(incoming.state).toBe("reconnecting");
    connectMedia(incoming);
    expect(incoming.state).toBe("active");
    await call.hangup();
    await flush();
    expect(media.live.size).toBe(0);
  });

  it("shares the screen instead of the camera and back", async () => {
    const { bobs, call } = await ringing();
    await bobs[0]!.incoming[0]!.accept();
    await flush();
    const camera = call.localStream?.getVideoTracks()[0];
    await call.shareScreen(true);
    expect(call.screenSharing).toBe(true);
    const sender = (call.publication?.pc as unknown as FakePC).transceivers.find((t) => t.kind === "video")?.sender;
    expect(sender?.track).not.toBe(camera);
    await call.shareScreen(false);
    expect(sender?.track).toBe(camera);
    call.setMuted("audio", true);
    expect(call.localStream?.getAudioTracks()[0]?.enabled).toBe(false);
  });
});
