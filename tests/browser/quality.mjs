#!/usr/bin/env node
// Media-quality roles for the end-to-end tests (tests/tests/media_quality.rs), each in
// headless Chromium against a running Cascade server. Pages are served by this script on
// 127.0.0.1 (a secure context, so getUserMedia works inside a network namespace) and
// talk to the server with fetch (CORS is open). Every line on stdout is one JSON object.
//
//   --mode speaker    two publishers with WebAudio tracks (one a 440 Hz tone, one
//                     silent) and the room's event stream; the tone moves from page A to
//                     page B once A is the active speaker. Prints the events seen and
//                     the time the active speaker took to follow.
//   --mode publish    publishes the fake camera (960x540; --simulcast: rids q, h, f at
//                     1/4, 1/2, 1/1) and microphone; prints {"event":"published"} and
//                     then a sample of its outbound video stats every 500 ms.
//   --mode subscribe  subscribes to --resource and prints a sample of its inbound
//                     stats every 500 ms.
// publish and subscribe run until stdin closes or --duration-ms passes.
//
// Flags: --base URL --room NAME --token JWT [--resource URL] [--simulcast]
//        [--scalability MODE] (each layer's scalabilityMode, e.g. L1T1; Chrome's
//        default for VP8 simulcast is L1T3)
//        [--duration-ms N] [--chromium PATH]

import { chromium } from "playwright-core";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { CHROMIUM_BASE_ARGS, FAKE_DEVICES } from "./chromium.mjs";

const { values: flags } = parseArgs({
  options: {
    mode: { type: "string" },
    base: { type: "string" },
    room: { type: "string", default: "demo" },
    token: { type: "string" },
    resource: { type: "string" },
    simulcast: { type: "boolean", default: false },
    scalability: { type: "string", default: "" },
    "duration-ms": { type: "string", default: "90000" },
    chromium: { type: "string", default: process.env.CHROMIUM_PATH || "/usr/bin/chromium" },
  },
  strict: true,
});
const base = (flags.base || "").replace(/\/+$/, "");
const duration = Number(flags["duration-ms"]);
const out = (o) => process.stdout.write(JSON.stringify({ at: Date.now(), ...o }) + "\n");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const CHROMIUM_ARGS = [
  ...CHROMIUM_BASE_ARGS,
  FAKE_DEVICES,
  // Three simulcast layers at 960x540 (libwebrtc would otherwise cap the count by size).
  "--force-fieldtrials=WebRTC-LegacySimulcastLayerLimit/Disabled/",
];

