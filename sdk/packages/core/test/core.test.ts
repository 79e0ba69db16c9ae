import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { CascadeError, Client, findServer, type Publication, type StateDetail } from "@cascade/core";
import { ANSWER, camera, FakeEventSource, FakeFetch, FakePC, flush, json, withUrl } from "../../../test/fakes.js";

const S = "http://m1.test:8080";
const PUBLISH = `${S}/rtc/v1/rooms/demo/publish`;
const SUBSCRIBE = `${S}/rtc/v1/rooms/demo/subscribe`;

let n = 0;
function created(location: string, etag = '"e1"'): Response {
  return new Response(ANSWER, { status: 201, headers: { "Content-Type": "application/sdp", Location: location, ETag: etag } });
}

function setup(tokens: string[] = ["tok"]) {
  const f = new FakeFetch();
  f.on("POST", PUBLISH, () => created(`/rtc/v1/resources/pub${++n}`));
  f.on("POST", SUBSCRIBE, () => created(`/rtc/v1/resources/sub${++n}`));
  f.on("DELETE", `${S}/rtc/v1/resources/`, () => new Response(null, { status: 200 }));
  let i = 0;
  const client = new Client({
    server: `${S}/`,
    room: "demo",
    token: () => tokens[Math.min(i++, tokens.length - 1)] ?? "",
    fetch: f.fetch,
    RTCPeerConnection: FakePC as unknown as typeof RTCPeerConnection,
    EventSource: FakeEventSource as unknown as typeof EventSource,
    watchNetwork: false,
  });
  return { f, client };
}

const pcOf = (r: { pc: RTCPeerConnection }) => r.pc as unknown as FakePC;
function states(r: EventTarget): string[] {
  const out: string[] = [];
  r.addEventListener("state", (e) => out.push((e as CustomEvent<StateDetail>).detail.state));
  return out;
}

beforeEach(() => {
  FakePC.instances = [];
  FakeEventSource.instances = [];
});
afterEach(() => {
  vi.useRealTimers();
});

describe("errors", () => {
  it("carry the server's JSON code, the status and Retry-After", async () => {
    const { f, client } = setup();
    f.on("POST", PUBLISH, () => json(503, { code: "server_full", message: "full" }, { "Retry-After": "10" }));
    const e = await client.publish(camera()).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CascadeError);
    expect(e).toMatchObject({ code: "server_full", status: 503, retryAfter: 10 });
    expect((e as Error).message).toContain("full");
  });

  it("name an answer without a JSON body by its status", async () => {
    const { f, client } = setup();
    f.on("GET", `${S}/rtc/v1/rooms/demo`, () => new Response("<html>bad gateway</html>", { status: 502 }));
    await expect(client.publications()).rejects.toMatchObject({ code: "http_502", status: 502, retryAfter: undefined });
  });

  it("report a failed fetch as network, status 0", async () => {
    const client = new Client({
      server: S,
      room: "demo",
      token: "t",
      fetch: () => Promise.reject(new TypeError("connection refused")),
      watchNetwork: false,
    });
    await expect(client.publications()).rejects.toMatchObject({ code: "network", status: 0 });
  });

  it("turn an expired token into token_expired (401)", async () => {
    const { f, client } = setup();
    f.on("POST", SUBSCRIBE, () => json(401, { code: "token_expired", message: "expired" }));
    f.on("GET", `${S}/rtc/v1/rooms/demo`, () => json(200, { publications: [] }));
    await expect(client.subscribe()).rejects.toMatchObject({ code: "token_expired", status: 401 });
  });
});

