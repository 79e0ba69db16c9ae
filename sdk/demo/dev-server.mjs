#!/usr/bin/env node
// A development stand-in for what `cascade serve` does for the demo pages: starts a
// media server (`cascade serve`) and a signalling service (`cascade signal`) on loopback
// with one random token secret, and serves on its own port:
//   /call, /call.js, /meeting, /meeting.js   from dist-demo/ (run demo/build.mjs first)
//   /dev/config.json  {"signal": "ws://…/v1/connect", "server": "http://…", "dev": true}
//   /dev/token?user=U&room=R  {"token": "…"} (publish + subscribe, minted by `cascade token`)
// The media server's CORS is open, so the pages call it directly ("server" above).
//
//   node demo/dev-server.mjs [--port 8088] [--cascade PATH]    (from sdk/; Ctrl-C stops all)

import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { parseArgs } from "node:util";
import { outDir, sdkDir } from "./build.mjs";

const { values: flags } = parseArgs({
  options: { port: { type: "string", default: "8088" }, cascade: { type: "string" } },
  strict: true,
});
const cascade = flags.cascade ?? process.env.CASCADE_BIN ?? path.join(path.dirname(sdkDir), "target", "release", "cascade");
const secret = randomBytes(24).toString("hex");
const work = await mkdtemp(path.join(tmpdir(), "cascade-dev-"));
const children = [];

/** Starts a cascade subcommand and resolves with the URLs of its `listening:` line. */
function start(args, pattern) {
  return new Promise((resolve, reject) => {
    const child = spawn(cascade, args, { env: { ...process.env, CASCADE_TOKEN_SECRET: secret }, stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    let seen = "";
    const look = (chunk) => {
      seen += chunk;
      const m = seen.match(pattern);
      if (m) resolve(m);
    };
    child.stdout.setEncoding("utf8").on("data", look);
    child.stderr.setEncoding("utf8").on("data", look);
    child.on("exit", (code) => reject(new Error(`cascade ${args[0]} exited (${code}) before listening:\n${seen.slice(-2000)}`)));
  });
}

function stop() {
  for (const child of children) child.kill("SIGTERM");
}
process.on("SIGINT", () => {
  stop();
  void rm(work, { recursive: true, force: true }).finally(() => process.exit(0));
});

try {
  const [, media] = await start(
    ["serve", "--http-listen", "127.0.0.1:0", "--media-listen", "127.0.0.1:0"],
    /cascade listening: http=(\S+)/,
  );
  const [, signal] = await start(
    ["signal", "--listen", "127.0.0.1:0", "--store", path.join(work, "signal.redb")],
    /cascade signal listening: (ws:\S+)/,
  );
  const config = JSON.stringify({ signal, server: media, dev: true });
  const mint = promisify(execFile);
  const files = { "/call": "call.html", "/call.js": "call.js", "/meeting": "meeting.html", "/meeting.js": "meeting.js" };

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const send = (status, type, body) => {
      res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
      res.end(body);
    };
    try {
      if (url.pathname === "/dev/config.json") return send(200, "application/json", config);
      if (url.pathname === "/dev/token") {
        const user = url.searchParams.get("user");
        const room = url.searchParams.get("room");
        if (!user || !room) return send(400, "application/json", JSON.stringify({ code: "bad_request", message: "user and room are required" }));
        const { stdout } = await mint(cascade, ["token", "--secret", secret, "--room", room, "--user", user, "--grant", "publish", "--grant", "subscribe"]);
        return send(200, "application/json", JSON.stringify({ token: stdout.trim() }));
      }
      const file = url.pathname === "/" ? "call.html" : files[url.pathname];
      if (!file) return send(404, "application/json", JSON.stringify({ code: "not_found" }));
      const body = await readFile(path.join(outDir, file));
      return send(200, file.endsWith(".js") ? "text/javascript; charset=utf-8" : "text/html; charset=utf-8", body);
    } catch (err) {
      return send(500, "application/json", JSON.stringify({ code: "internal", message: String(err?.message ?? err) }));
    }
  });
  await new Promise((resolve) => server.listen(Number(flags.port), "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  console.log(`demo: ${base}/call ${base}/meeting  media: ${media}  signal: ${signal}`);
} catch (err) {
  console.error(String(err?.message ?? err));
  stop();
  await rm(work, { recursive: true, force: true });
  process.exit(1);
}
