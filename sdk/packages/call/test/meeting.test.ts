import { beforeEach, describe, expect, it } from "vitest";
import { Client } from "@cascade/core";
import { Meeting } from "@cascade/call";
import { ANSWER, camera, FakeEventSource, FakeFetch, FakePC, flush, json } from "../../../test/fakes.js";

const S = "http://m1.test";
const ROOM = `${S}/rtc/v1/rooms/team`;
const res = (id: string) => `${S}/rtc/v1/resources/${id}`;

beforeEach(() => {
  FakePC.instances = [];
  FakeEventSource.instances = [];
});

function server(initial: { resource: string; user: string }[]) {
  const f = new FakeFetch();
  let n = 0;
  const live = new Set<string>();
  f.on("POST", `${ROOM}/publish`, () => {
    live.add(res("mine"));
    return new Response(ANSWER, { status: 201, headers: { Location: "/rtc/v1/resources/mine" } });
  });
  f.on("POST", `${ROOM}/subscribe`, () => {
    live.add(res(`s${++n}`));
    return new Response(ANSWER, { status: 201, headers: { Location: `/rtc/v1/resources/s${n}` } });
  });
  f.on("GET", ROOM, () => json(200, { room: "team", publications: [{ resource: res("mine"), user: "me", tracks: [] }, ...initial.map((p) => ({ ...p, tracks: [] }))] }));
  f.on("DELETE", `${S}/rtc/v1/resources/`, (r) => {
    live.delete(r.url);
    return new Response(null, { status: 200 });
  });
  const client = new Client({
    server: S,
    room: "team",
    token: "t",
    fetch: f.fetch,
    RTCPeerConnection: FakePC as unknown as typeof RTCPeerConnection,
    EventSource: FakeEventSource as unknown as typeof EventSource,
    watchNetwork: false,
  });
  return { f, client, live };
}

describe("a meeting", () => {
  it("subscribes once per remote publication, follows the room, highlights the speaker, and leaves cleanly", async () => {
    const listed = [{ resource: res("bob"), user: "bob" }];
    const { f, client, live } = server(listed);
    const meeting = await Meeting.join({ client, getMedia: async () => camera() });
    const events: string[] = [];
    for (const name of ["participant_joined", "participant_left", "track", "active_speaker"]) {
      meeting.addEventListener(name, (e) => events.push(`${name}:${(e as CustomEvent<{ user: string }>).detail.user}`));
    }
    await flush();
    // Own publication (simulcast) is not subscribed to; bob's is, alone.
    const subs = f.find("POST", `${ROOM}/subscribe`).map((r) => new URL(r.url).searchParams.getAll("resource"));
    expect(subs).toEqual([[res("bob")]]);
    expect(FakePC.instances[0]?.transceivers.find((t) => t.kind === "video")?.init.sendEncodings).toHaveLength(3);
    expect([...meeting.participants.keys()]).toEqual([res("bob")]);

    const es = FakeEventSource.last(`${ROOM}/events`);
    es.emit("publication_added", { type: "publication_added", resource: res("carol"), user: "carol" });
    es.emit("publication_added", { type: "publication_added", resource: res("carol"), user: "carol" });
    await flush();
    expect(f.find("POST", `${ROOM}/subscribe`)).toHaveLength(2);
    const carol = meeting.participants.get(res("carol"));
    expect(carol?.user).toBe("carol");
    (carol?.subscription?.pc as unknown as FakePC).addRemoteTrack("video", "carol");
    expect(carol?.stream).toBeDefined();

    es.emit("active_speaker", { type: "active_speaker", resource: res("carol"), user: "carol" });
    expect(meeting.activeSpeaker).toBe(res("carol"));

    const bobSub = meeting.participants.get(res("bob"))?.subscription?.resource;
    es.emit("publication_removed", { type: "publication_removed", resource: res("bob"), user: "bob" });
    await flush();
    expect(meeting.participants.has(res("bob"))).toBe(false);
    expect(live.has(bobSub ?? "")).toBe(false);
    expect(events).toEqual(["participant_joined:carol", "track:carol", "active_speaker:carol", "participant_left:bob"]);

    // The event stream reconnects: what changed meanwhile comes from the list
    // (carol left and dave came while it was down).
    es.dispatchEvent(new Event("open"));
    listed.splice(0, listed.length, { resource: res("dave"), user: "dave" });
    es.dispatchEvent(new Event("open"));
    await flush();
    expect([...meeting.participants.keys()]).toEqual([res("dave")]);
    expect(events.slice(-2)).toEqual(["participant_left:carol", "participant_joined:dave"]);

    const local = meeting.localStream.getTracks();
    await meeting.leave();
    expect(live.size).toBe(0);
    expect(es.readyState).toBe(2);
    expect(local.every((t) => (t as unknown as { stopped: boolean }).stopped)).toBe(true);
  });
});