/** Functions the pages run (installed before any page script). */
const PAGE_LIB = () => {
  window.q = {
    pc: null,
    gain: null,
    async waitConnected(pc) {
      for (let i = 0; i < 150 && pc.connectionState !== "connected"; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      if (pc.connectionState !== "connected") throw new Error(`connection ${pc.connectionState}`);
    },
    async post(url, token, sdp) {
      const resp = await fetch(url, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/sdp" },
        body: sdp,
      });
      const body = await resp.text();
      if (resp.status !== 201) throw new Error(`POST ${url}: ${resp.status} ${body}`);
      return { location: resp.headers.get("Location"), answer: body };
    },
    async publish({ base, room, token, video, simulcast, scalability, audio }) {
      const pc = new RTCPeerConnection();
      q.pc = pc;
      let audioTrack;
      let stream = null;
      if (video) {
        stream = await navigator.mediaDevices.getUserMedia({
          audio: audio === "mic",
          video: { width: 960, height: 540, frameRate: 30 },
        });
      }
      if (audio === "mic") {
        audioTrack = stream.getAudioTracks()[0];
      } else {
        const ctx = new AudioContext();
        await ctx.resume();
        const osc = ctx.createOscillator();
        osc.frequency.value = 440;
        const gain = ctx.createGain();
        gain.gain.value = audio === "tone" ? 0.8 : 0;
        const dest = ctx.createMediaStreamDestination();
        osc.connect(gain).connect(dest);
        osc.start();
        q.gain = gain;
        audioTrack = dest.stream.getAudioTracks()[0];
      }
      pc.addTransceiver(audioTrack, { direction: "sendonly" });
      if (video) {
        const init = { direction: "sendonly" };
        if (simulcast) {
          init.sendEncodings = [
            { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150000 },
            { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500000 },
            { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1500000 },
          ];
          if (scalability) {
            for (const e of init.sendEncodings) e.scalabilityMode = scalability;
          }
        }
        pc.addTransceiver(stream.getVideoTracks()[0], init);
      }
      await pc.setLocalDescription(await pc.createOffer());
      const { location, answer } = await q.post(
        `${base}/rtc/v1/rooms/${encodeURIComponent(room)}/publish`,
        token,
        pc.localDescription.sdp,
      );
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      await q.waitConnected(pc);
      return { resource: location, answer };
    },
    setTone(on) {
      q.gain.gain.value = on ? 0.8 : 0;
    },
    async subscribe({ base, room, token, resource }) {
      const pc = new RTCPeerConnection();
      q.pc = pc;
      pc.addTransceiver("audio", { direction: "recvonly" });
      pc.addTransceiver("video", { direction: "recvonly" });
      pc.ontrack = (e) => {
        // Decoding needs a sink in some builds; keep the stream alive in a video element.
        if (e.track.kind !== "video") return;
        const v = document.createElement("video");
        v.muted = true;
        v.autoplay = true;
        v.srcObject = new MediaStream([e.track]);
        document.body.appendChild(v);
      };
      await pc.setLocalDescription(await pc.createOffer());
      const url =
        `${base}/rtc/v1/rooms/${encodeURIComponent(room)}/subscribe` +
        `?resource=${encodeURIComponent(resource)}`;
      const { location, answer } = await q.post(url, token, pc.localDescription.sdp);
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      await q.waitConnected(pc);
      return { resource: location };
    },
    async stats() {
      const r = { video: {}, audio: {}, layers: [], available_outgoing_bps: 0 };
      (await q.pc.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp") {
          const kind = s.kind || s.mediaType;
          r[kind] = {
            frameWidth: s.frameWidth || 0,
            frameHeight: s.frameHeight || 0,
            framesDecoded: s.framesDecoded || 0,
            framesReceived: s.framesReceived || 0,
            framesDropped: s.framesDropped || 0,
            packetsReceived: s.packetsReceived || 0,
            packetsLost: s.packetsLost || 0,
            nackCount: s.nackCount || 0,
            bytesReceived: s.bytesReceived || 0,
            freezeCount: s.freezeCount || 0,
            pliCount: s.pliCount || 0,
            keyFramesDecoded: s.keyFramesDecoded || 0,
            retransmittedPacketsReceived: s.retransmittedPacketsReceived || 0,
            totalFreezesDuration: s.totalFreezesDuration || 0,
          };
        } else if (s.type === "outbound-rtp" && (s.kind || s.mediaType) === "video") {
          r.layers.push({
            rid: s.rid || "",
            frameWidth: s.frameWidth || 0,
            framesEncoded: s.framesEncoded || 0,
            framesSent: s.framesSent || 0,
            bytesSent: s.bytesSent || 0,
            targetBitrate: s.targetBitrate || 0,
            qualityLimitationReason: s.qualityLimitationReason || "",
            scalabilityMode: s.scalabilityMode || "",
          });
        } else if (s.type === "candidate-pair" && s.nominated && s.availableOutgoingBitrate) {
          r.available_outgoing_bps = s.availableOutgoingBitrate;
        }
      });
      r.layers.sort((a, b) => a.frameWidth - b.frameWidth);
      return r;
    },
    async del(base, token, url) {
      if (!url) return;
      await fetch(new URL(url, base), { method: "DELETE", headers: { Authorization: `Bearer ${token}` } });
    },
  };
};

let ctx = null;
let userDataDir = null;
let server = null;

async function launch() {
  server = http.createServer((_, res) => {
    res.writeHead(200, { "Content-Type": "text/html" });
    res.end("<!doctype html><meta charset=utf-8><title>quality</title><body></body>");
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  userDataDir = await mkdtemp(path.join(tmpdir(), "cascade-quality-"));
  ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: flags.chromium,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 20000,
  });
}

async function page(name) {
  const p = await ctx.newPage();
  p.on("pageerror", (e) => out({ event: "page_error", page: name, text: String(e) }));
  await p.addInitScript(PAGE_LIB);
  await p.goto(`http://127.0.0.1:${server.address().port}/`);
  return p;
}

async function cleanup() {
  if (ctx) await ctx.close().catch(() => {});
  if (server) server.close();
  if (userDataDir) await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
}