describe("publish", () => {
  it("POSTs the offer with the token, resolves Location against the answer's URL, keeps the ETag", async () => {
    const { f, client } = setup(["first", "second"]);
    // Redirected to another member of the data centre: Location is relative to it.
    f.on("POST", PUBLISH, () => withUrl(created("../../resources/abc", '"ice-1"'), "http://m2.test:8080/rtc/v1/rooms/demo/publish?access_token=x"));
    const p = await client.publish(camera());
    const [req] = f.find("POST", PUBLISH);
    expect(req?.headers.get("Authorization")).toBe("Bearer first");
    expect(req?.headers.get("Content-Type")).toBe("application/sdp");
    expect(req?.body).toContain("a=sendonly");
    expect(p.resource).toBe("http://m2.test:8080/rtc/v1/resources/abc");
    expect(p.etag).toBe('"ice-1"');
    expect(pcOf(p).remoteDescription?.sdp).toBe(ANSWER);
    expect(p.state).toBe("connecting");
  });

  it("takes the ICE servers the answer announces in Link headers (RFC 9725 §4.6)", async () => {
    const { f, client } = setup();
    f.on("POST", PUBLISH, () => {
      const r = created("/rtc/v1/resources/l1");
      r.headers.set(
        "Link",
        '<stun:stun.example.net>; rel="ice-server", <turn:turn.example.net?transport=udp>; rel="ice-server"; username="user, 1"; credential="p;w"; credential-type="password", <https://example.net/doc>; rel="help"',
      );
      return r;
    });
    const p = await client.publish(camera());
    expect(pcOf(p).config.iceServers).toEqual([
      { urls: "stun:stun.example.net" },
      { urls: "turn:turn.example.net?transport=udp", username: "user, 1", credential: "p;w" },
    ]);
  });

  it("fails without a Location and closes the connection", async () => {
    const { f, client } = setup();
    f.on("POST", PUBLISH, () => new Response(ANSWER, { status: 201 }));
    await expect(client.publish(camera())).rejects.toMatchObject({ code: "bad_response" });
    expect(FakePC.instances[0]?.closed).toBe(true);
  });

  it("sends three simulcast layers, lowest first, when asked", async () => {
    const { client } = setup();
    const p = await client.publish(camera(), { simulcast: true });
    const video = pcOf(p).transceivers.find((t) => t.kind === "video");
    expect(video?.init.sendEncodings?.map((e) => e.rid)).toEqual(["q", "h", "f"]);
    const audio = pcOf(p).transceivers.find((t) => t.kind === "audio");
    expect(audio?.init.sendEncodings).toBeUndefined();
  });

  it("replaces and mutes tracks", async () => {
    const { client } = setup();
    const stream = camera();
    const p = await client.publish(stream);
    p.setMuted("audio", true);
    expect(stream.getAudioTracks()[0]?.enabled).toBe(false);
    expect(stream.getVideoTracks()[0]?.enabled).toBe(true);
    const screen = camera().getVideoTracks()[0] as MediaStreamTrack;
    await p.replaceTrack("video", screen);
    expect(pcOf(p).transceivers.find((t) => t.kind === "video")?.sender.track).toBe(screen);
    expect(p.stream.getVideoTracks()).toEqual([screen]);
  });
});

describe("resource state", () => {
  it("follows ICE and the resource's server-sent events", async () => {
    const { client } = setup();
    const p = await client.publish(camera());
    const seen = states(p);
    const es = FakeEventSource.last(`${p.resource}/events`);
    expect(es.url).toBe(`${p.resource}/events`);
    pcOf(p).setIce("connected");
    es.emit("state", { state: "reconnecting", reason: "origin_unreachable" });
    es.emit("state", { state: "live", reason: "recovered" });
    expect(seen).toEqual(["live", "reconnecting", "live"]);
  });

  it("ends when the server says ended, without a DELETE", async () => {
    const { f, client } = setup();
    const p = await client.publish(camera());
    const ended = new Promise((r) => p.addEventListener("ended", r));
    FakeEventSource.last(p.resource).emit("state", { state: "ended", reason: "deleted" });
    await ended;
    expect(p.state).toBe("ended");
    expect(pcOf(p).closed).toBe(true);
    expect(f.find("DELETE")).toHaveLength(0);
  });

  it("stop DELETEs once and is idempotent; a 404 is fine", async () => {
    const { f, client } = setup();
    f.on("DELETE", `${S}/rtc/v1/resources/`, () => json(404, { code: "unknown_resource", message: "gone" }));
    const p = await client.publish(camera());
    await Promise.all([p.stop(), p.stop()]);
    await p.stop();
    expect(f.find("DELETE").map((r) => r.url)).toEqual([p.resource]);
    expect(p.state).toBe("ended");
    expect(pcOf(p).closed).toBe(true);
  });
});

