#!/usr/bin/env node
// Drives the demo page of a running Cascade server in headless Chromium: page A publishes
// its (fake) camera and microphone, page B subscribes to the room, and B's receive
// statistics are sampled until enough frames have been decoded or the deadline passes.
// Prints exactly one JSON line on stdout with everything observed, then deletes both
// resources, closes the browser and exits (0 when no step failed, 1 otherwise).
//
// Inputs (command-line flags win over environment variables):
//   --base URL          CASCADE_BASE_URL     server base URL, e.g. http://127.0.0.1:8080
//   --room NAME         CASCADE_ROOM         room name (default "demo")
//   --pub-token JWT     CASCADE_PUB_TOKEN    token with the publish grant
//   --sub-token JWT     CASCADE_SUB_TOKEN    token with the subscribe grant (default: pub token)
//   --deadline-ms N     CASCADE_DEADLINE_MS  how long to sample stats after subscribing (15000)
//   --min-frames N      CASCADE_MIN_FRAMES   stop sampling early once more than N video frames
//                                            were decoded and audio packets arrived (30; 0 = never)
//   --timeout-ms N      CASCADE_HARD_TIMEOUT_MS  hard limit for the whole run (60000)
//   --chromium PATH     CHROMIUM_PATH        browser executable (/usr/bin/chromium)
//   --quic-origin H:P   CASCADE_QUIC_ORIGIN  force HTTP/3 (QUIC) for this origin instead of
//                                            disabling QUIC (--origin-to-force-quic-on)
//   --spki-hash B64     CASCADE_SPKI_HASH    base64 SHA-256 of the server certificate's public
//                                            key, trusted without a CA (with --quic-origin)
//   --selftest                               only check that the browser starts and that
//                                            WebRTC works with the fake devices, using a
//                                            page this script serves itself on loopback

import { chromium } from "playwright-core";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { CHROMIUM_BASE_ARGS, FAKE_DEVICES } from "./chromium.mjs";

const started = Date.now();
const elapsed = () => Date.now() - started;

const { values: flags } = parseArgs({
  options: {
    base: { type: "string" },
    room: { type: "string" },
    "pub-token": { type: "string" },
    "sub-token": { type: "string" },
    "deadline-ms": { type: "string" },
    "min-frames": { type: "string" },
    "timeout-ms": { type: "string" },
    chromium: { type: "string" },
    "quic-origin": { type: "string" },
    "spki-hash": { type: "string" },
    selftest: { type: "boolean", default: false },
  },
  strict: true,
});

function setting(flag, env, fallback) {
  const v = flags[flag] ?? process.env[env];
  return v === undefined || v === "" ? fallback : v;
}

const config = {
  base: setting("base", "CASCADE_BASE_URL", "").replace(/\/+$/, ""),
  room: setting("room", "CASCADE_ROOM", "demo"),
  pubToken: setting("pub-token", "CASCADE_PUB_TOKEN", ""),
  subToken: "",
  deadlineMs: Number(setting("deadline-ms", "CASCADE_DEADLINE_MS", "15000")),
  minFrames: Number(setting("min-frames", "CASCADE_MIN_FRAMES", "30")),
  timeoutMs: Number(setting("timeout-ms", "CASCADE_HARD_TIMEOUT_MS", "60000")),
  chromium: setting("chromium", "CHROMIUM_PATH", "/usr/bin/chromium"),
  quicOrigin: setting("quic-origin", "CASCADE_QUIC_ORIGIN", ""),
  spkiHash: setting("spki-hash", "CASCADE_SPKI_HASH", ""),
  selftest: flags.selftest,
};
config.subToken = setting("sub-token", "CASCADE_SUB_TOKEN", config.pubToken);

/** Longest a single step (page load, publish, subscribe, stop) may take. */
const STEP_TIMEOUT_MS = 15000;
const POLL_INTERVAL_MS = 500;

const CHROMIUM_ARGS = [
  ...CHROMIUM_BASE_ARGS,
  FAKE_DEVICES,
  "--allow-loopback-in-peer-connection",
];

/** Without a QUIC origin QUIC is off; with one, Chromium speaks only HTTP/3 to it. */
function chromiumArgs() {
  if (!config.quicOrigin) return CHROMIUM_ARGS;
  const args = CHROMIUM_ARGS.filter((a) => a !== "--disable-quic");
  args.push("--enable-quic", `--origin-to-force-quic-on=${config.quicOrigin}`);
  if (config.spkiHash) args.push(`--ignore-certificate-errors-spki-list=${config.spkiHash}`);
  return args;
}

