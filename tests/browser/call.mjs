#!/usr/bin/env node
// Call Kit end-to-end scenarios in headless Chromium, driven through the demo pages'
// UI (the `data-testid` hooks of <cascade-call> and <cascade-meeting>):
//
//   --scenario accept       caller dials callee; callee rings, accepts; both decode the
//                           other's video and audio; the caller hangs up.
//   --scenario decline      callee declines: the caller's call ends "declined".
//   --scenario cancel       caller hangs up while the callee rings: "cancelled".
//   --scenario two-devices  callee and callee2 are one user: both ring, callee accepts,
//                           callee2 stops ringing ("answered_elsewhere"); then as accept.
//   --scenario reconnect    as accept, then prints {"event":"block"} and waits for a
//                           stdin line "unblocked" (the test cuts the callee's media
//                           link meanwhile): the callee shows the reconnecting banner,
//                           and after the link is back, the banner goes and frames flow.
//   --scenario meeting      pages named by their users: all but the last join one
//                           room; all but the first mute, the first sends a tone; the
//                           others highlight it; the last page joins then and highlights
//                           it too (it was elected before); all leave.
//
// --pages is a JSON object {name: url} of the pages to open (each in its own browser
// context); the test builds the URLs (server, room, tokens, signal). Screenshots go
// to --artifacts. The last stdout line is {"event":"report","ok":...}.

import { chromium } from "playwright-core";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import readline from "node:readline";
import { parseArgs } from "node:util";
import { CHROMIUM_BASE_ARGS, FAKE_DEVICES } from "./chromium.mjs";

const started = Date.now();
const elapsed = () => Date.now() - started;

const { values: flags } = parseArgs({
  options: {
    scenario: { type: "string" },
    pages: { type: "string" },
    callee: { type: "string" },
    artifacts: { type: "string" },
    "min-frames": { type: "string" },
    "timeout-ms": { type: "string" },
    chromium: { type: "string" },
  },
  strict: true,
});

const config = {
  scenario: flags.scenario ?? "",
  pages: JSON.parse(flags.pages ?? "{}"),
  callee: flags.callee ?? "bob",
  artifacts: flags.artifacts ?? "",
  minFrames: Number(flags["min-frames"] ?? "30"),
  timeoutMs: Number(flags["timeout-ms"] ?? "90000"),
  chromium: flags.chromium ?? process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
};

/** Longest one step (a page load, a state change, media arriving) may take. */
const STEP_TIMEOUT_MS = 20000;
const POLL_MS = 200;

const result = {
  event: "report",
  scenario: config.scenario,
  ok: false,
  steps: [],
  pages: {},
  screenshots: [],
  errors: [],
  console_errors: {},
  elapsed_ms: 0,
};

const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const note = (what, extra = {}) => {
  const s = { t_ms: elapsed(), what, ...extra };
  result.steps.push(s);
  process.stderr.write(JSON.stringify(s) + "\n");
};

let browser = null;
let emitted = false;
function emit() {
  if (emitted) return;
  emitted = true;
  result.ok = result.errors.length === 0;
  result.elapsed_ms = elapsed();
  say(result);
}

async function cleanup() {
  if (browser) {
    const b = browser;
    browser = null;
    await withTimeout(b.close(), 10000, "closing the browser").catch((e) =>
      result.errors.push(e.message),
    );
  }
}

const hardTimer = setTimeout(() => {
  result.errors.push(`hard timeout: the run took longer than ${config.timeoutMs} ms`);
  emit();
  setTimeout(() => process.exit(2), 5000).unref();
  cleanup().finally(() => process.exit(2));
}, config.timeoutMs);

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
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function step(what, fn, ms = STEP_TIMEOUT_MS) {
  try {
    const r = await withTimeout(fn(), ms, what);
    note(what);
    return r;
  } catch (e) {
    const message = (e && e.message ? e.message : String(e)).split("\n")[0];
    throw new Error(`${what}: ${message}`);
  }
}

