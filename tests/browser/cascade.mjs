#!/usr/bin/env node
// One side of a cascaded call in headless Chromium, for the multi-server tests, which
// run one copy of this script per server namespace:
//
//   --role publish    loads the demo page of the server at --base, publishes the fake
//                     camera and microphone there, prints {"event":"published",...} with
//                     the resource URL, keeps publishing until stdin closes (or the hard
//                     timeout), then deletes the publication.
//   --role subscribe  loads the demo page of the server at --base (for its origin) and
//                     subscribes there to --resource, which may name another server:
//                     POST {base}/rtc/v1/rooms/{room}/subscribe?resource=URL with a
//                     recvonly audio + video offer. It samples the receive statistics
//                     until more than --min-frames video frames were decoded (and audio
//                     arrived) or --deadline-ms passed, then deletes the subscription.
//
// Either way the last stdout line is one JSON report {"event":"report","ok":...}; the
// exit code is 0 when no step failed.
//
// Flags: --role, --base URL, --room NAME, --token JWT, --resource URL (subscribe),
// --deadline-ms N (15000), --min-frames N (30), --timeout-ms N (hard limit, 60000),
// --chromium PATH (CHROMIUM_PATH, /usr/bin/chromium).

import { chromium } from "playwright-core";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { CHROMIUM_BASE_ARGS, FAKE_DEVICES } from "./chromium.mjs";

const started = Date.now();
const elapsed = () => Date.now() - started;

const { values: flags } = parseArgs({
  options: {
    role: { type: "string" },
    base: { type: "string" },
    room: { type: "string" },
    token: { type: "string" },
    resource: { type: "string" },
    "deadline-ms": { type: "string" },
    "min-frames": { type: "string" },
    "timeout-ms": { type: "string" },
    chromium: { type: "string" },
  },
  strict: true,
});

const config = {
  role: flags.role ?? "",
  base: (flags.base ?? "").replace(/\/+$/, ""),
  room: flags.room ?? "",
  token: flags.token ?? "",
  resource: flags.resource ?? "",
  deadlineMs: Number(flags["deadline-ms"] ?? "15000"),
  minFrames: Number(flags["min-frames"] ?? "30"),
  timeoutMs: Number(flags["timeout-ms"] ?? "60000"),
  chromium: flags.chromium ?? process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
};

/** Longest a single step (browser start, page load, publish, subscribe, stop) may take. */
const STEP_TIMEOUT_MS = 15000;
const POLL_INTERVAL_MS = 250;

const result = {
  event: "report",
  role: config.role,
  ok: false,
  base: config.base,
  room: config.room,
  resource: null,
  samples: [],
  final_stats: null,
  time_to_first_frame_ms: null,
  goal_reached_ms: null,
  stop: null,
  errors: [],
  console_errors: [],
  elapsed_ms: 0,
};

function say(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

let emitted = false;
function emit() {
  if (emitted) return;
  emitted = true;
  result.ok = result.errors.length === 0;
  result.elapsed_ms = elapsed();
  say(result);
}

let browserContext = null;
let userDataDir = null;

async function cleanup() {
  if (browserContext) {
    const ctx = browserContext;
    browserContext = null;
    await withTimeout(ctx.close(), 10000, "closing the browser").catch((e) =>
      result.errors.push(e.message),
    );
  }
  if (userDataDir) {
    await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
    userDataDir = null;
  }
}

const hardTimer = setTimeout(() => {
  result.errors.push(`hard timeout: the run took longer than ${config.timeoutMs} ms`);
  emit();
  setTimeout(() => process.exit(2), 5000).unref();
  cleanup().finally(() => process.exit(2));
}, config.timeoutMs);

// Stopped from outside (the test gave up): close the browser, report, exit.
for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"]) {
  process.on(sig, () => {
    result.errors.push(`stopped by ${sig}`);
    emit();
    setTimeout(() => process.exit(3), 5000).unref();
    cleanup().finally(() => process.exit(3));
  });
}

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
    args: [
      ...CHROMIUM_BASE_ARGS,
      FAKE_DEVICES,
      // The servers listen on namespace addresses over plain HTTP; the camera
      // needs a secure context.
      `--unsafely-treat-insecure-origin-as-secure=${new URL(config.base).origin}`,
    ],
    timeout: STEP_TIMEOUT_MS,
    // This script's own handlers close the browser and exit.
    handleSIGTERM: false,
    handleSIGINT: false,
    handleSIGHUP: false,
  });
  return browserContext;
}