const result = {
  mode: config.selftest ? "selftest" : "pubsub",
  ok: false,
  base: config.base,
  room: config.room,
  resources: { publish: null, subscribe: null },
  room_while_live: null,
  samples: [],
  final_stats: null,
  time_to_first_frame_ms: null,
  goal_reached_ms: null,
  stop: { subscriber: null, publisher: null },
  protocols: { publisher: null, subscriber: null },
  errors: [],
  console_errors: [],
  elapsed_ms: 0,
};

let emitted = false;
function emit() {
  if (emitted) return;
  emitted = true;
  result.ok = result.errors.length === 0;
  result.elapsed_ms = elapsed();
  process.stdout.write(JSON.stringify(result) + "\n");
}

let browserContext = null;
let userDataDir = null;
let selftestServer = null;

async function cleanup() {
  if (browserContext) {
    const ctx = browserContext;
    browserContext = null;
    await withTimeout(ctx.close(), 10000, "closing the browser").catch((e) =>
      result.errors.push(e.message),
    );
  }
  if (selftestServer) {
    selftestServer.close();
    selftestServer = null;
  }
  if (userDataDir) {
    await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
    userDataDir = null;
  }
}

const hardTimer = setTimeout(() => {
  result.errors.push(`hard timeout: the run took longer than ${config.timeoutMs} ms`);
  emit();
  // Give the browser a moment to close; whatever happens, the process ends.
  setTimeout(() => process.exit(2), 5000).unref();
  cleanup().finally(() => process.exit(2));
}, config.timeoutMs);

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function step(what, fn) {
  try {
    return await withTimeout(fn(), STEP_TIMEOUT_MS, what);
  } catch (e) {
    const message = (e && e.message ? e.message : String(e)).split("\n")[0];
    throw new Error(`${what}: ${message}`);
  }
}

async function launch() {
  userDataDir = await mkdtemp(path.join(tmpdir(), "cascade-chromium-"));
  browserContext = await chromium.launchPersistentContext(userDataDir, {
    executablePath: config.chromium,
    headless: true,
    args: chromiumArgs(),
    timeout: STEP_TIMEOUT_MS,
  });
  return browserContext;
}

function watchConsole(page, name) {
  page.on("console", (msg) => {
    if (msg.type() === "error") result.console_errors.push({ page: name, text: msg.text() });
  });
  page.on("pageerror", (err) => {
    result.console_errors.push({ page: name, text: String(err && err.message ? err.message : err) });
  });
}