describe("ICE restart", () => {
  function restartRoute(f: FakeFetch, etag = '"ice-2"') {
    f.on("PATCH", `${S}/rtc/v1/resources/`, (r) =>
      r.headers.get("Content-Type") === "application/trickle-ice-sdpfrag" && r.headers.get("If-Match") === "*"
        ? new Response("a=ice-lite\r\na=ice-ufrag:srv2\r\na=ice-pwd:srvpwd2\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 8443 typ host\r\na=end-of-candidates\r\n", {
            status: 200,
            headers: { "Content-Type": "application/trickle-ice-sdpfrag", ETag: etag },
          })
        : new Response(null, { status: 204 }),
    );
  }

  it("PATCHes the new credentials with If-Match: * and applies the answer's", async () => {
    const { f, client } = setup();
    restartRoute(f);
    const p = await client.publish(camera());
    await p.restartIce();
    const [patch] = f.find("PATCH");
    expect(patch?.url).toBe(p.resource);
    expect(patch?.body).toContain("a=ice-ufrag:cli1");
    expect(patch?.body).toContain("a=ice-pwd:clipwd1");
    expect(patch?.body).toMatch(/m=audio .*\r\na=mid:0/);
    const remote = pcOf(p).remoteDescription?.sdp ?? "";
    expect(remote).toContain("a=ice-ufrag:srv2");
    expect(remote).not.toContain("srv1");
    expect(p.etag).toBe('"ice-2"');
  });

  it("trickles a late candidate with If-Match: the ICE session's ETag", async () => {
    const { f, client } = setup();
    restartRoute(f, '"ice-9"');
    const p = await client.publish(camera());
    pcOf(p).addCandidate("candidate:2 1 udp 1 10.0.0.1 5000 typ host", "1");
    await flush();
    const [trickle] = f.find("PATCH");
    expect(trickle?.headers.get("If-Match")).toBe('"e1"');
    expect(trickle?.body).toContain("a=mid:1\r\na=candidate:2 1 udp 1 10.0.0.1 5000 typ host");
    await p.restartIce();
    pcOf(p).addCandidate("candidate:3 1 udp 1 10.0.0.1 5001 typ host");
    await flush();
    expect(f.find("PATCH").at(-1)?.headers.get("If-Match")).toBe('"ice-9"');
  });

  it("restarts after ICE stays disconnected for 2 s, not before", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const { f, client } = setup();
    restartRoute(f);
    const p = await client.publish(camera());
    pcOf(p).setIce("connected");
    pcOf(p).setIce("disconnected");
    expect(p.state).toBe("reconnecting");
    await vi.advanceTimersByTimeAsync(1900);
    expect(f.find("PATCH")).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(200);
    await flush();
    expect(f.find("PATCH")).toHaveLength(1);
  });

  it("a brief disconnection restarts nothing", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const { f, client } = setup();
    const p = await client.publish(camera());
    pcOf(p).setIce("disconnected");
    await vi.advanceTimersByTimeAsync(1000);
    pcOf(p).setIce("connected");
    await vi.advanceTimersByTimeAsync(5000);
    expect(f.find("PATCH")).toHaveLength(0);
    expect(p.state).toBe("live");
  });

  it("retries a restart the server could not take, with growing delays, until it works", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const { f, client } = setup();
    let calls = 0;
    f.on("PATCH", `${S}/rtc/v1/resources/`, () => {
      calls++;
      if (calls === 1) throw new TypeError("network down");
      if (calls === 2) return json(503, { code: "server_full", message: "busy" }, { "Retry-After": "5" });
      return new Response("a=ice-ufrag:srv2\r\na=ice-pwd:srvpwd2\r\n", { status: 200, headers: { ETag: '"ice-3"' } });
    });
    const p = await client.publish(camera());
    pcOf(p).setIce("failed");
    await flush();
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(999);
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(2);
    await flush();
    expect(calls).toBe(2);
    // Retry-After: 5 s.
    await vi.advanceTimersByTimeAsync(4900);
    expect(calls).toBe(2);
    await vi.advanceTimersByTimeAsync(200);
    await flush();
    expect(calls).toBe(3);
    expect(p.etag).toBe('"ice-3"');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(calls).toBe(3);
  });

  it("restarts at once when ICE fails", async () => {
    const { f, client } = setup();
    restartRoute(f);
    const p = await client.publish(camera());
    pcOf(p).setIce("failed");
    await flush();
    expect(f.find("PATCH")).toHaveLength(1);
  });

  it("restarts everything on an online event and a connection change, until closed", async () => {
    const win = new EventTarget();
    const connection = new EventTarget();
    const g = globalThis as unknown as Record<string, unknown>;
    const saved = { add: g.addEventListener, remove: g.removeEventListener, nav: Object.getOwnPropertyDescriptor(globalThis, "navigator") };
    g.addEventListener = win.addEventListener.bind(win);
    g.removeEventListener = win.removeEventListener.bind(win);
    Object.defineProperty(globalThis, "navigator", { value: { connection }, configurable: true });
    try {
      const f = new FakeFetch();
      f.on("POST", PUBLISH, () => created(`/rtc/v1/resources/pub${++n}`));
      f.on("DELETE", `${S}/rtc/v1/resources/`, () => new Response(null, { status: 200 }));
      restartRoute(f);
      const client = new Client({ server: S, room: "demo", token: "t", fetch: f.fetch, RTCPeerConnection: FakePC as unknown as typeof RTCPeerConnection });
      await client.publish(camera());
      await client.subscribe({ resources: [`${S}/rtc/v1/resources/x`] }).catch(() => undefined);
      win.dispatchEvent(new Event("online"));
      await flush();
      expect(f.find("PATCH")).toHaveLength(1);
      connection.dispatchEvent(new Event("change"));
      await flush();
      expect(f.find("PATCH")).toHaveLength(2);
      await client.close();
      win.dispatchEvent(new Event("online"));
      connection.dispatchEvent(new Event("change"));
      await flush();
      expect(f.find("PATCH")).toHaveLength(2);
    } finally {
      g.addEventListener = saved.add;
      g.removeEventListener = saved.remove;
      if (saved.nav) Object.defineProperty(globalThis, "navigator", saved.nav);
    }
  });

  it("re-publishes when the server no longer knows the resource", async () => {
    const { f, client } = setup();
    f.on("PATCH", `${S}/rtc/v1/resources/`, () => json(404, { code: "unknown_resource", message: "gone" }));
    const p: Publication = await client.publish(camera());
    const first = p.resource;
    const oldPc = pcOf(p);
    const moved = new Promise<CustomEvent>((r) => p.addEventListener("republished", (e) => r(e as CustomEvent)));
    await client.restartAll();
    const ev = await moved;
    expect(f.find("POST", PUBLISH)).toHaveLength(2);
    expect(p.resource).not.toBe(first);
    expect(ev.detail).toEqual({ resource: p.resource, previous: first });
    expect(oldPc.closed).toBe(true);
    expect(pcOf(p)).not.toBe(oldPc);
  });
});

