#!/usr/bin/env node
// MCU end-to-end roles for tests/tests/mcu_browser.rs, in one headless Chromium against
// running Cascade servers. Pages are served by this script on 127.0.0.1 (a secure
// context inside a network namespace) and talk to the servers with fetch (CORS is open).
//
// The test drives it over stdin, one JSON command a line, each with an `id`; commands
// run concurrently and each is answered on stdout by one JSON line with the same `id`
// ({"id":N,"event":"reply",...} or {"id":N,"event":"error","message":...}):
//
//   {"cmd":"open","page":P}                  opens page P (named by the test)
//   {"cmd":"publish","page":P,"base":URL,"room":R,"token":T,"freq":HZ,"colour":[r,g,b]}
//        publishes a WebAudio tone of HZ (an OscillatorNode through a
//        MediaStreamAudioDestinationNode) and a 320x180 canvas of one solid colour
//        (captureStream(15), redrawn every 66 ms so frames flow); replies {resource}
//   {"cmd":"subscribe","page":P,"base":URL,"room":R,"token":T,"query":Q}
//        POSTs a recvonly audio+video offer to .../subscribe?Q; replies {resource}
//   {"cmd":"analyse","page":P,"freqs":[HZ...],"points":[[fx,fy]...]}
//        one spectrum of the received audio (AnalyserNode, fftSize 16384, no
//        smoothing) and one frame of the received video drawn on a canvas; replies
//        {audio:{floor_db,levels:[{freq,db,above}]},video:{width,height,samples:[[r,g,b]]}}
//        where `floor_db` is the median of the 200-1200 Hz band, `db` the highest bin
//        within 8 Hz of each frequency, `above` = db - floor_db; each sample is the mean
//        colour of the 9x9 pixels around (fx*width, fy*height)
//   {"cmd":"unpublish","page":P}             DELETEs P's publication; replies {status}
//   {"cmd":"stats","page":P}                 the inbound RTP stats of P's subscription
//
// It exits when stdin closes (or after --timeout-ms).
//
// Flags: [--timeout-ms N] [--chromium PATH]

import { chromium } from "playwright-core";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import readline from "node:readline";
import { parseArgs } from "node:util";
import { CHROMIUM_BASE_ARGS } from "./chromium.mjs";

const { values: flags } = parseArgs({
  options: {
    "timeout-ms": { type: "string", default: "150000" },
    chromium: { type: "string", default: process.env.CHROMIUM_PATH || "/usr/bin/chromium" },
  },
  strict: true,
});
const out = (o) => process.stdout.write(JSON.stringify({ at: Date.now(), ...o }) + "\n");

const CHROMIUM_ARGS = [
  ...CHROMIUM_BASE_ARGS,
  // Several pages render at once; none of them may be throttled as a background tab.
  "--disable-background-timer-throttling",
  "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
];