/** Resolves when stdin closes (the test is done with us) or `ms` pass. */
function untilDone(ms) {
  return new Promise((resolve) => {
    setTimeout(resolve, ms).unref();
    process.stdin.on("end", resolve);
    process.stdin.on("close", resolve);
    process.stdin.resume();
  });
}

/** The room's server-sent events, each passed to `onEvent(name, data)`. */
async function roomEvents(onEvent, signal) {
  const url = `${base}/rtc/v1/rooms/${encodeURIComponent(flags.room)}/events?access_token=${encodeURIComponent(flags.token)}`;
  const resp = await fetch(url, { signal, headers: { Accept: "text/event-stream" } });
  if (!resp.ok) throw new Error(`GET room events: ${resp.status}`);
  const decoder = new TextDecoder();
  let buf = "";
  (async () => {
    try {
      for await (const chunk of resp.body) {
        buf += decoder.decode(chunk, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let name = "message";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }
          if (data) onEvent(name, JSON.parse(data));
        }
      }
    } catch (_) {
      // Aborted at the end of the run.
    }
  })();
}

async function runSpeaker() {
  const abort = new AbortController();
  const events = [];
  let speaker = null;
  await roomEvents((name, data) => {
    events.push({ at: Date.now(), name, ...data });
    if (name === "active_speaker") speaker = data.resource;
  }, abort.signal);
  await launch();
  const a = await page("a");
  const b = await page("b");
  const args = { base, room: flags.room, token: flags.token, video: false };
  const pa = await a.evaluate((x) => q.publish({ ...x, audio: "tone" }), args);
  const pb = await b.evaluate((x) => q.publish({ ...x, audio: "silent" }), args);
  const result = { a: pa.resource, b: pb.resource, events, first_ms: null, switch_ms: null, answer_a: pa.answer };
  const t0 = Date.now();
  while (speaker !== pa.resource && Date.now() - t0 < 15000) await sleep(50);
  if (speaker === pa.resource) result.first_ms = Date.now() - t0;
  // The tone moves from A to B.
  await a.evaluate(() => q.setTone(false));
  await b.evaluate(() => q.setTone(true));
  const t1 = Date.now();
  while (speaker !== pb.resource && Date.now() - t1 < 15000) await sleep(50);
  if (speaker === pb.resource) result.switch_ms = Date.now() - t1;
  await a.evaluate((x) => q.del(x.base, x.token, x.url), { base, token: flags.token, url: pa.resource });
  await sleep(300);
  abort.abort();
  out({ event: "result", ...result });
}

async function runPublish() {
  await launch();
  const p = await page("publisher");
  const r = await p.evaluate(
    (x) => q.publish(x),
    { base, room: flags.room, token: flags.token, video: true, simulcast: flags.simulcast, scalability: flags.scalability, audio: "mic" },
  );
  out({ event: "published", resource: r.resource });
  let done = false;
  untilDone(duration).then(() => (done = true));
  while (!done) {
    out({ event: "sample", ...(await p.evaluate(() => q.stats())) });
    await sleep(500);
  }
  await p.evaluate((x) => q.del(x.base, x.token, x.url), { base, token: flags.token, url: r.resource });
}

async function runSubscribe() {
  await launch();
  const p = await page("subscriber");
  const r = await p.evaluate((x) => q.subscribe(x), {
    base,
    room: flags.room,
    token: flags.token,
    resource: flags.resource,
  });
  out({ event: "subscribed", resource: r.resource });
  let done = false;
  untilDone(duration).then(() => (done = true));
  while (!done) {
    out({ event: "sample", ...(await p.evaluate(() => q.stats())) });
    await sleep(500);
  }
  await p.evaluate((x) => q.del(x.base, x.token, x.url), { base, token: flags.token, url: r.resource });
}

const hard = setTimeout(() => {
  out({ event: "error", message: "hard timeout" });
  process.exit(2);
}, duration + 60000);
try {
  if (flags.mode === "speaker") await runSpeaker();
  else if (flags.mode === "publish") await runPublish();
  else if (flags.mode === "subscribe") await runSubscribe();
  else throw new Error(`unknown --mode ${flags.mode}`);
} catch (e) {
  out({ event: "error", message: e && e.message ? e.message : String(e) });
  process.exitCode = 1;
}
await cleanup();
clearTimeout(hard);
process.exit(process.exitCode || 0);