describe("subscribe", () => {
  it("names the resources, offers receive-only transceivers, and reports tracks with their resource", async () => {
    const { f, client } = setup();
    const remote = "http://m2.test:8080/rtc/v1/resources/xyz";
    const s = await client.subscribe({ resources: [remote] });
    const [req] = f.find("POST", SUBSCRIBE);
    expect(new URL(req?.url ?? "").searchParams.getAll("resource")).toEqual([remote]);
    expect(pcOf(s).transceivers.map((t) => [t.kind, t.init.direction])).toEqual([
      ["audio", "recvonly"],
      ["video", "recvonly"],
    ]);
    const tracks: { stream: { id: string }; resource?: string }[] = [];
    s.addEventListener("track", (e) => tracks.push((e as CustomEvent).detail));
    await flush();
    pcOf(s).addRemoteTrack("audio", "xyz");
    pcOf(s).addRemoteTrack("video", "xyz");
    expect(s.streams).toHaveLength(1);
    expect(s.streams[0]?.getTracks()).toHaveLength(2);
    expect(tracks.map((t) => t.resource)).toEqual([remote, remote]);
  });

  it("announces tracks that arrive while the answer is applied to listeners added after subscribe resolves", async () => {
    const f = new FakeFetch();
    f.on("POST", SUBSCRIBE, () => created("/rtc/v1/resources/s1"));
    class EarlyPC extends FakePC {
      override async setRemoteDescription(d: RTCSessionDescriptionInit) {
        await super.setRemoteDescription(d);
        this.addRemoteTrack("audio", "pubA");
      }
    }
    const client = new Client({ server: S, room: "demo", token: "t", fetch: f.fetch, RTCPeerConnection: EarlyPC as unknown as typeof RTCPeerConnection, watchNetwork: false });
    const s = await client.subscribe({ resources: [`${S}/rtc/v1/resources/pubA`] });
    const kinds: string[] = [];
    s.addEventListener("track", (e) => kinds.push((e as CustomEvent).detail.track.kind));
    expect(s.streams.map((x) => x.id)).toEqual(["pubA"]);
    await new Promise((r) => setTimeout(r, 5));
    expect(kinds).toEqual(["audio"]);
    pcOf(s).addRemoteTrack("video", "pubA");
    expect(kinds).toEqual(["audio", "video"]);
  });

  it("counts the room's tracks when subscribing to the whole room", async () => {
    const { f, client } = setup();
    f.on("GET", `${S}/rtc/v1/rooms/demo`, () =>
      json(200, {
        room: "demo",
        publications: [
          { resource: `${S}/rtc/v1/resources/a`, user: "alice", tracks: [{ kind: "audio", mid: "0" }, { kind: "video", mid: "1" }] },
          { resource: `${S}/rtc/v1/resources/b`, user: "bob", tracks: [{ kind: "video", mid: "0" }] },
        ],
      }),
    );
    const s = await client.subscribe({ audio: false });
    expect(f.find("POST", SUBSCRIBE)[0]?.url).toBe(SUBSCRIBE);
    expect(pcOf(s).transceivers.map((t) => t.kind)).toEqual(["video", "video"]);
  });

  it("asks an MCU subscription for one audio and one video track and its composition", async () => {
    const { f, client } = setup();
    const s = await client.subscribe({
      mode: "mcu",
      resources: [`${S}/rtc/v1/resources/a`, `${S}/rtc/v1/resources/b`],
      composition: { layout: "speaker", width: 320, height: 180 },
    });
    const url = new URL(f.find("POST", SUBSCRIBE)[0]?.url ?? "");
    expect(url.searchParams.get("mode")).toBe("mcu");
    expect(url.searchParams.get("layout")).toBe("speaker");
    expect(url.searchParams.get("width")).toBe("320");
    expect(url.searchParams.get("height")).toBe("180");
    expect(url.searchParams.getAll("resource")).toHaveLength(2);
    expect(pcOf(s).transceivers.map((t) => t.kind)).toEqual(["audio", "video"]);
  });

  it("sets preferences as JSON and asks for a size once", async () => {
    const { f, client } = setup();
    f.on("PATCH", `${S}/rtc/v1/resources/`, () => new Response(null, { status: 204 }));
    const s = await client.subscribe({ resources: [`${S}/rtc/v1/resources/a`] });
    await s.setPreferences({ mid: "1", maxLayer: 0 });
    await s.preferSize(320, 180);
    await s.preferSize(320, 180);
    await s.preferSize(0, 0);
    const bodies = f.find("PATCH").map((r) => [r.headers.get("Content-Type"), JSON.parse(r.body)]);
    expect(bodies).toEqual([
      ["application/json", { mid: "1", max_layer: 0 }],
      ["application/json", { paused: false, max_width: 320, max_height: 192 }],
      ["application/json", { paused: true }],
    ]);
  });
});

