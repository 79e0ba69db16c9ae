#!/usr/bin/env node
// Screenshots of the Call Kit's screens, for looking at them: bundles demo/preview.ts
// (fake calls and meetings, no server), serves it on loopback, and has headless Chromium
// (playwright-core from tests/browser) shoot each screen at a desktop and a phone size
// into tests/artifacts/callkit/<screen>-<desktop|phone>.png.
//
//   node demo/screenshots.mjs [screen ...]      (from sdk/; default: every screen)

import * as esbuild from "esbuild";
import { copyFile, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { bundleOptions, sdkDir } from "./build.mjs";

const repo = path.dirname(sdkDir);
const require = createRequire(path.join(repo, "tests", "browser", "package.json"));
const { chromium } = require("playwright-core");

const SCREENS = ["idle", "incoming", "outgoing", "call", "reconnecting", "ended", "meeting", "meeting4", "meeting6", "meeting1", "idle-light", "meeting4-light"];
const VIEWPORTS = { desktop: { width: 1280, height: 800 }, phone: { width: 390, height: 844 }, landscape: { width: 844, height: 390 } };
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
  "--disable-gpu", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
];

const wanted = process.argv.slice(2).length ? process.argv.slice(2) : SCREENS;
const outDir = path.join(repo, "tests", "artifacts", "callkit");
const work = await mkdtemp(path.join(tmpdir(), "callkit-preview-"));
const server = http.createServer(async (req, res) => {
  const name = new URL(req.url ?? "/", "http://x").pathname.slice(1) || "preview.html";
  try {
    const body = await readFile(path.join(work, path.basename(name)));
    res.writeHead(200, { "content-type": name.endsWith(".js") ? "text/javascript" : "text/html" });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
let browser;
try {
  await esbuild.build({ ...bundleOptions({ preview: path.join(sdkDir, "demo", "preview.ts") }, work), minify: false });
  await copyFile(path.join(sdkDir, "demo", "preview.html"), path.join(work, "preview.html"));
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  await mkdir(outDir, { recursive: true });
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium", args: CHROMIUM_ARGS });
  for (const screen of wanted) {
    for (const [vpName, viewport] of Object.entries(VIEWPORTS)) {
      const page = await browser.newPage({ viewport, deviceScaleFactor: 1 });
      page.on("pageerror", (e) => console.error(`${screen}: ${e.message}`));
      const [name, theme] = screen.split("-");
      const base_ = name.startsWith("meeting") ? `screen=meeting&people=${name === "meeting" ? 3 : Number(name.slice(7)) - 1}` : `screen=${name}`;
      const query = theme ? `${base_}&theme=${theme}` : base_;
      await page.goto(`${base}/preview.html?${query}`);
      // Wait until the preview set its call up and every visible video shows a frame.
      await page.waitForFunction(() => {
        if (document.body.dataset.ready !== "true") return false;
        const host = document.querySelector("cascade-call, cascade-meeting");
        if (!host?.shadowRoot) return false;
        const videos = [...host.shadowRoot.querySelectorAll("video")].filter((v) => v.srcObject && v.offsetParent);
        return videos.every((v) => v.readyState >= 2);
      }, undefined, { timeout: 10000 });
      const file = path.join(outDir, `${screen}-${vpName}.png`);
      await page.screenshot({ path: file });
      console.log(path.relative(repo, file));
      await page.close();
    }
  }
} finally {
  await browser?.close();
  server.close();
  await rm(work, { recursive: true, force: true });
}