/** Functions the pages run (installed before any page script). */
const PAGE_LIB = () => {
  window.m = {
    pub: null,
    sub: null,
    analyser: null,
    video: null,
    async waitConnected(pc) {
      for (let i = 0; i < 200 && pc.connectionState !== "connected"; i++) {
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
      return { location: new URL(resp.headers.get("Location"), url).href, answer: body };
    },
    async publish({ base, room, token, freq, colour }) {
      const ctx = new AudioContext({ sampleRate: 48000 });
      await ctx.resume();
      const osc = ctx.createOscillator();
      osc.frequency.value = freq;
      // Three tones at 0.25 add up to less than full scale: the mix needs no clipping.
      const gain = ctx.createGain();
      gain.gain.value = 0.25;
      const dest = ctx.createMediaStreamDestination();
      osc.connect(gain).connect(dest);
      osc.start();
      const canvas = document.createElement("canvas");
      canvas.width = 320;
      canvas.height = 180;
      document.body.appendChild(canvas);
      const g = canvas.getContext("2d");
      const fill = `rgb(${colour[0]},${colour[1]},${colour[2]})`;
      const draw = () => {
        g.fillStyle = fill;
        g.fillRect(0, 0, canvas.width, canvas.height);
      };
      draw();
      const stream = canvas.captureStream(15);
      const timer = setInterval(draw, 66);
      const pc = new RTCPeerConnection();
      pc.addTransceiver(dest.stream.getAudioTracks()[0], { direction: "sendonly" });
      pc.addTransceiver(stream.getVideoTracks()[0], { direction: "sendonly" });
      await pc.setLocalDescription(await pc.createOffer());
      const { location, answer } = await m.post(
        `${base}/rtc/v1/rooms/${encodeURIComponent(room)}/publish`,
        token,
        pc.localDescription.sdp,
      );
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      await m.waitConnected(pc);
      m.pub = { pc, ctx, osc, timer, resource: location, token };
      return { resource: location };
    },
    async unpublish() {
      const resp = await fetch(m.pub.resource, {
        method: "DELETE",
        headers: { Authorization: `Bearer ${m.pub.token}` },
      });
      clearInterval(m.pub.timer);
      m.pub.osc.stop();
      m.pub.pc.close();
      return { status: resp.status };
    },
    async subscribe({ base, room, token, query }) {
      const pc = new RTCPeerConnection();
      pc.addTransceiver("audio", { direction: "recvonly" });
      pc.addTransceiver("video", { direction: "recvonly" });
      const ctx = new AudioContext({ sampleRate: 48000 });
      await ctx.resume();
      pc.ontrack = (e) => {
        const stream = new MediaStream([e.track]);
        if (e.track.kind === "audio") {
          // WebAudio gets no samples of a remote track unless a media element plays it.
          const a = document.createElement("audio");
          a.muted = true;
          a.autoplay = true;
          a.srcObject = stream;
          document.body.appendChild(a);
          const analyser = ctx.createAnalyser();
          analyser.fftSize = 16384;
          analyser.smoothingTimeConstant = 0;
          ctx.createMediaStreamSource(stream).connect(analyser);
          m.analyser = analyser;
        } else {
          const v = document.createElement("video");
          v.muted = true;
          v.autoplay = true;
          v.playsInline = true;
          v.srcObject = stream;
          document.body.appendChild(v);
          m.video = v;
        }
      };
      await pc.setLocalDescription(await pc.createOffer());
      const url = `${base}/rtc/v1/rooms/${encodeURIComponent(room)}/subscribe?${query}`;
      const { location, answer } = await m.post(url, token, pc.localDescription.sdp);
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      await m.waitConnected(pc);
      m.sub = { pc, ctx, resource: location, token, answer };
      const tracks = pc.getReceivers().map((r) => r.track.kind);
      return { resource: location, tracks, m_lines: (answer.match(/^m=/gm) || []).length };
    },
    analyse({ freqs, points }) {
      const audio = { floor_db: -200, levels: [] };
      const a = m.analyser;
      if (a) {
        const bins = new Float32Array(a.frequencyBinCount);
        a.getFloatFrequencyData(bins);
        const hz = a.context.sampleRate / a.fftSize;
        // Silence reads as -Infinity, which JSON cannot carry.
        const at = (i) => Math.max(-200, Number.isFinite(bins[i]) ? bins[i] : -200);
        const band = [];
        for (let i = Math.ceil(200 / hz); i <= Math.floor(1200 / hz); i++) band.push(at(i));
        band.sort((x, y) => x - y);
        audio.floor_db = band[Math.floor(band.length / 2)];
        for (const f of freqs) {
          let db = -200;
          for (let i = Math.ceil((f - 8) / hz); i <= Math.floor((f + 8) / hz); i++) db = Math.max(db, at(i));
          audio.levels.push({ freq: f, db, above: db - audio.floor_db });
        }
      }
      const video = { width: 0, height: 0, samples: [] };
      const v = m.video;
      if (v && v.videoWidth > 0) {
        video.width = v.videoWidth;
        video.height = v.videoHeight;
        const c = document.createElement("canvas");
        c.width = v.videoWidth;
        c.height = v.videoHeight;
        const g = c.getContext("2d", { willReadFrequently: true });
        g.drawImage(v, 0, 0);
        for (const [fx, fy] of points) {
          const x = Math.min(c.width - 5, Math.max(4, Math.round(fx * c.width)));
          const y = Math.min(c.height - 5, Math.max(4, Math.round(fy * c.height)));
          const d = g.getImageData(x - 4, y - 4, 9, 9).data;
          const sum = [0, 0, 0];
          for (let i = 0; i < d.length; i += 4) for (let k = 0; k < 3; k++) sum[k] += d[i + k];
          video.samples.push(sum.map((s) => Math.round(s / 81)));
        }
      }
      return { audio, video };
    },
    async stats() {
      const r = {};
      if (!m.sub) return r;
      (await m.sub.pc.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp") {
          r[s.kind] = {
            packetsReceived: s.packetsReceived || 0,
            framesDecoded: s.framesDecoded || 0,
            frameWidth: s.frameWidth || 0,
            frameHeight: s.frameHeight || 0,
            totalAudioEnergy: s.totalAudioEnergy || 0,
          };
        }
      });
      return r;
    },
  };
};