describe("client", () => {
  it("lists publications, follows room events with the token as access_token, closes everything", async () => {
    const { f, client } = setup(["tok 1"]);
    f.on("GET", `${S}/rtc/v1/rooms/demo`, () => json(200, { publications: [{ resource: `${S}/rtc/v1/resources/a`, user: "alice", tracks: [{ kind: "audio", mid: "0" }, 7] }, { bad: 1 }] }));
    expect(await client.publications()).toEqual([{ resource: `${S}/rtc/v1/resources/a`, user: "alice", tracks: [{ kind: "audio", mid: "0" }] }]);
    const events = client.roomEvents();
    await flush();
    const es = FakeEventSource.last(`${S}/rtc/v1/rooms/demo/events`);
    expect(es.url).toBe(`${S}/rtc/v1/rooms/demo/events?access_token=tok%201`);
    const got: unknown[] = [];
    events.addEventListener("active_speaker", (e) => got.push((e as CustomEvent).detail));
    es.emit("active_speaker", { type: "active_speaker", resource: `${S}/rtc/v1/resources/a`, user: "alice" });
    expect(got).toEqual([{ resource: `${S}/rtc/v1/resources/a`, user: "alice" }]);
    events.close();
    expect(es.readyState).toBe(2);

    const p = await client.publish(camera());
    const s = await client.subscribe({ resources: [`${S}/rtc/v1/resources/a`] });
    await client.close();
    expect(f.find("DELETE").map((r) => r.url).sort()).toEqual([p.resource, s.resource].sort());
    await expect(client.publish(camera())).rejects.toMatchObject({ code: "aborted" });
  });

  it("summarizes stats", async () => {
    const { client } = setup();
    const p = await client.publish(camera());
    pcOf(p).stats = [
      { id: "o1", type: "outbound-rtp", kind: "video", bytesSent: 1000, framesEncoded: 30, frameWidth: 640, frameHeight: 360 },
      { id: "o2", type: "outbound-rtp", kind: "audio", bytesSent: 200 },
      { id: "i1", type: "inbound-rtp", kind: "audio", bytesReceived: 50, packetsLost: 2, audioLevel: 0.3 },
      { id: "tr", type: "transport", selectedCandidatePairId: "cp" },
      { id: "cp", type: "candidate-pair", currentRoundTripTime: 0.02, availableOutgoingBitrate: 2e6 },
    ];
    expect(await p.stats()).toEqual({
      bytesSent: 1200,
      bytesReceived: 50,
      packetsLost: 2,
      framesDecoded: 0,
      framesEncoded: 30,
      frameWidth: 640,
      frameHeight: 360,
      audioLevel: 0.3,
      roundTripTime: 0.02,
      availableOutgoingBitrate: 2e6,
    });
  });
});

describe("findServer", () => {
  it("takes the first answer of HTTPDNS", async () => {
    const f = new FakeFetch();
    f.on("GET", "http://dns.test/resolve?name=media.example.test", () =>
      json(200, { answers: [{ address: "10.1.0.1", name: "m1.media.example.test" }, { address: "10.2.0.1", name: "m3.media.example.test" }] }),
    );
    expect(await findServer({ httpdns: "http://dns.test/", name: "media.example.test", fetch: f.fetch })).toBe("https://m1.media.example.test");
    expect(await findServer({ httpdns: "http://dns.test", name: "media.example.test", scheme: "http", port: 8080, fetch: f.fetch })).toBe(
      "http://m1.media.example.test:8080",
    );
  });

  it("passes the server's error code on", async () => {
    const f = new FakeFetch();
    f.on("GET", "http://dns.test/resolve", () => json(404, { code: "unknown_name", message: "no" }));
    await expect(findServer({ httpdns: "http://dns.test", name: "x", fetch: f.fetch })).rejects.toMatchObject({ code: "unknown_name", status: 404 });
  });
});
