// How the demo pages find their servers and tokens. Query parameters win: `user`, `room`,
// `token` (media token; with it, the media room is `room`), `signal` (WebSocket URL of
// `cascade signal`), `signal_token` (default: `token`), `server` (media server base URL,
// default the page's origin). Whatever is missing comes from the page's origin:
// `GET /dev/config.json` → {"signal": "ws://…", "dev": true} (and "server" when the media
// server is elsewhere) and
// `GET /dev/token?user=U&room=R` → {"token": "…"} (a development server only).
// Tokens are never logged or shown.

import type { TokenSource } from "@cascade/core";

export const params = new URLSearchParams(location.search);

/** A query parameter, or undefined when absent or empty. */
export function param(name: string): string | undefined {
  const v = params.get(name);
  return v === null || v === "" ? undefined : v;
}

/** A flag parameter: present and not "0"/"false"/"no". */
export function flag(name: string): boolean {
  const v = params.get(name);
  return v !== null && !["0", "false", "no"].includes(v.toLowerCase());
}

interface DevConfig {
  signal?: string;
  /** The media server, when it is not the page's origin (a development server's extra). */
  server?: string;
  dev?: boolean;
}

let devConfig: Promise<DevConfig> | undefined;

/** `/dev/config.json` of the page's origin ({} when there is none). */
export function loadDevConfig(): Promise<DevConfig> {
  devConfig ??= fetch(new URL("/dev/config.json", location.href))
    .then(async (r) => (r.ok ? ((await r.json()) as DevConfig) : {}))
    .catch(() => ({}));
  return devConfig;
}

/** The media server's base URL: `server`, else /dev/config.json's `server`, else the page's origin. */
export async function mediaServer(): Promise<string> {
  const server = param("server") ?? (await loadDevConfig()).server ?? location.origin;
  return server.replace(/\/+$/, "");
}

/** The WebSocket URL of `cascade signal`: `signal`, else /dev/config.json's. */
export async function signalUrl(): Promise<string> {
  const configured = param("signal") ?? (await loadDevConfig()).signal;
  if (!configured) throw new Error("No signalling server: add ?signal=ws://HOST:PORT/v1/connect to the address");
  const url = new URL(configured, location.href);
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  return url.href;
}

const TOKEN_REUSE_MS = 30 * 60 * 1000;
const devTokens = new Map<string, { token: Promise<string>; at: number }>();

/** A development token for `user` in `room` from the page's origin (reused for 30 minutes). */
export function devToken(user: string, room: string): Promise<string> {
  const key = `${user}\u0000${room}`;
  const cached = devTokens.get(key);
  if (cached && Date.now() - cached.at < TOKEN_REUSE_MS) return cached.token;
  const url = new URL("/dev/token", location.href);
  url.searchParams.set("user", user);
  url.searchParams.set("room", room);
  const token = fetch(url).then(async (r) => {
    if (!r.ok) throw new Error(`No development token (HTTP ${r.status}): pass ?token= and ?signal_token=`);
    const body = (await r.json()) as { token?: unknown };
    if (typeof body.token !== "string") throw new Error("The development token answer has no token");
    return body.token;
  });
  devTokens.set(key, { token, at: Date.now() });
  token.catch(() => devTokens.delete(key));
  return token;
}

/** The media room and token for `room`: the query's token and room when given, else a dev token. */
export function mediaAccess(user: string, room: string): { room: string; token: TokenSource } {
  const token = param("token");
  if (token) return { room: param("room") ?? room, token };
  return { room, token: () => devToken(user, room) };
}

/** The signalling token: `signal_token`, else `token`, else a dev token. */
export function signalToken(user: string): TokenSource {
  const token = param("signal_token") ?? param("token");
  return token ?? (() => devToken(user, "signal"));
}

/** The name to use: `user`, else the one typed last time on this browser. */
export function rememberedUser(): string | undefined {
  return param("user") ?? localStorage.getItem("cascade-demo-user") ?? undefined;
}

export function rememberUser(user: string): void {
  try {
    localStorage.setItem("cascade-demo-user", user);
  } catch {
    // Private mode: nothing to remember.
  }
}