/** Polls `probe` (async, returns a value or null) until it returns non-null. */
async function until(what, probe, ms = STEP_TIMEOUT_MS) {
  return step(
    what,
    async () => {
      for (;;) {
        const v = await probe();
        if (v !== null && v !== undefined && v !== false) return v;
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    },
    ms,
  );
}

async function launch() {
  const origins = [...new Set(Object.values(config.pages).map((u) => new URL(u).origin))];
  browser = await chromium.launch({
    executablePath: config.chromium,
    headless: true,
    args: [
      ...CHROMIUM_BASE_ARGS,
      FAKE_DEVICES,
      `--unsafely-treat-insecure-origin-as-secure=${origins.join(",")}`,
    ],
    timeout: STEP_TIMEOUT_MS,
    handleSIGTERM: false,
    handleSIGINT: false,
    handleSIGHUP: false,
  });
}

/** Every page opened, by name: on failure the report says what each one saw. */
const opened = {};

async function diagnose() {
  for (const [name, page] of Object.entries(opened)) {
    const seen = await page
      .evaluate(() => ({
        connections: (window.cascadeConnections ?? []).map((pc) => ({
          connection: pc.connectionState,
          ice: pc.iceConnectionState,
          signaling: pc.signalingState,
        })),
        events: window.cascadeDemo?.events ?? [],
        state: window.cascadeDemo?.call?.state ?? null,
      }))
      .catch((e) => ({ unavailable: String(e?.message ?? e) }));
    result.pages[name] = { ...(result.pages[name] ?? {}), seen };
  }
}

/** Opens page `name` in a context of its own; keeps its peer connections for stats. */
async function open(name) {
  const ctx = await browser.newContext({
    viewport: { width: 960, height: 640 },
    permissions: ["camera", "microphone"],
  });
  const page = await ctx.newPage();
  result.console_errors[name] = [];
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
  page.on("console", (m) => {
    if (m.type() === "error") result.console_errors[name].push(m.text());
  });
  page.on("pageerror", (e) => result.console_errors[name].push(String(e?.message ?? e)));
  // What a failed request got, for the report.
  page.on("response", async (r) => {
    if (r.status() < 400) return;
    const body = await r.text().catch(() => "");
    result.console_errors[name].push(`${r.request().method()} ${r.url()}: ${r.status()} ${body.slice(0, 300)}`);
  });
  await step(`${name}: load`, async () => {
    const resp = await page.goto(config.pages[name], { timeout: STEP_TIMEOUT_MS });
    if (!resp || !resp.ok()) throw new Error(`answered ${resp ? resp.status() : "nothing"}`);
    await page.waitForFunction(
      () => window.cascadeDemo && (window.cascadeDemo.agent || window.cascadeDemo.meeting),
      null,
      { timeout: STEP_TIMEOUT_MS },
    );
  });
  opened[name] = page;
  return page;
}

const testid = (page, id) => page.locator(`[data-testid="${id}"]`).first();

async function visible(page, id) {
  return testid(page, id)
    .isVisible()
    .catch(() => false);
}

async function text(page, id) {
  return (await testid(page, id).textContent({ timeout: 1000 }).catch(() => null))?.trim() ?? null;
}

async function callState(page) {
  return page.evaluate(() => window.cascadeDemo?.call?.state ?? null);
}

async function endReason(page) {
  return page.evaluate(() => window.cascadeDemo?.call?.endReason ?? null);
}

/** Inbound media of every peer connection of the page. */
async function inbound(page) {
  return page.evaluate(async () => {
    const out = { framesDecoded: 0, audioPackets: 0, frameWidth: 0 };
    for (const pc of window.cascadeConnections ?? []) {
      if (pc.connectionState === "closed") continue;
      const stats = await pc.getStats();
      stats.forEach((s) => {
        if (s.type !== "inbound-rtp") return;
        if (s.kind === "video") {
          out.framesDecoded += s.framesDecoded ?? 0;
          out.frameWidth = Math.max(out.frameWidth, s.frameWidth ?? 0);
        }
        if (s.kind === "audio") out.audioPackets += s.packetsReceived ?? 0;
      });
    }
    return out;
  });
}

async function mediaFlows(name, page, above = 0) {
  return until(`${name}: decodes > ${config.minFrames} frames and gets audio`, async () => {
    const m = await inbound(page);
    return m.framesDecoded > above + config.minFrames && m.audioPackets > 0 ? m : null;
  });
}

async function screenshot(page, file) {
  if (!config.artifacts) return;
  await mkdir(config.artifacts, { recursive: true });
  const p = path.join(config.artifacts, file);
  await page.screenshot({ path: p });
  result.screenshots.push(p);
}

async function resources(page) {
  return page.evaluate(() => {
    const c = window.cascadeDemo?.call;
    return {
      publication: c?.publication?.resource ?? null,
      subscription: c?.subscription?.resource ?? null,
    };
  });
}

async function dial(caller) {
  await step("caller: dial", async () => {
    await testid(caller, "dialer-input").fill(config.callee);
    await testid(caller, "dialer-call").click();
  });
}

async function ringing(name, page) {
  await until(`${name}: rings`, () => visible(page, "incoming"));
}

async function active(name, page) {
  await until(`${name}: active`, async () => (await callState(page)) === "active");
}

async function ended(name, page, reason) {
  const got = await until(`${name}: ended`, async () =>
    (await callState(page)) === "ended" ? (await endReason(page)) ?? "?" : null,
  );
  if (reason && got !== reason) throw new Error(`${name}: ended "${got}", wanted "${reason}"`);
  result.pages[name] = { ...(result.pages[name] ?? {}), end_reason: got };
  return got;
}

async function connected(caller, callee) {
  await active("caller", caller);
  await active("callee", callee);
  for (const [name, page] of [["caller", caller], ["callee", callee]]) {
    result.pages[name] = { ...(await mediaFlows(name, page)), ...(await resources(page)) };
  }
}

async function hangUp(caller, callee) {
  await step("caller: hang up", () => testid(caller, "hangup").click());
  await ended("caller", caller, "hangup");
  await ended("callee", callee, "remote_hangup");
}

const stdinLines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function waitForLine(expected) {
  for (;;) {
    const { value, done } = await stdinLines.next();
    if (done) throw new Error(`stdin closed before "${expected}"`);
    if (value.trim() === expected) return;
  }
}

const scenarios = {
  async accept() {
    const callee = await open("callee");
    const caller = await open("caller");
    await dial(caller);
    await ringing("callee", callee);
    await screenshot(callee, "call-ringing.png");
    await step("callee: accept", () => testid(callee, "accept").click());
    await connected(caller, callee);
    await screenshot(caller, "call-active.png");
    await hangUp(caller, callee);
  },

  async decline() {
    const callee = await open("callee");
    const caller = await open("caller");
    await dial(caller);
    await ringing("callee", callee);
    await step("callee: decline", () => testid(callee, "decline").click());
    await ended("caller", caller, "declined");
    await ended("callee", callee, null);
  },

  async cancel() {
    const callee = await open("callee");
    const caller = await open("caller");
    await dial(caller);
    await ringing("callee", callee);
    await step("caller: cancel", () => testid(caller, "hangup").click());
    await ended("callee", callee, "cancelled");
    await until("callee: stops ringing", async () => !(await visible(callee, "incoming")));
    await ended("caller", caller, null);
  },

  async "two-devices"() {
    const callee = await open("callee");
    const callee2 = await open("callee2");
    const caller = await open("caller");
    await dial(caller);
    await ringing("callee", callee);
    await ringing("callee2", callee2);
    await step("callee: accept", () => testid(callee, "accept").click());
    await ended("callee2", callee2, "answered_elsewhere");
    await until("callee2: stops ringing", async () => !(await visible(callee2, "incoming")));
    await connected(caller, callee);
    await hangUp(caller, callee);
  },

  async reconnect() {
    const callee = await open("callee");
    const caller = await open("caller");
    await dial(caller);
    await ringing("callee", callee);
    await step("callee: accept", () => testid(callee, "accept").click());
    await connected(caller, callee);
    say({ event: "block" });
    await until("callee: reconnecting banner", () => visible(callee, "reconnecting"));
    await screenshot(callee, "call-reconnecting.png");
    say({ event: "banner" });
    await step("the link is back", () => waitForLine("unblocked"), 30000);
    const before = await inbound(callee);
    await until("callee: banner gone", async () => !(await visible(callee, "reconnecting")), 30000);
    await active("callee", callee);
    result.pages.callee.after = await mediaFlows("callee (after)", callee, before.framesDecoded);
    await hangUp(caller, callee);
  },

  async meeting() {
    // The last page joins once the speaker is elected.
    const all = Object.keys(config.pages);
    const late = all[all.length - 1];
    const names = all.slice(0, -1);
    const pages = {};
    for (const n of names) pages[n] = await open(n);
    for (const n of names) {
      await until(`${n}: ${names.length} tiles`, async () =>
        (await pages[n].locator('[data-testid="tile"]').count()) === names.length,
      );
    }
    for (const n of names) {
      await until(`${n}: every tile shows video`, async () => {
        const widths = await pages[n]
          .locator('[data-testid="tile"] video')
          .evaluateAll((videos) => videos.map((v) => v.videoWidth));
        return widths.length === names.length && widths.every((w) => w > 0) ? widths : null;
      });
    }
    const [speaker, ...quiet] = names;
    for (const n of quiet) {
      await pages[n].evaluate(() => window.cascadeDemo.meeting.setMuted("audio", true));
    }
    note("muted", { quiet });
    // Chromium's fake microphone beeps briefly once a second, below a speaker's
    // average: the speaker sends a steady tone instead (a WebAudio oscillator).
    await step(`${speaker}: speaks`, () =>
      pages[speaker].evaluate(async () => {
        const ctx = new AudioContext();
        await ctx.resume();
        const osc = ctx.createOscillator();
        osc.frequency.value = 440;
        const dest = ctx.createMediaStreamDestination();
        osc.connect(dest);
        osc.start();
        window.cascadeTone = { ctx, osc };
        await window.cascadeDemo.meeting.publication.replaceTrack("audio", dest.stream.getAudioTracks()[0]);
      }),
    );
    // Page names are the users' names.
    const speakerUser = speaker;
    const highlighted = (n) =>
      until(`${n}: highlights the speaker`, async () => {
        const u = await pages[n]
          .locator('[data-testid="tile"][data-speaking="true"]')
          .first()
          .getAttribute("data-user", { timeout: 500 })
          .catch(() => null);
        return u === speakerUser ? u : null;
      });
    for (const n of quiet) result.pages[n] = { highlighted: await highlighted(n) };
    await screenshot(pages[quiet[0]], "meeting-4.png");
    pages[late] = await open(late);
    await pages[late].evaluate(() => window.cascadeDemo.meeting.setMuted("audio", true));
    result.pages[late] = { highlighted: await highlighted(late) };
    names.push(late);
    for (const n of names) result.pages[n] = { ...(result.pages[n] ?? {}), ...(await inbound(pages[n])) };
    for (const n of names) {
      await step(`${n}: leave`, () => testid(pages[n], "leave").click());
    }
  },
};

async function main() {
  const run = scenarios[config.scenario];
  if (!run) throw new Error(`unknown scenario "${config.scenario}"`);
  await step("launch Chromium", launch);
  await run();
}

main()
  .catch(async (e) => {
    result.errors.push(e && e.message ? e.message : String(e));
    await withTimeout(diagnose(), 10000, "diagnosing").catch(() => {});
  })
  .finally(async () => {
    clearTimeout(hardTimer);
    await cleanup();
    emit();
    process.exit(result.errors.length === 0 ? 0 : 1);
  });