let ctx = null;
let userDataDir = null;
let server = null;
const pages = new Map();

async function launch() {
  server = http.createServer((_, res) => {
    res.writeHead(200, { "Content-Type": "text/html" });
    res.end("<!doctype html><meta charset=utf-8><title>mcu</title><body></body>");
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  userDataDir = await mkdtemp(path.join(tmpdir(), "cascade-mcu-"));
  ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: flags.chromium,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 20000,
  });
}

async function openPage(name) {
  if (pages.has(name)) return pages.get(name);
  const p = await ctx.newPage();
  p.on("pageerror", (e) => out({ event: "page_error", page: name, text: String(e) }));
  await p.addInitScript(PAGE_LIB);
  await p.goto(`http://127.0.0.1:${server.address().port}/`);
  pages.set(name, p);
  return p;
}

function pageOf(name) {
  const p = pages.get(name);
  if (!p) throw new Error(`no page ${name}`);
  return p;
}

async function run(c) {
  switch (c.cmd) {
    case "open":
      await openPage(c.page);
      return {};
    case "publish":
      return pageOf(c.page).evaluate((x) => m.publish(x), c);
    case "subscribe":
      return pageOf(c.page).evaluate((x) => m.subscribe(x), c);
    case "analyse":
      return pageOf(c.page).evaluate((x) => m.analyse(x), c);
    case "unpublish":
      return pageOf(c.page).evaluate(() => m.unpublish());
    case "stats":
      return pageOf(c.page).evaluate(() => m.stats());
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
}

async function cleanup() {
  if (ctx) await ctx.close().catch(() => {});
  if (server) server.close();
  if (userDataDir) await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
}

const hard = setTimeout(async () => {
  out({ event: "error", message: "hard timeout" });
  await cleanup();
  process.exit(2);
}, Number(flags["timeout-ms"]));

try {
  await launch();
  out({ event: "ready" });
  const pending = new Set();
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let c;
    try {
      c = JSON.parse(line);
    } catch (e) {
      out({ event: "error", message: `bad command line: ${line}` });
      continue;
    }
    const job = run(c)
      .then((r) => out({ id: c.id, event: "reply", ...r }))
      .catch((e) => out({ id: c.id, event: "error", message: e && e.message ? e.message : String(e) }))
      .finally(() => pending.delete(job));
    pending.add(job);
  }
  await Promise.allSettled([...pending]);
} catch (e) {
  out({ event: "error", message: e && e.message ? e.message : String(e) });
  process.exitCode = 1;
}
await cleanup();
clearTimeout(hard);
process.exit(process.exitCode || 0);