async function openDemo(ctx) {
  const page = await ctx.newPage();
  // Keeps every peer connection the page makes, for its statistics.
  await page.addInitScript(() => {
    const Native = window.RTCPeerConnection;
    window.cascadeConnections = [];
    window.RTCPeerConnection = class extends Native {
      constructor(...args) {
        super(...args);
        window.cascadeConnections.push(this);
      }
    };
  });
  page.on("console", (msg) => {
    if (msg.type() === "error") result.console_errors.push(msg.text());
  });
  page.on("pageerror", (err) => result.console_errors.push(String(err && err.message ? err.message : err)));
  const url =
    `${config.base}/?room=${encodeURIComponent(config.room)}` +
    `&token=${encodeURIComponent(config.token)}`;
  await step("loading the demo page", async () => {
    const resp = await page.goto(url, { timeout: STEP_TIMEOUT_MS });
    if (!resp || !resp.ok()) throw new Error(`GET / answered ${resp ? resp.status() : "nothing"}`);
    await page.waitForFunction(() => window.cascadeDemo !== undefined, null, {
      timeout: STEP_TIMEOUT_MS,
    });
  });
  return page;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves when stdin closes: the test's signal to stop publishing. */
function stdinClosed() {
  return new Promise((resolve) => {
    process.stdin.on("end", resolve);
    process.stdin.on("close", resolve);
    process.stdin.on("error", resolve);
    process.stdin.resume();
  });
}

async function runPublish() {
  const ctx = await step("launching chromium", launch);
  const page = await openDemo(ctx);
  try {
    result.resource = await step("publish()", () => page.evaluate(() => window.cascadeDemo.publish()));
    say({ event: "published", resource: result.resource, t_ms: elapsed() });
    await stdinClosed();
    result.final_stats = await step("outbound stats", () =>
      page.evaluate(async () => {
        const out = { framesEncoded: 0, packetsSent: 0 };
        for (const pc of window.cascadeConnections) {
          (await pc.getStats()).forEach((s) => {
            if (s.type === "outbound-rtp" && s.kind === "video") {
              out.framesEncoded += s.framesEncoded || 0;
              out.packetsSent += s.packetsSent || 0;
            }
          });
        }
        return out;
      }),
    ).catch((e) => ({ error: e.message }));
  } finally {
    result.stop = await step("stopAll()", () => page.evaluate(() => window.cascadeDemo.stopAll())).catch(
      (e) => {
        result.errors.push(e.message);
        return null;
      },
    );
  }
}

/** Subscribes the page to one resource URL (of any server) through the page's own server. */
function subscribeInPage({ base, room, token, resource }) {
  return (async () => {
    const pc = new RTCPeerConnection();
    window.cascadeSubscriber = pc;
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.addTransceiver("video", { direction: "recvonly" });
    await pc.setLocalDescription(await pc.createOffer());
    const url =
      `${base}/rtc/v1/rooms/${encodeURIComponent(room)}/subscribe` +
      `?resource=${encodeURIComponent(resource)}`;
    const resp = await fetch(url, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/sdp" },
      body: pc.localDescription.sdp,
    });
    const body = await resp.text();
    if (resp.status !== 201) throw new Error(`POST ${url}: ${resp.status}: ${body.slice(0, 300)}`);
    const location = resp.headers.get("Location");
    if (!location) throw new Error(`POST ${url}: no Location header`);
    await pc.setRemoteDescription({ type: "answer", sdp: body });
    return new URL(location, url).href;
  })();
}

function statsInPage() {
  return (async () => {
    const pc = window.cascadeSubscriber;
    const out = {
      connection: pc.connectionState,
      video: { framesDecoded: 0, frameWidth: 0, frameHeight: 0, packetsReceived: 0, packetsLost: 0, nackCount: 0 },
      audio: { packetsReceived: 0 },
    };
    (await pc.getStats()).forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      if (s.kind === "video") {
        out.video.framesDecoded += s.framesDecoded || 0;
        out.video.packetsReceived += s.packetsReceived || 0;
        out.video.packetsLost += s.packetsLost || 0;
        out.video.nackCount += s.nackCount || 0;
        out.video.frameWidth = Math.max(out.video.frameWidth, s.frameWidth || 0);
        out.video.frameHeight = Math.max(out.video.frameHeight, s.frameHeight || 0);
      } else if (s.kind === "audio") {
        out.audio.packetsReceived += s.packetsReceived || 0;
      }
    });
    return out;
  })();
}

function unsubscribeInPage({ resource, token }) {
  return (async () => {
    const resp = await fetch(resource, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } });
    window.cascadeSubscriber.close();
    return { url: resource, status: resp.status };
  })();
}

async function runSubscribe() {
  if (!config.resource) throw new Error("no --resource to subscribe to");
  const ctx = await step("launching chromium", launch);
  const page = await openDemo(ctx);
  const args = { base: config.base, room: config.room, token: config.token, resource: config.resource };
  result.resource = await step("subscribe", () => page.evaluate(subscribeInPage, args));
  const subscribedAt = Date.now();
  try {
    for (;;) {
      const stats = await step("inbound stats", () => page.evaluate(statsInPage));
      const t = Date.now() - subscribedAt;
      result.samples.push({ t_ms: t, ...stats });
      result.final_stats = stats;
      if (result.time_to_first_frame_ms === null && stats.video.framesDecoded > 0) {
        result.time_to_first_frame_ms = t;
      }
      if (stats.video.framesDecoded > config.minFrames && stats.audio.packetsReceived > 0) {
        result.goal_reached_ms = t;
        break;
      }
      if (t >= config.deadlineMs) {
        result.errors.push(
          `after ${t} ms the subscriber had decoded ${stats.video.framesDecoded} video frames and ` +
            `received ${stats.audio.packetsReceived} audio packets (wanted > ${config.minFrames} and > 0)`,
        );
        break;
      }
      await sleep(POLL_INTERVAL_MS);
    }
  } finally {
    result.stop = await step("unsubscribe", () =>
      page.evaluate(unsubscribeInPage, { resource: result.resource, token: config.token }),
    ).catch((e) => {
      result.errors.push(e.message);
      return null;
    });
  }
}

try {
  if (!config.base || !config.room || !config.token) throw new Error("--base, --room and --token are required");
  if (config.role === "publish") await runPublish();
  else if (config.role === "subscribe") await runSubscribe();
  else throw new Error(`--role must be publish or subscribe, not ${JSON.stringify(config.role)}`);
} catch (e) {
  result.errors.push(e && e.message ? e.message : String(e));
}
await cleanup();
clearTimeout(hardTimer);
emit();
process.exitCode = result.errors.length === 0 ? 0 : 1;