async function openDemo(ctx, name, token) {
  const page = await ctx.newPage();
  watchConsole(page, name);
  const url =
    `${config.base}/?room=${encodeURIComponent(config.room)}` +
    `&token=${encodeURIComponent(token)}`;
  await step(`${name}: loading the demo page`, async () => {
    const resp = await page.goto(url, { timeout: STEP_TIMEOUT_MS });
    if (!resp || !resp.ok()) throw new Error(`GET / answered ${resp ? resp.status() : "nothing"}`);
    await page.waitForFunction(() => window.cascadeDemo !== undefined, null, {
      timeout: STEP_TIMEOUT_MS,
    });
  });
  return page;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function runPubSub() {
  if (!config.base) throw new Error("no server: give --base or CASCADE_BASE_URL");
  if (!config.pubToken) throw new Error("no token: give --pub-token or CASCADE_PUB_TOKEN");
  const ctx = await step("launching chromium", launch);
  let publisher = null;
  let subscriber = null;
  try {
    publisher = await openDemo(ctx, "publisher", config.pubToken);
    result.resources.publish = await step("publisher: publish()", () =>
      publisher.evaluate(() => window.cascadeDemo.publish()),
    );
    subscriber = await openDemo(ctx, "subscriber", config.subToken);
    result.room_while_live = await step("subscriber: roomInfo()", () =>
      subscriber.evaluate(() => window.cascadeDemo.roomInfo()),
    );
    result.resources.subscribe = await step("subscriber: subscribe()", () =>
      subscriber.evaluate(() => window.cascadeDemo.subscribe()),
    );
    const subscribedAt = Date.now();
    for (;;) {
      const stats = await step("subscriber: inboundStats()", () =>
        subscriber.evaluate(() => window.cascadeDemo.inboundStats()),
      );
      const t = Date.now() - subscribedAt;
      result.samples.push({ t_ms: t, ...stats });
      result.final_stats = stats;
      if (result.time_to_first_frame_ms === null && stats.video.framesDecoded > 0) {
        result.time_to_first_frame_ms = t;
      }
      const goal =
        config.minFrames > 0 &&
        stats.video.framesDecoded > config.minFrames &&
        stats.audio.packetsReceived > 0;
      if (goal) {
        result.goal_reached_ms = t;
        break;
      }
      if (t >= config.deadlineMs) {
        if (config.minFrames > 0) {
          result.errors.push(
            `after ${t} ms the subscriber had decoded ${stats.video.framesDecoded} video frames ` +
              `and received ${stats.audio.packetsReceived} audio packets ` +
              `(wanted > ${config.minFrames} frames and > 0 packets)`,
          );
        }
        break;
      }
      await sleep(POLL_INTERVAL_MS);
    }
  } finally {
    // Delete the subscription first, then the publication, even after a failure.
    for (const [name, page] of [
      ["subscriber", subscriber],
      ["publisher", publisher],
    ]) {
      if (!page) continue;
      try {
        result.stop[name] = await step(`${name}: stopAll()`, () =>
          page.evaluate(() => window.cascadeDemo.stopAll()),
        );
        for (const r of result.stop[name]) {
          if (!r.ok) result.errors.push(`${name}: DELETE ${r.url}: ${r.error}`);
        }
        result.protocols[name] = await step(`${name}: protocols`, () =>
          page.evaluate(() => ({
            navigation: performance.getEntriesByType("navigation")[0]?.nextHopProtocol ?? null,
            fetches: performance
              .getEntriesByType("resource")
              .filter((e) => e.initiatorType === "fetch")
              .map((e) => ({ url: e.name, protocol: e.nextHopProtocol })),
          })),
        );
      } catch (e) {
        result.errors.push(e.message);
      }
    }
  }
}

/** A page that captures the fake devices and loops the video through two peer connections. */
const SELFTEST_PAGE = `<!doctype html><meta charset="utf-8"><title>selftest</title>
<script>
window.selftest = async () => {
  const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
  const a = new RTCPeerConnection(), b = new RTCPeerConnection();
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  for (const t of media.getTracks()) a.addTransceiver(t, { direction: "sendonly" });
  await a.setLocalDescription(await a.createOffer());
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(await b.createAnswer());
  await a.setRemoteDescription(b.localDescription);
  const out = { audioTracks: media.getAudioTracks().length, videoTracks: media.getVideoTracks().length,
                videoSettings: media.getVideoTracks()[0].getSettings(), framesDecoded: 0, audioPackets: 0 };
  for (let i = 0; i < 40 && (out.framesDecoded < 10 || out.audioPackets === 0); i++) {
    await new Promise((r) => setTimeout(r, 250));
    out.framesDecoded = 0; out.audioPackets = 0;
    (await b.getStats()).forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      if (s.kind === "video") out.framesDecoded += s.framesDecoded || 0;
      if (s.kind === "audio") out.audioPackets += s.packetsReceived || 0;
    });
  }
  out.connectionState = b.connectionState;
  a.close(); b.close(); media.getTracks().forEach((t) => t.stop());
  return out;
};
</script>`;

async function runSelftest() {
  selftestServer = http.createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/html" });
    res.end(SELFTEST_PAGE);
  });
  await new Promise((resolve, reject) => {
    selftestServer.once("error", reject);
    selftestServer.listen(0, "127.0.0.1", resolve);
  });
  const base = `http://127.0.0.1:${selftestServer.address().port}`;
  result.base = base;
  const ctx = await step("launching chromium", launch);
  const page = await ctx.newPage();
  watchConsole(page, "selftest");
  await step("loading the selftest page", () => page.goto(`${base}/`, { timeout: STEP_TIMEOUT_MS }));
  const out = await step("getUserMedia + loopback peer connection", () =>
    page.evaluate(() => window.selftest()),
  );
  result.selftest = out;
  result.final_stats = {
    video: { framesDecoded: out.framesDecoded },
    audio: { packetsReceived: out.audioPackets },
  };
  if (out.audioTracks !== 1 || out.videoTracks !== 1) {
    result.errors.push(`fake devices gave ${out.audioTracks} audio and ${out.videoTracks} video tracks`);
  }
  if (out.framesDecoded < 10) result.errors.push(`only ${out.framesDecoded} frames decoded in loopback`);
  if (out.audioPackets === 0) result.errors.push("no audio packets in loopback");
}

try {
  await (config.selftest ? runSelftest() : runPubSub());
} catch (e) {
  result.errors.push(e && e.message ? e.message : String(e));
}
await cleanup();
clearTimeout(hardTimer);
emit();
process.exitCode = result.errors.length === 0 ? 0 : 1;
